// Drives every route of the real server through the client: typed answers,
// typed errors, one idempotency key per operation reused by its retries, the
// event feed resuming with Last-Event-ID.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createWalletClient, type Event, type WalletClient } from "../src/index.js";
import { createKey, startWallet, type RunningWallet } from "./server.js";

describe("every route, in open mode and then with the key it creates", () => {
  let wallet: RunningWallet;
  let open: WalletClient;
  let client: WalletClient;
  let secret: string;

  before(async () => {
    wallet = await startWallet();
    open = createWalletClient({ baseUrl: wallet.baseUrl });
  });
  after(async () => wallet.stop());

  test("health, the document and metrics need no key", async () => {
    const health = await open.health();
    assert.equal(health.data?.status, "ok");
    const document = await open.openapi();
    assert.equal(document.data?.openapi, "3.1.0");
    const metrics = await open.metrics();
    assert.match(metrics.data ?? "", /wallet_http_requests_total/);
  });

  test("POST /keys makes the first key, and from then on every call needs one", async () => {
    const created = await open.createKey({ name: "client-test", scopes: ["admin"] });
    assert.equal(created.status, 201);
    assert.match(created.data!.secret, /^wk_[0-9a-f]{48}$/);
    const refused = await open.assets();
    assert.equal(refused.error?.status, 401);
    assert.equal(refused.error?.code, "UNAUTHORIZED");
    secret = created.data!.secret;
    client = createWalletClient({ baseUrl: wallet.baseUrl, apiKey: secret });
    const listed = await client.keys();
    assert.deepEqual(
      listed.data?.map((key) => key.name),
      ["client-test"],
    );
    const other = await client.createKey({ name: "to-revoke", scopes: ["read"] });
    const revoked = await client.revokeKey(other.data!.key.name);
    assert.ok(revoked.data?.revokedAt);
    const itself = await client.revokeKey("client-test");
    assert.equal(itself.error?.code, "VALIDATION_ERROR");
    assert.equal(itself.error?.details.fields?.[0]?.field, "name");
  });

  test("assets and their supply", async () => {
    const assets = await client.assets();
    assert.deepEqual(
      assets.data?.map((asset) => asset.symbol),
      ["DIAMOND", "GOLD", "LOYALTY"],
    );
    const gems = await client.createAsset({ symbol: "GEMS", name: "Gems", decimals: 2 });
    assert.equal(gems.status, 201);
    const again = await client.createAsset({ symbol: "GEMS", name: "Gems", decimals: 2 });
    assert.equal(again.status, 200);
    const clash = await client.createAsset({ symbol: "GEMS", name: "Other" });
    assert.equal(clash.error?.code, "ASSET_EXISTS");
    const supply = await client.supply("GOLD");
    assert.equal(supply.data?.outstanding, 1500);
    assert.deepEqual([supply.data?.paid, supply.data?.free], [1500, 0]);
    const before = await client.supply("GOLD", { at: "2000-01-01T00:00:00Z" });
    assert.deepEqual([before.data?.outstanding, before.data?.asOf, before.data?.held], [0, null, undefined]);
    const byId = await client.supply(gems.data!.id);
    assert.equal(byId.data?.asset, "GEMS");
  });

  test("rules on value: an asset's, a user's own, and the refusals they give", async () => {
    const set = await client.setAssetRules("GEMS", {
      maxBalance: 500,
      limits: [{ type: "SPEND", windowSeconds: 3600, max: 100 }],
    });
    assert.equal(set.status, 200);
    assert.equal(set.data?.rules.maxBalance, 500);
    assert.ok(set.data?.rules.updatedAt);
    const over = await client.topup("user_dana", { asset: "GEMS", amount: 501 });
    assert.equal(over.error?.code, "BALANCE_LIMIT");
    assert.equal(over.error?.details?.maxBalance, 500);
    assert.equal((await client.topup("user_dana", { asset: "GEMS", amount: 400 })).status, 201);
    assert.equal((await client.spend("user_dana", { asset: "GEMS", amount: 80 })).status, 201);
    const capped = await client.spend("user_dana", { asset: "GEMS", amount: 30 });
    assert.equal(capped.error?.code, "LIMIT_EXCEEDED");
    assert.equal(capped.error?.details?.used, 80);
    assert.ok((capped.error?.details?.retryAfterSeconds ?? 0) >= 1);
    const own = await client.setUserRules("user_dana", { asset: "GEMS", limits: [] });
    const row = own.data?.rules.find((rules) => rules.asset === "GEMS");
    assert.equal(row?.override, true);
    assert.deepEqual(row?.limits, []);
    assert.equal((await client.spend("user_dana", { asset: "GEMS", amount: 30 })).status, 201);
    const listed = await client.userRules("user_dana");
    assert.equal(listed.data?.rules.length, 4);
    const back = await client.setUserRules("user_dana", { asset: "GEMS", maxBalance: null, limits: null });
    assert.equal(back.data?.rules.find((rules) => rules.asset === "GEMS")?.override, false);
  });

  test("writes, reads, a batch and a reversal", async () => {
    const topup = await client.topup("user_carol", { asset: "GOLD", amount: 300, note: "first" });
    assert.equal(topup.status, 201);
    assert.equal(topup.data?.balance, 300);
    const bonus = await client.bonus("user_carol", { asset: "DIAMOND", amount: 5 });
    assert.equal(bonus.data?.transaction.type, "BONUS");
    const spend = await client.spend("user_carol", { asset: "GOLD", amount: 100 });
    assert.equal(spend.data?.balance, 200);
    const transfer = await client.transfer("user_carol", { to: "user_bob", asset: "GOLD", amount: 50 });
    assert.equal(transfer.data?.transaction.counterparty, "user_bob");

    // Bought currency is paid, given currency free; the parts are typed.
    assert.deepEqual(spend.data?.transaction.parts, [{ kind: "PAID", amount: 100 }]);
    const balance = await client.balance("user_carol");
    const gold = balance.data?.balances.find((row) => row.asset === "GOLD");
    assert.equal(gold?.balance, 150);
    assert.deepEqual([gold?.paid, gold?.free, gold?.expiring], [150, 0, []]);
    const diamond = balance.data?.balances.find((row) => row.asset === "DIAMOND");
    assert.deepEqual([diamond?.paid, diamond?.free], [0, 5]);
    const then = await client.balance("user_carol", { at: "2000-01-01T00:00:00Z" });
    assert.ok(then.data?.balances.every((row) => row.balance === 0));

    const history = await client.history("user_carol", { type: "SPEND" });
    assert.deepEqual(
      history.data?.items.map((item) => item.id),
      [spend.data?.transaction.id],
    );
    const page = await client.history("user_carol", { limit: 1 });
    const next = await client.history("user_carol", { limit: 1, cursor: page.data!.nextCursor! });
    assert.notEqual(next.data?.items[0]?.id, page.data?.items[0]?.id);

    const detail = await client.transaction(spend.data!.transaction.id);
    assert.equal(detail.data?.debit.type, "USER");

    const refund = await client.reverse(spend.data!.transaction.id, { amount: 40 });
    assert.equal(refund.data?.transaction.type, "REVERSAL");
    assert.equal(refund.data?.balance, 190);

    const batch = await client.batch([
      { type: "spend", userId: "user_carol", asset: "GOLD", amount: 10 },
      { type: "transfer", userId: "user_carol", to: "user_alice", asset: "GOLD", amount: 5 },
    ]);
    assert.equal(batch.status, 201);
    assert.equal(batch.data?.transactions.length, 2);
  });

  test("one idempotency key per operation: given twice, the answer is replayed", async () => {
    const first = await client.topup("user_dave", { asset: "GOLD", amount: 7 }, { idempotencyKey: "order-7" });
    const second = await client.topup("user_dave", { asset: "GOLD", amount: 7 }, { idempotencyKey: "order-7" });
    assert.equal(first.status, 201);
    assert.equal(second.status, 200);
    assert.equal(second.replayed, true);
    assert.equal(second.data?.transaction.id, first.data?.transaction.id);
    const reused = await client.topup("user_dave", { asset: "GOLD", amount: 8 }, { idempotencyKey: "order-7" });
    assert.equal(reused.error?.code, "IDEMPOTENCY_KEY_REUSED");
    assert.deepEqual(reused.error?.details.differing, ["amount"]);
  });

  test("errors are typed values with their code and details", async () => {
    const short = await client.spend("user_bob", { asset: "GOLD", amount: 1_000_000 });
    assert.equal(short.error?.status, 422);
    assert.equal(short.error?.code, "INSUFFICIENT_FUNDS");
    assert.equal(short.error?.details.requested, 1_000_000);
    assert.equal(typeof short.error?.details.balance, "number");
    assert.ok(short.error?.requestId);
    const invalid = await client.topup("user_bob", { asset: "", amount: 0 });
    assert.equal(invalid.error?.code, "VALIDATION_ERROR");
    assert.deepEqual(invalid.error?.details.fields?.map((field) => field.field).sort(), ["amount", "asset"]);
    const missing = await client.balance("nobody_here");
    assert.equal(missing.error?.code, "WALLET_NOT_FOUND");
  });

  test("holds: place, list, read, capture, void", async () => {
    const placed = await client.hold("user_alice", { asset: "GOLD", amount: 100, expiresInSeconds: 600 });
    assert.equal(placed.status, 201);
    assert.equal(placed.data?.held, 100);
    const listed = await client.holds("user_alice", { status: "HELD" });
    assert.equal(listed.data?.items[0]?.id, placed.data?.hold.id);
    const read = await client.getHold(placed.data!.hold.id);
    assert.equal(read.data?.status, "HELD");
    const captured = await client.capture(placed.data!.hold.id, { amount: 60, to: "user_bob" });
    assert.equal(captured.data?.hold.status, "CAPTURED");
    assert.equal(captured.data?.transaction.amount, 60);
    const again = await client.capture(placed.data!.hold.id);
    assert.equal(again.error?.code, "HOLD_NOT_ACTIVE");
    assert.equal(again.error?.details.status, "CAPTURED");

    const second = await client.hold("user_alice", { asset: "GOLD", amount: 10 });
    const voided = await client.void(second.data!.hold.id);
    assert.equal(voided.data?.hold.status, "VOIDED");
  });

  test("the event feed: pages, and a stream that resumes with Last-Event-ID", async () => {
    const page = await client.eventPage({ limit: 2 });
    assert.equal(page.data?.items.length, 2);
    const rest = await client.eventPage({ after: page.data!.nextCursor });
    assert.ok(rest.data!.items.length > 0);

    // A fetch that cuts the first stream after its third event: the
    // iterator must reopen it with Last-Event-ID and go on from there.
    const asked: Array<string | null> = [];
    const cutting: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      const headers = new Headers(init?.headers);
      if (headers.get("accept") !== "text/event-stream") {
        return response;
      }
      asked.push(headers.get("last-event-id"));
      if (asked.length > 1) {
        return response;
      }
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      const encoder = new TextEncoder();
      let separators = 0;
      const cut = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) {
            controller.close();
            return;
          }
          const text = decoder.decode(value, { stream: true });
          let end = 0;
          while (separators < 3) {
            const next = text.indexOf("\n\n", end);
            if (next < 0) {
              break;
            }
            end = next + 2;
            separators += 1;
          }
          if (separators < 3) {
            controller.enqueue(encoder.encode(text));
            return;
          }
          // Up to the end of the third event, then the connection drops.
          controller.enqueue(encoder.encode(text.slice(0, end)));
          await reader.cancel();
          controller.error(new Error("connection reset"));
        },
      });
      return new Response(cut, { status: response.status, headers: response.headers });
    };
    const resuming = createWalletClient({
      baseUrl: wallet.baseUrl,
      apiKey: secret,
      fetch: cutting,
    });
    const everything = await client.eventPage({ limit: 1000 });
    const expected = everything.data!.items.map((event) => event.id);
    const controller = new AbortController();
    const received: Event[] = [];
    const live = client.topup("user_erin", { asset: "GOLD", amount: 1 });
    for await (const event of resuming.events({ signal: controller.signal, reconnectDelayMs: 10 })) {
      received.push(event);
      if (received.length === expected.length + 1) {
        controller.abort();
      }
    }
    await live;
    assert.deepEqual(
      received.slice(0, expected.length).map((event) => event.id),
      expected,
    );
    assert.equal((received.at(-1)!.data as { userId?: string }).userId, "user_erin");
    assert.equal(asked.length, 2);
    assert.equal(asked[0], null);
    // The second stream asked to resume after an event the first delivered.
    assert.ok(expected.includes(asked[1]!), `resumed after ${asked[1]}`);
  });
});

