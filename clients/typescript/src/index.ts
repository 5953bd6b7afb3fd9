// A thin, hand-written layer over the types generated from the wallet's
// OpenAPI document (src/schema.d.ts) and openapi-fetch:
//
// - one idempotency key per logical operation, made once and reused by every
//   retry of it, so a retried write is applied once;
// - retries on 503 and 429, honouring Retry-After (the server asks for them:
//   a full write queue, a rate limit; nothing was written);
// - errors as typed values: `{ error: WalletError }` with the code and the
//   details the document types, never a thrown exception for an API error;
// - the event feed as an async iterator over Server-Sent Events that
//   reconnects with Last-Event-ID, so it misses nothing and repeats nothing.
import { randomUUID } from "node:crypto";
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";

export type Schemas = components["schemas"];
export type ErrorCode = Schemas["ErrorCode"];
export type ErrorDetails = NonNullable<Schemas["Error"]["details"]>;
export type Event = Schemas["Event"];

/** An answer of the API that is not a success, as a value. */
export class WalletError extends Error {
  /** The HTTP status, or 0 when no answer came (the network failed). */
  readonly status: number;
  /** API.md's error code; a newer server may send one this client does not know. */
  readonly code: ErrorCode | (string & {});
  /** The code's details: `fields` for VALIDATION_ERROR, `balance` and `requested` for INSUFFICIENT_FUNDS, ... */
  readonly details: ErrorDetails;
  /** The request's X-Request-Id, to find it in the server's log. */
  readonly requestId: string | null;

  constructor(status: number, code: string, message: string, details: ErrorDetails, requestId: string | null) {
    super(message);
    this.name = "WalletError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.requestId = requestId;
  }
}

/** What every call resolves to: the payload, or the error; never both. */
export type Result<T> =
  | { data: T; error?: undefined; status: number; replayed: boolean }
  | { data?: undefined; error: WalletError; status: number; replayed?: undefined };

export interface WalletClientOptions {
  /** Such as `http://127.0.0.1:8080`. */
  baseUrl: string;
  /** `wk_...`: sent as `Authorization: Bearer`. A loopback server with no key yet needs none. */
  apiKey?: string;
  /** Tries per call, the first included (default 5). */
  maxAttempts?: number;
  /** The longest wait between two tries, whatever Retry-After says (default 30 s). */
  maxRetryDelayMs?: number;
  /** A fetch of your own (tests, proxies); default: the global one. */
  fetch?: typeof fetch;
}

/** Options of a write: the idempotency key, when the caller keeps its own. */
export interface WriteOptions {
  /** 1-255 visible ASCII characters; default: a fresh UUID for this call, reused by its retries. */
  idempotencyKey?: string;
}

type Body<T> = Omit<T, "idempotencyKey">;
/** The payload of a success envelope. */
type Payload<D> = D extends { data: infer P } ? P : never;
/** What openapi-fetch resolves to. */
type Sent<D> = { data?: D; error?: unknown; response: Response };

const RETRIED_STATUSES = new Set([429, 503]);

export class WalletClient {
  /** The generated client itself, for what this layer does not wrap. */
  readonly raw: Client<paths>;
  private readonly options: Required<Omit<WalletClientOptions, "apiKey">> & { apiKey?: string };

  constructor(options: WalletClientOptions) {
    this.options = {
      maxAttempts: 5,
      maxRetryDelayMs: 30_000,
      fetch: globalThis.fetch.bind(globalThis),
      ...options,
    };
    const headers: Record<string, string> = {};
    if (options.apiKey) {
      headers.Authorization = `Bearer ${options.apiKey}`;
    }
    this.raw = createClient<paths>({ baseUrl: options.baseUrl, headers, fetch: this.options.fetch });
  }

  // Service.
  health() {
    return this.call(() => this.raw.GET("/health"));
  }
  metrics() {
    return this.send(() => this.raw.GET("/metrics", { parseAs: "text" }), (data) => data as string);
  }
  openapi() {
    return this.send(() => this.raw.GET("/openapi.json"), (data) => data as Record<string, unknown>);
  }

  // Assets.
  assets() {
    return this.call(() => this.raw.GET("/assets"));
  }
  createAsset(body: Schemas["AssetRequest"]) {
    return this.call(() => this.raw.POST("/assets", { body }));
  }
  /** An asset's supply now, or as it stood at an instant (`at`, RFC 3339: without held and holders). */
  supply(asset: string, query: { at?: string } = {}) {
    return this.call(() => this.raw.GET("/assets/{asset}/supply", { params: { path: { asset }, query } }));
  }

  // Rules on value (admin to set; read to see a user's).
  /** Sets an asset's rules: an absent field keeps its value, null clears it. */
  setAssetRules(asset: string, body: Schemas["AssetRulesRequest"]) {
    return this.call(() => this.raw.PUT("/assets/{asset}/rules", { params: { path: { asset } }, body }));
  }
  /** The rules in force for a user, one row per asset. */
  userRules(userId: string) {
    return this.call(() => this.raw.GET("/wallets/{userId}/rules", { params: { path: { userId } } }));
  }
  /** Sets or removes (null) a user's own maxBalance and limits in one asset. */
  setUserRules(userId: string, body: Schemas["UserRulesRequest"]) {
    return this.call(() => this.raw.PUT("/wallets/{userId}/rules", { params: { path: { userId } }, body }));
  }

