//! Holds over HTTP, on the real binary: every holds line of API.md, the
//! races the issue names (many holds against one balance, a capture against
//! a void, a capture against the expiry), replays, and `wallet verify`
//! after each.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crash::assert_verify_passes;
use crate::engine::history;
use crate::engine_concurrency::post_all_at_once;
use crate::helpers::{client_with_key, send, ApiResponse, TestApp};

fn hold(app: &TestApp, user: &str, amount: u64, key: &str, extra: Value) -> ApiResponse {
    let mut body = json!({"asset": "GOLD", "amount": amount, "idempotencyKey": key});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    app.post(&format!("/wallets/{user}/holds"), &body)
}

fn hold_id(response: &ApiResponse) -> String {
    assert_eq!(response.status, 201, "{:?}", response.body);
    response.data()["hold"]["id"].as_str().unwrap().to_owned()
}

fn gold_row(app: &TestApp, user: &str) -> Value {
    let response = app.get(&format!("/wallets/{user}/balance"));
    response.data()["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == "GOLD")
        .cloned()
        .expect("a GOLD row")
}

fn held_and_available(app: &TestApp, user: &str) -> (i64, i64, i64) {
    let row = gold_row(app, user);
    (
        row["balance"].as_i64().unwrap(),
        row["held"].as_i64().unwrap(),
        row["available"].as_i64().unwrap(),
    )
}

/// Goal: a hold sets money aside without moving it; a spend into held money
/// is refused with `available`; a partial capture posts one SPEND carrying
/// the hold's id and referenceId and releases the rest; the closed hold can
/// neither be voided nor captured again; history shows only the capture.
#[test]
fn a_hold_is_set_aside_captured_once_and_the_rest_released() {
    let app = TestApp::spawn();
    let made = hold(
        &app,
        "user_alice",
        300,
        "h-1",
        json!({"referenceId": "order-7", "note": "bid", "metadata": {"lot": "12"}}),
    );
    let id = hold_id(&made);
    let data = made.data();
    assert_eq!(data["balance"], 1000);
    assert_eq!(data["held"], 300);
    assert_eq!(data["available"], 700);
    assert_eq!(data["hold"]["status"], "HELD");
    assert_eq!(data["hold"]["userId"], "user_alice");
    assert_eq!(data["hold"]["capturedAmount"], 0);
    assert!(data["hold"]["capturedBy"].is_null());
    assert!(data["hold"]["closedAt"].is_null());
    assert_eq!(data["hold"]["idempotencyKey"], "h-1");
    assert_eq!(data["hold"]["metadata"], json!({"lot": "12"}));
    assert_eq!(held_and_available(&app, "user_alice"), (1000, 300, 700));
    // A hold writes no entry.
    assert_eq!(history(&app, "user_alice", "&asset=GOLD").len(), 1);

    let spend = app.post_spend("user_alice", "GOLD", 701, "s-1");
    assert_eq!(spend.status, 422);
    assert_eq!(spend.error_code(), "INSUFFICIENT_FUNDS");
    assert_eq!(
        spend.body["error"]["details"],
        json!({"balance": 1000, "available": 700, "requested": 701})
    );
    let transfer = app.post(
        "/wallets/user_alice/transfer",
        &json!({"to": "user_bob", "asset": "GOLD", "amount": 701, "idempotencyKey": "t-1"}),
    );
    assert_eq!(transfer.error_code(), "INSUFFICIENT_FUNDS");
    let spend = app.post_spend("user_alice", "GOLD", 700, "s-2");
    assert_eq!(spend.status, 201, "{:?}", spend.body);
    assert_eq!(spend.data()["balance"], 300);
    assert_eq!(spend.data()["available"], 0);

    let too_much = app.post(
        &format!("/holds/{id}/capture"),
        &json!({"amount": 301, "idempotencyKey": "c-0"}),
    );
    assert_eq!(too_much.status, 422);
    assert_eq!(too_much.error_code(), "CAPTURE_EXCEEDS_HOLD");
    assert_eq!(too_much.body["error"]["details"], json!({"held": 300}));

    let captured = app.post(
        &format!("/holds/{id}/capture"),
        &json!({"amount": 120, "idempotencyKey": "c-1", "note": "sold"}),
    );
    assert_eq!(captured.status, 201, "{:?}", captured.body);
    let data = captured.data();
    assert_eq!(data["hold"]["status"], "CAPTURED");
    assert_eq!(data["hold"]["capturedAmount"], 120);
    assert_eq!(data["hold"]["capturedBy"], data["transaction"]["id"]);
    assert!(data["hold"]["closedAt"].is_string());
    let transaction = &data["transaction"];
    assert_eq!(transaction["type"], "SPEND");
    assert_eq!(transaction["direction"], "DEBIT");
    assert_eq!(transaction["amount"], 120);
    assert_eq!(transaction["holdId"], json!(id));
    assert_eq!(transaction["referenceId"], "order-7");
    assert_eq!(transaction["note"], "sold");
    assert!(
        transaction["metadata"].is_null(),
        "the capture's own metadata"
    );
    assert_eq!(transaction["balanceAfter"], 180);
    assert_eq!(
        (&data["balance"], &data["held"], &data["available"]),
        (&json!(180), &json!(0), &json!(180))
    );
    assert_eq!(held_and_available(&app, "user_alice"), (180, 0, 180));

    for (path, key) in [("void", "v-1"), ("capture", "c-2")] {
        let again = app.post(
            &format!("/holds/{id}/{path}"),
            &json!({"idempotencyKey": key}),
        );
        assert_eq!(again.status, 409, "{path}: {:?}", again.body);
        assert_eq!(again.error_code(), "HOLD_NOT_ACTIVE");
        assert_eq!(
            again.body["error"]["details"],
            json!({"status": "CAPTURED"})
        );
    }
    let read = app.get(&format!("/holds/{id}"));
    assert_eq!(read.data()["status"], "CAPTURED");
    assert_eq!(read.data()["capturedBy"], data["transaction"]["id"]);
    let detail = app.get(&format!(
        "/transactions/{}",
        data["transaction"]["id"].as_str().unwrap()
    ));
    assert_eq!(detail.data()["holdId"], json!(id));
    let spends = history(&app, "user_alice", "&type=SPEND");
    assert_eq!(spends.len(), 2);
    assert_eq!(spends[0]["holdId"], json!(id));
    assert!(spends[1]["holdId"].is_null());
    assert_verify_passes(&app.db_path);
}

/// Goal: a capture `to` another user is a TRANSFER, a DEBIT from the hold's
/// user with the recipient as counterparty (whose account it opens); a
/// void releases the whole hold and writes no entry.
#[test]
fn a_capture_to_another_user_is_a_transfer_and_a_void_writes_nothing() {
    let app = TestApp::spawn();
    let id = hold_id(&hold(&app, "user_alice", 100, "h-1", json!({})));
    let captured = app.post(
        &format!("/holds/{id}/capture"),
        &json!({"to": "user_carol", "idempotencyKey": "c-1"}),
    );
    assert_eq!(captured.status, 201, "{:?}", captured.body);
    let transaction = &captured.data()["transaction"];
    assert_eq!(transaction["type"], "TRANSFER");
    assert_eq!(transaction["direction"], "DEBIT");
    assert_eq!(transaction["counterparty"], "user_carol");
    assert_eq!(transaction["amount"], 100, "the whole hold by default");
    assert_eq!(held_and_available(&app, "user_carol"), (100, 0, 100));
    let carol = history(&app, "user_carol", "");
    assert_eq!(carol[0]["direction"], "CREDIT");
    assert_eq!(carol[0]["holdId"], json!(id));

    let to_self = hold_id(&hold(&app, "user_alice", 10, "h-2", json!({})));
    let refused = app.post(
        &format!("/holds/{to_self}/capture"),
        &json!({"to": "user_alice", "idempotencyKey": "c-2"}),
    );
    assert_eq!(refused.status, 400);
    assert_eq!(refused.invalid_fields(), vec!["to"]);

    let entries_before = app.entry_count();
    let voided = app.post(
        &format!("/holds/{to_self}/void"),
        &json!({"idempotencyKey": "v-1"}),
    );
    assert_eq!(voided.status, 200, "{:?}", voided.body);
    assert_eq!(voided.data()["hold"]["status"], "VOIDED");
    assert!(voided.data()["hold"]["closedAt"].is_string());
    assert_eq!(voided.data()["held"], 0);
    assert_eq!(voided.data()["available"], 900);
    assert_eq!(app.entry_count(), entries_before, "a void writes no entry");
    let again = app.post(
        &format!("/holds/{to_self}/void"),
        &json!({"idempotencyKey": "v-2"}),
    );
    assert_eq!(again.error_code(), "HOLD_NOT_ACTIVE");
    assert_eq!(again.body["error"]["details"], json!({"status": "VOIDED"}));
    assert_verify_passes(&app.db_path);
}

/// Goal: replayed holds, captures and voids return the original answer
/// whole (the hold as it was then, the balances as they were then), with
/// `Idempotent-Replayed: true`; the same key for another request is
/// IDEMPOTENCY_KEY_REUSED naming the fields; a refused capture does not
/// consume its key.
#[test]
fn replayed_holds_captures_and_voids_return_the_original_answer() {
    let app = TestApp::spawn();
    let made = hold(
        &app,
        "user_alice",
        200,
        "h-1",
        json!({"expiresInSeconds": 600}),
    );
    let id = hold_id(&made);
    let refused = app.post(
        &format!("/holds/{id}/capture"),
        &json!({"amount": 201, "idempotencyKey": "c-1"}),
    );
    assert_eq!(refused.error_code(), "CAPTURE_EXCEEDS_HOLD");
    let captured = app.post(
        &format!("/holds/{id}/capture"),
        &json!({"amount": 50, "idempotencyKey": "c-1"}),
    );
    assert_eq!(
        captured.status, 201,
        "a refused capture does not consume its key"
    );
    app.post_spend("user_alice", "GOLD", 10, "s-1");

    let replayed = hold(
        &app,
        "user_alice",
        200,
        "h-1",
        json!({"expiresInSeconds": 600}),
    );
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.data(), made.data(), "the hold as it was made");
    let replayed = app.post(
        &format!("/holds/{id}/capture"),
        &json!({"amount": 50, "idempotencyKey": "c-1"}),
    );
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.data(), captured.data());

    let reused = hold(
        &app,
        "user_alice",
        200,
        "h-1",
        json!({"expiresInSeconds": 60}),
    );
    assert_eq!(reused.error_code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        reused.body["error"]["details"]["differing"],
        json!(["expiresInSeconds"])
    );
    let reused = app.post_spend("user_alice", "GOLD", 1, "c-1");
    assert_eq!(reused.error_code(), "IDEMPOTENCY_KEY_REUSED");

    let second = hold_id(&hold(&app, "user_bob", 20, "h-2", json!({})));
    let voided = app.post(
        &format!("/holds/{second}/void"),
        &json!({"idempotencyKey": "v-1"}),
    );
    assert_eq!(voided.status, 200);
    app.post_topup("user_bob", "GOLD", 5, "t-1");
    let replayed = app.post(
        &format!("/holds/{second}/void"),
        &json!({"idempotencyKey": "v-1"}),
    );
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.data(), voided.data(), "the balance as it was then");
    assert_verify_passes(&app.db_path);
}

