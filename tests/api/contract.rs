//! The HTTP contract of API.md: the read endpoints, the three writes and their
//! errors, the envelope on every failure (actix's own included), body limits
//! and media types, and request ids. Run with an `admin` API key configured,
//! as a deployment runs; the other modules run the service open, without keys.

use std::collections::BTreeSet;
use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::blocking::Body;
use reqwest::Method;
use serde_json::{json, Value};
use time::macros::format_description;
use time::OffsetDateTime;

use crate::helpers::{post_text, send, ApiResponse, TestApp, SEED_ENTRIES, TRANSACTION_FIELDS};

/// API.md: the largest amount, 2^53 - 1.
const AMOUNT_MAX: u64 = 9_007_199_254_740_991;
/// API.md: request bodies are at most 16 KiB.
const BODY_BYTES_MAX: usize = 16 * 1024;

// ---------------------------------------------------------------------------
// Helpers of this file.

fn object_keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value:?}"))
        .keys()
        .cloned()
        .collect()
}

fn key_set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|key| (*key).to_owned()).collect()
}

/// `value` without the named keys, to compare the rest exactly.
fn without(value: &Value, keys: &[&str]) -> Value {
    let mut object = value.as_object().expect("an object").clone();
    for key in keys {
        object.remove(*key);
    }
    Value::Object(object)
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && uuid::Uuid::try_parse(text).is_ok()
}

/// `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`
fn is_timestamp(text: &str) -> bool {
    let pattern = b"dddd-dd-ddTdd:dd:dd.dddZ";
    text.len() == pattern.len()
        && text.bytes().zip(pattern).all(|(byte, want)| match want {
            b'd' => byte.is_ascii_digit(),
            other => byte == *other,
        })
}

/// Now, in the API's timestamp format. The format is fixed-width, so these
/// strings sort in time order.
fn now_timestamp() -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::now_utc().format(&format).unwrap()
}

/// Every field of a Transaction, and the formats of its id and time.
fn assert_transaction_shape(transaction: &Value) {
    assert_eq!(
        object_keys(transaction),
        key_set(&TRANSACTION_FIELDS),
        "{transaction:?}"
    );
    let id = transaction["id"].as_str().expect("id is a string");
    assert!(is_uuid(id), "id {id:?} is not a UUID");
    let created_at = transaction["createdAt"].as_str().expect("createdAt");
    assert!(is_timestamp(created_at), "createdAt {created_at:?}");
}

/// A failure in the envelope: status, code, a message and nothing else.
fn assert_failure(response: &ApiResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{:?}", response.body);
    assert_eq!(response.error_code(), code);
    assert_eq!(
        object_keys(&response.body),
        key_set(&["success", "data", "error"])
    );
    let error = &response.body["error"];
    let message = error["message"]
        .as_str()
        .expect("error.message is a string");
    assert!(!message.trim().is_empty());
    assert!(
        object_keys(error).is_subset(&key_set(&["code", "message", "details"])),
        "{error:?}"
    );
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "a {status} is served as {content_type:?}"
    );
    assert!(response.header("x-request-id").is_some());
}

/// A topup body with `padding` spaces after the opening brace: valid JSON of
/// any size we like.
fn padded_topup_body(key: &str, total_bytes: usize) -> String {
    let tail = format!(r#""asset":"GOLD","amount":5,"idempotencyKey":"{key}"}}"#);
    let padding = total_bytes - 1 - tail.len();
    let body = format!("{{{}{tail}", " ".repeat(padding));
    assert_eq!(body.len(), total_bytes);
    body
}

/// The server's log lines, waited for until one satisfies `wanted`.
fn wait_for_log_line(app: &TestApp, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = app.logs().into_iter().find(|line| wanted(line)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no such log line; the log:\n{}",
            app.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// GET /health and GET /assets

#[test]
fn health_reports_the_service_and_its_database_as_ok() {
    let app = TestApp::spawn_with_key();
    let response = app.get("/health");
    assert_eq!(response.status, 200);
    let data = response.data();
    assert_eq!(
        object_keys(data),
        key_set(&["status", "database", "version"])
    );
    assert_eq!(data["status"], "ok");
    assert_eq!(data["database"], "ok");
    let version = data["version"].as_str().expect("version is a string");
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "version {version:?} is not x.y.z");
    assert!(
        parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())),
        "version {version:?} is not x.y.z"
    );
}

