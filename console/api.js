// The console's client of this service's JSON API (API.md), and nothing
// else: every call goes to this origin, with the operator's key, and comes
// back as the envelope's data or as an ApiError with the envelope's code.
// The key lives only in this tab's session storage; it is never logged,
// never put in a URL, and forgotten on log-out or when the service refuses it.

const KEY_STORAGE = 'wallet.console.key';

// The key this tab logged in with: a string ('' when the service runs
// without keys), or null before log-in.
export function savedKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

// A refusal from the service (`code` as in API.md's error codes) or a
// failure to reach it (`status` 0).
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? null;
  }
}

// Listeners told when the service refuses the key (401), so the pages can
// send the operator back to log in.
const unauthorizedListeners = [];
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

function headersFor(key, extra) {
  const headers = { Accept: 'application/json', ...extra };
  if (key) {
    headers.Authorization = `Bearer ${key}`;
  }
  return headers;
}

// `/wallets/{userId}/...` and the like, each segment escaped.
export function path(...segments) {
  return '/' + segments.map((segment) => encodeURIComponent(String(segment))).join('/');
}

// `path?query`, leaving out empty values: the API refuses a parameter
// given empty (API.md), where the console means "no filter".
export function withQuery(base, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== '') {
      params.set(name, String(value));
    }
  }
  const text = params.toString();
  return text ? `${base}?${text}` : base;
}

async function send(method, url, { body, key } = {}) {
  const usedKey = key ?? savedKey();
  const extra = body === undefined ? {} : { 'Content-Type': 'application/json' };
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: headersFor(usedKey, extra),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch (failure) {
    throw new ApiError(0, 'UNREACHABLE', `The service could not be reached (${failure.message}).`);
  }
  if (response.status === 401 && key === undefined) {
    for (const listener of unauthorizedListeners) {
      listener();
    }
  }
  return response;
}

async function envelopeOf(response) {
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    throw new ApiError(response.status, 'NOT_JSON', `The service answered ${response.status} without JSON.`);
  }
  if (!envelope || envelope.success !== true) {
    const error = envelope?.error ?? {};
    throw new ApiError(
      response.status,
      error.code ?? 'UNKNOWN',
      error.message ?? `The service answered ${response.status}.`,
      error.details,
    );
  }
  return envelope.data;
}

// GET a JSON route: its `data`.
export async function get(url, options) {
  return envelopeOf(await send('GET', url, options));
}

// POST a JSON body: `{data, status, replayed}`, `replayed` when the
// service answered a retry with the original answer (API.md, Idempotency).
export async function post(url, body, options) {
  const response = await send('POST', url, { ...options, body });
  const data = await envelopeOf(response);
  return {
    data,
    status: response.status,
    replayed: response.headers.get('Idempotent-Replayed') === 'true',
  };
}

// PUT a JSON body (the rules routes, which need no idempotency key: the
// same body twice sets the same rules): its `data`.
export async function put(url, body, options) {
  return envelopeOf(await send('PUT', url, { ...options, body }));
}

// GET a route that answers text (`/metrics`).
export async function getText(url) {
  const response = await send('GET', url);
  if (!response.ok) {
    await envelopeOf(response);
  }
  return response.text();
}

// A new idempotency key: 128 random bits. One is made for each action the
// operator confirms, and reused when that same action is sent again, so a
// double click or a retry after a lost answer applies it once.
// `crypto.randomUUID` exists only on secure origins (HTTPS, localhost);
// `getRandomValues` everywhere.
export function freshIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `console-${hex}`;
}