describe("retries", () => {
  test("429: waits as Retry-After says and retries with the same idempotency key, written once", async () => {
    let secret = "";
    const wallet = await startWallet({
      args: ["--rate-limit-per-second", "1", "--rate-limit-burst", "1"],
      prepare: (db) => {
        secret = createKey(db, "limited", "read,spend,grant");
      },
    });
    try {
      const sent: string[] = [];
      const statuses: number[] = [];
      const recording: typeof fetch = async (input, init) => {
        const request = input instanceof Request ? input : new Request(input, init);
        if (request.method === "POST") {
          sent.push(JSON.parse(await request.clone().text()).idempotencyKey);
        }
        const response = await fetch(request);
        statuses.push(response.status);
        return response;
      };
      const client = createWalletClient({ baseUrl: wallet.baseUrl, apiKey: secret, fetch: recording });
      const started = Date.now();
      const first = await client.topup("user_frank", { asset: "GOLD", amount: 3 });
      const second = await client.topup("user_frank", { asset: "GOLD", amount: 4 });
      assert.equal(first.status, 201);
      assert.equal(second.status, 201);
      assert.ok(statuses.includes(429), `statuses: ${statuses}`);
      assert.ok(Date.now() - started >= 900, "Retry-After was honoured");
      // The second operation's tries all carried one key, and it was written once.
      const keys = new Set(sent.slice(1));
      assert.equal(keys.size, 1);
      assert.notEqual(sent[0], sent[1]);
      await new Promise((r) => setTimeout(r, 1100));
      const history = await client.history("user_frank");
      assert.equal(history.data?.items.length, 2);
    } finally {
      await wallet.stop();
    }
  });

  test("503: retries the same request until the service takes it", async () => {
    const wallet = await startWallet();
    try {
      const keys: string[] = [];
      let overloaded = 2;
      const flaky: typeof fetch = async (input, init) => {
        const request = input instanceof Request ? input : new Request(input, init);
        keys.push(JSON.parse(await request.clone().text()).idempotencyKey);
        if (overloaded > 0) {
          overloaded -= 1;
          return new Response(
            JSON.stringify({
              success: false,
              data: null,
              error: { code: "SERVICE_OVERLOADED", message: "The write queue is full." },
            }),
            { status: 503, headers: { "content-type": "application/json", "retry-after": "0" } },
          );
        }
        return fetch(request);
      };
      const client = createWalletClient({ baseUrl: wallet.baseUrl, fetch: flaky });
      const answer = await client.spend("user_alice", { asset: "GOLD", amount: 1 });
      assert.equal(answer.status, 201);
      assert.equal(keys.length, 3);
      assert.equal(new Set(keys).size, 1);
      assert.equal(answer.data?.transaction.idempotencyKey, keys[0]);

      const giveUp = createWalletClient({
        baseUrl: wallet.baseUrl,
        maxAttempts: 2,
        fetch: async () =>
          new Response(JSON.stringify({ success: false, data: null, error: { code: "SERVICE_OVERLOADED", message: "full" } }), {
            status: 503,
            headers: { "content-type": "application/json", "retry-after": "0" },
          }),
      });
      const refused = await giveUp.spend("user_alice", { asset: "GOLD", amount: 1 });
      assert.equal(refused.error?.code, "SERVICE_OVERLOADED");
      assert.equal(refused.error?.status, 503);
    } finally {
      await wallet.stop();
    }
  });
});
