// The operator console in a real browser: Debian's chromium, headless,
// driven by playwright-core, against the real wallet binary on a fresh,
// seeded SQLite database with one admin key. It logs in, finds user_alice,
// checks the balances shown against the API's, pages and filters the
// history, reverses a spend (a double click on the confirmation, and a
// retry after its answer was lost, reverse once) and sees the balance change, creates an asset, sets GOLD's
// rules through the form (a refused change names its fields beside the
// form; then a maximum balance and a SPEND limit, as GET /assets has them),
// gives user_alice her own GOLD limit and takes it away again (the rules
// table says "own", as GET /wallets/user_alice/rules does), creates a key (its
// secret works) and revokes it (it is refused), reads health and metrics,
// and watches an event arrive in the live tail. A note and metadata holding
// markup and `</script>` are shown as text and run nothing: no dialog, no
// global set, no script error, no Content-Security-Policy report.
//
// Run by `cargo test` (tests/api/console.rs), or by hand to refresh the
// README's screenshots:
//
//   cargo build && npm ci --prefix tests/browser
//   node tests/browser/console.mjs     # writes docs/console/*.png
//
// Environment: WALLET_BIN (default target/debug/wallet), CONSOLE_SCREENSHOTS
// (default docs/console), CONSOLE_SCRATCH (default a new temporary folder),
// CHROMIUM (default /usr/bin/chromium).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const walletBin = process.env.WALLET_BIN || join(root, 'target', 'debug', 'wallet');
const screenshots = resolve(process.env.CONSOLE_SCREENSHOTS || join(root, 'docs', 'console'));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const ownScratch = !process.env.CONSOLE_SCRATCH;
const scratch = process.env.CONSOLE_SCRATCH || mkdtempSync(join(tmpdir(), 'wallet-console-'));
// The whole run, server start to last screenshot, is bounded.
const RUN_TIMEOUT_MS = 180_000;
const STEP_TIMEOUT_MS = 15_000;

// Markup where a user-controlled string goes: run, each would set
// window.__xss or open a dialog.
const NOTE_ATTACK = '<img src=x onerror="window.__xss=\'note\';alert(\'note\')"> and </script><script>window.__xss=\'note-script\'</script>';
const METADATA_ATTACK = {
  closing: '</script><script>window.__xss=\'metadata\';alert(\'metadata\')</script>',
  image: '<img src=x onerror=alert(document.domain)>',
};

// The wallet's own variables: a test sets what it means and inherits none.
function walletEnvironment() {
  const environment = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('WALLET_') && name !== 'PORT') {
      environment[name] = value;
    }
  }
  environment.RUST_LOG = 'info';
  return environment;
}

function createKey(db, name, scopes) {
  const secret = execFileSync(walletBin, ['keys', 'create', '--name', name, '--scopes', scopes, '--db', db], {
    env: walletEnvironment(),
    encoding: 'utf8',
  }).trim();
  assert.match(secret, /^wk_[0-9a-f]{48}$/);
  return secret;
}

