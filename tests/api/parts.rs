//! API.md, "Paid, free and expiring currency", over the real binary: every
//! unit of a balance is paid (TOPUP) or free (BONUS); balance rows, supply
//! and every Transaction tell the parts; debits take them in the asset's
//! spend order, transfers keep them, reversals give them back last first,
//! holds set them aside; an existing ledger is split by the entries that
//! made it. Each test ends with `wallet verify`, which recomputes every part.

use serde_json::{json, Value};

use crate::crash::assert_verify_passes;
use crate::helpers::{run_wallet, sqlite_only, TestApp};

/// A response's `data`, after checking its status.
fn ok(response: crate::helpers::ApiResponse, status: u16) -> Value {
    assert_eq!(response.status, status, "{:?}", response.body);
    response.data().clone()
}

/// `[(kind, amount)]` of a Transaction's parts, in their order.
fn parts(transaction: &Value) -> Vec<(String, i64)> {
    transaction["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("no parts in {transaction}"))
        .iter()
        .map(|part| {
            (
                part["kind"].as_str().unwrap().to_owned(),
                part["amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn p(kind: &str, amount: i64) -> (String, i64) {
    (kind.to_owned(), amount)
}

/// (balance, paid, free) of `user` in `asset`, checking `balance = paid + free`.
fn split(app: &TestApp, user: &str, asset: &str) -> (i64, i64, i64) {
    let data = ok(app.get(&format!("/wallets/{user}/balance")), 200);
    let row = data["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == asset)
        .unwrap_or_else(|| panic!("no {asset} row in {data}"))
        .clone();
    let (balance, paid, free) = (
        row["balance"].as_i64().unwrap(),
        row["paid"].as_i64().unwrap(),
        row["free"].as_i64().unwrap(),
    );
    assert_eq!(balance, paid + free, "{row}");
    assert_eq!(row["expiring"], json!([]), "{row}");
    (balance, paid, free)
}

fn entry(app: &TestApp, operation: &str, user: &str, amount: u64, key: &str) -> Value {
    ok(app.post_entry(operation, user, "GOLD", amount, key), 201)
}

fn transfer(app: &TestApp, from: &str, to: &str, amount: u64, key: &str) -> Value {
    ok(
        app.post(
            &format!("/wallets/{from}/transfer"),
            &json!({"to": to, "asset": "GOLD", "amount": amount, "idempotencyKey": key}),
        ),
        201,
    )
}

fn reverse(app: &TestApp, id: &str, amount: Option<u64>, key: &str) -> crate::helpers::ApiResponse {
    let mut body = json!({"idempotencyKey": key});
    if let Some(amount) = amount {
        body["amount"] = json!(amount);
    }
    app.post(&format!("/transactions/{id}/reverse"), &body)
}

/// Goal: a top-up credits the paid part and a bonus the free part; the
/// balance row, the supply and the Transaction tell them; a spend takes
/// free before paid by default, a transfer gives the recipient exactly the
/// parts it took, kind for kind.
#[test]
fn credits_have_kinds_spends_take_free_first_and_transfers_keep_kinds() {
    let app = TestApp::spawn();
    // Seeded: user_alice 1000 GOLD, bought.
    assert_eq!(split(&app, "user_alice", "GOLD"), (1000, 1000, 0));
    let bonus = entry(&app, "bonus", "user_alice", 30, "p-bonus");
    assert_eq!(parts(&bonus["transaction"]), vec![p("FREE", 30)]);
    let topup = entry(&app, "topup", "user_alice", 5, "p-topup");
    assert_eq!(parts(&topup["transaction"]), vec![p("PAID", 5)]);
    assert_eq!(split(&app, "user_alice", "GOLD"), (1035, 1005, 30));

    let spend = entry(&app, "spend", "user_alice", 50, "p-spend");
    assert_eq!(
        parts(&spend["transaction"]),
        vec![p("FREE", 30), p("PAID", 20)],
        "free first, then paid"
    );
    assert_eq!(split(&app, "user_alice", "GOLD"), (985, 985, 0));

    entry(&app, "bonus", "user_alice", 15, "p-bonus-2");
    let sent = transfer(&app, "user_alice", "user_carol", 40, "p-transfer");
    assert_eq!(
        parts(&sent["transaction"]),
        vec![p("FREE", 15), p("PAID", 25)]
    );
    assert_eq!(split(&app, "user_carol", "GOLD"), (40, 25, 15));
    // The recipient's side of the same entry tells the same parts.
    let carol = ok(app.get("/wallets/user_carol/transactions"), 200);
    assert_eq!(
        parts(&carol["items"][0]),
        vec![p("FREE", 15), p("PAID", 25)]
    );
    assert_eq!(carol["items"][0]["direction"], "CREDIT");

    // One entry whole, and the event feed, tell them too.
    let id = sent["transaction"]["id"].as_str().unwrap();
    let detail = ok(app.get(&format!("/transactions/{id}")), 200);
    assert_eq!(parts(&detail), vec![p("FREE", 15), p("PAID", 25)]);
    let events = ok(app.get("/events?limit=1000"), 200);
    let told: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["data"]["id"] == id)
        .collect();
    assert_eq!(told.len(), 2, "one event per side");
    for event in told {
        assert_eq!(parts(&event["data"]), vec![p("FREE", 15), p("PAID", 25)]);
    }

    // Supply: what users hold of each kind.
    let supply = ok(app.get("/assets/GOLD/supply"), 200);
    let (outstanding, paid, free) = (
        supply["outstanding"].as_i64().unwrap(),
        supply["paid"].as_i64().unwrap(),
        supply["free"].as_i64().unwrap(),
    );
    assert_eq!(outstanding, paid + free, "{supply}");
    let users = ["user_alice", "user_bob", "user_carol"];
    let sum = |pick: fn((i64, i64, i64)) -> i64| -> i64 {
        users
            .iter()
            .map(|user| pick(split(&app, user, "GOLD")))
            .sum()
    };
    assert_eq!(paid, sum(|(_, paid, _)| paid));
    assert_eq!(free, sum(|(_, _, free)| free));
    assert_eq!(supply["expired"], 0);
    assert_verify_passes(&app.db_path);
}

/// Goal: with `"spendOrder": "paid-first"` a debit takes paid before free;
/// set back to free-first, free first again. A replay answers the parts
/// the spend took then, whatever the order is now.
#[test]
fn the_asset_spend_order_decides_which_part_a_debit_takes_first() {
    let app = TestApp::spawn();
    entry(&app, "bonus", "user_bob", 100, "o-bonus");
    ok(
        app.put("/assets/GOLD/rules", &json!({"spendOrder": "paid-first"})),
        200,
    );
    let first = entry(&app, "spend", "user_bob", 520, "o-spend-1");
    assert_eq!(
        parts(&first["transaction"]),
        vec![p("PAID", 500), p("FREE", 20)]
    );
    ok(
        app.put("/assets/GOLD/rules", &json!({"spendOrder": "free-first"})),
        200,
    );
    let replay = app.post_entry("spend", "user_bob", "GOLD", 520, "o-spend-1");
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(
        parts(&replay.data()["transaction"]),
        vec![p("PAID", 500), p("FREE", 20)]
    );
    entry(&app, "topup", "user_bob", 10, "o-topup");
    let second = entry(&app, "spend", "user_bob", 85, "o-spend-2");
    assert_eq!(
        parts(&second["transaction"]),
        vec![p("FREE", 80), p("PAID", 5)]
    );
    assert_eq!(split(&app, "user_bob", "GOLD"), (5, 5, 0));
    assert_verify_passes(&app.db_path);
}

/// Goal: a reversal gives back the parts of the entry it reverses, the
/// part taken last first, a partial one continuing where the last stopped;
/// a chargeback takes first the part its top-up credited, then the rest in
/// spend order, and is refused only when the available balance is short; a
/// reversed transfer moves the same parts back.
#[test]
fn reversals_give_back_the_parts_they_undo_last_first() {
    let app = TestApp::spawn();
    entry(&app, "bonus", "user_alice", 30, "r-bonus");
    let spend = entry(&app, "spend", "user_alice", 50, "r-spend");
    assert_eq!(
        parts(&spend["transaction"]),
        vec![p("FREE", 30), p("PAID", 20)]
    );
    let spend_id = spend["transaction"]["id"].as_str().unwrap().to_owned();
    // A partial refund: the part taken last (paid) first.
    let first = ok(reverse(&app, &spend_id, Some(25), "r-refund-1"), 201);
    assert_eq!(
        parts(&first["transaction"]),
        vec![p("PAID", 20), p("FREE", 5)]
    );
    let rest = ok(reverse(&app, &spend_id, None, "r-refund-2"), 201);
    assert_eq!(parts(&rest["transaction"]), vec![p("FREE", 25)]);
    assert_eq!(split(&app, "user_alice", "GOLD"), (1030, 1000, 30));

    // A chargeback of a top-up takes its paid part first: with 40 paid
    // spent away it takes what paid is left, then free.
    let topup = entry(&app, "topup", "user_dave", 60, "r-topup");
    let topup_id = topup["transaction"]["id"].as_str().unwrap().to_owned();
    entry(&app, "bonus", "user_dave", 50, "r-dave-bonus");
    ok(
        app.put("/assets/GOLD/rules", &json!({"spendOrder": "paid-first"})),
        200,
    );
    entry(&app, "spend", "user_dave", 40, "r-dave-spend");
    assert_eq!(split(&app, "user_dave", "GOLD"), (70, 20, 50));
    let chargeback = ok(reverse(&app, &topup_id, None, "r-chargeback"), 201);
    assert_eq!(
        parts(&chargeback["transaction"]),
        vec![p("PAID", 20), p("FREE", 40)]
    );
    assert_eq!(split(&app, "user_dave", "GOLD"), (10, 0, 10));
    // A bonus reversed takes its free part; short of available money it
    // is refused, and nothing is written.
    let bonus = entry(&app, "bonus", "user_erin", 20, "r-erin-bonus");
    entry(&app, "spend", "user_erin", 15, "r-erin-spend");
    let refused = reverse(
        &app,
        bonus["transaction"]["id"].as_str().unwrap(),
        None,
        "r-erin-back",
    );
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "INSUFFICIENT_FUNDS");
    assert_eq!(split(&app, "user_erin", "GOLD"), (5, 0, 5));

    // A transfer reversed: the recipient gives back the parts it was given
    // (last first), and the sender gets those same parts.
    ok(
        app.put("/assets/GOLD/rules", &json!({"spendOrder": "free-first"})),
        200,
    );
    entry(&app, "bonus", "user_bob", 10, "r-bob-bonus");
    let sent = transfer(&app, "user_bob", "user_frank", 30, "r-transfer");
    assert_eq!(
        parts(&sent["transaction"]),
        vec![p("FREE", 10), p("PAID", 20)]
    );
    let back = ok(
        reverse(
            &app,
            sent["transaction"]["id"].as_str().unwrap(),
            Some(25),
            "r-transfer-back",
        ),
        201,
    );
    assert_eq!(
        parts(&back["transaction"]),
        vec![p("PAID", 20), p("FREE", 5)]
    );
    assert_eq!(split(&app, "user_frank", "GOLD"), (5, 0, 5));
    assert_eq!(split(&app, "user_bob", "GOLD"), (505, 500, 5));
    assert_verify_passes(&app.db_path);
}

/// Goal: a hold sets its parts aside in spend order, so a spend while it
/// is active takes other parts; its capture takes exactly the parts it set
/// aside (a partial one in spend order among them) and the rest goes back.
#[test]
fn a_hold_sets_its_parts_aside_and_its_capture_takes_exactly_those() {
    let app = TestApp::spawn();
    entry(&app, "bonus", "user_alice", 30, "h-bonus");
    let hold = ok(
        app.post(
            "/wallets/user_alice/holds",
            &json!({"asset": "GOLD", "amount": 40, "idempotencyKey": "h-hold"}),
        ),
        201,
    );
    // The hold set aside free 30 and paid 10: a spend now takes paid.
    let spend = entry(&app, "spend", "user_alice", 100, "h-spend");
    assert_eq!(parts(&spend["transaction"]), vec![p("PAID", 100)]);
    let hold_id = hold["hold"]["id"].as_str().unwrap();
    let capture = ok(
        app.post(
            &format!("/holds/{hold_id}/capture"),
            &json!({"idempotencyKey": "h-capture", "amount": 35}),
        ),
        201,
    );
    assert_eq!(
        parts(&capture["transaction"]),
        vec![p("FREE", 30), p("PAID", 5)]
    );
    assert_eq!(split(&app, "user_alice", "GOLD"), (895, 895, 0));

    // A void gives the parts back whole.
    entry(&app, "bonus", "user_bob", 20, "h-bob-bonus");
    let held = ok(
        app.post(
            "/wallets/user_bob/holds",
            &json!({"asset": "GOLD", "amount": 20, "idempotencyKey": "h-bob-hold"}),
        ),
        201,
    );
    let spend = entry(&app, "spend", "user_bob", 10, "h-bob-spend");
    assert_eq!(parts(&spend["transaction"]), vec![p("PAID", 10)]);
    let held_id = held["hold"]["id"].as_str().unwrap();
    ok(
        app.post(
            &format!("/holds/{held_id}/void"),
            &json!({"idempotencyKey": "h-bob-void"}),
        ),
        200,
    );
    let spend = entry(&app, "spend", "user_bob", 25, "h-bob-spend-2");
    assert_eq!(
        parts(&spend["transaction"]),
        vec![p("FREE", 20), p("PAID", 5)]
    );
    assert_verify_passes(&app.db_path);
}

/// Goal: a batch's operations each see the parts the earlier ones left,
/// and each transaction tells its own; a balance back in time tells the
/// parts as they stood.
#[test]
fn a_batch_sees_the_parts_earlier_operations_left_and_balances_back_in_time_tell_them() {
    let app = TestApp::spawn();
    // The instant of the seed's top-up: all of alice's GOLD then was paid.
    let history = ok(app.get("/wallets/user_alice/transactions?asset=GOLD"), 200);
    let at = history["items"][0]["createdAt"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let batch = ok(
        app.post(
            "/batch",
            &json!({"idempotencyKey": "b-1", "operations": [
                {"type": "bonus", "userId": "user_alice", "asset": "GOLD", "amount": 10},
                {"type": "spend", "userId": "user_alice", "asset": "GOLD", "amount": 15},
                {"type": "transfer", "userId": "user_alice", "to": "user_bob", "asset": "GOLD", "amount": 5},
            ]}),
        ),
        201,
    );
    let transactions = batch["transactions"].as_array().unwrap();
    assert_eq!(parts(&transactions[0]), vec![p("FREE", 10)]);
    assert_eq!(parts(&transactions[1]), vec![p("FREE", 10), p("PAID", 5)]);
    assert_eq!(parts(&transactions[2]), vec![p("PAID", 5)]);
    let then = ok(
        app.get(&format!("/wallets/user_alice/balance?at={at}")),
        200,
    );
    let gold = then["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == "GOLD")
        .unwrap();
    assert_eq!(
        (&gold["balance"], &gold["paid"], &gold["free"]),
        (&json!(1000), &json!(1000), &json!(0))
    );
    assert!(gold.get("expiring").is_none(), "{gold}");
    assert_eq!(split(&app, "user_alice", "GOLD"), (990, 990, 0));
    assert_verify_passes(&app.db_path);
}

/// A SQLite file as the version 5 release left it: the catalogue, ann's
/// top-up of 100 and bonus of 30, a spend of 50, a transfer of 40 to ben,
/// a partial reversal of that transfer (10), and a hold of 20 on ann still
/// HELD. Rows as version 5's writer wrote them (its triggers keep the
/// supply and the feed).
fn version_5_file(path: &std::path::Path) {
    const GOLD: &str = "6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a01";
    let conn = rusqlite::Connection::open(path).unwrap();
    for sql in [
        include_str!("../../schema.sql"),
        include_str!("../../migrations/002_api_keys.sql"),
        include_str!("../../migrations/003_engine.sql"),
        include_str!("../../migrations/004_holds.sql"),
        include_str!("../../migrations/005_watch.sql"),
    ] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 5).unwrap();
    conn.execute_batch(include_str!("../../seed.sql")).unwrap();
    let t: i64 = conn
        .query_row(
            "SELECT id FROM accounts WHERE owner_type = 'SYSTEM' AND asset_type_id = ?1",
            [GOLD],
            |row| row.get(0),
        )
        .unwrap();
    let at = 1_795_392_000_000_i64;
    let far = at + 10 * 365 * 86_400_000;
    conn.execute_batch(&format!(
        "INSERT INTO accounts (id, owner_type, owner_id, asset_type_id, created_at)
              VALUES (100, 'USER', 'ann', '{GOLD}', {at}), (101, 'USER', 'ben', '{GOLD}', {at});
         INSERT INTO idempotency_records (id, caller_id, key, request, entry_count, created_at)
              VALUES (1, 0, 'k1', '{{}}', 1, {at}), (2, 0, 'k2', '{{}}', 1, {at}),
                     (3, 0, 'k3', '{{}}', 1, {at}), (4, 0, 'k4', '{{}}', 1, {at}),
                     (5, 0, 'k5', '{{}}', 1, {at}), (6, 0, 'k6', '{{}}', 0, {at});
         INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                 credit_account_id, amount, request_id, reverses_seq, reversed_after, created_at)
              VALUES (1, '0190f0a0-0000-7000-8000-000000000001', 'TOPUP', '{GOLD}', {t}, 100, 100, 1, NULL, NULL, {at});
         INSERT INTO postings VALUES (100, 1, 100, 100), ({t}, 1, -100, -100);
         INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                 credit_account_id, amount, request_id, reverses_seq, reversed_after, created_at)
              VALUES (2, '0190f0a0-0000-7000-8000-000000000002', 'BONUS', '{GOLD}', {t}, 100, 30, 2, NULL, NULL, {at});
         INSERT INTO postings VALUES (100, 2, 30, 130), ({t}, 2, -30, -130);
         INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                 credit_account_id, amount, request_id, reverses_seq, reversed_after, created_at)
              VALUES (3, '0190f0a0-0000-7000-8000-000000000003', 'SPEND', '{GOLD}', 100, {t}, 50, 3, NULL, NULL, {at});
         INSERT INTO postings VALUES (100, 3, -50, 80), ({t}, 3, 50, -80);
         INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                 credit_account_id, amount, request_id, reverses_seq, reversed_after, created_at)
              VALUES (4, '0190f0a0-0000-7000-8000-000000000004', 'TRANSFER', '{GOLD}', 100, 101, 40, 4, NULL, NULL, {at});
         INSERT INTO postings VALUES (100, 4, -40, 40), (101, 4, 40, 40);
         INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                 credit_account_id, amount, request_id, reverses_seq, reversed_after, created_at)
              VALUES (5, '0190f0a0-0000-7000-8000-000000000005', 'REVERSAL', '{GOLD}', 101, 100, 10, 5, 4, 10, {at});
         INSERT INTO postings VALUES (101, 5, -10, 30), (100, 5, 10, 50);
         INSERT INTO holds (seq, id, account_id, user_id, asset_type_id, amount, status,
                            request_id, expires_at, created_at)
              VALUES (1, '0190f0a0-0000-7000-8000-0000000000a1', 100, 'ann', '{GOLD}', 20, 'HELD',
                      6, {far}, {at});"
    ))
    .unwrap();
}