/// Goal: a hold of 1 second is EXPIRED after it, everywhere (the hold, the
/// list's filter, the balance), closed at its expiresAt, its money
/// available again, whether or not the writer has recorded it; a capture
/// after it is 409 with status EXPIRED; and the writer records it within
/// seconds.
#[test]
fn a_hold_of_one_second_expires_and_its_money_is_available_again() {
    let app = TestApp::spawn();
    let made = hold(
        &app,
        "user_alice",
        400,
        "h-1",
        json!({"expiresInSeconds": 1}),
    );
    let id = hold_id(&made);
    let expires_at = made.data()["hold"]["expiresAt"].clone();
    assert_eq!(held_and_available(&app, "user_alice"), (1000, 400, 600));
    std::thread::sleep(Duration::from_millis(1_100));
    let read = app.get(&format!("/holds/{id}"));
    assert_eq!(read.data()["status"], "EXPIRED");
    assert_eq!(read.data()["closedAt"], expires_at);
    assert_eq!(held_and_available(&app, "user_alice"), (1000, 0, 1000));
    let late = app.post(
        &format!("/holds/{id}/capture"),
        &json!({"idempotencyKey": "c-1"}),
    );
    assert_eq!(late.status, 409);
    assert_eq!(late.body["error"]["details"], json!({"status": "EXPIRED"}));
    let expired = app.get("/wallets/user_alice/holds?status=EXPIRED");
    assert_eq!(expired.data()["items"].as_array().unwrap().len(), 1);
    let active = app.get("/wallets/user_alice/holds?status=HELD");
    assert_eq!(active.data()["items"], json!([]));
    // The whole balance spends: the expired hold counts nowhere.
    let spend = app.post_spend("user_alice", "GOLD", 1000, "s-1");
    assert_eq!(spend.status, 201, "{:?}", spend.body);
    // The writer records the expiry by itself (it sweeps every second):
    // the record is the feed's hold.expired event, written with it.
    let other = hold(&app, "user_bob", 50, "h-2", json!({"expiresInSeconds": 1}));
    let other_id = hold_id(&other);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let feed = app.get("/events?limit=1000");
        let recorded = feed.data()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| {
                event["type"] == "hold.expired" && event["data"]["id"] == other_id.as_str()
            });
        if recorded {
            break;
        }
        assert!(Instant::now() < deadline, "the expiry was never recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_verify_passes(&app.db_path);
}

