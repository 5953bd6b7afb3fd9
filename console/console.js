// The operator console's pages (API.md: GET /console), one per hash route:
//
//   #/login                  type an admin key
//   #/users                  find a user by id
//   #/users/{userId}         balances, rules, holds, history (filters, paging)
//   #/transactions/{id}      one transaction, both sides, its reversals, reverse
//   #/assets                 assets with their supply and rules; create one, set rules
//   #/keys                   API keys: list, create (secret shown once), revoke
//   #/service                health and headline metrics
//   #/events                 a live tail of the event feed
//
// Every page is drawn with createElement and text nodes (`h` below): a
// string from the service (a note, metadata, a user id) is only ever text,
// never markup. The page holds no inline script, so the strict
// Content-Security-Policy it is served with holds.

import {
  ApiError, forgetKey, freshIdempotencyKey, followEvents, get, getText, newestEventCursor,
  onUnauthorized, path, post, put, saveKey, savedKey, withQuery,
} from './api.js';

const main = document.getElementById('main');
const notice = document.getElementById('notice');
const nav = document.getElementById('nav');

// What a page that follows something (the event tail) must stop when the
// operator leaves it.
let leavePage = new AbortController();

const HISTORY_TYPES = ['TOPUP', 'BONUS', 'SPEND', 'TRANSFER', 'REVERSAL', 'EXPIRY'];
const HOLD_STATUSES = ['HELD', 'CAPTURED', 'VOIDED', 'EXPIRED'];
const SCOPES = ['read', 'spend', 'grant', 'admin'];
const PAGE_SIZES = [10, 50, 200];
// API.md, Limits: what a limit counts, the orders an asset spends in, and
// how many limits one rule set holds.
const LIMIT_TYPES = ['TOPUP', 'BONUS', 'SPEND', 'TRANSFER'];
const SPEND_ORDERS = ['free-first', 'paid-first'];
const LIMITS_MAX = 8;
const EVENTS_SHOWN_MAX = 200;
// How far the transaction page looks for reversals: pages of a user's
// REVERSAL history (API.md offers no lookup by `reverses`).
const REVERSAL_PAGES_MAX = 10;

// ---- drawing ----------------------------------------------------------------