  // A wallet.
  balance(userId: string, query: { at?: string } = {}) {
    return this.call(() => this.raw.GET("/wallets/{userId}/balance", { params: { path: { userId }, query } }));
  }
  history(userId: string, query: paths["/wallets/{userId}/transactions"]["get"]["parameters"]["query"] = {}) {
    return this.call(() => this.raw.GET("/wallets/{userId}/transactions", { params: { path: { userId }, query } }));
  }
  transaction(id: string) {
    return this.call(() => this.raw.GET("/transactions/{id}", { params: { path: { id } } }));
  }
  topup(userId: string, body: Body<Schemas["EntryRequest"]>, options: WriteOptions = {}) {
    const sent = withKey(body, options);
    return this.call(() => this.raw.POST("/wallets/{userId}/topup", { params: { path: { userId } }, body: sent }));
  }
  bonus(userId: string, body: Body<Schemas["EntryRequest"]>, options: WriteOptions = {}) {
    const sent = withKey(body, options);
    return this.call(() => this.raw.POST("/wallets/{userId}/bonus", { params: { path: { userId } }, body: sent }));
  }
  spend(userId: string, body: Body<Schemas["EntryRequest"]>, options: WriteOptions = {}) {
    const sent = withKey(body, options);
    return this.call(() => this.raw.POST("/wallets/{userId}/spend", { params: { path: { userId } }, body: sent }));
  }
  transfer(userId: string, body: Body<Schemas["TransferRequest"]>, options: WriteOptions = {}) {
    const sent = withKey(body, options);
    return this.call(() => this.raw.POST("/wallets/{userId}/transfer", { params: { path: { userId } }, body: sent }));
  }
  reverse(id: string, body: Body<Schemas["ReverseRequest"]> = {}, options: WriteOptions = {}) {
    const sent = withKey(body, options);
    return this.call(() => this.raw.POST("/transactions/{id}/reverse", { params: { path: { id } }, body: sent }));
  }
  batch(operations: Schemas["BatchRequest"]["operations"], options: WriteOptions = {}) {
    const sent = withKey({ operations }, options);
    // openapi-fetch reads a oneOf as "exactly one of", which an entry's
    // optional `to: null` does not fit; the parameter above is typed.
    return this.call(() => this.raw.POST("/batch", { body: sent as never }));
  }

  // Holds.
  hold(userId: string, body: Body<Schemas["HoldRequest"]>, options: WriteOptions = {}) {
    const sent = withKey(body, options);
    return this.call(() => this.raw.POST("/wallets/{userId}/holds", { params: { path: { userId } }, body: sent }));
  }
  holds(userId: string, query: paths["/wallets/{userId}/holds"]["get"]["parameters"]["query"] = {}) {
    return this.call(() => this.raw.GET("/wallets/{userId}/holds", { params: { path: { userId }, query } }));
  }
  getHold(holdId: string) {
    return this.call(() => this.raw.GET("/holds/{holdId}", { params: { path: { holdId } } }));
  }
  capture(holdId: string, body: Body<Schemas["CaptureRequest"]> = {}, options: WriteOptions = {}) {
    const sent = withKey(body, options);
    return this.call(() => this.raw.POST("/holds/{holdId}/capture", { params: { path: { holdId } }, body: sent }));
  }
  void(holdId: string, options: WriteOptions = {}) {
    const sent = withKey({}, options);
    return this.call(() => this.raw.POST("/holds/{holdId}/void", { params: { path: { holdId } }, body: sent }));
  }

  // Keys (admin).
  keys() {
    return this.call(() => this.raw.GET("/keys"));
  }
  createKey(body: Schemas["KeyRequest"]) {
    return this.call(() => this.raw.POST("/keys", { body }));
  }
  revokeKey(name: string) {
    return this.call(() => this.raw.POST("/keys/{name}/revoke", { params: { path: { name } } }));
  }

  // The event feed.
  /** One page of events, oldest first: `nextCursor` is never null. */
  eventPage(query: { after?: string; limit?: number } = {}) {
    return this.call(() => this.raw.GET("/events", { params: { query } }));
  }

