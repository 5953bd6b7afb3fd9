//! Idempotency of API.md: a retry with the same key and the same request
//! replays the original answer whole and writes nothing; the same key with a
//! different request is refused; a refused request leaves its key unused;
//! keys are unique across the whole ledger.

use serde_json::{json, Value};

use crate::helpers::{ApiResponse, TestApp, SEED_BALANCES, SEED_ENTRIES};

// ---------------------------------------------------------------------------
// Helpers of this file.

fn created(response: &ApiResponse) -> &Value {
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.header("idempotent-replayed"), None);
    response.data()
}

/// A replay: 200, `Idempotent-Replayed: true`, and exactly `original` as data.
fn assert_replay_of(response: &ApiResponse, original: &Value) {
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.header("idempotent-replayed"), Some("true"));
    assert_eq!(response.data(), original);
}

fn assert_key_reused(app: &TestApp, response: &ApiResponse, entries: i64) {
    assert_eq!(response.status, 422, "{:?}", response.body);
    assert_eq!(response.error_code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.entry_count(), entries, "a refused request wrote");
}

/// The original request of the "same key, different request" tests.
fn original_body() -> Value {
    json!({
        "asset": "GOLD",
        "amount": 10,
        "idempotencyKey": "k-original",
        "referenceId": "order-1",
        "note": "first"
    })
}

/// Posts the original topup for alice, then each changed request (path, body)
/// with the same key: refused, nothing written, and the original still replays.
fn assert_changed_request_is_refused(changes: impl Fn(&TestApp) -> Vec<(&'static str, Value)>) {
    let app = TestApp::spawn();
    let original = app.post("/wallets/user_alice/topup", &original_body());
    let original = created(&original).clone();
    let entries = SEED_ENTRIES + 1;
    for (path, changed) in changes(&app) {
        let response = app.post(path, &changed);
        assert_key_reused(&app, &response, entries);
    }
    assert_eq!(app.balance("user_alice", "GOLD"), 1010);
    let replay = app.post("/wallets/user_alice/topup", &original_body());
    assert_replay_of(&replay, &original);
}

fn original_with(field: &str, value: Value) -> Value {
    let mut body = original_body();
    if value.is_null() {
        body.as_object_mut().unwrap().remove(field);
    } else {
        body[field] = value;
    }
    body
}

// ---------------------------------------------------------------------------
// Replays

#[test]
fn a_retry_with_the_same_key_replays_the_original_answer_and_writes_nothing() {
    let app = TestApp::spawn();
    for (n, operation) in ["topup", "bonus", "spend"].into_iter().enumerate() {
        let path = format!("/wallets/user_alice/{operation}");
        let body = json!({
            "asset": "GOLD",
            "amount": 10,
            "idempotencyKey": format!("k-{operation}"),
            "referenceId": format!("ref-{operation}"),
            "note": "a note"
        });
        let original = app.post(&path, &body);
        let original = created(&original).clone();
        let entries = SEED_ENTRIES + 1 + i64::try_from(n).unwrap();
        assert_eq!(app.entry_count(), entries);
        for _ in 0..3 {
            let replay = app.post(&path, &body);
            assert_replay_of(&replay, &original);
        }
        assert_eq!(app.entry_count(), entries);
    }
    // 1000 + 10 + 10 - 10: each write counted once.
    assert_eq!(app.balance("user_alice", "GOLD"), 1010);
}

#[test]
fn a_replay_gives_the_balance_as_it_was_then_even_after_it_moved() {
    let app = TestApp::spawn();
    let topup = app.post_topup("user_bob", "GOLD", 100, "k-topup");
    let topup = created(&topup).clone();
    assert_eq!(topup["balance"], 600);
    let spend = app.post_spend("user_bob", "GOLD", 450, "k-spend");
    let spend = created(&spend).clone();
    assert_eq!(spend["balance"], 150);
    assert_eq!(app.post_bonus("user_bob", "GOLD", 7, "k-bonus").status, 201);
    let entries = app.entry_count();

    let replay = app.post_topup("user_bob", "GOLD", 100, "k-topup");
    assert_replay_of(&replay, &topup);
    assert_eq!(replay.data()["balance"], 600);
    assert_eq!(replay.data()["transaction"]["balanceAfter"], 600);
    let replay = app.post_spend("user_bob", "GOLD", 450, "k-spend");
    assert_replay_of(&replay, &spend);
    assert_eq!(replay.data()["balance"], 150);

    assert_eq!(app.entry_count(), entries);
    assert_eq!(app.balance("user_bob", "GOLD"), 157);
}

#[test]
fn a_replay_after_a_restart_returns_the_same_answer() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db_path = dir.path().join("wallet.db");
    let body = json!({
        "asset": "LOYALTY",
        "amount": 12,
        "idempotencyKey": "k-1",
        "referenceId": "order-5",
        "note": "before the restart"
    });
    let app = TestApp::spawn_on(&db_path);
    let original = app.post("/wallets/user_alice/bonus", &body);
    let original = created(&original).clone();
    assert!(app.terminate().success());

    let app = TestApp::spawn_on(&db_path);
    assert_replay_of(&app.post("/wallets/user_alice/bonus", &body), &original);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
    assert_eq!(app.balance("user_alice", "LOYALTY"), 512);
}