#[test]
fn assets_are_listed_by_symbol_with_their_id_name_and_creation_time() {
    let app = TestApp::spawn_with_key();
    let response = app.get("/assets");
    assert_eq!(response.status, 200);
    let assets = response.data().as_array().expect("data is a list");
    let symbols_and_names: Vec<(&str, &str)> = assets
        .iter()
        .map(|asset| {
            (
                asset["symbol"].as_str().unwrap(),
                asset["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        symbols_and_names,
        [
            ("DIAMOND", "Diamonds"),
            ("GOLD", "Gold Coins"),
            ("LOYALTY", "Loyalty Points"),
        ]
    );
    let mut ids = BTreeSet::new();
    for asset in assets {
        assert_eq!(
            object_keys(asset),
            key_set(&["id", "symbol", "name", "decimals", "createdAt", "rules"])
        );
        let id = asset["id"].as_str().unwrap();
        assert!(is_uuid(id), "id {id:?} is not a UUID");
        ids.insert(id);
        let created_at = asset["createdAt"].as_str().unwrap();
        assert!(is_timestamp(created_at), "createdAt {created_at:?}");
    }
    assert_eq!(ids.len(), 3, "asset ids are distinct");
}

// ---------------------------------------------------------------------------
// GET /wallets/{userId}/balance

fn assert_balances(app: &TestApp, user: &str, expected: [(&str, &str, i64); 3]) {
    let response = app.get(&format!("/wallets/{user}/balance"));
    assert_eq!(response.status, 200, "{:?}", response.body);
    let expected_rows: Vec<Value> = expected
        .iter()
        .map(|(symbol, name, balance)| {
            json!({
                "asset": symbol,
                "assetTypeId": app.asset_id(symbol),
                "name": name,
                "balance": balance,
                "held": 0,
                "available": balance,
                // The seed's balances were bought.
                "paid": balance,
                "free": 0,
                "expiring": [],
            })
        })
        .collect();
    assert_eq!(
        *response.data(),
        json!({"userId": user, "balances": expected_rows})
    );
}

#[test]
fn alices_seeded_balances_are_one_row_per_asset_ordered_by_symbol() {
    let app = TestApp::spawn_with_key();
    assert_balances(
        &app,
        "user_alice",
        [
            ("DIAMOND", "Diamonds", 100),
            ("GOLD", "Gold Coins", 1000),
            ("LOYALTY", "Loyalty Points", 500),
        ],
    );
}

#[test]
fn bobs_seeded_balances_are_one_row_per_asset_ordered_by_symbol() {
    let app = TestApp::spawn_with_key();
    assert_balances(
        &app,
        "user_bob",
        [
            ("DIAMOND", "Diamonds", 25),
            ("GOLD", "Gold Coins", 500),
            ("LOYALTY", "Loyalty Points", 100),
        ],
    );
}

#[test]
fn a_user_with_an_account_in_one_asset_has_a_zero_row_for_each_other_asset() {
    let app = TestApp::spawn_with_key();
    assert_eq!(app.post_topup("carol", "DIAMOND", 7, "k-1").status, 201);
    assert_balances(
        &app,
        "carol",
        [
            ("DIAMOND", "Diamonds", 7),
            ("GOLD", "Gold Coins", 0),
            ("LOYALTY", "Loyalty Points", 0),
        ],
    );
}

#[test]
fn the_balance_of_a_user_with_no_account_is_wallet_not_found() {
    let app = TestApp::spawn_with_key();
    let response = app.get("/wallets/nobody/balance");
    assert_failure(&response, 404, "WALLET_NOT_FOUND");
}

// ---------------------------------------------------------------------------
// POST /wallets/{userId}/topup, /bonus, /spend: success

#[test]
fn a_topup_credits_the_user_and_answers_201_with_the_whole_transaction() {
    let app = TestApp::spawn_with_key();
    let before = now_timestamp();
    let response = app.post(
        "/wallets/user_alice/topup",
        &json!({
            "asset": "GOLD",
            "amount": 250,
            "idempotencyKey": "k-topup",
            "referenceId": "order-17",
            "note": "a gift"
        }),
    );
    let after = now_timestamp();
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.header("idempotent-replayed"), None);
    let data = response.data();
    assert_eq!(
        object_keys(data),
        key_set(&["transaction", "balance", "available"])
    );
    let transaction = &data["transaction"];
    assert_transaction_shape(transaction);
    assert_eq!(
        without(transaction, &["id", "createdAt"]),
        json!({
            "type": "TOPUP",
            "asset": "GOLD",
            "amount": 250,
            "direction": "CREDIT",
            "balanceAfter": 1250,
            "idempotencyKey": "k-topup",
            "referenceId": "order-17",
            "note": "a gift",
            "counterparty": null,
            "reverses": null,
            "holdId": null,
            "metadata": null,
            "parts": [{"kind": "PAID", "amount": 250}]
        })
    );
    let created_at = transaction["createdAt"].as_str().unwrap();
    assert!(
        before.as_str() <= created_at && created_at <= after.as_str(),
        "createdAt {created_at} is not between {before} and {after}"
    );
    assert_eq!(data["balance"], 1250);
    assert_eq!(app.balance("user_alice", "GOLD"), 1250);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
}

#[test]
fn a_bonus_credits_the_user_like_a_topup() {
    let app = TestApp::spawn_with_key();
    let response = app.post_bonus("user_bob", "LOYALTY", 40, "k-bonus");
    assert_eq!(response.status, 201, "{:?}", response.body);
    let data = response.data();
    assert_transaction_shape(&data["transaction"]);
    assert_eq!(
        without(&data["transaction"], &["id", "createdAt"]),
        json!({
            "type": "BONUS",
            "asset": "LOYALTY",
            "amount": 40,
            "direction": "CREDIT",
            "balanceAfter": 140,
            "idempotencyKey": "k-bonus",
            "referenceId": null,
            "note": null,
            "counterparty": null,
            "reverses": null,
            "holdId": null,
            "metadata": null,
            "parts": [{"kind": "FREE", "amount": 40}]
        })
    );
    assert_eq!(data["balance"], 140);
    assert_eq!(app.balance("user_bob", "LOYALTY"), 140);
}

#[test]
fn a_spend_debits_the_user_and_answers_with_the_balance_left() {
    let app = TestApp::spawn_with_key();
    let response = app.post(
        "/wallets/user_alice/spend",
        &json!({
            "asset": "GOLD",
            "amount": 300,
            "idempotencyKey": "k-spend",
            "referenceId": "item-sword",
            "note": null
        }),
    );
    assert_eq!(response.status, 201, "{:?}", response.body);
    let data = response.data();
    assert_transaction_shape(&data["transaction"]);
    assert_eq!(
        without(&data["transaction"], &["id", "createdAt"]),
        json!({
            "type": "SPEND",
            "asset": "GOLD",
            "amount": 300,
            "direction": "DEBIT",
            "balanceAfter": 700,
            "idempotencyKey": "k-spend",
            "referenceId": "item-sword",
            "note": null,
            "counterparty": null,
            "reverses": null,
            "holdId": null,
            "metadata": null,
            "parts": [{"kind": "PAID", "amount": 300}]
        })
    );
    assert_eq!(data["balance"], 700);
    assert_eq!(app.balance("user_alice", "GOLD"), 700);
    // The other assets did not move.
    assert_eq!(app.balance("user_alice", "DIAMOND"), 100);
    assert_eq!(app.balance("user_alice", "LOYALTY"), 500);
}

#[test]
fn a_spend_of_the_whole_balance_leaves_zero() {
    let app = TestApp::spawn_with_key();
    let response = app.post_spend("user_bob", "DIAMOND", 25, "k-1");
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.data()["balance"], 0);
    assert_eq!(response.data()["transaction"]["balanceAfter"], 0);
    assert_eq!(app.balance("user_bob", "DIAMOND"), 0);
}

#[test]
fn every_write_gets_its_own_transaction_id() {
    let app = TestApp::spawn_with_key();
    let ids: BTreeSet<String> = (0..5)
        .map(|n| {
            let response = app.post_topup("user_alice", "GOLD", 1, &format!("k-{n}"));
            assert_eq!(response.status, 201);
            response.data()["transaction"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 5);
}

#[test]
fn an_asset_named_by_its_id_works_like_its_symbol_and_is_answered_by_symbol() {
    let app = TestApp::spawn_with_key();
    let gold = app.asset_id("GOLD");
    let diamond = app.asset_id("DIAMOND");

    let topup = app.post_topup("user_alice", &gold, 10, "k-1");
    assert_eq!(topup.status, 201, "{:?}", topup.body);
    assert_eq!(topup.data()["transaction"]["asset"], "GOLD");
    assert_eq!(topup.data()["balance"], 1010);

    let bonus = app.post_bonus("user_alice", &diamond, 5, "k-2");
    assert_eq!(bonus.status, 201, "{:?}", bonus.body);
    assert_eq!(bonus.data()["transaction"]["asset"], "DIAMOND");
    assert_eq!(bonus.data()["balance"], 105);

    let spend = app.post_spend("user_alice", &gold, 1010, "k-3");
    assert_eq!(spend.status, 201, "{:?}", spend.body);
    assert_eq!(spend.data()["transaction"]["asset"], "GOLD");
    assert_eq!(spend.data()["balance"], 0);

    assert_eq!(app.balance("user_alice", "GOLD"), 0);
    assert_eq!(app.balance("user_alice", "DIAMOND"), 105);
}

#[test]
fn a_first_topup_opens_a_wallet_for_a_new_user() {
    let app = TestApp::spawn_with_key();
    assert_failure(&app.get("/wallets/dave/balance"), 404, "WALLET_NOT_FOUND");
    let response = app.post_topup("dave", "GOLD", 42, "k-1");
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.data()["transaction"]["balanceAfter"], 42);
    assert_eq!(response.data()["balance"], 42);
    assert_eq!(app.balance("dave", "GOLD"), 42);
    assert_eq!(app.balance("dave", "DIAMOND"), 0);
}

#[test]
fn a_first_bonus_opens_a_wallet_for_a_new_user() {
    let app = TestApp::spawn_with_key();
    let response = app.post_bonus("erin", "LOYALTY", 3, "k-1");
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.data()["balance"], 3);
    assert_eq!(app.balance("erin", "LOYALTY"), 3);
}

// ---------------------------------------------------------------------------
// POST: the ledger's refusals

#[test]
fn a_spend_of_one_more_than_the_balance_is_insufficient_funds_and_writes_nothing() {
    let app = TestApp::spawn_with_key();
    let response = app.post_spend("user_alice", "GOLD", 1001, "k-1");
    assert_failure(&response, 422, "INSUFFICIENT_FUNDS");
    assert_eq!(
        response.body["error"]["details"],
        json!({"balance": 1000, "available": 1000, "requested": 1001})
    );
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}

#[test]
fn a_spend_in_an_asset_the_user_holds_no_account_in_is_insufficient_funds_with_balance_zero() {
    let app = TestApp::spawn_with_key();
    assert_eq!(app.post_topup("frank", "GOLD", 50, "k-1").status, 201);
    let response = app.post_spend("frank", "DIAMOND", 5, "k-2");
    assert_failure(&response, 422, "INSUFFICIENT_FUNDS");
    assert_eq!(
        response.body["error"]["details"],
        json!({"balance": 0, "available": 0, "requested": 5})
    );
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
    assert_eq!(app.balance("frank", "DIAMOND"), 0);
}

#[test]
fn a_spend_for_a_user_with_no_wallet_is_wallet_not_found_and_opens_nothing() {
    let app = TestApp::spawn_with_key();
    let response = app.post_spend("nobody", "GOLD", 1, "k-1");
    assert_failure(&response, 404, "WALLET_NOT_FOUND");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    assert_failure(&app.get("/wallets/nobody/balance"), 404, "WALLET_NOT_FOUND");
}

#[test]
fn an_unknown_asset_is_asset_not_found_for_every_write() {
    let app = TestApp::spawn_with_key();
    // A well-formed id that names no asset.
    let unknown_id = "00000000-0000-4000-8000-000000000000";
    let mut n = 0;
    for operation in ["topup", "bonus", "spend"] {
        for asset in ["SILVER", unknown_id] {
            n += 1;
            let response = app.post_entry(operation, "user_alice", asset, 1, &format!("k-{n}"));
            assert_failure(&response, 404, "ASSET_NOT_FOUND");
        }
    }
    // A new user is not given a wallet by a refused topup.
    assert_failure(
        &app.post_topup("gina", "SILVER", 1, "k-gina"),
        404,
        "ASSET_NOT_FOUND",
    );
    assert_failure(&app.get("/wallets/gina/balance"), 404, "WALLET_NOT_FOUND");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

/// Goal: no user's balance on the wire ever exceeds 2^53 - 1 (API.md,
/// Conventions): the credit that would take it past is BALANCE_OVERFLOW,
/// whether a topup, a bonus or a transfer in, and the one that reaches it
/// exactly is not.
#[test]
fn a_credit_past_two_to_the_53_minus_one_on_a_user_is_balance_overflow() {
    let app = TestApp::spawn_with_key();
    let max = i64::try_from(AMOUNT_MAX).unwrap();
    let first = app.post_topup("whale", "GOLD", AMOUNT_MAX - 10, "k-1");
    assert_eq!(first.status, 201, "{:?}", first.body);
    let entries = app.entry_count();
    assert_failure(
        &app.post_topup("whale", "GOLD", 11, "k-over"),
        422,
        "BALANCE_OVERFLOW",
    );
    assert_failure(
        &app.post_bonus("whale", "GOLD", 11, "k-over-bonus"),
        422,
        "BALANCE_OVERFLOW",
    );
    let transfer_in = app.post(
        "/wallets/user_alice/transfer",
        &json!({"to": "whale", "asset": "GOLD", "amount": 11, "idempotencyKey": "k-over-transfer"}),
    );
    assert_failure(&transfer_in, 422, "BALANCE_OVERFLOW");
    assert_eq!(app.entry_count(), entries, "nothing was written");
    let exact = app.post_topup("whale", "GOLD", 10, "k-exact");
    assert_eq!(exact.status, 201, "{:?}", exact.body);
    assert_eq!(exact.data()["balance"], max);
    assert_failure(
        &app.post_topup("whale", "GOLD", 1, "k-one-more"),
        422,
        "BALANCE_OVERFLOW",
    );
    // Spending back makes room again.
    assert_eq!(app.post_spend("whale", "GOLD", 1, "k-spend").status, 201);
    assert_eq!(app.post_topup("whale", "GOLD", 1, "k-again").status, 201);
}

/// Goal: the Treasury stays within a signed 64-bit integer (API.md): the
/// first credit that would take it past i64::MIN is refused, the one just
/// before it is not. With M = 2^53 - 1 and 2^63 = 1024 * (M + 1), after
/// topups of M to 1023 users the GOLD Treasury is -1500 - 1023 M (the seed
/// issued 1500), which leaves it room for exactly M - 476 more.
#[test]
fn a_credit_past_what_a_64_bit_treasury_holds_is_balance_overflow() {
    if !crate::helpers::sqlite_only(
        "a Treasury bounded by 64 bits (PostgreSQL sums it in numeric, which never overflows)",
    ) {
        return;
    }
    let app = TestApp::spawn_with_key();
    let threads: u64 = 4;
    let topups: u64 = 1023;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let app = &app;
            scope.spawn(move || {
                for n in (thread..topups).step_by(threads as usize) {
                    let response = app.post_topup(
                        &format!("whale-{n}"),
                        "GOLD",
                        AMOUNT_MAX,
                        &format!("k-{n}"),
                    );
                    assert_eq!(response.status, 201, "{:?}", response.body);
                }
            });
        }
    });
    let entries = app.entry_count();
    assert_eq!(entries, SEED_ENTRIES + i64::try_from(topups).unwrap());

    let room = AMOUNT_MAX - 476;
    let refused = app.post_topup("last-whale", "GOLD", room + 1, "k-over");
    assert_failure(&refused, 422, "BALANCE_OVERFLOW");
    let refused = app.post_bonus("user_bob", "GOLD", room + 1, "k-over-bonus");
    assert_failure(&refused, 422, "BALANCE_OVERFLOW");
    assert_eq!(app.entry_count(), entries);

    let accepted = app.post_topup("last-whale", "GOLD", room, "k-last");
    assert_eq!(accepted.status, 201, "{:?}", accepted.body);

    // The Treasury is at i64::MIN now: not one more unit can be issued.
    let refused = app.post_topup("user_bob", "GOLD", 1, "k-one-more");
    assert_failure(&refused, 422, "BALANCE_OVERFLOW");
    assert_eq!(app.entry_count(), entries + 1);
    // Other assets are unaffected, and spending back makes room again.
    assert_eq!(
        app.post_topup("user_bob", "DIAMOND", 1, "k-diamond").status,
        201
    );
    assert_eq!(
        app.post_spend("last-whale", "GOLD", 1, "k-spend").status,
        201
    );
    assert_eq!(app.post_topup("user_bob", "GOLD", 1, "k-again").status, 201);
}