  /**
   * Every event after `after` (default: the start of the ledger), as they
   * commit, until `signal` aborts or the caller stops iterating. A dropped
   * stream is reopened with `Last-Event-ID`: no event is missed or repeated.
   * An API error (a revoked key, a bad cursor) ends the iteration by
   * throwing the WalletError.
   */
  async *events(options: { after?: string; signal?: AbortSignal; reconnectDelayMs?: number } = {}): AsyncGenerator<Event> {
    let lastId = options.after;
    let failures = 0;
    while (!options.signal?.aborted) {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (this.options.apiKey) {
        headers.Authorization = `Bearer ${this.options.apiKey}`;
      }
      if (lastId !== undefined) {
        headers["Last-Event-ID"] = lastId;
      }
      let response: Response;
      try {
        response = await this.options.fetch(new URL("/events", this.options.baseUrl), {
          headers,
          signal: options.signal,
        });
      } catch (cause) {
        if (options.signal?.aborted) {
          return;
        }
        failures += 1;
        await sleep(Math.min(backoffMs(failures), this.options.maxRetryDelayMs), options.signal);
        continue;
      }
      if (!response.ok) {
        const error = await errorOf(response);
        if (RETRIED_STATUSES.has(response.status)) {
          failures += 1;
          await sleep(this.retryDelayMs(response, failures), options.signal);
          continue;
        }
        throw error;
      }
      failures = 0;
      try {
        for await (const message of serverSentEvents(response.body!)) {
          if (message.id !== undefined) {
            lastId = message.id;
          }
          if (message.data !== "") {
            yield JSON.parse(message.data) as Event;
          }
        }
      } catch (cause) {
        if (options.signal?.aborted) {
          return;
        }
        // The connection dropped mid-stream: reopen after the last event seen.
      }
      await sleep(options.reconnectDelayMs ?? 100, options.signal);
    }
  }

  /** One call answered in the envelope: its `data`. */
  private call<D>(send: () => Promise<Sent<D>>): Promise<Result<Payload<D>>> {
    return this.send(send, (data) => (data as { data: Payload<D> }).data);
  }

  /** One call, retried on 503 and 429 (and on a failed connection) with the same request. */
  private async send<D, T>(send: () => Promise<Sent<D>>, payload: (data: D) => T): Promise<Result<T>> {
    for (let attempt = 1; ; attempt += 1) {
      let answer: Sent<D>;
      try {
        answer = await send();
      } catch (cause) {
        if (attempt >= this.options.maxAttempts) {
          const message = cause instanceof Error ? cause.message : String(cause);
          return { error: new WalletError(0, "NETWORK_ERROR", message, {}, null), status: 0 };
        }
        await sleep(Math.min(backoffMs(attempt), this.options.maxRetryDelayMs));
        continue;
      }
      const { response } = answer;
      if (RETRIED_STATUSES.has(response.status) && attempt < this.options.maxAttempts) {
        await sleep(this.retryDelayMs(response, attempt));
        continue;
      }
      if (answer.error !== undefined || !response.ok) {
        return { error: errorFromBody(response, answer.error), status: response.status };
      }
      return {
        data: payload(answer.data as D),
        status: response.status,
        replayed: response.headers.get("idempotent-replayed") === "true",
      };
    }
  }

  private retryDelayMs(response: Response, attempt: number): number {
    const seconds = Number(response.headers.get("retry-after"));
    const asked = Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : backoffMs(attempt);
    return Math.min(asked, this.options.maxRetryDelayMs);
  }
}

/** A client of the wallet at `options.baseUrl`. */
export function createWalletClient(options: WalletClientOptions): WalletClient {
  return new WalletClient(options);
}

/** The body with its idempotency key: the caller's, or one made now, once for every retry. */
function withKey<T extends object>(body: T, options: WriteOptions): T & { idempotencyKey: string } {
  return { ...body, idempotencyKey: options.idempotencyKey ?? randomUUID() };
}

function backoffMs(attempt: number): number {
  return 100 * 2 ** Math.min(attempt, 8);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

function errorFromBody(response: Response, body: unknown): WalletError {
  const error = (body as { error?: Schemas["Error"] } | undefined)?.error;
  const requestId = response.headers.get("x-request-id");
  if (error && typeof error.code === "string") {
    return new WalletError(response.status, error.code, error.message, error.details ?? {}, requestId);
  }
  return new WalletError(response.status, `HTTP_${response.status}`, response.statusText, {}, requestId);
}

async function errorOf(response: Response): Promise<WalletError> {
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  return errorFromBody(response, body);
}

/** One message of a Server-Sent Event stream. */
interface ServerSentEvent {
  id?: string;
  event?: string;
  data: string;
}

/** The messages of a `text/event-stream` body, as the HTML standard parses them. */
async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffer = "";
  let message: ServerSentEvent = { data: "" };
  let dataLines: string[] = [];
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, end);
      const breakLength = buffer.startsWith("\r\n", end) ? 2 : 1;
      buffer = buffer.slice(end + breakLength);
      if (line === "") {
        if (dataLines.length > 0 || message.id !== undefined) {
          message.data = dataLines.join("\n");
          yield message;
        }
        message = { data: "" };
        dataLines = [];
        continue;
      }
      if (line.startsWith(":")) {
        continue; // A comment: the server's keep-alive.
      }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) {
        value = value.slice(1);
      }
      if (field === "data") {
        dataLines.push(value);
      } else if (field === "id") {
        message.id = value;
      } else if (field === "event") {
        message.event = value;
      }
    }
  }
}