#[test]
fn a_replayed_spend_is_not_refused_although_the_balance_no_longer_covers_it() {
    let app = TestApp::spawn();
    let spend = app.post_spend("user_bob", "DIAMOND", 25, "k-spend");
    let spend = created(&spend).clone();
    assert_eq!(app.balance("user_bob", "DIAMOND"), 0);
    let replay = app.post_spend("user_bob", "DIAMOND", 25, "k-spend");
    assert_replay_of(&replay, &spend);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
}

#[test]
fn a_replayed_first_topup_of_a_new_user_replays_without_writing() {
    let app = TestApp::spawn();
    let original = app.post_topup("kim", "LOYALTY", 5, "k-1");
    let original = created(&original).clone();
    let replay = app.post_topup("kim", "LOYALTY", 5, "k-1");
    assert_replay_of(&replay, &original);
    assert_eq!(app.balance("kim", "LOYALTY"), 5);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
}

#[test]
fn an_asset_named_by_id_or_by_symbol_is_the_same_request() {
    let app = TestApp::spawn();
    let gold = app.asset_id("GOLD");
    let diamond = app.asset_id("DIAMOND");

    let by_symbol = app.post_topup("user_alice", "GOLD", 10, "k-1");
    let by_symbol = created(&by_symbol).clone();
    assert_replay_of(&app.post_topup("user_alice", &gold, 10, "k-1"), &by_symbol);

    let by_id = app.post_spend("user_alice", &diamond, 10, "k-2");
    let by_id = created(&by_id).clone();
    assert_replay_of(&app.post_spend("user_alice", "DIAMOND", 10, "k-2"), &by_id);
    assert_replay_of(&app.post_spend("user_alice", &diamond, 10, "k-2"), &by_id);

    assert_eq!(app.entry_count(), SEED_ENTRIES + 2);
}

#[test]
fn a_key_sent_as_the_header_and_retried_in_the_body_is_the_same_request() {
    let app = TestApp::spawn();
    let original = app
        .client
        .post(app.url("/wallets/user_alice/bonus"))
        .header("idempotency-key", "k-header")
        .json(&json!({"asset": "GOLD", "amount": 3}))
        .send()
        .expect("answered");
    assert_eq!(original.status().as_u16(), 201);
    let original: Value = original.json().expect("JSON");
    let replay = app.post_bonus("user_alice", "GOLD", 3, "k-header");
    assert_replay_of(&replay, &original["data"]);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
}

// ---------------------------------------------------------------------------
// The same key with a different request