/// Goal: 50 concurrent holds of 30 against 1000 available: exactly 33
/// succeed, the other 17 are INSUFFICIENT_FUNDS, 990 is held.
#[test]
fn fifty_concurrent_holds_of_30_against_1000_exactly_33_succeed() {
    let app = TestApp::spawn();
    let requests = (0..50)
        .map(|index| {
            (
                "/wallets/user_alice/holds".to_owned(),
                json!({"asset": "GOLD", "amount": 30, "idempotencyKey": format!("h-{index}")}),
            )
        })
        .collect();
    let answers = post_all_at_once(&app, requests);
    let created = answers.iter().filter(|answer| answer.status == 201).count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status == 422)
        .collect();
    assert_eq!(created, 33, "{answers:?}");
    assert_eq!(refused.len(), 17);
    for answer in refused {
        assert_eq!(answer.body["error"]["code"], "INSUFFICIENT_FUNDS");
        assert!(
            answer.body["error"]["details"]["available"]
                .as_i64()
                .unwrap()
                < 30
        );
    }
    assert_eq!(held_and_available(&app, "user_alice"), (1000, 990, 10));
    assert_verify_passes(&app.db_path);
}

/// Goal: a capture and a void of the same hold sent at once, on 20 holds:
/// each hold has exactly one winner, the other gets 409 HOLD_NOT_ACTIVE
/// naming the winner's status, and the balance is what the captures took.
#[test]
fn a_capture_and_a_void_sent_at_once_have_exactly_one_winner() {
    let app = TestApp::spawn();
    let ids: Vec<String> = (0..20)
        .map(|index| {
            hold_id(&hold(
                &app,
                "user_alice",
                10,
                &format!("h-{index}"),
                json!({}),
            ))
        })
        .collect();
    let mut requests = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        requests.push((
            format!("/holds/{id}/capture"),
            json!({"idempotencyKey": format!("c-{index}")}),
        ));
        requests.push((
            format!("/holds/{id}/void"),
            json!({"idempotencyKey": format!("v-{index}")}),
        ));
    }
    let answers = post_all_at_once(&app, requests);
    let mut captured = 0;
    for pair in answers.chunks(2) {
        let (capture, void) = (&pair[0], &pair[1]);
        match (capture.status, void.status) {
            (201, 409) => {
                captured += 1;
                assert_eq!(void.body["error"]["details"]["status"], "CAPTURED");
            }
            (409, 200) => {
                assert_eq!(capture.body["error"]["details"]["status"], "VOIDED");
            }
            other => panic!("not exactly one winner: {other:?} {pair:?}"),
        }
    }
    assert_eq!(
        held_and_available(&app, "user_alice"),
        (1000 - 10 * captured, 0, 1000 - 10 * captured)
    );
    assert_verify_passes(&app.db_path);
}