/// Goal: an existing ledger migrates: every balance becomes paid or free
/// by the entries that made it (a top-up paid, a bonus free, a spend in
/// spend order, a transfer and its reversal by what they moved), a HELD
/// hold sets its parts aside, every old entry tells its parts, and
/// `wallet verify` recomputes them all.
#[test]
fn a_version_5_ledger_is_split_into_paid_and_free_by_the_entries_that_made_it() {
    if !sqlite_only("a SQLite file of an older release") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    version_5_file(&db_path);
    let db = db_path.to_str().unwrap();
    let (status, stdout, stderr) = run_wallet(&["migrate", "--db", db]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_verify_passes(&db_path);
    let app = TestApp::spawn_on(&db_path);
    // ann: topup 100 paid, bonus 30 free, spend 50 = free 30 + paid 20,
    // transfer 40 paid, reversal 10 paid back: 50 paid, nothing free.
    assert_eq!(split(&app, "ann", "GOLD"), (50, 50, 0));
    assert_eq!(split(&app, "ben", "GOLD"), (30, 30, 0));
    let history = ok(app.get("/wallets/ann/transactions"), 200);
    let told: Vec<Vec<(String, i64)>> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(parts)
        .collect();
    assert_eq!(
        told,
        vec![
            vec![p("PAID", 10)],
            vec![p("PAID", 40)],
            vec![p("FREE", 30), p("PAID", 20)],
            vec![p("FREE", 30)],
            vec![p("PAID", 100)],
        ]
    );
    let supply = ok(app.get("/assets/GOLD/supply"), 200);
    // The seed's two users are not in this file: ann and ben alone.
    assert_eq!((&supply["paid"], &supply["free"]), (&json!(80), &json!(0)));
    // The supply back in time reads the migrated history: every entry of
    // the file was made at one instant, so then is now.
    let then = ok(
        app.get("/assets/GOLD/supply?at=2026-11-23T00:00:00.000Z"),
        200,
    );
    let mut now = supply.clone();
    now.as_object_mut().unwrap().remove("held");
    now.as_object_mut().unwrap().remove("holders");
    assert_eq!(then, now);
    let before = ok(
        app.get("/assets/GOLD/supply?at=2026-11-22T23:59:59.999Z"),
        200,
    );
    assert_eq!(
        (&before["outstanding"], &before["asOf"]),
        (&json!(0), &json!(null))
    );
    // The hold set aside 20 paid: spending all that is available works,
    // and the next unit is refused.
    let spend = entry(&app, "spend", "ann", 30, "m-spend");
    assert_eq!(parts(&spend["transaction"]), vec![p("PAID", 30)]);
    let refused = app.post_spend("ann", "GOLD", 1, "m-spend-2");
    assert_eq!(refused.error_code(), "INSUFFICIENT_FUNDS");
    drop(app);
    assert_verify_passes(&db_path);
}

/// Goal: the supply as it stood at an instant (API.md: a report of unspent
/// paid currency on a set date): at the time of each write, `?at=` answers
/// exactly what the supply read right after that write answered (without
/// `held` and `holders`); before the asset's first entry every figure is 0;
/// a time in the future or not RFC 3339 is 400 naming `at`.
#[test]
fn the_supply_at_an_instant_is_what_it_was_then() {
    let app = TestApp::spawn();
    let created = app.post("/assets", &json!({"symbol": "GEMS", "name": "Gems"}));
    assert_eq!(created.status, 201, "{:?}", created.body);
    let empty = ok(
        app.get(&format!(
            "/assets/GEMS/supply?at={}",
            urlencode(created.data()["createdAt"].as_str().unwrap())
        )),
        200,
    );
    assert_eq!(
        empty,
        json!({"asset": "GEMS", "outstanding": 0, "paid": 0, "free": 0, "expired": 0,
               "issued": {"TOPUP": 0, "BONUS": 0}, "spent": 0, "reversed": 0, "asOf": null})
    );
    let gems = |operation: &str, user: &str, amount: u64, key: &str| {
        ok(app.post_entry(operation, user, "GEMS", amount, key), 201)
    };
    let mut snapshots: Vec<(String, Value, bool)> = Vec::new();
    let mut record = |answer: &Value, moves_supply: bool| {
        let at = answer["transaction"]["createdAt"]
            .as_str()
            .unwrap()
            .to_owned();
        std::thread::sleep(std::time::Duration::from_millis(3));
        snapshots.push((at, ok(app.get("/assets/GEMS/supply"), 200), moves_supply));
    };
    record(&gems("topup", "ann", 100, "s-1"), true);
    record(&gems("bonus", "ann", 40, "s-2"), true);
    let spend = gems("spend", "ann", 60, "s-3");
    record(&spend, true);
    let sent = ok(
        app.post(
            "/wallets/ann/transfer",
            &json!({"to": "ben", "asset": "GEMS", "amount": 30, "idempotencyKey": "s-4"}),
        ),
        201,
    );
    record(&sent, false);
    let refund = ok(
        reverse(
            &app,
            spend["transaction"]["id"].as_str().unwrap(),
            Some(25),
            "s-5",
        ),
        201,
    );
    record(&refund, true);
    let back = ok(
        reverse(
            &app,
            sent["transaction"]["id"].as_str().unwrap(),
            Some(10),
            "s-6",
        ),
        201,
    );
    record(&back, true);
    record(&gems("bonus", "ben", 7, "s-7"), true);
    for (at, then, moves_supply) in &snapshots {
        let mut expected = then.clone();
        let object = expected.as_object_mut().unwrap();
        object.remove("held");
        object.remove("holders");
        let mut answered = ok(
            app.get(&format!("/assets/GEMS/supply?at={}", urlencode(at))),
            200,
        );
        if !moves_supply {
            // A transfer moves no figure: asOf is the entry before it.
            assert!(
                answered["asOf"].as_str().unwrap() < at.as_str(),
                "{answered}"
            );
            answered["asOf"] = then["asOf"].clone();
        }
        assert_eq!(answered, expected, "at {at}");
    }
    // The last figures: what ann and ben hold of each kind.
    let last = &snapshots.last().unwrap().1;
    let (_, ann_paid, ann_free) = split_in(&app, "ann", "GEMS");
    let (_, ben_paid, ben_free) = split_in(&app, "ben", "GEMS");
    assert_eq!(last["paid"], json!(ann_paid + ben_paid));
    assert_eq!(last["free"], json!(ann_free + ben_free));

    for (at, problem) in [
        ("2999-01-01T00:00:00Z", "is in the future"),
        ("yesterday", "must be an RFC 3339 time"),
    ] {
        let refused = app.get(&format!("/assets/GEMS/supply?at={at}"));
        assert_eq!(refused.status, 400, "{:?}", refused.body);
        assert_eq!(refused.error_code(), "VALIDATION_ERROR");
        let fields = refused.body["error"]["details"]["fields"].to_string();
        assert!(
            fields.contains("\"at\"") && fields.contains(problem),
            "{fields}"
        );
    }
    let unknown = app.get("/assets/SILVER/supply?at=2020-01-01T00:00:00Z");
    assert_eq!(unknown.status, 404, "{:?}", unknown.body);
    let other = app.get("/assets/GEMS/supply?when=2020-01-01T00:00:00Z");
    assert_eq!(other.status, 400, "{:?}", other.body);
    assert_verify_passes(&app.db_path);
}

/// `split` for any asset.
fn split_in(app: &TestApp, user: &str, asset: &str) -> (i64, i64, i64) {
    split(app, user, asset)
}

/// A time as a query value: `+` of an offset would read as a space.
fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