#[test]
fn the_same_key_with_a_different_amount_is_idempotency_key_reused() {
    assert_changed_request_is_refused(|_| {
        vec![
            (
                "/wallets/user_alice/topup",
                original_with("amount", json!(11)),
            ),
            (
                "/wallets/user_alice/topup",
                original_with("amount", json!(9)),
            ),
        ]
    });
}

#[test]
fn the_same_key_for_a_different_user_is_idempotency_key_reused() {
    assert_changed_request_is_refused(|_| {
        vec![
            ("/wallets/user_bob/topup", original_body()),
            ("/wallets/someone_new/topup", original_body()),
        ]
    });
}

#[test]
fn the_same_key_for_a_different_operation_is_idempotency_key_reused() {
    assert_changed_request_is_refused(|_| {
        vec![
            ("/wallets/user_alice/bonus", original_body()),
            ("/wallets/user_alice/spend", original_body()),
        ]
    });
}

#[test]
fn the_same_key_for_a_different_asset_is_idempotency_key_reused() {
    assert_changed_request_is_refused(|app| {
        vec![
            (
                "/wallets/user_alice/topup",
                original_with("asset", json!("DIAMOND")),
            ),
            (
                "/wallets/user_alice/topup",
                original_with("asset", json!(app.asset_id("DIAMOND"))),
            ),
        ]
    });
}

#[test]
fn the_same_key_with_a_different_reference_id_is_idempotency_key_reused() {
    assert_changed_request_is_refused(|_| {
        vec![
            (
                "/wallets/user_alice/topup",
                original_with("referenceId", json!("order-2")),
            ),
            (
                "/wallets/user_alice/topup",
                original_with("referenceId", Value::Null),
            ),
        ]
    });
}

#[test]
fn the_same_key_with_a_different_note_is_idempotency_key_reused() {
    assert_changed_request_is_refused(|_| {
        vec![
            (
                "/wallets/user_alice/topup",
                original_with("note", json!("second")),
            ),
            (
                "/wallets/user_alice/topup",
                original_with("note", Value::Null),
            ),
        ]
    });
}

#[test]
fn the_same_key_adding_a_reference_id_or_note_the_original_lacked_is_idempotency_key_reused() {
    let app = TestApp::spawn();
    let original = app.post_topup("user_alice", "GOLD", 10, "k-plain");
    let original = created(&original).clone();
    for (field, value) in [("referenceId", "order-1"), ("note", "hello")] {
        let mut body = json!({"asset": "GOLD", "amount": 10, "idempotencyKey": "k-plain"});
        body[field] = json!(value);
        let response = app.post("/wallets/user_alice/topup", &body);
        assert_key_reused(&app, &response, SEED_ENTRIES + 1);
    }
    assert_replay_of(
        &app.post_topup("user_alice", "GOLD", 10, "k-plain"),
        &original,
    );
}

#[test]
fn keys_are_unique_across_the_whole_ledger() {
    let app = TestApp::spawn();
    assert_eq!(
        app.post_topup("user_alice", "GOLD", 10, "k-shared").status,
        201
    );
    let entries = SEED_ENTRIES + 1;
    assert_key_reused(
        &app,
        &app.post_topup("user_bob", "GOLD", 10, "k-shared"),
        entries,
    );
    assert_key_reused(
        &app,
        &app.post_bonus("user_bob", "LOYALTY", 1, "k-shared"),
        entries,
    );
    assert_key_reused(
        &app,
        &app.post_topup("lena", "DIAMOND", 1, "k-shared"),
        entries,
    );
    // The refused new user got no wallet.
    assert_eq!(app.get("/wallets/lena/balance").status, 404);
    assert_eq!(app.balance("user_bob", "GOLD"), 500);
}