// ---------------------------------------------------------------------------
// The envelope on actix-level failures

#[test]
fn an_unknown_route_is_404_not_found_in_the_envelope() {
    let app = TestApp::spawn_with_key();
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/nope"),
        (Method::GET, "/wallets/user_alice"),
        (Method::GET, "/wallets/user_alice/balance/extra"),
        (Method::POST, "/wallets/user_alice/withdraw"),
        (Method::DELETE, "/assets/GOLD"),
    ] {
        let response = send(app.client.request(method.clone(), app.url(path)));
        assert_failure(&response, 404, "NOT_FOUND");
    }
}

#[test]
fn a_wrong_method_on_a_known_route_is_405_method_not_allowed_in_the_envelope() {
    let app = TestApp::spawn_with_key();
    for (method, path) in [
        (Method::POST, "/health"),
        (Method::DELETE, "/assets"),
        (Method::PUT, "/wallets/user_alice/balance"),
        (Method::POST, "/wallets/user_alice/transactions"),
        (Method::GET, "/wallets/user_alice/topup"),
        (Method::PATCH, "/wallets/user_alice/bonus"),
        (Method::DELETE, "/wallets/user_alice/spend"),
    ] {
        let response = send(app.client.request(method.clone(), app.url(path)));
        assert_failure(&response, 405, "METHOD_NOT_ALLOWED");
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

#[test]
fn a_body_of_16_kib_is_accepted_and_one_byte_more_is_413_payload_too_large() {
    let app = TestApp::spawn_with_key();
    let accepted = post_text(
        &app,
        "/wallets/user_alice/topup",
        padded_topup_body("k-max", BODY_BYTES_MAX),
    );
    assert_eq!(accepted.status, 201, "{:?}", accepted.body);

    let refused = post_text(
        &app,
        "/wallets/user_alice/topup",
        padded_topup_body("k-over", BODY_BYTES_MAX + 1),
    );
    assert_failure(&refused, 413, "PAYLOAD_TOO_LARGE");
    let refused = post_text(
        &app,
        "/wallets/user_alice/topup",
        padded_topup_body("k-far-over", 1024 * 1024),
    );
    assert_failure(&refused, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
    assert_eq!(app.balance("user_alice", "GOLD"), 1005);
}

#[test]
fn a_chunked_body_without_content_length_is_held_to_16_kib_too() {
    let app = TestApp::spawn_with_key();
    // A reader of unknown length is sent with Transfer-Encoding: chunked.
    let chunked = |text: String| Body::new(Cursor::new(text.into_bytes()));

    let accepted = post_text(
        &app,
        "/wallets/user_alice/topup",
        chunked(padded_topup_body("k-max", BODY_BYTES_MAX)),
    );
    assert_eq!(accepted.status, 201, "{:?}", accepted.body);

    let refused = post_text(
        &app,
        "/wallets/user_alice/topup",
        chunked(padded_topup_body("k-over", BODY_BYTES_MAX + 1)),
    );
    assert_failure(&refused, 413, "PAYLOAD_TOO_LARGE");
    let refused = post_text(
        &app,
        "/wallets/user_alice/topup",
        chunked(padded_topup_body("k-far-over", 256 * 1024)),
    );
    assert_failure(&refused, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
}

#[test]
fn a_body_not_sent_as_json_is_415_unsupported_media_type() {
    let app = TestApp::spawn_with_key();
    let body = r#"{"asset":"GOLD","amount":5,"idempotencyKey":"k-1"}"#;
    let url = app.url("/wallets/user_alice/topup");

    let no_content_type = send(app.client.post(&url).body(body));
    assert_failure(&no_content_type, 415, "UNSUPPORTED_MEDIA_TYPE");
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "text/json",
    ] {
        let response = send(
            app.client
                .post(&url)
                .header("content-type", content_type)
                .body(body),
        );
        assert_failure(&response, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

#[test]
fn json_with_a_charset_parameter_is_accepted() {
    let app = TestApp::spawn_with_key();
    let response = send(
        app.client
            .post(app.url("/wallets/user_alice/topup"))
            .header("content-type", "application/json; charset=utf-8")
            .body(r#"{"asset":"GOLD","amount":5,"idempotencyKey":"k-1"}"#),
    );
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(app.balance("user_alice", "GOLD"), 1005);
}

#[test]
fn a_body_that_is_not_valid_json_is_400_invalid_json() {
    let app = TestApp::spawn_with_key();
    for body in [
        r#"{"asset": "GOLD", "amount": 5,"#,
        r#"{"asset": "GOLD", "amount": 5, "idempotencyKey": "k-1"} trailing"#,
        r#"{asset: "GOLD"}"#,
        r#"{'asset': 'GOLD'}"#,
        "not json at all",
    ] {
        let response = post_text(&app, "/wallets/user_alice/topup", body);
        assert_failure(&response, 400, "INVALID_JSON");
    }
    // API.md: JSON in is UTF-8.
    let not_utf8 = b"{\"asset\": \"GOLD\", \"amount\": 5, \"idempotencyKey\": \"k-\xff\"}".to_vec();
    let response = post_text(&app, "/wallets/user_alice/topup", not_utf8);
    assert_failure(&response, 400, "INVALID_JSON");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

#[test]
fn a_json_body_that_is_not_an_object_is_400_invalid_json() {
    let app = TestApp::spawn_with_key();
    for body in [
        r#"[{"asset": "GOLD", "amount": 5, "idempotencyKey": "k-1"}]"#,
        r#""GOLD""#,
        "42",
        "true",
        "null",
    ] {
        let response = post_text(&app, "/wallets/user_alice/topup", body);
        assert_failure(&response, 400, "INVALID_JSON");
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

#[test]
fn an_empty_body_is_400_invalid_json() {
    let app = TestApp::spawn_with_key();
    for body in ["", "   \n"] {
        let response = post_text(&app, "/wallets/user_alice/spend", body);
        assert_failure(&response, 400, "INVALID_JSON");
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

#[test]
fn a_body_with_a_key_given_twice_is_400_invalid_json() {
    let app = TestApp::spawn_with_key();
    let response = post_text(
        &app,
        "/wallets/user_alice/topup",
        r#"{"asset": "GOLD", "amount": 1, "amount": 1000, "idempotencyKey": "k-1"}"#,
    );
    assert_failure(&response, 400, "INVALID_JSON");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}

/// Goal: a request that is not valid HTTP/1.1 framing (here a non-numeric
/// Content-Length) never reaches the service: the HTTP parser refuses it
/// with a bare 400 and closes the connection, nothing is written, and the
/// server goes on serving. actix-http answers these itself, before routing,
/// with no hook for a body, so they are the one exception to the envelope
/// (README, "API").
#[test]
fn a_request_with_malformed_http_framing_is_refused_and_the_server_serves_on() {
    let app = TestApp::spawn_with_key();
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"POST /wallets/user_alice/topup HTTP/1.1\r\nHost: wallet\r\n\
              Content-Type: application/json\r\nContent-Length: abc\r\n\
              Connection: close\r\n\r\n{\"asset\":\"GOLD\",\"amount\":5,\"idempotencyKey\":\"framing\"}",
        )
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    // Until the server closes the connection (or stops sending).
    while let Ok(read @ 1..) = stream.read(&mut buffer) {
        answer.extend_from_slice(&buffer[..read]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    assert_eq!(app.get("/health").status, 200);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}

// ---------------------------------------------------------------------------
// X-Request-Id

#[test]
fn a_callers_valid_request_id_is_echoed() {
    let app = TestApp::spawn_with_key();
    let longest: String = (0..128u8).map(|n| (b'!' + n % 94) as char).collect();
    for id in ["req-1", "a", "trace:42/abc~!", longest.as_str()] {
        let response = send(
            app.client
                .get(app.url("/health"))
                .header("x-request-id", id),
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-request-id"), Some(id));
    }
    // Errors echo it too.
    let response = send(
        app.client
            .get(app.url("/wallets/nobody/balance"))
            .header("x-request-id", "req-404"),
    );
    assert_failure(&response, 404, "WALLET_NOT_FOUND");
    assert_eq!(response.header("x-request-id"), Some("req-404"));
}

fn assert_fresh_request_id(id: Option<&str>) -> String {
    let id = id.expect("an X-Request-Id");
    assert!(
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "a fresh id {id:?} is not 1-128 visible ASCII"
    );
    id.to_owned()
}

#[test]
fn a_fresh_request_id_is_given_when_the_caller_sends_none() {
    let app = TestApp::spawn_with_key();
    let first = assert_fresh_request_id(app.get("/health").header("x-request-id"));
    let second = assert_fresh_request_id(app.get("/health").header("x-request-id"));
    assert_ne!(first, second, "each request gets its own id");
}

#[test]
fn an_invalid_request_id_is_replaced_by_a_fresh_one() {
    let app = TestApp::spawn_with_key();
    let too_long = "r".repeat(129);
    for invalid in [too_long.as_str(), "has space", "tab\there"] {
        let response = send(
            app.client
                .get(app.url("/health"))
                .header("x-request-id", invalid),
        );
        assert_eq!(response.status, 200);
        let id = assert_fresh_request_id(response.header("x-request-id"));
        assert_ne!(id, invalid);
    }
    // Bytes beyond ASCII are not visible ASCII either.
    let response = send(app.client.get(app.url("/health")).header(
        "x-request-id",
        reqwest::header::HeaderValue::from_bytes("réq".as_bytes()).unwrap(),
    ));
    assert_eq!(response.status, 200);
    let id = assert_fresh_request_id(response.header("x-request-id"));
    assert_ne!(id.as_bytes(), "réq".as_bytes());
}

#[test]
fn the_access_log_line_carries_the_request_id_method_path_and_status() {
    let app = TestApp::spawn_with_key();
    let response = send(
        app.client
            .post(app.url("/wallets/user_alice/topup"))
            .header("x-request-id", "trace-topup-1")
            .json(&json!({"asset": "GOLD", "amount": 5, "idempotencyKey": "k-1"})),
    );
    assert_eq!(response.status, 201);
    let line = wait_for_log_line(&app, |line| line.contains("trace-topup-1"));
    for part in [" POST ", "/wallets/user_alice/topup", " 201"] {
        assert!(line.contains(part), "{part:?} is not in {line:?}");
    }

    // A fresh id is logged as well, with an error's status.
    let response = app.get("/wallets/nobody/balance");
    let id = response.header("x-request-id").expect("an id").to_owned();
    let line = wait_for_log_line(&app, |line| line.contains(&id));
    for part in [" GET ", "/wallets/nobody/balance", " 404"] {
        assert!(line.contains(part), "{part:?} is not in {line:?}");
    }

    // An invalid caller id is not logged as the id; the fresh one is.
    let response = send(
        app.client
            .get(app.url("/assets"))
            .header("x-request-id", "bad id"),
    );
    let id = response.header("x-request-id").expect("an id").to_owned();
    let line = wait_for_log_line(&app, |line| line.contains(&id));
    assert!(
        line.contains("/assets") && line.contains(" 200"),
        "{line:?}"
    );
}

#[test]
fn every_response_success_or_failure_carries_a_request_id() {
    let app = TestApp::spawn_with_key();
    let topup = json!({"asset": "GOLD", "amount": 5, "idempotencyKey": "k-1"});
    let responses = vec![
        app.get("/health"),
        app.get("/assets"),
        app.get("/wallets/user_alice/balance"),
        app.get("/wallets/user_alice/transactions"),
        app.post("/wallets/user_alice/topup", &topup),
        app.post("/wallets/user_alice/topup", &topup),
        app.post_topup("user_alice", "GOLD", 6, "k-1"),
        app.post_spend("user_alice", "GOLD", 1_000_000, "k-2"),
        app.post_topup("user_alice", "GOLD", 0, "k-3"),
        app.post_topup("user_alice", "SILVER", 1, "k-4"),
        app.get("/wallets/nobody/balance"),
        app.get("/no/such/route"),
        send(app.client.delete(app.url("/health"))),
        post_text(&app, "/wallets/user_alice/topup", "{"),
        send(
            app.client
                .post(app.url("/wallets/user_alice/topup"))
                .body("{}"),
        ),
        post_text(
            &app,
            "/wallets/user_alice/topup",
            padded_topup_body("k-5", BODY_BYTES_MAX + 1),
        ),
    ];
    let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 201, 200, 422, 422, 400, 404, 404, 404, 405, 400, 415, 413]
    );
    let ids: BTreeSet<String> = responses
        .iter()
        .map(|response| assert_fresh_request_id(response.header("x-request-id")))
        .collect();
    assert_eq!(ids.len(), responses.len(), "every request has its own id");
}

// ---------------------------------------------------------------------------
// The database out of reach

/// Goal: when another process holds SQLite's write lock for longer than the
/// service's busy timeout (5 s), a write is refused with 503
/// DATABASE_UNAVAILABLE and `Retry-After`, nothing is written, reads are still
/// served (WAL lets them run beside the lock), and the same request succeeds
/// with the same key once the lock is gone.
#[test]
fn a_write_blocked_past_the_busy_timeout_is_503_and_succeeds_on_retry() {
    if !crate::helpers::sqlite_only("SQLite's write lock held by another process") {
        return;
    }
    let app = TestApp::spawn_with_key();
    let blocker = rusqlite::Connection::open(&app.db_path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let blocked = app.post_topup("user_alice", "GOLD", 5, "blocked-write");
    assert_eq!(blocked.status, 503, "{:?}", blocked.body);
    assert_eq!(blocked.error_code(), "DATABASE_UNAVAILABLE");
    assert_eq!(blocked.header("retry-after"), Some("1"));
    // The cause goes to the log, with the request id; not to the client.
    let request_id = blocked.header("x-request-id").unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.logs().iter().any(|line| {
        line.contains(&request_id)
            && line.contains("failed with 503")
            && line.contains("rolled back")
    }) {
        assert!(
            Instant::now() < deadline,
            "no 503 cause logged: {:?}",
            app.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !blocked.body.to_string().contains("busy"),
        "{:?}",
        blocked.body
    );
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
    // Health reports the writer's last outcome: 503 while writes fail.
    assert_eq!(app.get("/health").status, 503);

    blocker.execute_batch("ROLLBACK").unwrap();
    let retried = app.post_topup("user_alice", "GOLD", 5, "blocked-write");
    assert_eq!(retried.status, 201, "{:?}", retried.body);
    assert_eq!(
        app.get("/health").status,
        200,
        "a write that succeeds clears it"
    );
    assert_eq!(retried.data()["balance"], 1005);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
}