/// Goal: captures racing their holds' expiry: each is either captured
/// before `expiresAt` (closedAt earlier) or refused 409 EXPIRED, never
/// both, and the ledger agrees.
#[test]
fn a_capture_racing_the_expiry_either_wins_before_it_or_finds_it_expired() {
    let app = TestApp::spawn();
    let holds: Vec<(String, String)> = (0..20)
        .map(|index| {
            let made = hold(
                &app,
                "user_alice",
                5,
                &format!("h-{index}"),
                json!({"expiresInSeconds": 1}),
            );
            (
                hold_id(&made),
                made.data()["hold"]["expiresAt"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    // Sent close to the expiry, spread across it.
    std::thread::sleep(Duration::from_millis(900));
    let requests = holds
        .iter()
        .enumerate()
        .map(|(index, (id, _))| {
            (
                format!("/holds/{id}/capture"),
                json!({"idempotencyKey": format!("c-{index}")}),
            )
        })
        .collect();
    let answers = post_all_at_once(&app, requests);
    let mut captured = 0;
    for (answer, (id, expires_at)) in answers.iter().zip(&holds) {
        let read = app.get(&format!("/holds/{id}"));
        match answer.status {
            201 => {
                captured += 1;
                let closed_at = answer.body["data"]["hold"]["closedAt"].as_str().unwrap();
                assert!(
                    closed_at < expires_at.as_str(),
                    "{closed_at} vs {expires_at}"
                );
                assert_eq!(read.data()["status"], "CAPTURED");
            }
            409 => {
                assert_eq!(answer.body["error"]["details"]["status"], "EXPIRED");
                assert_eq!(read.data()["status"], "EXPIRED");
            }
            other => panic!("{other}: {:?}", answer.body),
        }
    }
    assert_eq!(
        held_and_available(&app, "user_alice"),
        (1000 - 5 * captured, 0, 1000 - 5 * captured)
    );
    assert_verify_passes(&app.db_path);
}

/// Goal: every bad input of the holds routes is a 400 naming its field;
/// unknown holds are 404; the 1001st active hold on one account is
/// TOO_MANY_HOLDS, and a balance read with 1000 active holds counts them.
#[test]
fn holds_refuse_bad_input_unknown_holds_and_the_1001st_active_hold() {
    let app = TestApp::spawn();
    for (extra, field) in [
        (json!({"expiresInSeconds": 0}), "expiresInSeconds"),
        (json!({"expiresInSeconds": 604_801}), "expiresInSeconds"),
        (json!({"expiresInSeconds": "60"}), "expiresInSeconds"),
        (json!({"color": "red"}), "color"),
    ] {
        let refused = hold(&app, "user_alice", 1, "bad", extra);
        assert_eq!(refused.status, 400, "{:?}", refused.body);
        assert_eq!(refused.invalid_fields(), vec![field]);
    }
    let refused = hold(&app, "nobody", 1, "h-x", json!({}));
    assert_eq!(refused.error_code(), "WALLET_NOT_FOUND");
    let unknown = "0190f0a0-0000-7000-8000-000000000001";
    for (path, body) in [
        (
            format!("/holds/{unknown}/capture"),
            json!({"idempotencyKey": "c"}),
        ),
        (
            format!("/holds/{unknown}/void"),
            json!({"idempotencyKey": "v"}),
        ),
    ] {
        let missing = app.post(&path, &body);
        assert_eq!(missing.status, 404);
        assert_eq!(missing.error_code(), "HOLD_NOT_FOUND");
    }
    assert_eq!(
        app.get(&format!("/holds/{unknown}")).error_code(),
        "HOLD_NOT_FOUND"
    );
    let bad = app.get("/holds/not-a-uuid");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.invalid_fields(), vec!["holdId"]);
    let id = hold_id(&hold(&app, "user_alice", 1, "h-0", json!({})));
    let refused = app.post(
        &format!("/holds/{id}/capture"),
        &json!({"idempotencyKey": "c", "referenceId": "mine"}),
    );
    assert_eq!(refused.invalid_fields(), vec!["referenceId"]);
    let refused = app.post(&format!("/holds/{id}/void"), &json!({}));
    assert_eq!(refused.invalid_fields(), vec!["idempotencyKey"]);
    for query in [
        "status=OPEN",
        "limit=0",
        "asset=NOPE",
        "cursor=zz",
        "colour=red",
    ] {
        let refused = app.get(&format!("/wallets/user_alice/holds?{query}"));
        assert_eq!(refused.status, 400, "{query}: {:?}", refused.body);
    }
    assert_eq!(
        app.get("/wallets/nobody/holds").error_code(),
        "WALLET_NOT_FOUND"
    );

    for index in 1..1000 {
        let made = hold(&app, "user_alice", 1, &format!("h-{index}"), json!({}));
        assert_eq!(made.status, 201, "hold {index}: {:?}", made.body);
    }
    let refused = hold(&app, "user_alice", 1, "h-1000", json!({}));
    assert_eq!(refused.status, 422);
    assert_eq!(refused.error_code(), "TOO_MANY_HOLDS");
    assert_eq!(held_and_available(&app, "user_alice"), (1000, 1000, 0));
    // Another asset is another account.
    let diamonds = app.post(
        "/wallets/user_alice/holds",
        &json!({"asset": "DIAMOND", "amount": 1, "idempotencyKey": "d-1"}),
    );
    assert_eq!(diamonds.status, 201);
    // Pages of the list: newest first, every hold once.
    let mut seen = std::collections::BTreeSet::new();
    // Empty on the first page: an empty `cursor=` is refused.
    let mut cursor = String::new();
    loop {
        let page = app.get(&format!(
            "/wallets/user_alice/holds?asset=GOLD&limit=200{cursor}"
        ));
        let data = page.data();
        for item in data["items"].as_array().unwrap() {
            assert!(seen.insert(item["id"].as_str().unwrap().to_owned()));
        }
        match data["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1000);
    assert_verify_passes(&app.db_path);
}

/// Goal: the holds routes ask for API.md's scopes: `spend` to hold, capture
/// and void; `read` to look.
#[test]
fn holds_need_spend_to_write_and_read_to_look() {
    let (app, keys) = TestApp::spawn_with_keys(&[("reader", "read"), ("game", "read,spend")], &[]);
    let reader = client_with_key(Some(&keys[0]));
    let game = client_with_key(Some(&keys[1]));
    let body = json!({"asset": "GOLD", "amount": 5, "idempotencyKey": "h-1"});
    let refused = send(
        reader
            .post(app.url("/wallets/user_alice/holds"))
            .json(&body),
    );
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["error"]["details"]["requiredScope"], "spend");
    let made = send(game.post(app.url("/wallets/user_alice/holds")).json(&body));
    let id = hold_id(&made);
    let read = send(reader.get(app.url(&format!("/holds/{id}"))));
    assert_eq!(read.status, 200);
    let list = send(reader.get(app.url("/wallets/user_alice/holds")));
    assert_eq!(list.data()["items"].as_array().unwrap().len(), 1);
    let refused = send(
        reader
            .post(app.url(&format!("/holds/{id}/void")))
            .json(&json!({"idempotencyKey": "v"})),
    );
    assert_eq!(refused.status, 403);
}