// An element: `props` sets attributes (`class`, `data-*`, ...) and `on*`
// listeners; each child is a node, or a value shown as text.
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (name === 'value' || name === 'checked' || name === 'disabled') {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A link to another page of the console; `segments` are escaped.
function link(text, ...segments) {
  return h('a', { href: '#' + path(...segments) }, text);
}

function userLink(userId) {
  return link(userId, 'users', userId);
}

// A heading of a column of figures, aligned with them.
function figures(heading) {
  return { heading, class: 'number' };
}

function table(headings, rows, props = {}) {
  return h('table', props,
    h('thead', {}, h('tr', {}, headings.map((heading) => (typeof heading === 'string'
      ? h('th', {}, heading)
      : h('th', { class: heading.class }, heading.heading))))),
    h('tbody', {}, rows));
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function say(text, kind = 'info') {
  notice.hidden = false;
  notice.className = `notice ${kind}`;
  notice.replaceChildren(String(text));
}

function quiet() {
  notice.hidden = true;
  notice.replaceChildren();
}

// A refusal as the operator reads it: the code, the message, and any
// field problems of a VALIDATION_ERROR.
function describe(error) {
  if (!(error instanceof ApiError)) {
    return String(error?.message ?? error);
  }
  const fields = (error.details?.fields ?? [])
    .map((field) => `${field.field}: ${field.message}`).join('; ');
  return `${error.code}: ${error.message}${fields ? ` (${fields})` : ''}`;
}

function failed(error) {
  say(describe(error), 'error');
}

function text(value) {
  return value === null || value === undefined ? '—' : String(value);
}

function json(value) {
  return value === null || value === undefined ? '—' : JSON.stringify(value);
}

function party(side) {
  if (!side) {
    return '—';
  }
  return side.type === 'USER' ? userLink(side.userId) : h('span', { class: 'treasury' }, 'Treasury');
}

// A marked place for a panel API.md describes as (next): drawn as a short
// note so the layout is ready, filled in once the service serves it.
// A transaction's parts as one line: "FREE 30, PAID 20" (a lot with its
// expiry).
function partsText(parts) {
  if (!parts || parts.length === 0) {
    return '—';
  }
  return parts.map((part) => `${part.kind} ${part.amount}${part.expiresAt ? ` (expires ${part.expiresAt})` : ''}`)
    .join(', ');
}

function laterPanel(name, what) {
  return h('section', { class: 'later', 'data-later-panel': name },
    h('h2', {}, what),
    h('p', { class: 'muted' }, 'Not served by this version of the service yet (API.md marks it next).'));
}

// The field problems of a refusal, listed in `box` beside the form that
// sent it (and the whole refusal in the notice, as every form does); each
// input `inputFor(field)` names is marked. `null` clears the box.
function showFieldErrors(box, error, inputFor = () => null) {
  for (const marked of box.parentElement?.querySelectorAll('.invalid') ?? []) {
    marked.classList.remove('invalid');
  }
  box.replaceChildren();
  box.hidden = true;
  if (!error) {
    return;
  }
  failed(error);
  const fields = error instanceof ApiError ? (error.details?.fields ?? []) : [];
  if (fields.length === 0) {
    return;
  }
  box.replaceChildren(h('ul', {}, fields.map((problem) => {
    inputFor(String(problem.field))?.classList.add('invalid');
    return h('li', { 'data-field': problem.field }, h('code', {}, problem.field), ': ', problem.message);
  })));
  box.hidden = false;
}

// ---- rules (API.md, Limits) --------------------------------------------------

function maxBalanceText(maxBalance) {
  return maxBalance === null || maxBalance === undefined ? 'none' : String(maxBalance);
}

// Each limit on a line of its own, "SPEND: 1000 per 86400 s"; "none".
function limitsCell(limits) {
  if (!limits || limits.length === 0) {
    return h('td', { class: 'limits muted' }, 'none');
  }
  return h('td', { class: 'limits' }, limits.map((limit) =>
    h('div', { class: 'limit' }, `${limit.type}: ${limit.max} per ${limit.windowSeconds} s`)));
}

// A whole number typed into a field as the API reads it: the number, or
// the text itself when it is not one, so the service names the field.
function typedNumber(raw) {
  const trimmed = raw.trim();
  if (trimmed === '') {
    return null;
  }
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : trimmed;
}

// Rows of limits (type, window, max) to add to and remove from, at most
// LIMITS_MAX. `read()` gives them as the API takes them; `inputFor` finds
// the input a field problem like `limits[2].max` names.
function limitEditor(id) {
  const rows = h('div', { class: 'limit-rows' });
  const add = h('button', { type: 'button', class: 'quiet limit-add', id: `${id}-add` }, '+ Add a limit');
  const empty = h('p', { class: 'muted limit-none' }, 'No limits.');
  const sync = () => {
    add.disabled = rows.childElementCount >= LIMITS_MAX;
    empty.hidden = rows.childElementCount > 0;
  };
  const addRow = (limit = { type: 'SPEND', windowSeconds: 86400, max: '' }) => {
    const type = h('select', { class: 'limit-type', 'aria-label': 'Type' },
      LIMIT_TYPES.map((option) => h('option', { value: option, selected: option === limit.type }, option)));
    const windowSeconds = h('input', {
      class: 'limit-window', type: 'number', min: 60, max: 2592000, step: 1, size: 9,
      'aria-label': 'Window (seconds)', value: String(limit.windowSeconds ?? ''),
    });
    const max = h('input', {
      class: 'limit-max', type: 'number', min: 1, step: 1, size: 12,
      'aria-label': 'Max', value: String(limit.max ?? ''),
    });
    const remove = h('button', { type: 'button', class: 'quiet limit-remove' }, 'Remove');
    const row = h('div', { class: 'limit-row' },
      type, h('span', {}, ' at most '), max, h('span', {}, ' per '), windowSeconds, h('span', {}, ' s '), remove);
    remove.addEventListener('click', () => {
      row.remove();
      sync();
    });
    rows.append(row);
    sync();
  };
  add.addEventListener('click', () => {
    if (rows.childElementCount < LIMITS_MAX) {
      addRow();
      rows.lastElementChild.querySelector('.limit-max').focus();
    }
  });
  sync();
  const node = h('div', { class: 'limit-editor', id }, rows, empty, add);
  return {
    node,
    set(limits) {
      rows.replaceChildren();
      for (const limit of limits ?? []) {
        addRow(limit);
      }
      sync();
    },
    read() {
      return [...rows.children].map((row) => ({
        type: row.querySelector('.limit-type').value,
        windowSeconds: typedNumber(row.querySelector('.limit-window').value),
        max: typedNumber(row.querySelector('.limit-max').value),
      }));
    },
    inputFor(field) {
      const found = /^limits\[(\d+)\](?:\.(\w+))?$/.exec(field);
      if (!found) {
        return field === 'limits' ? rows : null;
      }
      const row = rows.children[Number(found[1])];
      const selector = { type: '.limit-type', windowSeconds: '.limit-window', max: '.limit-max' }[found[2]];
      return row && selector ? row.querySelector(selector) : row ?? null;
    },
    enable(on) {
      for (const control of node.querySelectorAll('input, select, button')) {
        control.disabled = !on;
      }
      if (on) {
        sync();
      }
    },
  };
}

// ---- log-in -------------------------------------------------------------------

function loginPage(reason) {
  nav.hidden = true;
  const keyInput = h('input', {
    id: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'wk_…', size: 56,
  });
  const message = h('p', { class: 'muted' },
    'Type an API key with the admin scope. It is kept only in this tab (session storage) ',
    'and sent to this service alone; closing the tab forgets it.');
  const form = h('form', {
    class: 'card narrow',
    onsubmit: async (event) => {
      event.preventDefault();
      const key = keyInput.value.trim();
      try {
        // GET /keys is admin only: it answers exactly when the key may use
        // every page here.
        await get('/keys', { key });
        saveKey(key);
        quiet();
        go('#/users');
      } catch (error) {
        if (error.status === 401) {
          say(key === '' ? 'This service needs a key.' : 'This key is unknown or revoked.', 'error');
        } else if (error.status === 403) {
          say('This key lacks the admin scope the console needs.', 'error');
        } else {
          failed(error);
        }
      }
    },
  },
  h('h1', {}, 'Log in'),
  message,
  h('label', { for: 'key' }, 'Admin key'),
  keyInput,
  h('button', { type: 'submit', id: 'login' }, 'Open the console'));
  show(form);
  if (reason) {
    say(reason, 'error');
  }
  keyInput.focus();
}

// ---- users -------------------------------------------------------------------

function findUserPage() {
  const input = h('input', { id: 'user-id', placeholder: 'user_alice', autocomplete: 'off', size: 40 });
  show(h('form', {
    class: 'card narrow',
    onsubmit: (event) => {
      event.preventDefault();
      const userId = input.value.trim();
      if (userId) {
        go('#' + path('users', userId));
      }
    },
  },
  h('h1', {}, 'Find a user'),
  h('p', { class: 'muted' }, 'By user id, exactly as the game server sends it (case-sensitive).'),
  h('label', { for: 'user-id' }, 'User id'),
  input,
  h('button', { type: 'submit', id: 'find' }, 'Find')));
  input.focus();
}

async function userPage(userId) {
  const balances = h('section', { id: 'balances' }, h('h2', {}, 'Balances'), h('p', { class: 'muted' }, 'Loading…'));
  const rules = h('section', { id: 'user-rules' }, h('h2', {}, 'Rules for this user'), h('p', { class: 'muted' }, 'Loading…'));
  const holds = h('section', { id: 'holds' });
  const history = h('section', { id: 'history' });
  show(
    h('h1', {}, 'User ', h('code', { id: 'user-title' }, userId)),
    balances,
    laterPanel('expiring', 'Expiring lots'),
    rules,
    holds,
    history,
  );
  // Rules can be set before a user's first credit: drawn with or without a wallet.
  drawUserRules(rules, userId);
  let wallet;
  let assets;
  try {
    [wallet, assets] = await Promise.all([
      get(path('wallets', userId, 'balance')),
      get('/assets'),
    ]);
  } catch (error) {
    if (error.code === 'WALLET_NOT_FOUND') {
      balances.replaceChildren(h('h2', {}, 'Balances'),
        h('p', { id: 'no-wallet' }, 'No wallet: this user has never been credited.'));
      holds.remove();
      history.remove();
      return;
    }
    failed(error);
    return;
  }
  balances.replaceChildren(h('h2', {}, 'Balances'), table(
    ['Asset', 'Name', figures('Balance'), figures('Held'), figures('Available'), figures('Paid'), figures('Free')],
    wallet.balances.map((row) => h('tr', { 'data-asset': row.asset },
      h('td', {}, row.asset),
      h('td', {}, row.name),
      h('td', { class: 'number balance' }, text(row.balance)),
      h('td', { class: 'number held' }, text(row.held)),
      h('td', { class: 'number available' }, text(row.available)),
      h('td', { class: 'number paid' }, text(row.paid)),
      h('td', { class: 'number free' }, text(row.free)))),
  ));
  const symbols = assets.map((asset) => asset.symbol);
  drawHolds(holds, userId, symbols);
  drawHistory(history, userId, symbols);
}

// The rules in force for a user, one row per asset (the user's own values
// where set, the asset's otherwise), and a form to set or remove the user's
// own maximum balance and limits in one asset (PUT /wallets/{userId}/rules).
// Each field has three choices: keep it as it is (not sent), use the
// asset's (sent as null: the user's own value is removed), or this user's
// own (sent; own limits with no rows are "no limits for this user").
async function drawUserRules(section, userId) {
  let listing;
  try {
    listing = await get(path('wallets', userId, 'rules'));
  } catch (error) {
    section.replaceChildren(h('h2', {}, 'Rules for this user'), h('p', { id: 'user-rules-failed' }, describe(error)));
    return;
  }
  const rows = listing.rules;
  const body = h('div', {});
  const drawTable = () => body.replaceChildren(rows.length === 0
    ? h('p', { class: 'muted' }, 'No assets.')
    : table(['Asset', figures('Max balance'), 'Limits', 'Whose'],
      rows.map((row) => h('tr', { 'data-asset': row.asset, class: row.override ? 'own' : null },
        h('td', {}, row.asset),
        h('td', { class: 'number max-balance' }, maxBalanceText(row.maxBalance)),
        limitsCell(row.limits),
        h('td', { class: row.override ? 'override' : 'override muted' }, row.override ? 'own' : 'the asset\'s'))),
      { id: 'user-rules-table' }));
  drawTable();

  const asset = select('user-rules-asset', rows.map((row) => row.asset), { any: null });
  const choice = (field, value, label, checked = false) => h('label', { class: 'inline' },
    h('input', { type: 'radio', name: `user-${field}-mode`, id: `user-${field}-${value}`, value, checked }), ` ${label}`);
  const maxBalance = h('input', { id: 'user-max-balance', type: 'number', min: 0, step: 1, size: 14, disabled: true });
  const limits = limitEditor('user-limits');
  const errors = h('div', { id: 'user-rules-errors', class: 'form-errors', role: 'alert', hidden: true });
  const mode = (field) => form.querySelector(`input[name="user-${field}-mode"]:checked`).value;
  const sync = () => {
    maxBalance.disabled = mode('max') !== 'own';
    limits.enable(mode('limits') === 'own');
  };
  // The values in force for the chosen asset start the "own" inputs.
  const fill = () => {
    const row = rows.find((candidate) => candidate.asset === asset.value);
    maxBalance.value = row?.maxBalance === null || row?.maxBalance === undefined ? '' : String(row.maxBalance);
    limits.set(row?.limits ?? []);
    for (const keep of form.querySelectorAll('input[value="keep"]')) {
      keep.checked = true;
    }
    showFieldErrors(errors, null);
    sync();
  };
  const form = h('form', {
    class: 'card', id: 'user-rules-form',
    onchange: (event) => {
      if (event.target === asset) {
        fill();
      } else if (event.target.type === 'radio') {
        sync();
      }
    },
    onsubmit: async (event) => {
      event.preventDefault();
      const change = { asset: asset.value };
      const maxMode = mode('max');
      const limitsMode = mode('limits');
      if (maxMode !== 'keep') {
        // Empty own value: sent as typed, so the service names the field.
        change.maxBalance = maxMode === 'asset' ? null : typedNumber(maxBalance.value) ?? '';
      }
      if (limitsMode !== 'keep') {
        change.limits = limitsMode === 'asset' ? null : limits.read();
      }
      if (maxMode === 'keep' && limitsMode === 'keep') {
        say('Nothing to change: choose "use the asset\'s" or "this user\'s own" for a field.', 'error');
        return;
      }
      const button = event.submitter;
      if (button) {
        button.disabled = true;
      }
      try {
        const answer = await put(path('wallets', userId, 'rules'), change);
        rows.splice(0, rows.length, ...answer.rules);
        drawTable();
        const row = rows.find((candidate) => candidate.asset === change.asset);
        say(row?.override
          ? `Saved: ${userId} has own rules in ${change.asset}.`
          : `Saved: ${userId} follows the rules of ${change.asset}.`, 'ok');
        fill();
      } catch (error) {
        showFieldErrors(errors, error, (field) => (field === 'maxBalance' ? maxBalance : limits.inputFor(field)));
      } finally {
        if (button) {
          button.disabled = false;
        }
      }
    },
  },
  h('h3', {}, 'Set or remove this user\'s own rules'),
  h('p', { class: 'muted' },
    'Own values replace the asset\'s for this user only. "Keep" leaves a field as it is; ',
    '"use the asset\'s" removes this user\'s own value; own limits replace the whole list (none: no limits for this user).'),
  h('label', { for: 'user-rules-asset' }, 'Asset'), asset,
  h('fieldset', {}, h('legend', {}, 'Maximum balance'),
    choice('max', 'keep', 'keep', true), choice('max', 'asset', 'use the asset\'s'),
    choice('max', 'own', 'this user\'s own: '), maxBalance),
  h('fieldset', {}, h('legend', {}, `Limits (at most ${LIMITS_MAX})`),
    choice('limits', 'keep', 'keep', true), choice('limits', 'asset', 'use the asset\'s'),
    choice('limits', 'own', 'this user\'s own:'), limits.node),
  errors,
  h('button', { type: 'submit', id: 'user-rules-save' }, 'Save'));
  section.replaceChildren(h('h2', {}, 'Rules for this user'), body, rows.length === 0 ? null : form);
  fill();
}

// Filters and a pager over a list the API pages with `nextCursor`: the
// cursors of the pages before this one are kept, so "Newer" goes back.
function pager(load) {
  const state = { cursors: [], cursor: null, next: null };
  const newer = h('button', { type: 'button', class: 'newer', disabled: true }, '← Newer');
  const older = h('button', { type: 'button', class: 'older', disabled: true }, 'Older →');
  const where = h('span', { class: 'muted page-number' });
  const refresh = async () => {
    const next = await load(state.cursor);
    state.next = next;
    newer.disabled = state.cursors.length === 0;
    older.disabled = !next;
    where.replaceChildren(`page ${state.cursors.length + 1}`);
  };
  newer.addEventListener('click', () => {
    state.cursor = state.cursors.pop() ?? null;
    refresh();
  });
  older.addEventListener('click', () => {
    if (state.next) {
      state.cursors.push(state.cursor);
      state.cursor = state.next;
      refresh();
    }
  });
  return {
    controls: h('div', { class: 'pager' }, newer, where, older),
    restart: () => {
      state.cursors = [];
      state.cursor = null;
      return refresh();
    },
  };
}

function select(id, options, { any = 'any', value = '' } = {}) {
  return h('select', { id },
    any === null ? null : h('option', { value: '' }, any),
    options.map((option) => h('option', { value: option, selected: String(option) === String(value) }, option)));
}

function drawHolds(section, userId, symbols) {
  const status = select('holds-status', HOLD_STATUSES);
  const asset = select('holds-asset', symbols);
  const body = h('div', {});
  const list = pager(async (cursor) => {
    try {
      const page = await get(withQuery(path('wallets', userId, 'holds'), {
        status: status.value, asset: asset.value, limit: 10, cursor,
      }));
      body.replaceChildren(page.items.length === 0
        ? h('p', { class: 'muted' }, 'No holds.')
        : table(['Created', 'Asset', figures('Amount'), 'Status', figures('Captured'), 'Expires', 'Reference', 'Note', 'Id'],
          page.items.map((hold) => h('tr', {},
            h('td', { class: 'time' }, hold.createdAt),
            h('td', {}, hold.asset),
            h('td', { class: 'number' }, text(hold.amount)),
            h('td', {}, hold.status),
            h('td', { class: 'number' }, hold.capturedBy
              ? link(text(hold.capturedAmount), 'transactions', hold.capturedBy)
              : text(hold.capturedAmount)),
            h('td', { class: 'time' }, hold.expiresAt),
            h('td', {}, text(hold.referenceId)),
            h('td', { class: 'note' }, text(hold.note)),
            h('td', {}, h('code', { class: 'id' }, hold.id))))));
      return page.nextCursor;
    } catch (error) {
      failed(error);
      return null;
    }
  });
  for (const control of [status, asset]) {
    control.addEventListener('change', () => list.restart());
  }
  section.replaceChildren(
    h('h2', {}, 'Holds'),
    h('div', { class: 'filters' },
      h('label', {}, 'Status ', status), h('label', {}, 'Asset ', asset)),
    body,
    list.controls);
  list.restart();
}

function drawHistory(section, userId, symbols) {
  const asset = select('history-asset', symbols);
  const type = select('history-type', HISTORY_TYPES);
  const reference = h('input', { id: 'history-reference', placeholder: 'referenceId', size: 16 });
  const limit = select('history-limit', PAGE_SIZES, { any: null, value: 10 });
  const body = h('div', { id: 'history-rows' });
  const list = pager(async (cursor) => {
    try {
      const page = await get(withQuery(path('wallets', userId, 'transactions'), {
        asset: asset.value, type: type.value, referenceId: reference.value.trim(),
        limit: limit.value, cursor,
      }));
      body.replaceChildren(page.items.length === 0
        ? h('p', { class: 'muted' }, 'No transactions.')
        : table(['Time', 'Type', 'Asset', figures('Amount'), figures('Balance after'), 'Counterparty', 'Reference', 'Note', 'Metadata', ''],
          page.items.map((entry) => h('tr', { 'data-transaction': entry.id },
            h('td', { class: 'time' }, entry.createdAt),
            h('td', {}, entry.type),
            h('td', {}, entry.asset),
            h('td', { class: `number ${entry.direction === 'DEBIT' ? 'debit' : 'credit'}` },
              `${entry.direction === 'DEBIT' ? '−' : '+'}${entry.amount}`),
            h('td', { class: 'number' }, text(entry.balanceAfter)),
            h('td', {}, entry.counterparty ? userLink(entry.counterparty) : '—'),
            h('td', {}, text(entry.referenceId)),
            h('td', { class: 'note' }, text(entry.note)),
            h('td', { class: 'metadata' }, json(entry.metadata)),
            h('td', {}, link('Open', 'transactions', entry.id)))),
          { id: 'history-table' }));
      return page.nextCursor;
    } catch (error) {
      failed(error);
      return null;
    }
  });
  for (const control of [asset, type, limit]) {
    control.addEventListener('change', () => list.restart());
  }
  reference.addEventListener('change', () => list.restart());
  section.replaceChildren(
    h('h2', {}, 'History'),
    h('div', { class: 'filters' },
      h('label', {}, 'Asset ', asset), h('label', {}, 'Type ', type),
      h('label', {}, 'Reference ', reference), h('label', {}, 'Per page ', limit)),
    body,
    list.controls);
  list.restart();
}

// ---- one transaction ------------------------------------------------------------

async function transactionPage(id) {
  show(h('h1', {}, 'Transaction'), h('p', { class: 'muted' }, 'Loading…'));
  let entry;
  try {
    entry = await get(path('transactions', id));
  } catch (error) {
    show(h('h1', {}, 'Transaction'), h('p', { id: 'not-found' }, describe(error)));
    return;
  }
  const reversals = h('section', { id: 'reversals' }, h('h2', {}, 'Reversals'), h('p', { class: 'muted' }, 'Looking…'));
  const row = (name, value) => h('tr', {}, h('th', {}, name), h('td', {}, value));
  show(
    h('h1', {}, entry.type, ' of ', String(entry.amount), ' ', entry.asset),
    h('section', { class: 'sides' },
      h('div', { class: 'side', id: 'debit-side' }, h('h2', {}, 'Debit'), party(entry.debit),
        h('p', { class: 'number debit' }, `−${entry.amount} ${entry.asset}`)),
      h('div', { class: 'side', id: 'credit-side' }, h('h2', {}, 'Credit'), party(entry.credit),
        h('p', { class: 'number credit' }, `+${entry.amount} ${entry.asset}`))),
    h('table', { class: 'details', id: 'transaction-details' }, h('tbody', {},
      row('Id', h('code', {}, entry.id)),
      row('Type', entry.type),
      row('Asset', entry.asset),
      row('Amount', String(entry.amount)),
      row('Reversed so far', h('span', { id: 'reversed-amount' }, String(entry.reversedAmount))),
      row('Parts', h('span', { id: 'parts' }, partsText(entry.parts))),
      row('Reverses', entry.reverses ? link(entry.reverses, 'transactions', entry.reverses) : '—'),
      row('Hold', text(entry.holdId)),
      row('Idempotency key', h('code', {}, entry.idempotencyKey)),
      row('Reference', text(entry.referenceId)),
      row('Note', h('span', { class: 'note' }, text(entry.note))),
      row('Metadata', h('span', { class: 'metadata' }, json(entry.metadata))),
      row('Created', entry.createdAt))),
    reversals,
    reverseForm(entry),
  );
  findReversals(entry).then((found) => {
    reversals.replaceChildren(h('h2', {}, 'Reversals'), found.length === 0
      ? h('p', { class: 'muted' }, 'None.')
      : table(['Time', figures('Amount'), 'Note', 'Id'], found.map((reversal) => h('tr', {},
        h('td', { class: 'time' }, reversal.createdAt),
        h('td', { class: 'number' }, String(reversal.amount)),
        h('td', { class: 'note' }, text(reversal.note)),
        h('td', {}, link(reversal.id, 'transactions', reversal.id))))));
  }, (error) => {
    reversals.replaceChildren(h('h2', {}, 'Reversals'), h('p', {}, describe(error)));
  });
}

// The reversals of `entry`, from the history of a user it moved (a
// reversal shows in the same users' histories as what it reverses).
async function findReversals(entry) {
  const user = [entry.debit, entry.credit].find((side) => side?.type === 'USER');
  if (!user || entry.reversedAmount === 0) {
    return [];
  }
  const found = [];
  let cursor = null;
  for (let page = 0; page < REVERSAL_PAGES_MAX; page += 1) {
    const result = await get(withQuery(path('wallets', user.userId, 'transactions'), {
      type: 'REVERSAL', asset: entry.asset, limit: 200, cursor,
    }));
    found.push(...result.items.filter((item) => item.reverses === entry.id));
    cursor = result.nextCursor;
    if (!cursor) {
      break;
    }
  }
  return found;
}

// Reverse, in full or in part: the operator asks, reads what will happen,
// confirms. The idempotency key is made when the confirmation opens and is
// sent with every click on "Confirm", so however often it is pressed (a
// double click, a retry after a lost answer) the service applies one
// reversal; cancelling throws the key away.
function reverseForm(entry) {
  const left = entry.amount - entry.reversedAmount;
  if (entry.type === 'REVERSAL' || entry.type === 'EXPIRY') {
    return h('section', { id: 'reverse' }, h('h2', {}, 'Reverse'),
      h('p', { class: 'muted' }, `A ${entry.type} cannot be reversed.`));
  }
  if (left <= 0) {
    return h('section', { id: 'reverse' }, h('h2', {}, 'Reverse'),
      h('p', { class: 'muted' }, 'Reversed in full.'));
  }
  const amount = h('input', { id: 'reverse-amount', type: 'number', min: 1, max: left, step: 1, placeholder: `all ${left}` });
  const note = h('input', { id: 'reverse-note', maxlength: 1024, size: 40, placeholder: 'why (kept with the reversal)' });
  const confirmation = h('div', { id: 'reverse-confirmation', class: 'confirm', hidden: true });
  const ask = h('button', { type: 'submit', id: 'reverse-ask' }, 'Reverse…');
  const form = h('form', {
    class: 'card',
    onsubmit: (event) => {
      event.preventDefault();
      const raw = amount.value.trim();
      const chosen = raw === '' ? left : Number(raw);
      if (!Number.isSafeInteger(chosen) || chosen < 1 || chosen > left) {
        say(`The amount must be a whole number from 1 to ${left}.`, 'error');
        return;
      }
      openConfirmation(chosen, raw === '');
    },
  },
  h('h2', {}, 'Reverse'),
  h('p', { class: 'muted' }, `${left} ${entry.asset} of ${entry.amount} can still be reversed.`),
  h('label', { for: 'reverse-amount' }, 'Amount (empty: all that is left)'), amount,
  h('label', { for: 'reverse-note' }, 'Note'), note,
  ask,
  confirmation);

  function openConfirmation(chosen, all) {
    const idempotencyKey = freshIdempotencyKey();
    const body = { idempotencyKey, note: note.value.trim() || undefined };
    if (!all) {
      body.amount = chosen;
    }
    // Who gets what back: the original's accounts, the other way round.
    const gains = entry.debit.type === 'USER' ? entry.debit.userId : 'the Treasury';
    const loses = entry.credit.type === 'USER' ? entry.credit.userId : 'the Treasury';
    const confirm = h('button', { type: 'button', id: 'reverse-confirm', class: 'danger' }, `Confirm: reverse ${chosen} ${entry.asset}`);
    const cancel = h('button', { type: 'button', id: 'reverse-cancel', class: 'quiet' }, 'Cancel');
    confirm.addEventListener('click', async () => {
      confirm.disabled = true;
      cancel.disabled = true;
      try {
        const answer = await post(path('transactions', entry.id, 'reverse'), body);
        say(`${answer.replayed ? 'Already reversed (the same request was applied once)' : 'Reversed'}: `
          + `${chosen} ${entry.asset} back to ${gains}; balance now ${answer.data.balance}.`, 'ok');
        transactionPage(entry.id);
      } catch (error) {
        failed(error);
        confirm.disabled = false;
        cancel.disabled = false;
      }
    });
    cancel.addEventListener('click', () => {
      confirmation.hidden = true;
      confirmation.replaceChildren();
      ask.disabled = false;
    });
    ask.disabled = true;
    confirmation.replaceChildren(
      h('p', {}, `Reverse ${chosen} ${entry.asset} of this ${entry.type}: ${gains} gains it, ${loses} loses it. `,
        'A reversal is final (it can itself not be reversed).'),
      h('p', { class: 'muted' }, 'Idempotency key: ', h('code', {}, idempotencyKey)),
      confirm, cancel);
    confirmation.hidden = false;
    confirm.focus();
  }
  return h('section', { id: 'reverse' }, form);
}

// ---- assets ---------------------------------------------------------------------

async function assetsPage() {
  const list = h('section', { id: 'assets-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const symbol = h('input', { id: 'asset-symbol', placeholder: 'GEMS', maxlength: 32, size: 12 });
  const name = h('input', { id: 'asset-name', placeholder: 'Gems', maxlength: 128, size: 24 });
  const decimals = h('input', { id: 'asset-decimals', type: 'number', min: 0, max: 18, step: 1, value: '0' });
  const create = h('form', {
    class: 'card',
    onsubmit: async (event) => {
      event.preventDefault();
      const button = event.submitter;
      if (button) {
        button.disabled = true;
      }
      try {
        const answer = await post('/assets', {
          symbol: symbol.value.trim(), name: name.value.trim(), decimals: Number(decimals.value || 0),
        });
        say(answer.status === 201
          ? `Created ${answer.data.symbol}.`
          : `${answer.data.symbol} exists already, with this name and decimals.`, 'ok');
        symbol.value = '';
        name.value = '';
        decimals.value = '0';
        drawAssets(list, rules);
      } catch (error) {
        failed(error);
      } finally {
        if (button) {
          button.disabled = false;
        }
      }
    },
  },
  h('h2', {}, 'Create an asset'),
  h('p', { class: 'muted' }, 'Assets are never deleted or renamed. Symbol: 1-32 of A-Z 0-9 _.'),
  h('label', { for: 'asset-symbol' }, 'Symbol'), symbol,
  h('label', { for: 'asset-name' }, 'Name'), name,
  h('label', { for: 'asset-decimals' }, 'Decimals'), decimals,
  h('button', { type: 'submit', id: 'asset-create' }, 'Create'));
  const rules = assetRulesPanel(() => drawAssets(list, rules));
  show(h('h1', {}, 'Assets'), list, rules.node, create);
  drawAssets(list, rules);
}

async function drawAssets(list, rules) {
  try {
    const assets = await get('/assets');
    rules.draw(assets);
    const supplies = await Promise.all(assets.map((asset) =>
      get(path('assets', asset.symbol, 'supply')).catch(() => null)));
    list.replaceChildren(table(
      ['Symbol', 'Name', figures('Decimals'), figures('Outstanding'), figures('Held'), figures('Holders'),
        figures('Paid'), figures('Free'),
        figures('Issued (topup)'), figures('Issued (bonus)'), figures('Spent'), figures('Reversed'), 'As of', 'Created'],
      assets.map((asset, index) => {
        const supply = supplies[index];
        return h('tr', { 'data-asset': asset.symbol },
          h('td', {}, asset.symbol),
          h('td', {}, asset.name),
          h('td', { class: 'number' }, String(asset.decimals)),
          h('td', { class: 'number outstanding' }, text(supply?.outstanding)),
          h('td', { class: 'number' }, text(supply?.held)),
          h('td', { class: 'number' }, text(supply?.holders)),
          h('td', { class: 'number paid' }, text(supply?.paid)),
          h('td', { class: 'number free' }, text(supply?.free)),
          h('td', { class: 'number' }, text(supply?.issued?.TOPUP)),
          h('td', { class: 'number' }, text(supply?.issued?.BONUS)),
          h('td', { class: 'number' }, text(supply?.spent)),
          h('td', { class: 'number' }, text(supply?.reversed)),
          h('td', { class: 'time' }, text(supply?.asOf)),
          h('td', { class: 'time' }, asset.createdAt));
      }),
      { id: 'assets-table' }));
  } catch (error) {
    failed(error);
  }
}

// Every asset's rules (API.md, Limits), and a form to change one asset's
// (PUT /assets/{asset}/rules). The form starts from the rules in force and
// sends the spend order and the whole list of limits as shown (no rows: no
// limits); the maximum balance is sent when "none" is ticked (null: no
// maximum) or a number is typed, and kept as it is when left empty.
// `saved` redraws the page after a change.
function assetRulesPanel(saved) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const asset = select('rules-asset', [], { any: null });
  const spendOrder = select('rules-spend-order', SPEND_ORDERS, { any: null });
  const maxBalance = h('input', { id: 'rules-max-balance', type: 'number', min: 0, step: 1, size: 14, placeholder: 'keep' });
  const noMax = h('input', { id: 'rules-max-none', type: 'checkbox' });
  const limits = limitEditor('rules-limits');
  const errors = h('div', { id: 'rules-errors', class: 'form-errors', role: 'alert', hidden: true });
  let known = [];
  const fill = () => {
    const rules = known.find((candidate) => candidate.symbol === asset.value)?.rules;
    if (!rules) {
      return;
    }
    spendOrder.value = rules.spendOrder;
    noMax.checked = rules.maxBalance === null;
    maxBalance.value = rules.maxBalance === null ? '' : String(rules.maxBalance);
    maxBalance.disabled = noMax.checked;
    limits.set(rules.limits);
    showFieldErrors(errors, null);
  };
  asset.addEventListener('change', fill);
  noMax.addEventListener('change', () => {
    maxBalance.disabled = noMax.checked;
    if (noMax.checked) {
      maxBalance.value = '';
    }
  });
  const form = h('form', {
    class: 'card', id: 'rules-form',
    onsubmit: async (event) => {
      event.preventDefault();
      const symbol = asset.value;
      const before = known.find((candidate) => candidate.symbol === symbol)?.rules;
      const change = { spendOrder: spendOrder.value, limits: limits.read() };
      if (noMax.checked) {
        change.maxBalance = null;
      } else if (maxBalance.value.trim() !== '') {
        change.maxBalance = typedNumber(maxBalance.value);
      }
      const button = event.submitter;
      if (button) {
        button.disabled = true;
      }
      try {
        const answer = await put(path('assets', symbol, 'rules'), change);
        say(before && answer.rules.updatedAt === before.updatedAt
          ? `No change: ${symbol} already had these rules.`
          : `Saved the rules of ${symbol}: in force for every write from now on.`, 'ok');
        saved();
      } catch (error) {
        showFieldErrors(errors, error, (field) => (field === 'maxBalance' ? maxBalance
          : field === 'spendOrder' ? spendOrder : limits.inputFor(field)));
      } finally {
        if (button) {
          button.disabled = false;
        }
      }
    },
  },
  h('h3', {}, 'Change one asset\'s rules'),
  h('p', { class: 'muted' },
    'Starts from the rules in force. Maximum balance: empty keeps it as it is; "none" removes it. ',
    `The limits shown replace the asset's list (at most ${LIMITS_MAX}; none: no limits). `,
    'Spend order: which part of a balance a debit takes first (free or paid).'),
  h('label', { for: 'rules-asset' }, 'Asset'), asset,
  h('label', { for: 'rules-spend-order' }, 'Spend order'), spendOrder,
  h('label', { for: 'rules-max-balance' }, 'Maximum balance per user'), maxBalance,
  h('label', { class: 'inline' }, ' ', noMax, ' none (no maximum)'),
  h('fieldset', {}, h('legend', {}, 'Limits per user'), limits.node),
  errors,
  h('button', { type: 'submit', id: 'rules-save' }, 'Save rules'));
  return {
    node: h('section', { id: 'asset-rules' }, h('h2', {}, 'Rules per asset'), body, form),
    draw(assets) {
      known = assets;
      body.replaceChildren(table(
        ['Asset', 'Spend order', figures('Max balance'), 'Limits per user', 'Updated'],
        assets.map((one) => h('tr', { 'data-asset': one.symbol },
          h('td', {}, one.symbol),
          h('td', { class: 'spend-order' }, one.rules.spendOrder),
          h('td', { class: 'number max-balance' }, maxBalanceText(one.rules.maxBalance)),
          limitsCell(one.rules.limits),
          h('td', { class: 'time updated' }, one.rules.updatedAt ?? 'never'))),
        { id: 'rules-table' }));
      const chosen = asset.value;
      asset.replaceChildren(...assets.map((one) =>
        h('option', { value: one.symbol, selected: one.symbol === chosen }, one.symbol)));
      fill();
    },
  };
}

// ---- API keys ---------------------------------------------------------------------

async function keysPage() {
  const list = h('section', { id: 'keys-list' }, h('p', { class: 'muted' }, 'Loading…'));
  const secretBox = h('section', { id: 'secret-box', class: 'secret', hidden: true });
  const name = h('input', { id: 'key-name', placeholder: 'game-eu', maxlength: 64, size: 24 });
  const boxes = SCOPES.map((scope) => h('input', { type: 'checkbox', value: scope, id: `scope-${scope}` }));
  const create = h('form', {
    class: 'card',
    onsubmit: async (event) => {
      event.preventDefault();
      const scopes = boxes.filter((box) => box.checked).map((box) => box.value);
      try {
        const answer = await post('/keys', { name: name.value.trim(), scopes });
        showSecret(secretBox, answer.data);
        name.value = '';
        for (const box of boxes) {
          box.checked = false;
        }
        drawKeys(list);
      } catch (error) {
        failed(error);
      }
    },
  },
  h('h2', {}, 'Create a key'),
  h('p', { class: 'muted' }, 'Name: 1-64 of A-Z a-z 0-9 _ . -, never used before. A game server usually holds read and spend; a payment webhook grant.'),
  h('label', { for: 'key-name' }, 'Name'), name,
  h('fieldset', {}, h('legend', {}, 'Scopes'),
    SCOPES.map((scope, index) => h('label', { class: 'inline' }, boxes[index], ` ${scope}`))),
  h('button', { type: 'submit', id: 'key-create' }, 'Create'));
  show(h('h1', {}, 'API keys'), secretBox, list, create);
  drawKeys(list);
}

// The secret of a new key, shown this once: the service keeps only its
// digest. "Done" removes it from the page.
function showSecret(box, created) {
  const value = h('input', { id: 'new-secret', class: 'code', readonly: true, value: created.secret, size: 60, spellcheck: 'false' });
  const done = h('button', { type: 'button', id: 'secret-done' }, 'Done: I have stored it');
  done.addEventListener('click', () => {
    box.hidden = true;
    box.replaceChildren();
  });
  box.replaceChildren(
    h('h2', {}, 'The secret of ', h('code', {}, created.key.name)),
    h('p', {}, 'Copy it now and hand it to its holder: it is never shown again.'),
    value,
    done);
  box.hidden = false;
  value.select();
}

async function drawKeys(list) {
  try {
    const keys = await get('/keys');
    list.replaceChildren(keys.length === 0 ? h('p', { class: 'muted' }, 'No keys.') : table(
      ['Name', 'Scopes', 'Created', 'Last used', 'State', ''],
      keys.map((key) => {
        const action = h('td', {});
        if (!key.revokedAt) {
          action.append(revokeButton(key, action, list));
        }
        return h('tr', { 'data-key': key.name, class: key.revokedAt ? 'revoked' : null },
          h('td', {}, h('code', {}, key.name)),
          h('td', {}, key.scopes.join(', ')),
          h('td', { class: 'time' }, key.createdAt),
          h('td', { class: 'time' }, text(key.lastUsedAt)),
          h('td', { class: 'state' }, key.revokedAt ? `revoked ${key.revokedAt}` : 'active'),
          action);
      }),
      { id: 'keys-table' }));
  } catch (error) {
    failed(error);
  }
}

function revokeButton(key, cell, list) {
  const ask = h('button', { type: 'button', class: 'danger revoke' }, 'Revoke…');
  ask.addEventListener('click', () => {
    const confirm = h('button', { type: 'button', class: 'danger revoke-confirm' }, `Revoke ${key.name}`);
    const cancel = h('button', { type: 'button', class: 'quiet' }, 'Cancel');
    confirm.addEventListener('click', async () => {
      confirm.disabled = true;
      try {
        await post(path('keys', key.name, 'revoke'), {});
        say(`Revoked ${key.name}: refused from now on.`, 'ok');
        drawKeys(list);
      } catch (error) {
        failed(error);
        confirm.disabled = false;
      }
    });
    cancel.addEventListener('click', () => cell.replaceChildren(revokeButton(key, cell, list)));
    cell.replaceChildren(
      h('span', { class: 'confirm' }, 'Final: callers holding it are refused at once. '),
      confirm, cancel);
    confirm.focus();
  });
  return ask;
}

// ---- health and metrics ---------------------------------------------------------

// The samples of a Prometheus text exposition: [{name, labels, value}].
function samples(exposition) {
  const found = [];
  for (const line of exposition.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) {
      continue;
    }
    const labels = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2];
    }
    found.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return found;
}

function total(found, name, where = () => true) {
  return found.filter((sample) => sample.name === name && where(sample.labels))
    .reduce((sum, sample) => sum + sample.value, 0);
}

async function servicePage() {
  const health = h('section', { id: 'health' }, h('h2', {}, 'Health'), h('p', { class: 'muted' }, 'Asking…'));
  const headline = h('section', { id: 'metrics' }, h('h2', {}, 'Headline metrics'), h('p', { class: 'muted' }, 'Asking…'));
  const again = h('button', { type: 'button', id: 'refresh' }, 'Refresh');
  again.addEventListener('click', () => servicePage());
  show(h('h1', {}, 'Health and metrics'), again, health, headline);
  try {
    const answer = await get('/health');
    health.replaceChildren(h('h2', {}, 'Health'), h('table', { class: 'details' }, h('tbody', {},
      h('tr', {}, h('th', {}, 'Status'), h('td', { id: 'health-status', class: 'ok' }, answer.status)),
      h('tr', {}, h('th', {}, 'Database'), h('td', {}, answer.database)),
      h('tr', {}, h('th', {}, 'Version'), h('td', {}, answer.version)))));
  } catch (error) {
    health.replaceChildren(h('h2', {}, 'Health'), h('p', { id: 'health-status', class: 'error' }, describe(error)));
  }
  try {
    const found = samples(await getText('/metrics'));
    const requests = total(found, 'wallet_http_requests_total');
    const failures = total(found, 'wallet_http_requests_total', (labels) => /^5/.test(labels.status ?? ''));
    const seconds = total(found, 'wallet_http_request_duration_seconds_sum');
    const timed = total(found, 'wallet_http_request_duration_seconds_count');
    const rows = [
      ['Ledger entries', total(found, 'wallet_entries_total')],
      ['HTTP requests since start', requests],
      ['of which 5xx', failures],
      ['Mean request time', timed > 0 ? `${(seconds / timed * 1000).toFixed(2)} ms` : '—'],
      ['Refusals since start (all codes)', total(found, 'wallet_rejections_total')],
      ['Write queue depth', total(found, 'wallet_write_queue_depth')],
      ['Event streams open', total(found, 'wallet_event_streams_open')],
      ['Write-ahead log', `${total(found, 'wallet_wal_bytes')} bytes`],
    ];
    const perAsset = found.filter((sample) => sample.name === 'wallet_asset_outstanding');
    headline.replaceChildren(
      h('h2', {}, 'Headline metrics'),
      h('table', { class: 'details', id: 'metrics-table' }, h('tbody', {},
        rows.map(([name, value]) => h('tr', {}, h('th', {}, name), h('td', { class: 'number' }, String(value)))))),
      h('h3', {}, 'Outstanding and held, by asset'),
      table(['Asset', figures('Outstanding'), figures('Held')], perAsset.map((sample) => h('tr', {},
        h('td', {}, sample.labels.asset),
        h('td', { class: 'number' }, String(sample.value)),
        h('td', { class: 'number' }, String(total(found, 'wallet_asset_held', (labels) => labels.asset === sample.labels.asset)))))),
      h('p', { class: 'muted' }, 'From GET /metrics; the full set is there for Prometheus.'));
  } catch (error) {
    headline.replaceChildren(h('h2', {}, 'Headline metrics'), h('p', {}, describe(error)));
  }
}

// ---- live events --------------------------------------------------------------------

function eventsPage() {
  const state = h('span', { id: 'tail-state', class: 'muted' }, 'starting…');
  const rows = h('tbody', { id: 'events-rows' });
  const from = h('input', { id: 'events-from', placeholder: 'now', size: 12 });
  const restart = h('button', { type: 'button', id: 'events-restart' }, 'Follow');
  let following = null;
  const follow = async () => {
    following?.abort();
    following = new AbortController();
    const signal = AbortSignal.any([following.signal, leavePage.signal]);
    rows.replaceChildren();
    let after = from.value.trim();
    try {
      if (after === '' || after === 'now') {
        state.replaceChildren('finding the newest event…');
        after = await newestEventCursor();
      } else if (after === 'start') {
        after = '0';
      }
    } catch (error) {
      state.replaceChildren(describe(error));
      return;
    }
    followEvents({
      after,
      signal,
      onState: (name, reason) => {
        state.className = `tail-${name}`;
        state.replaceChildren(reason ? `${name}: ${reason}` : name);
      },
      onEvent: (event) => {
        const data = event.data ?? {};
        const what = event.type.startsWith('hold.')
          ? `${data.status ?? ''} ${data.amount ?? ''} ${data.asset ?? ''}`
          : `${data.type ?? ''} ${data.direction === 'DEBIT' ? '−' : '+'}${data.amount ?? ''} ${data.asset ?? ''}`;
        const target = event.type.startsWith('transaction.') && data.id
          ? link('Open', 'transactions', data.id) : text(data.id);
        rows.prepend(h('tr', { 'data-event': event.id },
          h('td', {}, event.id),
          h('td', { class: 'time' }, event.createdAt),
          h('td', {}, event.type),
          h('td', {}, data.userId ? userLink(data.userId) : '—'),
          h('td', {}, what),
          h('td', { class: 'note' }, text(data.note)),
          h('td', {}, target)));
        while (rows.childElementCount > EVENTS_SHOWN_MAX) {
          rows.lastElementChild.remove();
        }
      },
    });
  };
  restart.addEventListener('click', follow);
  show(
    h('h1', {}, 'Live events'),
    h('p', { class: 'muted' },
      `Every committed entry and hold change as it happens, newest on top (the last ${EVENTS_SHOWN_MAX} kept). `,
      'Follow from: "now", "start", or an event id.'),
    h('div', { class: 'filters' }, h('label', {}, 'From ', from), restart, ' ', state),
    h('table', { id: 'events-table' },
      h('thead', {}, h('tr', {}, ['Id', 'Committed', 'Type', 'User', 'What', 'Note', ''].map((name) => h('th', {}, name)))),
      rows));
  follow();
}

// ---- routing ----------------------------------------------------------------------

function go(hash) {
  if (location.hash === hash) {
    route();
  } else {
    location.hash = hash;
  }
}

function route() {
  leavePage.abort();
  leavePage = new AbortController();
  const parts = location.hash.replace(/^#\/?/, '').split('/').map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
  if (savedKey() === null) {
    loginPage();
    return;
  }
  nav.hidden = false;
  for (const item of nav.querySelectorAll('a')) {
    item.classList.toggle('here', item.dataset.nav === parts[0]);
  }
  switch (parts[0]) {
    case 'users':
      return parts[1] ? userPage(parts[1]) : findUserPage();
    case 'transactions':
      return parts[1] ? transactionPage(parts[1]) : findUserPage();
    case 'assets':
      return assetsPage();
    case 'keys':
      return keysPage();
    case 'service':
      return servicePage();
    case 'events':
      return eventsPage();
    default:
      return findUserPage();
  }
}

document.getElementById('logout').addEventListener('click', () => {
  forgetKey();
  quiet();
  go('#/login');
});

onUnauthorized(() => {
  forgetKey();
  loginPage('The service refused the key (revoked?): log in again.');
});

window.addEventListener('hashchange', () => {
  quiet();
  route();
});
route();