#[test]
fn the_seed_entries_hold_their_keys() {
    let app = TestApp::spawn();
    // The seed's own request replays, with the balance as it was then.
    assert_eq!(
        app.post_spend("user_alice", "GOLD", 100, "k-spend").status,
        201
    );
    let replay = app.post_topup("user_alice", "GOLD", 1000, "seed:user_alice:GOLD");
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let data = replay.data();
    assert_eq!(data["balance"], 1000);
    assert_eq!(data["transaction"]["type"], "TOPUP");
    assert_eq!(data["transaction"]["amount"], 1000);
    assert_eq!(
        data["transaction"]["idempotencyKey"],
        "seed:user_alice:GOLD"
    );
    let entries = SEED_ENTRIES + 1;
    assert_eq!(app.entry_count(), entries);

    for (user, symbol, balance) in SEED_BALANCES {
        let amount = u64::try_from(balance).unwrap();
        let key = format!("seed:{user}:{symbol}");
        let response = app.post_topup(user, symbol, amount + 1, &key);
        assert_key_reused(&app, &response, entries);
        let response = app.post_topup("user_carol", symbol, amount, &key);
        assert_key_reused(&app, &response, entries);
    }
}

// ---------------------------------------------------------------------------
// A refused request does not consume its key

#[test]
fn a_spend_refused_for_insufficient_funds_can_be_retried_with_its_key() {
    let app = TestApp::spawn();
    let refused = app.post_spend("user_bob", "GOLD", 600, "k-spend");
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "INSUFFICIENT_FUNDS");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    // The same request again is still refused, not replayed.
    let refused = app.post_spend("user_bob", "GOLD", 600, "k-spend");
    assert_eq!(refused.error_code(), "INSUFFICIENT_FUNDS");

    assert_eq!(
        app.post_topup("user_bob", "GOLD", 100, "k-topup").status,
        201
    );
    let retried = app.post_spend("user_bob", "GOLD", 600, "k-spend");
    let retried = created(&retried).clone();
    assert_eq!(retried["balance"], 0);
    assert_eq!(retried["transaction"]["idempotencyKey"], "k-spend");
    assert_replay_of(
        &app.post_spend("user_bob", "GOLD", 600, "k-spend"),
        &retried,
    );
}

#[test]
fn a_request_refused_by_validation_can_be_retried_with_its_key() {
    let app = TestApp::spawn();
    let refused = app.post_topup("user_alice", "GOLD", 0, "k-1");
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    let refused = app.post(
        "/wallets/user_alice/topup",
        &json!({"asset": "GOLD", "amount": 5, "idempotencyKey": "k-1", "nope": 1}),
    );
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    let retried = app.post_topup("user_alice", "GOLD", 5, "k-1");
    assert_eq!(created(&retried)["balance"], 1005);
}

#[test]
fn a_spend_refused_for_an_unknown_wallet_can_be_retried_with_its_key() {
    let app = TestApp::spawn();
    let refused = app.post_spend("mona", "GOLD", 5, "k-spend");
    assert_eq!(refused.status, 404, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "WALLET_NOT_FOUND");
    assert_eq!(app.post_topup("mona", "GOLD", 5, "k-topup").status, 201);
    let retried = app.post_spend("mona", "GOLD", 5, "k-spend");
    assert_eq!(created(&retried)["balance"], 0);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 2);
}

#[test]
fn a_request_refused_for_an_unknown_asset_can_be_retried_with_its_key() {
    let app = TestApp::spawn();
    let refused = app.post_topup("user_alice", "SILVER", 5, "k-1");
    assert_eq!(refused.status, 404, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "ASSET_NOT_FOUND");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    let retried = app.post_topup("user_alice", "GOLD", 5, "k-1");
    assert_eq!(created(&retried)["transaction"]["asset"], "GOLD");
}

#[test]
fn a_key_refused_as_reused_stays_bound_to_its_original_request() {
    let app = TestApp::spawn();
    let original = app.post_topup("user_alice", "GOLD", 10, "k-1");
    let original = created(&original).clone();
    for _ in 0..2 {
        assert_key_reused(
            &app,
            &app.post_topup("user_alice", "GOLD", 20, "k-1"),
            SEED_ENTRIES + 1,
        );
    }
    assert_replay_of(&app.post_topup("user_alice", "GOLD", 10, "k-1"), &original);
}