// The cursor of the newest event, so a live tail starts from now rather
// than from the start of the ledger. API.md calls cursors opaque; this page
// is served by the same binary as the feed, and relies on what that binary
// makes of them: whole numbers, in commit order, with a cursor past the
// newest refused (400). So the newest is found by doubling, then halving,
// with pages of one event: about 2·log2(n) requests, however long the feed.
export async function newestEventCursor() {
  const accepted = async (after) => {
    try {
      await get(withQuery('/events', { after, limit: 1 }));
      return true;
    } catch (error) {
      if (error.code === 'VALIDATION_ERROR') {
        return false;
      }
      throw error;
    }
  };
  let low = 0;
  let high = 1;
  while (await accepted(high)) {
    low = high;
    high *= 2;
  }
  // accepted(low), not accepted(high): narrow down to the last accepted.
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (await accepted(middle)) {
      low = middle;
    } else {
      high = middle;
    }
  }
  return String(low);
}

// Follows the event feed as Server-Sent Events. EventSource cannot send an
// Authorization header, so this reads the stream with fetch: `onEvent`
// gets each event as parsed JSON, `onState` each change ('connecting',
// 'live', 'reconnecting', or 'stopped' with a reason). A dropped stream is
// opened again with `Last-Event-ID`, so nothing is missed or seen twice
// (API.md: GET /events). Stops when `signal` aborts or the key is refused.
export async function followEvents({ after, onEvent, onState, signal }) {
  let lastEventId = after ?? '';
  let delayMs = 1000;
  while (!signal.aborted) {
    onState('connecting');
    let response;
    try {
      const headers = headersFor(savedKey(), { Accept: 'text/event-stream' });
      if (lastEventId !== '') {
        headers['Last-Event-ID'] = lastEventId;
      }
      response = await fetch(withQuery('/events', { after: lastEventId }), {
        headers,
        signal,
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (failure) {
      if (signal.aborted) {
        break;
      }
      onState('reconnecting', failure.message);
      await sleep(delayMs, signal);
      delayMs = Math.min(delayMs * 2, 15000);
      continue;
    }
    if (!response.ok) {
      const refusal = await envelopeOf(response).catch((error) => error);
      if (response.status === 503) {
        const wait = Number(response.headers.get('Retry-After')) || 1;
        onState('reconnecting', refusal.message);
        await sleep(wait * 1000, signal);
        continue;
      }
      onState('stopped', refusal.message);
      if (response.status === 401) {
        for (const listener of unauthorizedListeners) {
          listener();
        }
      }
      return;
    }
    onState('live');
    delayMs = 1000;
    try {
      for await (const message of serverSentEvents(response.body, signal)) {
        if (message.id !== undefined) {
          lastEventId = message.id;
        }
        if (message.data !== '') {
          onEvent(JSON.parse(message.data));
        }
      }
    } catch (failure) {
      if (signal.aborted) {
        break;
      }
      onState('reconnecting', failure.message);
      await sleep(delayMs, signal);
      continue;
    }
    if (!signal.aborted) {
      // The service ended the stream (a restart, a revoked key): ask again.
      onState('reconnecting', 'the stream ended');
      await sleep(delayMs, signal);
    }
  }
  onState('stopped', 'stopped');
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

// The messages of a text/event-stream body, as the HTML standard parses
// them: lines end with CR, LF or CRLF; a blank line ends a message; a line
// starting with ':' is a comment (the service's keep-alive); `field: value`
// with one optional space after the colon.
async function* serverSentEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener('abort', () => reader.cancel().catch(() => {}), { once: true });
  let buffer = '';
  let message = { data: [], event: undefined, id: undefined };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      return;
    }
    buffer += value;
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      // A CR at the very end may be half of a CRLF still on its way.
      if (end < 0 || (end === buffer.length - 1 && buffer[end] === '\r')) {
        break;
      }
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
      if (line === '') {
        if (message.data.length > 0 || message.id !== undefined) {
          yield { data: message.data.join('\n'), event: message.event, id: message.id };
        }
        message = { data: [], event: undefined, id: undefined };
        continue;
      }
      if (line.startsWith(':')) {
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) {
        value = value.slice(1);
      }
      if (field === 'data') {
        message.data.push(value);
      } else if (field === 'event') {
        message.event = value;
      } else if (field === 'id' && !value.includes('\0')) {
        message.id = value;
      }
    }
  }
}
