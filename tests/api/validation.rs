//! Input validation of API.md: amounts, user ids, idempotency keys,
//! referenceId, note and unknown fields. Every refusal is `400
//! VALIDATION_ERROR` naming the field in `details.fields`, lists every problem
//! at once, and writes nothing.

use reqwest::header::HeaderValue;
use serde_json::{json, Value};

use crate::helpers::{post_text, send, ApiResponse, TestApp, SEED_ENTRIES};

// ---------------------------------------------------------------------------
// Helpers of this file.

/// POSTs `body` as JSON with an `Idempotency-Key` header.
fn post_with_key_header(
    app: &TestApp,
    path: &str,
    key: impl TryInto<HeaderValue, Error: std::fmt::Debug>,
    body: &Value,
) -> ApiResponse {
    let key: HeaderValue = key.try_into().expect("a header value");
    send(
        app.client
            .post(app.url(path))
            .header("idempotency-key", key)
            .json(body),
    )
}

/// A 400 VALIDATION_ERROR whose `details.fields` names exactly `fields` (in any
/// order), each with a message; and the ledger still holds `entries` entries.
fn assert_refused(app: &TestApp, response: &ApiResponse, fields: &[&str], entries: i64) {
    assert_eq!(response.status, 400, "{:?}", response.body);
    assert_eq!(response.error_code(), "VALIDATION_ERROR");
    let listed = response.body["error"]["details"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no details.fields in {:?}", response.body));
    for item in listed {
        let message = item["message"].as_str().unwrap_or_default();
        assert!(!message.trim().is_empty(), "no message in {item:?}");
    }
    let mut named = response.invalid_fields();
    named.sort();
    let mut expected: Vec<String> = fields.iter().map(|field| (*field).to_owned()).collect();
    expected.sort();
    assert_eq!(named, expected, "{:?}", response.body);
    assert_eq!(app.entry_count(), entries, "a refused request wrote");
}

/// A refusal about the idempotency key. API.md does not say whether it is
/// named as the body field or the header, so either name is accepted.
fn assert_key_refused(app: &TestApp, response: &ApiResponse, entries: i64) {
    assert_eq!(response.status, 400, "{:?}", response.body);
    assert_eq!(response.error_code(), "VALIDATION_ERROR");
    let named = response.invalid_fields();
    assert_eq!(named.len(), 1, "{:?}", response.body);
    assert!(
        named[0] == "idempotencyKey" || named[0] == "Idempotency-Key",
        "{:?}",
        response.body
    );
    assert_eq!(app.entry_count(), entries, "a refused request wrote");
}

fn created(response: &ApiResponse) -> &Value {
    assert_eq!(response.status, 201, "{:?}", response.body);
    &response.data()["transaction"]
}

// ---------------------------------------------------------------------------
// Amounts

#[test]
fn each_invalid_amount_of_api_md_is_a_validation_error_naming_amount() {
    let app = TestApp::spawn();
    let amounts = [
        "10.5",
        r#""10""#,
        "0",
        "-3",
        "1e3",
        "1e400",
        "-1e400",
        "1E2",
        "null",
        "9007199254740992",
        "1.0",
        "-0",
        "18446744073709551616",
        "true",
        "[5]",
        "{}",
    ];
    let mut n = 0;
    for operation in ["topup", "bonus", "spend"] {
        for amount in amounts {
            n += 1;
            let body =
                format!(r#"{{"asset": "GOLD", "amount": {amount}, "idempotencyKey": "k-{n}"}}"#);
            let response = post_text(&app, &format!("/wallets/user_alice/{operation}"), body);
            assert_refused(&app, &response, &["amount"], SEED_ENTRIES);
        }
        n += 1;
        let missing = format!(r#"{{"asset": "GOLD", "idempotencyKey": "k-{n}"}}"#);
        let response = post_text(&app, &format!("/wallets/user_alice/{operation}"), missing);
        assert_refused(&app, &response, &["amount"], SEED_ENTRIES);
    }
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}

#[test]
fn the_largest_safe_integer_is_an_accepted_amount_and_one_is_too() {
    let app = TestApp::spawn();
    let largest =
        created(&app.post_topup("ivan", "GOLD", 9_007_199_254_740_991, "k-1"))["amount"].clone();
    assert_eq!(largest, json!(9_007_199_254_740_991_u64));
    assert_eq!(app.balance("ivan", "GOLD"), 9_007_199_254_740_991);
    let spend = created(&app.post_spend("ivan", "GOLD", 9_007_199_254_740_991, "k-2")).clone();
    assert_eq!(spend["amount"], 9_007_199_254_740_991_u64);
    assert_eq!(spend["balanceAfter"], 0);
    assert_eq!(
        created(&app.post_bonus("ivan", "GOLD", 1, "k-3"))["amount"],
        1
    );
    assert_eq!(app.balance("ivan", "GOLD"), 1);
}

// ---------------------------------------------------------------------------
// User ids

#[test]
fn a_user_id_of_128_allowed_characters_is_accepted() {
    let app = TestApp::spawn();
    let user: String = "Az09_.:@-".chars().cycle().take(128).collect();
    let transaction = created(&app.post_topup(&user, "GOLD", 5, "k-1")).clone();
    assert_eq!(transaction["balanceAfter"], 5);
    let balance = app.get(&format!("/wallets/{user}/balance"));
    assert_eq!(balance.status, 200, "{:?}", balance.body);
    assert_eq!(balance.data()["userId"], user.as_str());
    let history = app.get(&format!("/wallets/{user}/transactions"));
    assert_eq!(history.status, 200, "{:?}", history.body);
    assert_eq!(history.data()["items"][0], transaction);
}

#[test]
fn a_user_id_of_129_characters_is_a_validation_error() {
    let app = TestApp::spawn();
    let user = "u".repeat(129);
    let response = app.post_topup(&user, "GOLD", 5, "k-1");
    assert_refused(&app, &response, &["userId"], SEED_ENTRIES);
    for endpoint in ["balance", "transactions"] {
        let response = app.get(&format!("/wallets/{user}/{endpoint}"));
        assert_refused(&app, &response, &["userId"], SEED_ENTRIES);
    }
}

#[test]
fn a_user_id_with_a_character_outside_the_allowed_set_is_a_validation_error() {
    let app = TestApp::spawn();
    // As they appear in the URL: a space, a slash encoded as %2F, é, an
    // apostrophe (raw and encoded), a percent sign, and others.
    let users = [
        "a%20b",
        "a%2Fb",
        "a%2fb",
        "%C3%A9",
        "caf%C3%A9",
        "a'b",
        "a%27b",
        "a%25b",
        "a+b",
        "a~b",
        "a,b",
        "a$b",
        "a!b",
        "a%3Bb",
    ];
    let mut n = 0;
    for user in users {
        for operation in ["topup", "bonus", "spend"] {
            n += 1;
            let response = app.post_entry(operation, user, "GOLD", 5, &format!("k-{n}"));
            assert_refused(&app, &response, &["userId"], SEED_ENTRIES);
        }
        for endpoint in ["balance", "transactions"] {
            let response = app.get(&format!("/wallets/{user}/{endpoint}"));
            assert_refused(&app, &response, &["userId"], SEED_ENTRIES);
        }
    }
}

#[test]
fn a_user_id_written_raw_with_a_non_ascii_character_is_a_validation_error() {
    let app = TestApp::spawn();
    // The client percent-encodes `é` itself here.
    let response = app.post_topup("josé", "GOLD", 5, "k-1");
    assert_refused(&app, &response, &["userId"], SEED_ENTRIES);
    let response = app.get("/wallets/josé/balance");
    assert_refused(&app, &response, &["userId"], SEED_ENTRIES);
}

// ---------------------------------------------------------------------------
// Idempotency keys

#[test]
fn a_write_without_an_idempotency_key_is_a_validation_error() {
    let app = TestApp::spawn();
    for operation in ["topup", "bonus", "spend"] {
        let response = app.post(
            &format!("/wallets/user_alice/{operation}"),
            &json!({"asset": "GOLD", "amount": 5}),
        );
        assert_key_refused(&app, &response, SEED_ENTRIES);
        let response = app.post(
            &format!("/wallets/user_alice/{operation}"),
            &json!({"asset": "GOLD", "amount": 5, "idempotencyKey": null}),
        );
        assert_key_refused(&app, &response, SEED_ENTRIES);
    }
}

#[test]
fn a_key_given_only_as_the_header_is_used() {
    let app = TestApp::spawn();
    let response = post_with_key_header(
        &app,
        "/wallets/user_alice/topup",
        "header-key-1",
        &json!({"asset": "GOLD", "amount": 5}),
    );
    assert_eq!(created(&response)["idempotencyKey"], "header-key-1");
    assert_eq!(app.balance("user_alice", "GOLD"), 1005);
}

#[test]
fn a_key_given_only_in_the_body_is_used() {
    let app = TestApp::spawn();
    let response = app.post_spend("user_alice", "GOLD", 5, "body-key-1");
    assert_eq!(created(&response)["idempotencyKey"], "body-key-1");
    assert_eq!(app.balance("user_alice", "GOLD"), 995);
}

#[test]
fn the_same_key_in_header_and_body_is_accepted() {
    let app = TestApp::spawn();
    let response = post_with_key_header(
        &app,
        "/wallets/user_alice/bonus",
        "both-1",
        &json!({"asset": "GOLD", "amount": 5, "idempotencyKey": "both-1"}),
    );
    assert_eq!(created(&response)["idempotencyKey"], "both-1");
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
}

#[test]
fn different_keys_in_header_and_body_are_a_validation_error() {
    let app = TestApp::spawn();
    let response = post_with_key_header(
        &app,
        "/wallets/user_alice/topup",
        "header-key",
        &json!({"asset": "GOLD", "amount": 5, "idempotencyKey": "body-key"}),
    );
    assert_key_refused(&app, &response, SEED_ENTRIES);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}

#[test]
fn an_idempotency_key_of_255_characters_is_accepted_and_256_is_not() {
    let app = TestApp::spawn();
    let longest: String = (0..255u8).map(|n| (b'!' + n % 94) as char).collect();
    let response = app.post_topup("user_alice", "GOLD", 1, &longest);
    assert_eq!(created(&response)["idempotencyKey"], longest.as_str());

    let longest_header = "h".repeat(255);
    let response = post_with_key_header(
        &app,
        "/wallets/user_alice/topup",
        longest_header.as_str(),
        &json!({"asset": "GOLD", "amount": 1}),
    );
    assert_eq!(
        created(&response)["idempotencyKey"],
        longest_header.as_str()
    );

    let entries = SEED_ENTRIES + 2;
    let response = app.post_topup("user_alice", "GOLD", 1, &"b".repeat(256));
    assert_key_refused(&app, &response, entries);
    let response = post_with_key_header(
        &app,
        "/wallets/user_alice/topup",
        "h".repeat(256).as_str(),
        &json!({"asset": "GOLD", "amount": 1}),
    );
    assert_key_refused(&app, &response, entries);
}

#[test]
fn an_idempotency_key_outside_visible_ascii_is_a_validation_error() {
    let app = TestApp::spawn();
    for key in ["", "a b", "a\tb", "a\nb", "a\u{7f}b", "ключ", "café"] {
        let response = app.post_topup("user_alice", "GOLD", 1, key);
        assert_key_refused(&app, &response, SEED_ENTRIES);
    }
    let response = app.post(
        "/wallets/user_alice/topup",
        &json!({"asset": "GOLD", "amount": 1, "idempotencyKey": 42}),
    );
    assert_key_refused(&app, &response, SEED_ENTRIES);
    let headers = [
        HeaderValue::from_static("a b"),
        HeaderValue::from_static("a\tb"),
        HeaderValue::from_bytes("café".as_bytes()).unwrap(),
    ];
    for header in headers {
        let response = post_with_key_header(
            &app,
            "/wallets/user_alice/topup",
            header,
            &json!({"asset": "GOLD", "amount": 1}),
        );
        assert_key_refused(&app, &response, SEED_ENTRIES);
    }
}

// ---------------------------------------------------------------------------
// referenceId and note

fn post_with(app: &TestApp, key: &str, field: &str, value: Value) -> ApiResponse {
    let mut body = json!({"asset": "GOLD", "amount": 1, "idempotencyKey": key});
    body[field] = value;
    app.post("/wallets/user_alice/topup", &body)
}

#[test]
fn a_reference_id_of_255_characters_is_accepted_and_256_is_not() {
    let app = TestApp::spawn();
    let ascii = "r".repeat(255);
    let response = post_with(&app, "k-1", "referenceId", json!(ascii));
    assert_eq!(created(&response)["referenceId"], ascii.as_str());
    // Characters, not bytes: 255 two-byte characters fit.
    let accented = "é".repeat(255);
    let response = post_with(&app, "k-2", "referenceId", json!(accented));
    assert_eq!(created(&response)["referenceId"], accented.as_str());

    let entries = SEED_ENTRIES + 2;
    let response = post_with(&app, "k-3", "referenceId", json!("r".repeat(256)));
    assert_refused(&app, &response, &["referenceId"], entries);
    let response = post_with(&app, "k-4", "referenceId", json!("é".repeat(256)));
    assert_refused(&app, &response, &["referenceId"], entries);
    let response = post_with(&app, "k-5", "referenceId", json!(17));
    assert_refused(&app, &response, &["referenceId"], entries);
}

#[test]
fn a_note_of_1024_characters_is_accepted_and_1025_is_not() {
    let app = TestApp::spawn();
    let ascii = "n".repeat(1024);
    let response = post_with(&app, "k-1", "note", json!(ascii));
    assert_eq!(created(&response)["note"], ascii.as_str());
    let emoji = "😀".repeat(1024);
    let response = post_with(&app, "k-2", "note", json!(emoji));
    assert_eq!(created(&response)["note"], emoji.as_str());

    let entries = SEED_ENTRIES + 2;
    let response = post_with(&app, "k-3", "note", json!("n".repeat(1025)));
    assert_refused(&app, &response, &["note"], entries);
    let response = post_with(&app, "k-4", "note", json!("😀".repeat(1025)));
    assert_refused(&app, &response, &["note"], entries);
    let response = post_with(&app, "k-5", "note", json!({"text": "hi"}));
    assert_refused(&app, &response, &["note"], entries);
}

// ---------------------------------------------------------------------------
// The asset field, unknown fields, and several problems at once

#[test]
fn a_missing_or_non_string_asset_is_a_validation_error() {
    let app = TestApp::spawn();
    for (n, asset) in [
        None,
        Some(json!(null)),
        Some(json!(5)),
        Some(json!(["GOLD"])),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = json!({"amount": 1, "idempotencyKey": format!("k-{n}")});
        if let Some(asset) = asset {
            body["asset"] = asset;
        }
        let response = app.post("/wallets/user_alice/topup", &body);
        assert_refused(&app, &response, &["asset"], SEED_ENTRIES);
    }
}

#[test]
fn an_unknown_field_is_a_validation_error_naming_it() {
    let app = TestApp::spawn();
    let response = post_with(&app, "k-1", "ammount", json!(5));
    assert_refused(&app, &response, &["ammount"], SEED_ENTRIES);
    // Field names are case sensitive.
    let response = post_with(&app, "k-2", "Note", json!("hi"));
    assert_refused(&app, &response, &["Note"], SEED_ENTRIES);
    // The user comes from the path only.
    let response = post_with(&app, "k-3", "userId", json!("user_alice"));
    assert_refused(&app, &response, &["userId"], SEED_ENTRIES);
    let response = app.post(
        "/wallets/user_alice/spend",
        &json!({"asset": "GOLD", "amount": 1, "idempotencyKey": "k-4", "colour": "red", "size": 2}),
    );
    assert_refused(&app, &response, &["colour", "size"], SEED_ENTRIES);
}

#[test]
fn every_problem_in_a_request_is_listed_not_only_the_first() {
    let app = TestApp::spawn();
    let response = app.post(
        "/wallets/bad%20user/topup",
        &json!({
            "asset": 5,
            "amount": 0,
            "referenceId": "r".repeat(256),
            "note": "n".repeat(1025),
            "colour": "red"
        }),
    );
    assert_eq!(response.status, 400, "{:?}", response.body);
    assert_eq!(response.error_code(), "VALIDATION_ERROR");
    let mut named = response.invalid_fields();
    named.sort();
    let key_field = named
        .iter()
        .position(|field| field == "idempotencyKey" || field == "Idempotency-Key")
        .map(|index| named.remove(index));
    assert!(
        key_field.is_some(),
        "the missing key is not listed: {named:?}"
    );
    assert_eq!(
        named,
        ["amount", "asset", "colour", "note", "referenceId", "userId"],
        "{:?}",
        response.body
    );
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    // A new user's refused request opened no wallet.
    assert_eq!(app.get("/wallets/bad%20user/balance").status, 400);
}

#[test]
fn a_bad_key_header_and_a_bad_amount_are_both_listed() {
    let app = TestApp::spawn();
    let response = post_with_key_header(
        &app,
        "/wallets/user_alice/spend",
        "a b",
        &json!({"asset": "GOLD", "amount": -1}),
    );
    assert_eq!(response.status, 400, "{:?}", response.body);
    let named = response.invalid_fields();
    assert!(named.contains(&"amount".to_owned()), "{named:?}");
    assert!(
        named
            .iter()
            .any(|field| field == "Idempotency-Key" || field == "idempotencyKey"),
        "{named:?}"
    );
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

#[test]
fn an_invalid_key_in_both_header_and_body_is_reported_for_both() {
    let app = TestApp::spawn();
    let response = app
        .client
        .post(app.url("/wallets/user_alice/topup"))
        .header("Idempotency-Key", "has space")
        .header("Content-Type", "application/json")
        .body(r#"{"asset": "GOLD", "amount": 5, "idempotencyKey": ""}"#)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().unwrap();
    let mut fields: Vec<&str> = body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["Idempotency-Key", "idempotencyKey"], "{body}");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

/// Goal: a NUL character in a note, a reference or a metadata value is
/// `400 VALIDATION_ERROR` naming each field, and nothing is written, on
/// every backend (PostgreSQL's text and jsonb cannot hold one).
#[test]
fn a_nul_in_a_note_a_reference_or_a_metadata_value_is_refused_naming_each() {
    let app = TestApp::spawn();
    let before = app.entry_count();
    let response = app.post(
        "/wallets/user_alice/topup",
        &json!({"asset": "GOLD", "amount": 1, "idempotencyKey": "nul-1",
                "note": "a\u{0}b", "referenceId": "\u{0}", "metadata": {"k": "v\u{0}"}}),
    );
    assert_eq!(response.status, 400, "{:?}", response.body);
    assert_eq!(response.error_code(), "VALIDATION_ERROR");
    let mut fields = response.invalid_fields();
    fields.sort();
    assert_eq!(fields, ["metadata", "note", "referenceId"]);
    assert_eq!(app.entry_count(), before);
    let fine = app.post(
        "/wallets/user_alice/topup",
        &json!({"asset": "GOLD", "amount": 1, "idempotencyKey": "nul-2", "note": "tab\tok"}),
    );
    assert_eq!(fine.status, 201, "{:?}", fine.body);
}