// `wallet serve` on a random loopback port: its process and address.
function startWallet(db) {
  const server = spawn(walletBin, ['serve', '--bind', '127.0.0.1:0', '--db', db], {
    env: walletEnvironment(),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = [];
  const address = new Promise((resolveAddress, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${log.join('')}`)), 30_000);
    server.stderr.setEncoding('utf8');
    server.stderr.on('data', (chunk) => {
      log.push(chunk);
      const found = /listening on (http:\/\/\S+)/.exec(log.join(''));
      if (found) {
        clearTimeout(timer);
        resolveAddress(found[1]);
      }
    });
    server.on('exit', (code) => reject(new Error(`the server exited (${code}):\n${log.join('')}`)));
  });
  return { server, address };
}

// The JSON API as the test sees it, beside the browser.
function apiClient(base, key) {
  const call = async (method, path, body, ownKey = key) => {
    const headers = { Accept: 'application/json' };
    if (ownKey) {
      headers.Authorization = `Bearer ${ownKey}`;
    }
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
    }
    const response = await fetch(base + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const envelope = await response.json();
    return { status: response.status, data: envelope.data, error: envelope.error };
  };
  return {
    get: (path, ownKey) => call('GET', path, undefined, ownKey),
    post: (path, body, ownKey) => call('POST', path, body, ownKey),
    put: (path, body, ownKey) => call('PUT', path, body, ownKey),
  };
}

function step(name) {
  console.log(`ok - ${name}`);
}

// The server, once started: stopped on every way out, the deadline's too.
let running = null;
let showPageOnFailure = null;

async function main() {
  const db = join(scratch, 'wallet.db');
  const adminKey = createKey(db, 'console-operator', 'admin');
  const { server, address } = startWallet(db);
  running = server;
  let browser;
  try {
    const base = await address;
    const api = apiClient(base, adminKey);
    step(`the wallet serves on ${base}`);

    // A history longer than one page, a spend to reverse, a hold, and the
    // note and metadata that try to run.
    for (let index = 1; index <= 12; index += 1) {
      const kind = index % 3 === 0 ? 'spend' : 'topup';
      const answer = await api.post(`/wallets/user_alice/${kind}`, {
        asset: 'GOLD', amount: index, idempotencyKey: `browser-fill-${index}`, referenceId: `fill-${index}`,
      });
      assert.equal(answer.status, 201, JSON.stringify(answer));
    }
    const attack = await api.post('/wallets/user_alice/spend', {
      asset: 'DIAMOND', amount: 3, idempotencyKey: 'browser-attack', note: NOTE_ATTACK, metadata: METADATA_ATTACK,
    });
    assert.equal(attack.status, 201, JSON.stringify(attack));
    const spend = await api.post('/wallets/user_alice/spend', {
      asset: 'GOLD', amount: 100, idempotencyKey: 'browser-spend', referenceId: 'order-77', note: 'a sword, refunded below',
    });
    assert.equal(spend.status, 201, JSON.stringify(spend));
    const hold = await api.post('/wallets/user_alice/holds', {
      asset: 'GOLD', amount: 50, idempotencyKey: 'browser-hold', referenceId: 'bid-9',
    });
    assert.equal(hold.status, 201, JSON.stringify(hold));
    step('the ledger holds 15 more entries for user_alice and a hold');

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      // Root (as in CI) cannot use chromium's sandbox; /dev/shm may be tiny
      // in a container; and the machine's network is closed, so chromium
      // must not try to reach its own services.
      args: [
        '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    const dialogs = [];
    const pageErrors = [];
    const consoleErrors = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      dialog.dismiss().catch(() => {});
    });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') {
        consoleErrors.push(message.text());
      }
    });
    mkdirSync(screenshots, { recursive: true });
    const shoot = (name) => page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
    const noAttackRan = async (where) => {
      assert.equal(await page.evaluate(() => window.__xss), undefined, `a script ran on ${where}`);
      assert.deepEqual(dialogs, [], `a dialog opened on ${where}`);
      assert.equal(await page.locator('img').count(), 0, `an <img> was made on ${where}`);
    };

    // On a failure, what the page showed says more than the step.
    showPageOnFailure = async () => {
      const shown = await page.locator('body').innerText().catch((error) => `(unreadable: ${error.message})`);
      console.error(`the page at ${page.url()} showed:\n${shown}`);
      console.error(`script errors: ${JSON.stringify(pageErrors)}; console errors: ${JSON.stringify(consoleErrors)}`);
    };

    // Log in: a wrong key is refused, the admin key opens the console.
    const response = await page.goto(`${base}/console`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'], /script-src 'self'/);
    await page.locator('#key').waitFor();
    await shoot('login');
    await page.fill('#key', `wk_${'0'.repeat(48)}`);
    await page.click('#login');
    await page.locator('#notice', { hasText: 'unknown or revoked' }).waitFor();
    await page.fill('#key', adminKey);
    await page.click('#login');
    await page.locator('#nav').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('wallet.console.key')), adminKey);
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in local storage');
    step('a wrong key is refused; the admin key logs in, kept in session storage only');

    // Find user_alice; the balances shown are the API's.
    await page.fill('#user-id', 'user_alice');
    await page.click('#find');
    await page.locator('#balances tr[data-asset="GOLD"]').waitFor();
    const wallet = (await api.get('/wallets/user_alice/balance')).data;
    const shownBalances = async () => page.$$eval('#balances tbody tr', (rows) => rows.map((row) => ({
      asset: row.dataset.asset,
      balance: Number(row.querySelector('.balance').textContent),
      held: Number(row.querySelector('.held').textContent),
      available: Number(row.querySelector('.available').textContent),
      paid: Number(row.querySelector('.paid').textContent),
      free: Number(row.querySelector('.free').textContent),
    })));
    assert.deepEqual(await shownBalances(), wallet.balances.map(({ asset, balance, held, available, paid, free }) => ({
      asset, balance, held, available, paid, free,
    })));
    assert.equal(wallet.balances.find((row) => row.asset === 'GOLD').held, 50);
    step('user_alice found: every balance, held, available, paid and free shown equals the API\'s');

    // History: pages of 10, older and newer, as the API pages them.
    const rowIds = () => page.$$eval('#history-rows tbody tr', (rows) => rows.map((row) => row.dataset.transaction));
    await page.locator('#history-rows tbody tr').first().waitFor();
    const firstPage = await rowIds();
    const apiPage = (await api.get('/wallets/user_alice/transactions?limit=10')).data;
    assert.deepEqual(firstPage, apiPage.items.map((item) => item.id));
    await page.locator('[data-later-panel="expiring"]').waitFor();
    // The attack is on the first page, as text.
    const note = await page.locator(`#history-rows tr[data-transaction="${attack.data.transaction.id}"] td.note`).textContent();
    assert.equal(note, NOTE_ATTACK);
    const metadata = await page.locator(`#history-rows tr[data-transaction="${attack.data.transaction.id}"] td.metadata`).textContent();
    assert.deepEqual(JSON.parse(metadata), METADATA_ATTACK);
    await noAttackRan('the user page');
    await page.click('#history .older');
    await page.locator('#history .page-number', { hasText: 'page 2' }).waitFor();
    const secondPage = await rowIds();
    const apiSecond = (await api.get(`/wallets/user_alice/transactions?limit=10&cursor=${apiPage.nextCursor}`)).data;
    assert.deepEqual(secondPage, apiSecond.items.map((item) => item.id));
    assert.equal(secondPage.length, 7, '17 entries: 10, then 7');
    assert.equal(apiSecond.nextCursor, null);
    assert.ok(await page.locator('#history .older').isDisabled(), 'no page after the last');
    await page.click('#history .newer');
    await page.locator('#history .page-number', { hasText: 'page 1' }).waitFor();
    assert.deepEqual(await rowIds(), firstPage);
    await page.selectOption('#history-type', 'SPEND');
    await page.locator('#history-rows tbody tr').first().waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll('#history-rows tbody tr td:nth-child(2)')]
      .every((cell) => cell.textContent === 'SPEND'));
    const spends = (await api.get('/wallets/user_alice/transactions?type=SPEND&limit=10')).data;
    assert.deepEqual(await rowIds(), spends.items.map((item) => item.id));
    step('the history pages (10, then 7, and back) and filters by type as the API does');

    // Reverse 40 of the 100 GOLD spend; a double click on the confirmation
    // reverses once.
    const spendId = spend.data.transaction.id;
    const goldBefore = wallet.balances.find((row) => row.asset === 'GOLD').balance;
    await page.click(`#history-rows tr[data-transaction="${spendId}"] a`);
    await page.locator('#transaction-details').waitFor();
    assert.equal(await page.locator('#debit-side a').textContent(), 'user_alice');
    assert.equal((await page.locator('#credit-side').textContent()).includes('Treasury'), true);
    const shownParts = await page.locator('#parts').textContent();
    assert.equal(shownParts, spend.data.transaction.parts.map((part) => `${part.kind} ${part.amount}`).join(', '));
    await page.fill('#reverse-amount', '40');
    await page.fill('#reverse-note', 'refund: <b>not bold</b>');
    await page.click('#reverse-ask');
    await page.locator('#reverse-confirmation').waitFor({ state: 'visible' });
    // The first answer is lost on its way back: the service applied the
    // reversal, the page saw the connection drop. Confirming again sends
    // the same idempotency key, and the service answers with the original.
    let answersLost = 0;
    await page.route('**/transactions/*/reverse', async (route) => {
      if (answersLost === 0) {
        answersLost += 1;
        const applied = await route.fetch();
        assert.equal(applied.status(), 201);
        await route.abort('connectionreset');
      } else {
        await route.continue();
      }
    });
    await page.dblclick('#reverse-confirm');
    await page.locator('#notice', { hasText: 'could not be reached' }).waitFor();
    assert.equal(answersLost, 1);
    await page.click('#reverse-confirm');
    await page.locator('#notice', { hasText: 'Already reversed' }).waitFor();
    await page.unroute('**/transactions/*/reverse');
    await page.locator('#reversed-amount', { hasText: '40' }).waitFor();
    await page.locator('#reversals tbody tr').first().waitFor();
    assert.equal(await page.locator('#reversals tbody tr').count(), 1);
    assert.equal(await page.locator('#reversals td.note').textContent(), 'refund: <b>not bold</b>');
    const reversals = (await api.get('/wallets/user_alice/transactions?type=REVERSAL')).data.items;
    assert.equal(reversals.length, 1, 'one reversal for a double click and a retry');
    assert.equal(reversals[0].reverses, spendId);
    assert.equal(reversals[0].amount, 40);
    assert.match(reversals[0].idempotencyKey, /^console-[0-9a-f]{32}$/);
    await shoot('transaction');
    await page.click('#debit-side a');
    await page.locator('#balances tr[data-asset="GOLD"]').waitFor();
    const goldShown = Number(await page.locator('#balances tr[data-asset="GOLD"] .balance').textContent());
    assert.equal(goldShown, goldBefore + 40);
    assert.equal(goldShown, (await api.get('/wallets/user_alice/balance')).data.balances.find((row) => row.asset === 'GOLD').balance);
    step('a spend reversed in part: one reversal for a double click and a retry after a lost answer; the balance shown rose by 40');

    // Assets: the supply is shown; a new asset is created.
    await page.click('a[data-nav="assets"]');
    await page.locator('#assets-table tr[data-asset="GOLD"]').waitFor();
    const supply = (await api.get('/assets/GOLD/supply')).data;
    assert.equal(Number(await page.locator('#assets-table tr[data-asset="GOLD"] .outstanding').textContent()), supply.outstanding);
    await page.fill('#asset-symbol', 'GEMS');
    await page.fill('#asset-name', 'Gems <i>shiny</i>');
    await page.click('#asset-create');
    await page.locator('#assets-table tr[data-asset="GEMS"]').waitFor();
    const gems = (await api.get('/assets')).data.find((asset) => asset.symbol === 'GEMS');
    assert.equal(gems.name, 'Gems <i>shiny</i>');
    assert.equal(await page.locator('#assets-table tr[data-asset="GEMS"] td:nth-child(2)').textContent(), 'Gems <i>shiny</i>');
    step('assets shown with their supply; GEMS created');

    // Rules per asset: every asset's shown; rows of limits are added up to
    // 8 and removed; a refused change lists the service's field problems
    // beside the form and marks the row they name; then GOLD gets a maximum
    // balance and one SPEND limit, shown as GET /assets has them.
    const goldRulesRow = page.locator('#rules-table tr[data-asset="GOLD"]');
    await page.locator('#rules-table tr[data-asset="GEMS"]').waitFor();
    assert.equal(await goldRulesRow.locator('.max-balance').textContent(), 'none');
    assert.equal(await goldRulesRow.locator('.limits').textContent(), 'none');
    assert.equal(await goldRulesRow.locator('.updated').textContent(), 'never');
    assert.equal(await goldRulesRow.locator('.spend-order').textContent(), 'free-first');
    await page.selectOption('#rules-asset', 'GOLD');
    assert.ok(await page.locator('#rules-max-none').isChecked(), 'no maximum yet');
    await page.uncheck('#rules-max-none');
    await page.fill('#rules-max-balance', '100000');
    for (let count = 1; count <= 8; count += 1) {
      await page.click('#rules-limits-add');
    }
    assert.equal(await page.locator('#rules-limits .limit-row').count(), 8);
    assert.ok(await page.locator('#rules-limits-add').isDisabled(), 'at most 8 limits');
    for (let count = 8; count > 1; count -= 1) {
      await page.locator('#rules-limits .limit-row').last().locator('.limit-remove').click();
    }
    assert.equal(await page.locator('#rules-limits .limit-row').count(), 1);
    assert.ok(await page.locator('#rules-limits-add').isEnabled());
    // Two limits of one type and window: the service refuses the second.
    const limitRows = page.locator('#rules-limits .limit-row');
    await limitRows.nth(0).locator('.limit-type').selectOption('SPEND');
    await limitRows.nth(0).locator('.limit-window').fill('86400');
    await limitRows.nth(0).locator('.limit-max').fill('1000');
    await page.click('#rules-limits-add');
    await limitRows.nth(1).locator('.limit-type').selectOption('SPEND');
    await limitRows.nth(1).locator('.limit-window').fill('86400');
    await limitRows.nth(1).locator('.limit-max').fill('500');
    await page.click('#rules-save');
    await page.locator('#rules-errors li[data-field="limits[1]"]').waitFor();
    await page.locator('#notice', { hasText: 'VALIDATION_ERROR' }).waitFor();
    assert.ok(await limitRows.nth(1).evaluate((row) => row.classList.contains('invalid')), 'the refused row is marked');
    assert.equal((await api.get('/assets')).data.find((one) => one.symbol === 'GOLD').rules.updatedAt, null,
      'nothing written on a refusal');
    await limitRows.nth(1).locator('.limit-remove').click();
    await page.click('#rules-save');
    await page.locator('#notice', { hasText: 'Saved the rules of GOLD' }).waitFor();
    await goldRulesRow.locator('.limit', { hasText: 'SPEND: 1000 per 86400 s' }).waitFor();
    assert.ok(await page.locator('#rules-errors').isHidden(), 'the field problems are gone');
    const goldRules = (await api.get('/assets')).data.find((one) => one.symbol === 'GOLD').rules;
    assert.equal(goldRules.spendOrder, 'free-first');
    assert.equal(goldRules.maxBalance, 100000);
    assert.deepEqual(goldRules.limits, [{ type: 'SPEND', windowSeconds: 86400, max: 1000 }]);
    assert.match(goldRules.updatedAt, /^\d{4}-\d\d-\d\dT/);
    assert.equal(await goldRulesRow.locator('.max-balance').textContent(), '100000');
    assert.equal(await goldRulesRow.locator('.updated').textContent(), goldRules.updatedAt);
    assert.equal(await page.locator('#rules-table tr[data-asset="GEMS"] .max-balance').textContent(), 'none');
    await noAttackRan('the assets page');
    await shoot('assets');
    step('GOLD\'s rules set through the form (maximum balance 100000, SPEND 1000 per 86400 s), as GET /assets has them; a refusal named limits[1] beside the form');

    // A user's own rules: user_alice gets her own GOLD limit, the table
    // says "own" as the API does; "use the asset's" takes it away again.
    await page.click('a[data-nav="users"]');
    await page.fill('#user-id', 'user_alice');
    await page.click('#find');
    const aliceGold = page.locator('#user-rules-table tr[data-asset="GOLD"]');
    await aliceGold.waitFor();
    assert.equal(await aliceGold.locator('.max-balance').textContent(), '100000', 'the asset\'s maximum applies');
    assert.equal(await aliceGold.locator('.override').textContent(), 'the asset\'s');
    await page.selectOption('#user-rules-asset', 'GOLD');
    assert.ok(await page.locator('#user-limits .limit-max').first().isDisabled(), 'own limits only when chosen');
    await page.check('#user-limits-own');
    const ownRows = page.locator('#user-limits .limit-row');
    assert.equal(await ownRows.count(), 1, 'the own limits start from those in force');
    await ownRows.first().locator('.limit-window').fill('3600');
    await ownRows.first().locator('.limit-max').fill('500');
    await page.click('#user-rules-save');
    await aliceGold.locator('.limit', { hasText: 'SPEND: 500 per 3600 s' }).waitFor();
    assert.equal(await aliceGold.locator('.override').textContent(), 'own');
    assert.equal(await aliceGold.locator('.max-balance').textContent(), '100000', 'the maximum kept: the asset\'s');
    const aliceRules = (await api.get('/wallets/user_alice/rules')).data.rules;
    assert.deepEqual(aliceRules.find((row) => row.asset === 'GOLD'), {
      asset: 'GOLD', maxBalance: 100000, limits: [{ type: 'SPEND', windowSeconds: 3600, max: 500 }], override: true,
    });
    const shownRules = await page.$$eval('#user-rules-table tbody tr', (rows) => rows.map((row) => row.dataset.asset));
    assert.deepEqual(shownRules, aliceRules.map((row) => row.asset), 'one row per asset, as the API orders them');
    await page.locator('#balances tr[data-asset="GOLD"]').waitFor();
    await page.locator('#history-rows tbody tr').first().waitFor();
    await shoot('user');
    await page.selectOption('#user-rules-asset', 'GOLD');
    await page.check('#user-limits-asset');
    await page.click('#user-rules-save');
    await aliceGold.locator('.override', { hasText: 'the asset\'s' }).waitFor();
    assert.equal(await aliceGold.locator('.limits').textContent(), 'SPEND: 1000 per 86400 s');
    assert.deepEqual((await api.get('/wallets/user_alice/rules')).data.rules.find((row) => row.asset === 'GOLD'), {
      asset: 'GOLD', maxBalance: 100000, limits: [{ type: 'SPEND', windowSeconds: 86400, max: 1000 }], override: false,
    });
    step('user_alice\'s own GOLD limit set through her page ("own", as the API says) and removed again (the asset\'s apply)');

    // Keys: create one (its secret works), then revoke it (refused).
    await page.click('a[data-nav="keys"]');
    await page.locator('#keys-table tr[data-key="console-operator"]').waitFor();
    await page.fill('#key-name', 'game-eu');
    await page.check('#scope-read');
    await page.check('#scope-spend');
    await page.click('#key-create');
    await page.locator('#new-secret').waitFor();
    const secret = await page.inputValue('#new-secret');
    assert.match(secret, /^wk_[0-9a-f]{48}$/);
    assert.equal((await api.get('/assets', secret)).status, 200, 'the new key works');
    await page.locator('#keys-table tr[data-key="game-eu"]').waitFor();
    await shoot('keys');
    await page.click('#secret-done');
    assert.equal(await page.locator('#new-secret').count(), 0, 'the secret is gone from the page');
    await page.click('#keys-table tr[data-key="game-eu"] button.revoke');
    await page.click('#keys-table tr[data-key="game-eu"] button.revoke-confirm');
    await page.locator('#keys-table tr[data-key="game-eu"] td.state', { hasText: 'revoked' }).waitFor();
    assert.equal((await api.get('/assets', secret)).status, 401, 'the revoked key is refused');
    step('a key created (its secret shown once, and working) and revoked (refused)');

    // Health and headline metrics.
    await page.click('a[data-nav="service"]');
    await page.locator('#health-status', { hasText: 'ok' }).waitFor();
    await page.locator('#metrics-table').waitFor();
    const exposition = await (await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${adminKey}` } })).text();
    const entries = Number(/^wallet_entries_total (\d+)$/m.exec(exposition)[1]);
    assert.equal(entries, 21, 'the seed\'s 6, 12 fills, the attack, the spend, the reversal');
    const shownEntries = await page.locator('#metrics-table tr', { hasText: 'Ledger entries' }).locator('td').textContent();
    assert.equal(Number(shownEntries), entries);
    await shoot('service');
    step('health and metrics shown');

    // The live tail: a write made now arrives.
    await page.click('a[data-nav="events"]');
    await page.locator('#tail-state', { hasText: 'live' }).waitFor();
    const bonus = await api.post('/wallets/user_bob/bonus', {
      asset: 'LOYALTY', amount: 7, idempotencyKey: 'browser-live', note: 'live <script>window.__xss="tail"</script>',
    });
    assert.equal(bonus.status, 201, JSON.stringify(bonus));
    const arrived = page.locator('#events-rows tr', { hasText: 'live <script>' });
    await arrived.waitFor();
    assert.equal(await page.locator('#events-rows tr').count(), 1, 'from now: only the new event');
    await shoot('events');
    step('an event written after the tail started arrived in it');

    await noAttackRan('every page');
    assert.deepEqual(pageErrors, [], 'no script error');
    assert.deepEqual(consoleErrors.filter((text) => /Content.Security.Policy|Refused/i.test(text)), [],
      'nothing refused by the Content-Security-Policy');
    step('no dialog, no global set, no script error, no policy refusal');

    // Log out forgets the key.
    await page.click('#logout');
    await page.locator('#key').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('wallet.console.key')), null);
    step('log out forgets the key');
    console.log(`console: every step passed; screenshots in ${screenshots}`);
  } catch (error) {
    await showPageOnFailure?.();
    throw error;
  } finally {
    await browser?.close().catch(() => {});
    server.kill('SIGTERM');
    if (ownScratch) {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
}

const deadline = setTimeout(() => {
  console.error(`not ok - the run took longer than ${RUN_TIMEOUT_MS / 1000} s`);
  running?.kill('SIGKILL');
  process.exit(1);
}, RUN_TIMEOUT_MS);
main().then(() => {
  clearTimeout(deadline);
  process.exit(0);
}, (error) => {
  console.error(`not ok - ${error.stack ?? error}`);
  process.exit(1);
});
