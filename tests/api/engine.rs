//! The ledger engine's routes of API.md (v2), over HTTP against the real
//! binary: own currencies (`POST /assets`, `decimals`), transfers,
//! reversals, one transaction whole (`GET /transactions/{id}`), atomic
//! batches and their per-operation scopes, `metadata` on every write, one
//! idempotency key per request across all routes (`details.differing`), the
//! `referenceId` history filter, the 2^53 - 1 cap on a user's balance, and
//! `held` = 0 / `available` = `balance` until holds exist.

use std::collections::BTreeSet;

use reqwest::blocking::Client;
use serde_json::{json, Map, Value};

use crate::crash::assert_verify_passes;
use crate::helpers::{client_with_key, post_text, send, ApiResponse, TestApp, TRANSACTION_FIELDS};

/// API.md: the largest amount, and the largest user balance, 2^53 - 1.
const AMOUNT_MAX: u64 = 9_007_199_254_740_991;
/// API.md: a batch body is at most 64 KiB.
const BATCH_BODY_BYTES_MAX: usize = 64 * 1024;
/// API.md: a batch holds 1-100 operations.
const BATCH_OPERATIONS_MAX: usize = 100;
/// API.md: at most 1000 asset types.
const ASSET_TYPES_MAX: usize = 1000;

/// API.md: the fields of `GET /transactions/{id}`.
const DETAIL_FIELDS: [&str; 15] = [
    "id",
    "type",
    "asset",
    "amount",
    "debit",
    "credit",
    "reverses",
    "reversedAmount",
    "holdId",
    "idempotencyKey",
    "referenceId",
    "note",
    "metadata",
    "createdAt",
    "parts",
];

// ---------------------------------------------------------------------------
// Helpers of this file (the concurrency tests use some of them too).

pub(crate) fn key_set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|key| (*key).to_owned()).collect()
}

pub(crate) fn object_keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value:?}"))
        .keys()
        .cloned()
        .collect()
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && uuid::Uuid::try_parse(text).is_ok()
}

/// A new write's answer: 201, not a replay; its `data`.
fn created(response: &ApiResponse) -> &Value {
    assert_eq!(response.status, 201, "{:?}", response.body);
    assert_eq!(response.header("idempotent-replayed"), None);
    response.data()
}

/// A replay: 200, `Idempotent-Replayed: true`, and exactly `original`.
fn assert_replay_of(response: &ApiResponse, original: &Value) {
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.header("idempotent-replayed"), Some("true"));
    assert_eq!(response.data(), original);
}

/// A failure with this status and code.
fn assert_error(response: &ApiResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{:?}", response.body);
    assert_eq!(response.error_code(), code, "{:?}", response.body);
}

/// A failure with this status, code and exactly these details.
fn assert_error_details(response: &ApiResponse, status: u16, code: &str, details: Value) {
    assert_error(response, status, code);
    assert_eq!(
        response.body["error"]["details"], details,
        "{:?}",
        response.body
    );
}

/// A 400 VALIDATION_ERROR whose `details.fields` names `field`.
fn assert_invalid(response: &ApiResponse, field: &str) {
    assert_error(response, 400, "VALIDATION_ERROR");
    let fields = response.invalid_fields();
    assert!(
        fields.iter().any(|named| named == field),
        "{field} is not among {fields:?}: {:?}",
        response.body
    );
}

/// `422 IDEMPOTENCY_KEY_REUSED` and its `details.differing`, as a list.
fn differing(response: &ApiResponse) -> Vec<String> {
    assert_error(response, 422, "IDEMPOTENCY_KEY_REUSED");
    response.body["error"]["details"]["differing"]
        .as_array()
        .unwrap_or_else(|| panic!("details.differing is not a list: {:?}", response.body))
        .iter()
        .map(|field| field.as_str().expect("a field name").to_owned())
        .collect()
}

/// Every field of a Transaction, exactly; holds do not exist, so `holdId`
/// is null.
fn assert_transaction_shape(transaction: &Value) {
    assert_eq!(
        object_keys(transaction),
        key_set(&TRANSACTION_FIELDS),
        "{transaction:?}"
    );
    assert!(is_uuid(transaction["id"].as_str().expect("an id")));
    assert_eq!(transaction["holdId"], Value::Null);
}

/// A write's answer, `{"transaction", "balance", "available"}` with
/// `available` = `balance` (no holds) and `balance` = the transaction's
/// `balanceAfter`; its transaction.
fn receipt(data: &Value) -> &Value {
    assert_eq!(
        object_keys(data),
        key_set(&["transaction", "balance", "available"]),
        "{data:?}"
    );
    assert!(data["balance"].is_i64(), "{data:?}");
    assert_eq!(data["available"], data["balance"], "{data:?}");
    assert_eq!(data["transaction"]["balanceAfter"], data["balance"]);
    assert_transaction_shape(&data["transaction"]);
    &data["transaction"]
}

/// `GET /transactions/{id}`, which must be found; its `data`.
fn detail(app: &TestApp, id: &Value) -> Value {
    let id = id.as_str().expect("an id");
    let response = app.get(&format!("/transactions/{id}"));
    assert_eq!(response.status, 200, "{:?}", response.body);
    let data = response.data().clone();
    assert_eq!(object_keys(&data), key_set(&DETAIL_FIELDS), "{data:?}");
    assert_eq!(data["id"], id);
    data
}

fn user_party(user: &str) -> Value {
    json!({"type": "USER", "userId": user})
}

fn treasury() -> Value {
    json!({"type": "TREASURY"})
}

fn post_transfer(
    app: &TestApp,
    from: &str,
    to: &str,
    asset: &str,
    amount: u64,
    key: &str,
) -> ApiResponse {
    app.post(
        &format!("/wallets/{from}/transfer"),
        &json!({"to": to, "asset": asset, "amount": amount, "idempotencyKey": key}),
    )
}

fn post_reverse(app: &TestApp, id: &Value, body: &Value) -> ApiResponse {
    let id = id.as_str().expect("an id");
    app.post(&format!("/transactions/{id}/reverse"), body)
}

fn post_batch(app: &TestApp, key: &str, operations: &Value) -> ApiResponse {
    app.post(
        "/batch",
        &json!({"idempotencyKey": key, "operations": operations}),
    )
}

/// A POST of `body` as `client`.
fn post_as(app: &TestApp, client: &Client, path: &str, body: &Value) -> ApiResponse {
    send(client.post(app.url(path)).json(body))
}

/// The user's whole history, newest first, every page followed.
pub(crate) fn history(app: &TestApp, user: &str, filters: &str) -> Vec<Value> {
    let mut items = Vec::new();
    // Empty on the first page: an empty `cursor=` is refused.
    let mut cursor = String::new();
    for _ in 0..100 {
        let page = app.get(&format!(
            "/wallets/{user}/transactions?limit=200{cursor}{filters}"
        ));
        assert_eq!(page.status, 200, "{:?}", page.body);
        items.extend(page.data()["items"].as_array().unwrap().iter().cloned());
        match page.data()["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return items,
        }
    }
    panic!("{user}'s history did not end within 100 pages");
}

/// What the API shows of these users: for each, the balance answer (status
/// and body) and the whole history (empty when the user has no wallet).
pub(crate) fn snapshot(app: &TestApp, users: &[&str]) -> Vec<(String, u16, Value, Vec<Value>)> {
    users
        .iter()
        .map(|user| {
            let balance = app.get(&format!("/wallets/{user}/balance"));
            let entries = if balance.status == 200 {
                history(app, user, "")
            } else {
                Vec::new()
            };
            ((*user).to_owned(), balance.status, balance.body, entries)
        })
        .collect()
}

/// Every balance row of a user: `held` is 0 and `available` = `balance`
/// (no holds exist); returns (asset, balance) in the order given.
fn balance_rows(app: &TestApp, user: &str) -> Vec<(String, i64)> {
    let response = app.get(&format!("/wallets/{user}/balance"));
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.data()["balances"]
        .as_array()
        .expect("balances is a list")
        .iter()
        .map(|row| {
            assert_eq!(
                object_keys(row),
                key_set(&[
                    "asset",
                    "assetTypeId",
                    "name",
                    "balance",
                    "held",
                    "available",
                    "paid",
                    "free",
                    "expiring"
                ]),
                "{row:?}"
            );
            assert_eq!(row["held"], 0, "{row:?}");
            assert_eq!(row["available"], row["balance"], "{row:?}");
            (
                row["asset"].as_str().unwrap().to_owned(),
                row["balance"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Metadata of `keys` keys whose compact JSON is exactly `bytes` long
/// (keys `k00`, `k01`, ...; values of `v`, at most 256 characters each).
fn metadata_of_size(keys: usize, bytes: usize) -> Value {
    let mut map: Map<String, Value> = (0..keys)
        .map(|i| (format!("k{i:02}"), Value::String("v".repeat(256))))
        .collect();
    let size = serde_json::to_string(&map).unwrap().len();
    assert!(
        size >= bytes,
        "{keys} keys of 256 characters are only {size} bytes"
    );
    let last = format!("k{:02}", keys - 1);
    map[&last] = Value::String("v".repeat(256 - (size - bytes)));
    let metadata = Value::Object(map);
    assert_eq!(serde_json::to_string(&metadata).unwrap().len(), bytes);
    metadata
}

// ---------------------------------------------------------------------------
// GET /assets and POST /assets

/// Goal: the seeded assets show `decimals: 0`; `POST /assets` creates an
/// asset and its Treasury (201, the Asset), listed in symbol order and
/// usable at once; the same again is 200 with the same asset and writes
/// nothing; another name or decimals is 409 ASSET_EXISTS.
#[test]
fn post_assets_creates_an_asset_and_its_treasury_once_and_never_renames_it() {
    let app = TestApp::spawn();
    let listed = app.get("/assets");
    assert_eq!(listed.status, 200);
    let seeded = listed.data().as_array().unwrap().clone();
    assert_eq!(seeded.len(), 3);
    for asset in &seeded {
        assert_eq!(asset["decimals"], 0, "{asset:?}");
    }

    let gems = app.post(
        "/assets",
        &json!({"symbol": "GEMS", "name": "Gems", "decimals": 2}),
    );
    assert_eq!(gems.status, 201, "{:?}", gems.body);
    let gems = gems.data().clone();
    assert_eq!(
        object_keys(&gems),
        key_set(&["id", "symbol", "name", "decimals", "createdAt", "rules"])
    );
    assert!(is_uuid(gems["id"].as_str().unwrap()), "{gems:?}");
    assert_eq!(
        (&gems["symbol"], &gems["name"], &gems["decimals"]),
        (&json!("GEMS"), &json!("Gems"), &json!(2))
    );

    // Listed, ordered by symbol, as the answer gave it.
    let listed = app.get("/assets").data().as_array().unwrap().clone();
    let symbols: Vec<&str> = listed
        .iter()
        .map(|a| a["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["DIAMOND", "GEMS", "GOLD", "LOYALTY"]);
    assert_eq!(listed[1], gems);

    // The same again: 200, the same asset, nothing new.
    let again = app.post(
        "/assets",
        &json!({"symbol": "GEMS", "name": "Gems", "decimals": 2}),
    );
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.data(), &gems);
    // Another name, or other decimals: refused, the asset unchanged.
    for changed in [
        json!({"symbol": "GEMS", "name": "Shiny gems", "decimals": 2}),
        json!({"symbol": "GEMS", "name": "Gems", "decimals": 3}),
        json!({"symbol": "GEMS", "name": "Gems"}),
    ] {
        assert_error(&app.post("/assets", &changed), 409, "ASSET_EXISTS");
    }
    assert_eq!(app.get("/assets").data().as_array().unwrap(), &listed);

    // decimals defaults to 0; 18 is the most.
    let plain = app.post("/assets", &json!({"symbol": "TOKENS_2", "name": "Tokens"}));
    assert_eq!(created(&plain)["decimals"], 0);
    let fine = app.post(
        "/assets",
        &json!({"symbol": "WEI", "name": "Wei", "decimals": 18}),
    );
    assert_eq!(created(&fine)["decimals"], 18);

    // Its Treasury exists: the asset can be issued, by symbol or by id, and
    // spent back; balances name it by symbol, with its name.
    let topup = app.post_topup("gem_collector", "GEMS", 1050, "gems-1");
    assert_eq!(receipt(created(&topup))["asset"], "GEMS");
    let by_id = app.post_spend("gem_collector", gems["id"].as_str().unwrap(), 50, "gems-2");
    assert_eq!(receipt(created(&by_id))["asset"], "GEMS");
    let response = app.get("/wallets/gem_collector/balance");
    let row = response.data()["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == "GEMS")
        .cloned()
        .expect("a GEMS row");
    assert_eq!(row["balance"], 1000);
    assert_eq!(row["name"], "Gems");
    assert_eq!(row["assetTypeId"], gems["id"]);
    assert_verify_passes(&app.db_path);
}

/// Goal: a POST /assets body is held to API.md: `symbol` 1-32 of
/// `A-Z 0-9 _`, `name` 1-128 characters, `decimals` 0-18, no unknown
/// fields; every problem listed; nothing created.
#[test]
fn post_assets_refuses_bad_symbols_names_and_decimals_listing_every_problem() {
    let app = TestApp::spawn();
    let cases = [
        (json!({"symbol": "gems", "name": "Gems"}), "symbol"),
        (json!({"symbol": "GE MS", "name": "Gems"}), "symbol"),
        (json!({"symbol": "", "name": "Gems"}), "symbol"),
        (json!({"symbol": "A".repeat(33), "name": "Gems"}), "symbol"),
        (json!({"name": "Gems"}), "symbol"),
        (json!({"symbol": "GEMS", "name": ""}), "name"),
        (json!({"symbol": "GEMS", "name": "n".repeat(129)}), "name"),
        (json!({"symbol": "GEMS"}), "name"),
        (
            json!({"symbol": "GEMS", "name": "Gems", "decimals": 19}),
            "decimals",
        ),
        (
            json!({"symbol": "GEMS", "name": "Gems", "decimals": -1}),
            "decimals",
        ),
        (
            json!({"symbol": "GEMS", "name": "Gems", "decimals": 1.5}),
            "decimals",
        ),
        (
            json!({"symbol": "GEMS", "name": "Gems", "decimals": "2"}),
            "decimals",
        ),
        (
            json!({"symbol": "GEMS", "name": "Gems", "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        assert_invalid(&app.post("/assets", &body), field);
    }
    let all = app.post(
        "/assets",
        &json!({"symbol": "bad symbol", "name": "", "decimals": 99}),
    );
    assert_error(&all, 400, "VALIDATION_ERROR");
    let fields: BTreeSet<String> = all.invalid_fields().into_iter().collect();
    assert_eq!(fields, key_set(&["symbol", "name", "decimals"]));
    assert_eq!(app.get("/assets").data().as_array().unwrap().len(), 3);

    // The bounds themselves are accepted.
    let longest = app.post(
        "/assets",
        &json!({"symbol": "A".repeat(32), "name": "n".repeat(128)}),
    );
    created(&longest);
}

/// Goal: at most 1000 asset types: the 1001st is 422 TOO_MANY_ASSETS and
/// writes nothing, while an existing symbol asked again is still 200.
#[test]
fn the_one_thousand_and_first_asset_type_is_too_many_assets() {
    let app = TestApp::spawn();
    const THREADS: usize = 8;
    let to_create = ASSET_TYPES_MAX - 3;
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let app = &app;
            scope.spawn(move || {
                for n in (thread..to_create).step_by(THREADS) {
                    let response = app.post(
                        "/assets",
                        &json!({"symbol": format!("A{n:04}"), "name": format!("Asset {n}")}),
                    );
                    assert_eq!(response.status, 201, "{:?}", response.body);
                }
            });
        }
    });
    assert_eq!(
        app.get("/assets").data().as_array().unwrap().len(),
        ASSET_TYPES_MAX
    );
    let one_more = app.post(
        "/assets",
        &json!({"symbol": "ONE_MORE", "name": "One more"}),
    );
    assert_error(&one_more, 422, "TOO_MANY_ASSETS");
    let same = app.post("/assets", &json!({"symbol": "A0007", "name": "Asset 7"}));
    assert_eq!(same.status, 200, "{:?}", same.body);
    assert_eq!(same.data()["symbol"], "A0007");
    let listed = app.get("/assets");
    let listed = listed.data().as_array().unwrap();
    assert_eq!(listed.len(), ASSET_TYPES_MAX);
    assert!(listed.iter().all(|asset| asset["symbol"] != "ONE_MORE"));
    // A balance answers a row for each of the 1000.
    assert_eq!(balance_rows(&app, "user_alice").len(), ASSET_TYPES_MAX);
}

// ---------------------------------------------------------------------------
// Scopes of the new routes

/// Goal: the new routes need the scopes of API.md's table: `read` for
/// `GET /transactions/{id}`, `spend` for a transfer, `grant` for a reversal,
/// `admin` alone for `POST /assets` (a key with read, spend and grant is not
/// enough); a refused request is 403 naming the scope and writes nothing.
#[test]
fn the_new_routes_need_the_scopes_of_api_md() {
    let (app, keys) = TestApp::spawn_with_keys(
        &[
            ("reader", "read"),
            ("game", "read,spend"),
            ("webhook", "grant"),
            ("all-but-admin", "read,spend,grant"),
            ("operator", "admin"),
        ],
        &[],
    );
    let [reader, game, webhook, all_but_admin, operator] =
        [0, 1, 2, 3, 4].map(|i| client_with_key(Some(&keys[i])));
    let topup = post_as(
        &app,
        &webhook,
        "/wallets/user_alice/topup",
        &json!({"asset": "GOLD", "amount": 100, "idempotencyKey": "s-topup"}),
    );
    let id = created(&topup)["transaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let entries = app.entry_count();

    let forbidden = |response: ApiResponse, scope: &str| {
        assert_error_details(&response, 403, "FORBIDDEN", json!({"requiredScope": scope}));
    };
    let transfer = json!({"to": "user_bob", "asset": "GOLD", "amount": 1, "idempotencyKey": "s-t"});
    let reverse = json!({"amount": 1, "idempotencyKey": "s-r"});
    let gems = json!({"symbol": "GEMS", "name": "Gems"});
    forbidden(
        send(webhook.get(app.url(&format!("/transactions/{id}")))),
        "read",
    );
    forbidden(
        post_as(&app, &webhook, "/wallets/user_alice/transfer", &transfer),
        "spend",
    );
    forbidden(
        post_as(&app, &reader, "/wallets/user_alice/transfer", &transfer),
        "spend",
    );
    let reverse_path = format!("/transactions/{id}/reverse");
    forbidden(post_as(&app, &game, &reverse_path, &reverse), "grant");
    for client in [&reader, &game, &webhook, &all_but_admin] {
        forbidden(post_as(&app, client, "/assets", &gems), "admin");
    }
    assert_eq!(app.entry_count(), entries);
    assert_eq!(
        send(reader.get(app.url("/assets")))
            .data()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    assert_eq!(
        send(reader.get(app.url(&format!("/transactions/{id}")))).status,
        200
    );
    created(&post_as(
        &app,
        &game,
        "/wallets/user_alice/transfer",
        &transfer,
    ));
    created(&post_as(&app, &webhook, &reverse_path, &reverse));
    assert_eq!(post_as(&app, &operator, "/assets", &gems).status, 201);
    assert_eq!(app.entry_count(), entries + 2);
}

// ---------------------------------------------------------------------------
// POST /wallets/{userId}/transfer

/// Goal: a transfer debits the sender and credits the recipient in one
/// TRANSFER entry: 201 with the sender's side (`direction` DEBIT,
/// `counterparty` the recipient), `balance` and `available`; the recipient's
/// history shows the CREDIT side with the sender as counterparty; `GET
/// /transactions/{id}` shows both users; a retry replays it whole.
#[test]
fn a_transfer_moves_value_from_one_user_to_another_and_answers_the_senders_side() {
    let app = TestApp::spawn();
    let body = json!({
        "to": "user_bob",
        "asset": "GOLD",
        "amount": 50,
        "idempotencyKey": "gift-9",
        "referenceId": "gift:9",
        "note": "Happy birthday",
        "metadata": {"reason": "birthday", "campaign": "nov"}
    });
    let response = app.post("/wallets/user_alice/transfer", &body);
    let data = created(&response).clone();
    let sent = receipt(&data).clone();
    assert_eq!(data["balance"], 950);
    let id = sent["id"].clone();
    assert_eq!(
        sent,
        json!({
            "id": id,
            "type": "TRANSFER",
            "asset": "GOLD",
            "amount": 50,
            "direction": "DEBIT",
            "balanceAfter": 950,
            "counterparty": "user_bob",
            "reverses": null,
            "holdId": null,
            "idempotencyKey": "gift-9",
            "referenceId": "gift:9",
            "note": "Happy birthday",
            "metadata": {"campaign": "nov", "reason": "birthday"},
            "createdAt": sent["createdAt"],
            "parts": [{"kind": "PAID", "amount": 50}]
        })
    );

    // The recipient's side: the same entry, credited.
    let bobs = history(&app, "user_bob", "");
    let received = &bobs[0];
    assert_transaction_shape(received);
    assert_eq!(received["id"], id);
    assert_eq!(received["type"], "TRANSFER");
    assert_eq!(received["direction"], "CREDIT");
    assert_eq!(received["balanceAfter"], 550);
    assert_eq!(received["counterparty"], "user_alice");
    assert_eq!(received["metadata"], sent["metadata"]);
    assert_eq!(received["createdAt"], sent["createdAt"]);
    let alices = history(&app, "user_alice", "");
    assert_eq!(alices[0], sent);

    let whole = detail(&app, &id);
    assert_eq!(whole["type"], "TRANSFER");
    assert_eq!(whole["debit"], user_party("user_alice"));
    assert_eq!(whole["credit"], user_party("user_bob"));
    assert_eq!(whole["reversedAmount"], 0);
    assert_eq!(whole["amount"], 50);
    assert_eq!(whole["reverses"], Value::Null);

    assert_eq!(
        balance_rows(&app, "user_alice")[1],
        ("GOLD".to_owned(), 950)
    );
    assert_eq!(balance_rows(&app, "user_bob")[1], ("GOLD".to_owned(), 550));

    // A retry, its fields and its metadata's keys in another order (sent
    // as written: `json!` would sort them): the original, whole.
    let retry = r#"{"metadata": {"reason": "birthday", "campaign": "nov"}, "note": "Happy birthday",
        "referenceId": "gift:9", "idempotencyKey": "gift-9", "amount": 50, "asset": "GOLD",
        "to": "user_bob"}"#;
    let entries = app.entry_count();
    assert_replay_of(
        &post_text(&app, "/wallets/user_alice/transfer", retry),
        &data,
    );
    assert_eq!(app.entry_count(), entries);
    assert_eq!(app.balance("user_alice", "GOLD"), 950);

    // A recipient with no account yet gets one; its other assets read 0.
    let first = post_transfer(&app, "user_bob", "newcomer", "DIAMOND", 5, "welcome");
    assert_eq!(receipt(created(&first))["counterparty"], "newcomer");
    assert_eq!(
        balance_rows(&app, "newcomer"),
        [
            ("DIAMOND".to_owned(), 5),
            ("GOLD".to_owned(), 0),
            ("LOYALTY".to_owned(), 0)
        ]
    );
    assert_verify_passes(&app.db_path);
}

/// Goal: a transfer's errors are those of API.md: `to` = `userId`, a bad
/// `to`, a missing field, an unknown field are 400 naming the field; an
/// amount past the available balance is 422 INSUFFICIENT_FUNDS with
/// `balance`, `available` and `requested`; an unknown asset is 404
/// ASSET_NOT_FOUND; a sender without any wallet is 404 WALLET_NOT_FOUND;
/// none writes anything nor uses up its key.
#[test]
fn a_transfer_is_refused_as_api_md_says_and_a_refusal_writes_nothing() {
    let app = TestApp::spawn();
    let entries = app.entry_count();
    let post = |body: Value| app.post("/wallets/user_alice/transfer", &body);
    let valid =
        || json!({"to": "user_bob", "asset": "GOLD", "amount": 10, "idempotencyKey": "t-1"});
    let with = |field: &str, value: Value| {
        let mut body = valid();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value;
        }
        body
    };

    assert_invalid(&post(with("to", json!("user_alice"))), "to");
    assert_invalid(&post(with("to", Value::Null)), "to");
    assert_invalid(&post(with("to", json!("user bob"))), "to");
    assert_invalid(&post(with("to", json!(".."))), "to");
    assert_invalid(&post(with("to", json!("."))), "to");
    assert_invalid(&post(with("to", json!("u".repeat(129)))), "to");
    assert_invalid(&post(with("to", json!(7))), "to");
    assert_invalid(&post(with("amount", json!(0))), "amount");
    assert_invalid(&post(with("amount", json!(AMOUNT_MAX + 1))), "amount");
    assert_invalid(&post(with("asset", Value::Null)), "asset");
    assert_invalid(&post(with("idempotencyKey", Value::Null)), "idempotencyKey");
    assert_invalid(&post(with("recipient", json!("user_bob"))), "recipient");
    // Every problem at once.
    let many =
        post(json!({"to": "user_alice", "asset": "gold!", "amount": -3, "idempotencyKey": "t-1"}));
    let fields: BTreeSet<String> = many.invalid_fields().into_iter().collect();
    assert_eq!(
        fields,
        key_set(&["to", "asset", "amount"]),
        "{:?}",
        many.body
    );

    let short = post(with("amount", json!(1001)));
    assert_error_details(
        &short,
        422,
        "INSUFFICIENT_FUNDS",
        json!({"balance": 1000, "available": 1000, "requested": 1001}),
    );
    assert_error(&post(with("asset", json!("RUBY"))), 404, "ASSET_NOT_FOUND");
    assert_error(
        &post(with("asset", json!("00000000-0000-4000-8000-000000000000"))),
        404,
        "ASSET_NOT_FOUND",
    );
    let nobody = post_transfer(&app, "user_nobody", "user_bob", "GOLD", 1, "t-1");
    assert_error(&nobody, 404, "WALLET_NOT_FOUND");
    // A wallet, but no account in this asset: a balance of 0.
    created(&app.post_topup("gold_only", "GOLD", 5, "gold-only"));
    let entries_now = entries + 1;
    let no_diamonds = post_transfer(&app, "gold_only", "user_bob", "DIAMOND", 1, "t-1");
    assert_error_details(
        &no_diamonds,
        422,
        "INSUFFICIENT_FUNDS",
        json!({"balance": 0, "available": 0, "requested": 1}),
    );
    assert_eq!(app.entry_count(), entries_now, "a refused transfer wrote");
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
    assert_eq!(app.balance("user_bob", "GOLD"), 500);
    assert_error(
        &app.get("/wallets/user_nobody/balance"),
        404,
        "WALLET_NOT_FOUND",
    );

    // The refusals did not use up the key: once alice has enough, the very
    // transfer refused for funds goes through with it.
    created(&app.post_topup("user_alice", "GOLD", 1, "t-fund"));
    let now = post(with("amount", json!(1001)));
    assert_eq!(receipt(created(&now))["balanceAfter"], 0);
    assert_eq!(app.balance("user_bob", "GOLD"), 1501);
}

// ---------------------------------------------------------------------------
// metadata

/// Goal: `metadata` on topup, bonus and spend is stored with the entry and
/// returned with it, in its answer, in history and by `GET
/// /transactions/{id}`; `null` when none was given; part of what makes two
/// requests the same, whatever its key order.
#[test]
fn metadata_is_stored_and_returned_with_each_write_and_null_when_absent() {
    let app = TestApp::spawn();
    let sent = json!({"sku": "sword-1", "a.b_c-d": "x", "empty": ""});
    let mut ids = Vec::new();
    for operation in ["topup", "bonus", "spend"] {
        let path = format!("/wallets/user_alice/{operation}");
        let body = json!({
            "asset": "GOLD", "amount": 10,
            "idempotencyKey": format!("m-{operation}"),
            "metadata": sent
        });
        let response = app.post(&path, &body);
        let data = created(&response).clone();
        let transaction = receipt(&data);
        assert_eq!(transaction["metadata"], sent, "{operation}");
        ids.push(transaction["id"].clone());

        // The same metadata, its keys in another order (sent as written:
        // `json!` would sort them): a replay.
        let reordered = format!(
            r#"{{"metadata": {{"sku": "sword-1", "empty": "", "a.b_c-d": "x"}},
                "idempotencyKey": "m-{operation}", "amount": 10, "asset": "GOLD"}}"#
        );
        assert_replay_of(&post_text(&app, &path, reordered), &data);
        // Other metadata, or none: another request.
        let mut changed = body.clone();
        changed["metadata"] = json!({"sku": "sword-2", "a.b_c-d": "x", "empty": ""});
        assert_eq!(differing(&app.post(&path, &changed)), ["metadata"]);
        changed.as_object_mut().unwrap().remove("metadata");
        assert_eq!(differing(&app.post(&path, &changed)), ["metadata"]);
    }
    let plain = app.post_topup("user_alice", "GOLD", 1, "m-none");
    let plain_id = receipt(created(&plain))["id"].clone();
    assert_eq!(plain.data()["transaction"]["metadata"], Value::Null);

    let items = history(&app, "user_alice", "");
    assert_eq!(items[0]["id"], plain_id);
    assert_eq!(items[0]["metadata"], Value::Null);
    for (item, id) in items[1..4].iter().rev().zip(&ids) {
        assert_eq!(&item["id"], id);
        assert_eq!(item["metadata"], sent);
    }
    for id in &ids {
        assert_eq!(detail(&app, id)["metadata"], sent);
    }
    assert_eq!(detail(&app, &plain_id)["metadata"], Value::Null);
}

/// Goal: `metadata` is held to its bounds on every write (topup, bonus,
/// spend, transfer, reverse, and each batch operation): at most 16 keys of
/// 1-64 of `A-Z a-z 0-9 _ . -`, string values of at most 256 characters,
/// at most 2048 bytes compact; each bound itself accepted, one past it 400
/// naming `metadata`, nothing written.
#[test]
fn metadata_past_any_of_its_bounds_is_refused_on_every_write() {
    let app = TestApp::spawn();
    let spend = app.post_spend("user_alice", "GOLD", 100, "md-spend-to-reverse");
    let to_reverse = created(&spend)["transaction"]["id"].clone();
    let sixteen: Map<String, Value> = (0..16).map(|i| (format!("k{i}"), json!("v"))).collect();
    let mut seventeen = sixteen.clone();
    seventeen.insert("k16".into(), json!("v"));
    let accepted = [
        Value::Object(sixteen),
        json!({ "k".repeat(64): "v" }),
        json!({"AZaz09_.-": "v"}),
        json!({"k": "v".repeat(256)}),
        json!({"k": "é".repeat(256)}),
        json!({}),
        metadata_of_size(8, 2048),
    ];
    let refused = [
        Value::Object(seventeen),
        json!({ "k".repeat(65): "v" }),
        json!({"": "v"}),
        json!({"a b": "v"}),
        json!({"a/b": "v"}),
        json!({"k": "v".repeat(257)}),
        json!({"k": 1}),
        json!({"k": null}),
        json!({"k": {"nested": "v"}}),
        json!(["k", "v"]),
        json!("k=v"),
        metadata_of_size(8, 2049),
    ];

    // Each write route with `metadata`, and the field its 400 names.
    let write = |n: usize, metadata: &Value| -> (ApiResponse, &'static str) {
        let key = format!("md-{n}-{}", uuid::Uuid::new_v4());
        let base =
            json!({"asset": "GOLD", "amount": 1, "idempotencyKey": key, "metadata": metadata});
        match n {
            0 => (app.post("/wallets/user_alice/topup", &base), "metadata"),
            1 => (app.post("/wallets/user_alice/bonus", &base), "metadata"),
            2 => (app.post("/wallets/user_alice/spend", &base), "metadata"),
            3 => {
                let mut body = base;
                body["to"] = json!("user_bob");
                (app.post("/wallets/user_alice/transfer", &body), "metadata")
            }
            4 => {
                let body = json!({"amount": 1, "idempotencyKey": key, "metadata": metadata});
                (post_reverse(&app, &to_reverse, &body), "metadata")
            }
            _ => {
                let operations = json!([
                    {"type": "topup", "userId": "user_bob", "asset": "GOLD", "amount": 1},
                    {"type": "bonus", "userId": "user_bob", "asset": "GOLD", "amount": 1,
                     "metadata": metadata}
                ]);
                (
                    post_batch(&app, &key, &operations),
                    "operations[1].metadata",
                )
            }
        }
    };
    let routes = 6;
    for metadata in &refused {
        let entries = app.entry_count();
        for n in 0..routes {
            let (response, field) = write(n, metadata);
            assert_error(&response, 400, "VALIDATION_ERROR");
            assert_eq!(
                response.invalid_fields(),
                [field],
                "{metadata}: {:?}",
                response.body
            );
            assert_eq!(app.entry_count(), entries, "route {n} wrote {metadata}");
        }
    }
    for metadata in &accepted {
        for n in 0..routes {
            let (response, _) = write(n, metadata);
            let data = created(&response);
            let transaction = if n == routes - 1 {
                &data["transactions"][1]
            } else {
                &data["transaction"]
            };
            assert_eq!(&transaction["metadata"], metadata, "route {n}");
        }
    }
}

// ---------------------------------------------------------------------------
// GET /transactions/{id}

/// Goal: `GET /transactions/{id}` gives one entry whole with both parties
/// (a USER by `userId`, the TREASURY alone); an unknown id is 404
/// TRANSACTION_NOT_FOUND; an id that is not a UUID is 400 VALIDATION_ERROR,
/// on the reverse route too.
#[test]
fn one_transaction_is_shown_whole_with_both_parties_and_a_bad_id_is_400() {
    let app = TestApp::spawn();
    let seed = history(&app, "user_alice", "&asset=GOLD");
    assert_eq!(seed.len(), 1);
    let seed = detail(&app, &seed[0]["id"]);
    assert_eq!(seed["type"], "TOPUP");
    assert_eq!(seed["idempotencyKey"], "seed:user_alice:GOLD");
    assert_eq!(seed["debit"], treasury());
    assert_eq!(seed["credit"], user_party("user_alice"));

    let body = json!({
        "asset": "DIAMOND", "amount": 7, "idempotencyKey": "d-spend",
        "referenceId": "shop:7", "note": "A shield", "metadata": {"sku": "shield"}
    });
    let spend = app.post("/wallets/user_bob/spend", &body);
    let transaction = receipt(created(&spend)).clone();
    let whole = detail(&app, &transaction["id"]);
    assert_eq!(
        whole,
        json!({
            "id": transaction["id"],
            "type": "SPEND",
            "asset": "DIAMOND",
            "amount": 7,
            "debit": {"type": "USER", "userId": "user_bob"},
            "credit": {"type": "TREASURY"},
            "reverses": null,
            "reversedAmount": 0,
            "holdId": null,
            "idempotencyKey": "d-spend",
            "referenceId": "shop:7",
            "note": "A shield",
            "metadata": {"sku": "shield"},
            "createdAt": transaction["createdAt"],
            "parts": [{"kind": "PAID", "amount": 7}]
        })
    );

    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_error(
        &app.get(&format!("/transactions/{unknown}")),
        404,
        "TRANSACTION_NOT_FOUND",
    );
    let reverse_unknown = post_reverse(
        &app,
        &json!(unknown),
        &json!({"idempotencyKey": "r-unknown"}),
    );
    assert_error(&reverse_unknown, 404, "TRANSACTION_NOT_FOUND");
    let entries = app.entry_count();
    for bad in [
        "not-a-uuid",
        "12345",
        "00000000-0000-4000-8000-00000000000g",
        "ZZZ",
    ] {
        let response = app.get(&format!("/transactions/{bad}"));
        assert_invalid(&response, "id");
        let response = post_reverse(&app, &json!(bad), &json!({"idempotencyKey": "r-bad"}));
        assert_invalid(&response, "id");
    }
    assert_eq!(app.entry_count(), entries);
}

// ---------------------------------------------------------------------------
// POST /transactions/{id}/reverse

/// Goal: a reversal of a TOPUP (a chargeback) debits the user: by default
/// all of it, as a REVERSAL entry naming the original in `reverses` and
/// carrying only its own request's referenceId, note and metadata; the
/// original's `reversedAmount` counts it; nothing is left to reverse after
/// (422 REVERSAL_EXCEEDS_ORIGINAL, `reversible: 0`), and a REVERSAL itself
/// is 422 NOT_REVERSIBLE; a retry replays it.
#[test]
fn a_full_reversal_of_a_topup_is_a_chargeback_and_a_reversal_is_not_reversible() {
    let app = TestApp::spawn();
    let topup = app.post(
        "/wallets/user_alice/topup",
        &json!({"asset": "GOLD", "amount": 250, "idempotencyKey": "order-1842",
                "referenceId": "stripe:pi_123", "note": "Pack", "metadata": {"order": "1842"}}),
    );
    let original = receipt(created(&topup)).clone();
    let body = json!({"idempotencyKey": "chargeback-1842", "note": "Chargeback"});
    let reversal = post_reverse(&app, &original["id"], &body);
    let data = created(&reversal).clone();
    let transaction = receipt(&data).clone();
    assert_eq!(
        transaction,
        json!({
            "id": transaction["id"],
            "type": "REVERSAL",
            "asset": "GOLD",
            "amount": 250,
            "direction": "DEBIT",
            "balanceAfter": 1000,
            "counterparty": null,
            "reverses": original["id"],
            "holdId": null,
            "idempotencyKey": "chargeback-1842",
            "referenceId": null,
            "note": "Chargeback",
            "metadata": null,
            "createdAt": transaction["createdAt"],
            "parts": [{"kind": "PAID", "amount": 250}]
        })
    );
    assert_ne!(transaction["id"], original["id"]);
    assert_eq!(data["balance"], 1000);

    assert_eq!(detail(&app, &original["id"])["reversedAmount"], 250);
    let whole = detail(&app, &transaction["id"]);
    assert_eq!(whole["type"], "REVERSAL");
    assert_eq!(whole["debit"], user_party("user_alice"));
    assert_eq!(whole["credit"], treasury());
    assert_eq!(whole["reverses"], original["id"]);
    assert_eq!(whole["reversedAmount"], 0);
    assert_eq!(
        history(&app, "user_alice", "&type=REVERSAL"),
        std::slice::from_ref(&transaction)
    );

    let entries = app.entry_count();
    assert_replay_of(&post_reverse(&app, &original["id"], &body), &data);
    let again = post_reverse(
        &app,
        &original["id"],
        &json!({"idempotencyKey": "cb-again"}),
    );
    assert_error_details(
        &again,
        422,
        "REVERSAL_EXCEEDS_ORIGINAL",
        json!({"reversible": 0}),
    );
    let one = post_reverse(
        &app,
        &original["id"],
        &json!({"idempotencyKey": "cb-one", "amount": 1}),
    );
    assert_error_details(
        &one,
        422,
        "REVERSAL_EXCEEDS_ORIGINAL",
        json!({"reversible": 0}),
    );
    for amount in [None, Some(1)] {
        let mut body = json!({"idempotencyKey": "undo-the-chargeback"});
        if let Some(amount) = amount {
            body["amount"] = json!(amount);
        }
        assert_error(
            &post_reverse(&app, &transaction["id"], &body),
            422,
            "NOT_REVERSIBLE",
        );
    }
    assert_eq!(app.entry_count(), entries);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
    assert_verify_passes(&app.db_path);
}

/// Goal: partial reversals of a SPEND refund the user piece by piece; an
/// amount past what is left is 422 REVERSAL_EXCEEDS_ORIGINAL with
/// `reversible` = what is left, and writes nothing; the amount is held to
/// API.md's amount rules.
#[test]
fn partial_reversals_of_a_spend_refund_the_user_until_nothing_is_left() {
    let app = TestApp::spawn();
    let spend = app.post_spend("user_bob", "GOLD", 100, "buy");
    let id = receipt(created(&spend))["id"].clone();
    assert_eq!(spend.data()["balance"], 400);

    let reverse = |key: &str, amount: Value| {
        post_reverse(&app, &id, &json!({"idempotencyKey": key, "amount": amount}))
    };
    for bad in [
        json!(0),
        json!(-5),
        json!(1.5),
        json!("40"),
        json!(AMOUNT_MAX + 1),
    ] {
        assert_invalid(&reverse("r-bad", bad), "amount");
    }
    let first = reverse("r-40", json!(40));
    let refund = receipt(created(&first)).clone();
    assert_eq!(refund["type"], "REVERSAL");
    assert_eq!(refund["direction"], "CREDIT");
    assert_eq!(refund["amount"], 40);
    assert_eq!(refund["balanceAfter"], 440);
    assert_eq!(refund["reverses"], id);
    assert_eq!(refund["counterparty"], Value::Null);
    assert_eq!(detail(&app, &id)["reversedAmount"], 40);
    let whole = detail(&app, &refund["id"]);
    assert_eq!(
        (whole["debit"].clone(), whole["credit"].clone()),
        (treasury(), user_party("user_bob"))
    );

    let entries = app.entry_count();
    let too_much = reverse("r-70", json!(70));
    assert_error_details(
        &too_much,
        422,
        "REVERSAL_EXCEEDS_ORIGINAL",
        json!({"reversible": 60}),
    );
    assert_eq!(app.entry_count(), entries);
    // The refused key is not used up: the same key for what is left works.
    let rest = reverse("r-70", json!(60));
    assert_eq!(receipt(created(&rest))["balanceAfter"], 500);
    assert_eq!(detail(&app, &id)["reversedAmount"], 100);
    let nothing = reverse("r-1", json!(1));
    assert_error_details(
        &nothing,
        422,
        "REVERSAL_EXCEEDS_ORIGINAL",
        json!({"reversible": 0}),
    );
    assert_eq!(app.balance("user_bob", "GOLD"), 500);
    let reversals = history(&app, "user_bob", "&type=REVERSAL");
    let amounts: Vec<&Value> = reversals.iter().map(|entry| &entry["amount"]).collect();
    assert_eq!(amounts, [&json!(60), &json!(40)]);
}

/// Goal: a reversed TRANSFER debits the recipient and credits the sender;
/// the answer is the sender's side (CREDIT, the recipient as counterparty),
/// the recipient's history shows the DEBIT with the sender as counterparty;
/// a recipient who no longer has the amount makes it 422
/// INSUFFICIENT_FUNDS, and nothing is written.
#[test]
fn reversing_a_transfer_takes_it_back_from_the_recipient_who_must_still_have_it() {
    let app = TestApp::spawn();
    let transfer = post_transfer(&app, "user_alice", "user_bob", "GOLD", 300, "t-300");
    let id = receipt(created(&transfer))["id"].clone();
    let back = post_reverse(
        &app,
        &id,
        &json!({"idempotencyKey": "t-300-back", "amount": 100,
        "referenceId": "dispute:1", "metadata": {"why": "fraud"}}),
    );
    let data = created(&back).clone();
    let transaction = receipt(&data);
    assert_eq!(transaction["type"], "REVERSAL");
    assert_eq!(transaction["direction"], "CREDIT");
    assert_eq!(transaction["counterparty"], "user_bob");
    assert_eq!(transaction["balanceAfter"], 800);
    assert_eq!(transaction["referenceId"], "dispute:1");
    assert_eq!(transaction["metadata"], json!({"why": "fraud"}));
    assert_eq!(data["balance"], 800);

    let bobs = history(&app, "user_bob", "&type=REVERSAL");
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["id"], transaction["id"]);
    assert_eq!(bobs[0]["direction"], "DEBIT");
    assert_eq!(bobs[0]["counterparty"], "user_alice");
    assert_eq!(bobs[0]["balanceAfter"], 700);
    let whole = detail(&app, &transaction["id"]);
    assert_eq!(whole["debit"], user_party("user_bob"));
    assert_eq!(whole["credit"], user_party("user_alice"));
    assert_eq!(detail(&app, &id)["reversedAmount"], 100);

    // Bob spends all but 150 of it: the 200 left to reverse is more than
    // he has.
    created(&app.post_spend("user_bob", "GOLD", 550, "bob-spends"));
    let entries = app.entry_count();
    let short = post_reverse(&app, &id, &json!({"idempotencyKey": "t-300-rest"}));
    assert_error_details(
        &short,
        422,
        "INSUFFICIENT_FUNDS",
        json!({"balance": 150, "available": 150, "requested": 200}),
    );
    assert_eq!(app.entry_count(), entries);
    assert_eq!(detail(&app, &id)["reversedAmount"], 100);
    assert_eq!(
        (
            app.balance("user_alice", "GOLD"),
            app.balance("user_bob", "GOLD")
        ),
        (800, 150)
    );
    assert_verify_passes(&app.db_path);
}

// ---------------------------------------------------------------------------
// The 2^53 - 1 cap on a user's balance

/// Goal: no credit takes a user's balance past 2^53 - 1, whatever makes it:
/// a refund (a reversed SPEND), a reversed TRANSFER crediting the sender, or
/// an operation of a batch (422 BALANCE_OVERFLOW, with `details.operation`);
/// reaching 2^53 - 1 exactly is fine; nothing is written when refused.
#[test]
fn no_reversal_or_batch_takes_a_users_balance_past_two_to_the_53_minus_one() {
    let app = TestApp::spawn();
    let max = i64::try_from(AMOUNT_MAX).unwrap();
    created(&app.post_topup("whale", "GOLD", 100, "w-1"));
    let spend = app.post_spend("whale", "GOLD", 30, "w-spend");
    let spend_id = receipt(created(&spend))["id"].clone();
    let transfer = post_transfer(&app, "whale", "user_bob", "GOLD", 20, "w-transfer");
    let transfer_id = receipt(created(&transfer))["id"].clone();
    // 50 left; topped up to 2^53 - 1 - 10.
    created(&app.post_topup("whale", "GOLD", AMOUNT_MAX - 60, "w-2"));
    assert_eq!(app.balance("whale", "GOLD"), max - 10);
    let entries = app.entry_count();

    let refund = post_reverse(&app, &spend_id, &json!({"idempotencyKey": "w-refund"}));
    assert_error(&refund, 422, "BALANCE_OVERFLOW");
    let back = post_reverse(
        &app,
        &transfer_id,
        &json!({"idempotencyKey": "w-back", "amount": 11}),
    );
    assert_error(&back, 422, "BALANCE_OVERFLOW");
    let batch = post_batch(
        &app,
        "w-batch",
        &json!([
            {"type": "spend", "userId": "whale", "asset": "GOLD", "amount": 5},
            {"type": "bonus", "userId": "whale", "asset": "GOLD", "amount": 16},
        ]),
    );
    assert_error_details(&batch, 422, "BALANCE_OVERFLOW", json!({"operation": 1}));
    assert_eq!(app.entry_count(), entries);

    // Exactly to the cap is fine; then one more is not.
    let exact = post_reverse(
        &app,
        &transfer_id,
        &json!({"idempotencyKey": "w-back", "amount": 10}),
    );
    assert_eq!(created(&exact)["balance"], max);
    let one_more = post_reverse(
        &app,
        &spend_id,
        &json!({"idempotencyKey": "w-refund", "amount": 1}),
    );
    assert_error(&one_more, 422, "BALANCE_OVERFLOW");
    let batch = post_batch(
        &app,
        "w-batch",
        &json!([
            {"type": "spend", "userId": "whale", "asset": "GOLD", "amount": 5},
            {"type": "bonus", "userId": "whale", "asset": "GOLD", "amount": 5},
        ]),
    );
    let balances = &created(&batch)["balances"];
    assert_eq!(
        balances,
        &json!([{"userId": "whale", "asset": "GOLD", "balance": max, "available": max}])
    );
    assert_verify_passes(&app.db_path);
}

// ---------------------------------------------------------------------------
// Idempotency across routes

/// Goal: a key names one request across every route: a key used for a spend
/// is IDEMPOTENCY_KEY_REUSED for a transfer, a topup, a bonus, a reversal
/// and a batch; the same key with a changed field lists exactly the fields
/// that differ in `details.differing`; nothing is written, and the original
/// still replays. An asset named by its id is the same request as by symbol.
#[test]
fn one_idempotency_key_names_one_request_across_every_route() {
    let app = TestApp::spawn();
    let original = json!({"asset": "GOLD", "amount": 10, "idempotencyKey": "k-shared",
        "referenceId": "order-1", "note": "first", "metadata": {"a": "1"}});
    let spend = app.post("/wallets/user_alice/spend", &original);
    let data = created(&spend).clone();
    let spend_id = data["transaction"]["id"].clone();
    let entries = app.entry_count();

    // Another route with the same key.
    let mut as_transfer = original.clone();
    as_transfer["to"] = json!("user_bob");
    let fields = differing(&app.post("/wallets/user_alice/transfer", &as_transfer));
    assert!(fields.contains(&"to".to_owned()), "{fields:?}");
    for route in ["topup", "bonus"] {
        let fields = differing(&app.post(&format!("/wallets/user_alice/{route}"), &original));
        assert!(!fields.is_empty(), "{route}: {fields:?}");
    }
    let reverse = post_reverse(&app, &spend_id, &json!({"idempotencyKey": "k-shared"}));
    assert!(!differing(&reverse).is_empty());
    let batch = post_batch(
        &app,
        "k-shared",
        &json!([{"type": "spend", "userId": "user_alice", "asset": "GOLD", "amount": 10,
                 "referenceId": "order-1", "note": "first", "metadata": {"a": "1"}}]),
    );
    assert!(!differing(&batch).is_empty());

    // The same route, fields changed: those fields, by name.
    let changed = |changes: Value| {
        let mut body = original.clone();
        for (field, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(field);
            } else {
                body[field] = value.clone();
            }
        }
        differing(&app.post("/wallets/user_alice/spend", &body))
    };
    assert_eq!(
        changed(json!({"amount": 11, "note": "second"})),
        ["amount", "note"]
    );
    assert_eq!(changed(json!({"referenceId": "order-2"})), ["referenceId"]);
    assert_eq!(changed(json!({"note": null})), ["note"]);
    assert_eq!(changed(json!({"metadata": {"a": "2"}})), ["metadata"]);
    assert_eq!(changed(json!({"asset": "DIAMOND"})), ["asset"]);
    let other_user = differing(&app.post("/wallets/user_bob/spend", &original));
    assert_eq!(other_user, ["userId"]);
    assert_eq!(app.entry_count(), entries, "a reused key wrote");

    // The asset by id is the same request as by symbol: a replay.
    let mut by_id = original.clone();
    by_id["asset"] = json!(app.asset_id("GOLD"));
    assert_replay_of(&app.post("/wallets/user_alice/spend", &by_id), &data);
    assert_replay_of(&app.post("/wallets/user_alice/spend", &original), &data);

    // A transfer's own fields: `to`.
    let transfer = json!({"to": "user_bob", "asset": "GOLD", "amount": 5, "idempotencyKey": "k-t"});
    created(&app.post("/wallets/user_alice/transfer", &transfer));
    let mut to_carol = transfer.clone();
    to_carol["to"] = json!("user_carol");
    assert_eq!(
        differing(&app.post("/wallets/user_alice/transfer", &to_carol)),
        ["to"]
    );
    // A reversal's: `amount` (given or by default).
    let reverse = json!({"idempotencyKey": "k-r", "amount": 3});
    created(&post_reverse(&app, &spend_id, &reverse));
    let all = post_reverse(&app, &spend_id, &json!({"idempotencyKey": "k-r"}));
    assert_eq!(differing(&all), ["amount"]);
    assert_eq!(app.entry_count(), entries + 2);
}

// ---------------------------------------------------------------------------
// POST /batch

/// Goal: a batch applies its operations in order, all together: 201 with
/// one transaction per operation in order (each from its `userId`'s side,
/// each showing the batch's key) and one balance per (user, asset) touched,
/// the recipient of a transfer included; its entries are ordered as its
/// operations in history; a retry replays it whole, and a changed operation
/// is named `operations[i].field` in `details.differing`.
#[test]
fn a_batch_applies_every_operation_in_order_and_answers_each_transaction_and_balance() {
    let app = TestApp::spawn();
    let diamond = app.asset_id("DIAMOND");
    let operations = json!([
        {"type": "spend", "userId": "user_alice", "asset": "GOLD", "amount": 100, "note": "Sword"},
        {"type": "bonus", "userId": "user_alice", "asset": diamond, "amount": 1,
         "referenceId": "shop-3", "metadata": {"promo": "x"}},
        {"type": "transfer", "userId": "user_alice", "to": "user_carol", "asset": "GOLD", "amount": 50},
        {"type": "topup", "userId": "user_bob", "asset": "LOYALTY", "amount": 5},
        {"type": "spend", "userId": "user_alice", "asset": "GOLD", "amount": 850}
    ]);
    let response = post_batch(&app, "shop-3", &operations);
    let data = created(&response).clone();
    assert_eq!(object_keys(&data), key_set(&["transactions", "balances"]));
    let transactions = data["transactions"].as_array().unwrap();
    assert_eq!(transactions.len(), 5);
    for transaction in transactions {
        assert_transaction_shape(transaction);
        assert_eq!(transaction["idempotencyKey"], "shop-3");
    }
    let summary: Vec<Value> = transactions
        .iter()
        .map(|t| {
            json!([
                t["type"],
                t["asset"],
                t["amount"],
                t["direction"],
                t["balanceAfter"],
                t["counterparty"]
            ])
        })
        .collect();
    assert_eq!(
        summary,
        [
            json!(["SPEND", "GOLD", 100, "DEBIT", 900, null]),
            json!(["BONUS", "DIAMOND", 1, "CREDIT", 101, null]),
            json!(["TRANSFER", "GOLD", 50, "DEBIT", 850, "user_carol"]),
            json!(["TOPUP", "LOYALTY", 5, "CREDIT", 105, null]),
            json!(["SPEND", "GOLD", 850, "DEBIT", 0, null]),
        ]
    );
    assert_eq!(transactions[0]["note"], "Sword");
    assert_eq!(transactions[1]["referenceId"], "shop-3");
    assert_eq!(transactions[1]["metadata"], json!({"promo": "x"}));
    assert_eq!(transactions[2]["metadata"], Value::Null);
    let balances: BTreeSet<String> = data["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            assert_eq!(
                object_keys(row),
                key_set(&["userId", "asset", "balance", "available"])
            );
            assert_eq!(row["available"], row["balance"]);
            row.to_string()
        })
        .collect();
    let expected: BTreeSet<String> = [
        json!({"userId": "user_alice", "asset": "GOLD", "balance": 0, "available": 0}),
        json!({"userId": "user_alice", "asset": "DIAMOND", "balance": 101, "available": 101}),
        json!({"userId": "user_carol", "asset": "GOLD", "balance": 50, "available": 50}),
        json!({"userId": "user_bob", "asset": "LOYALTY", "balance": 105, "available": 105}),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    assert_eq!(balances, expected);

    // History: a later operation is newer; each entry as the answer gave it.
    let alices = history(&app, "user_alice", "");
    let newest: Vec<&Value> = alices[..4].iter().collect();
    assert_eq!(
        newest,
        [
            &transactions[4],
            &transactions[2],
            &transactions[1],
            &transactions[0]
        ]
    );
    let carols = history(&app, "user_carol", "");
    assert_eq!(carols.len(), 1);
    assert_eq!(carols[0]["direction"], "CREDIT");
    assert_eq!(carols[0]["counterparty"], "user_alice");
    assert_eq!(carols[0]["idempotencyKey"], "shop-3");
    assert_eq!(
        detail(&app, &transactions[2]["id"])["credit"],
        user_party("user_carol")
    );

    // A retry: the original, whole, nothing written.
    let entries = app.entry_count();
    assert_replay_of(&post_batch(&app, "shop-3", &operations), &data);
    assert_eq!(app.entry_count(), entries);
    let mut changed = operations.clone();
    changed[1]["amount"] = json!(2);
    assert_eq!(
        differing(&post_batch(&app, "shop-3", &changed)),
        ["operations[1].amount"]
    );
    let mut shorter = operations.clone();
    shorter.as_array_mut().unwrap().pop();
    assert!(!differing(&post_batch(&app, "shop-3", &shorter)).is_empty());
    // The batch's key names the whole batch, on every route.
    let single = app.post_spend("user_bob", "GOLD", 1, "shop-3");
    assert!(!differing(&single).is_empty());
    assert_eq!(app.entry_count(), entries);
    assert_verify_passes(&app.db_path);
}

/// Goal: the first operation that fails fails the batch: its own error and
/// status, with `details.operation` its index beside its usual details,
/// which describe the balances as the earlier operations left them; nothing
/// of the batch is written (not even a new user's account), and its key is
/// not used up.
#[test]
fn the_first_failing_operation_fails_the_whole_batch_with_its_index() {
    let app = TestApp::spawn();
    let entries = app.entry_count();
    let spend = |user: &str, amount: u64| json!({"type": "spend", "userId": user, "asset": "GOLD", "amount": amount});
    let topup = |user: &str, amount: u64| json!({"type": "topup", "userId": user, "asset": "GOLD", "amount": amount});

    // Each operation sees the balances the earlier ones left: erin's topup
    // of 10 makes a spend of 10 possible and one of 11 not.
    let short = post_batch(
        &app,
        "b-1",
        &json!([topup("erin", 10), spend("erin", 4), spend("erin", 7)]),
    );
    assert_error_details(
        &short,
        422,
        "INSUFFICIENT_FUNDS",
        json!({"balance": 6, "available": 6, "requested": 7, "operation": 2}),
    );
    let bobs = post_batch(
        &app,
        "b-1",
        &json!([spend("user_alice", 1000), topup("user_bob", 1),
                {"type": "transfer", "userId": "user_alice", "to": "user_bob", "asset": "GOLD", "amount": 1}]),
    );
    assert_error_details(
        &bobs,
        422,
        "INSUFFICIENT_FUNDS",
        json!({"balance": 0, "available": 0, "requested": 1, "operation": 2}),
    );
    let asset = post_batch(
        &app,
        "b-1",
        &json!([topup("erin", 1), topup("erin", 1),
                {"type": "bonus", "userId": "erin", "asset": "RUBY", "amount": 1}]),
    );
    assert_error_details(&asset, 404, "ASSET_NOT_FOUND", json!({"operation": 2}));
    let wallet = post_batch(&app, "b-1", &json!([spend("nobody", 1), topup("erin", 1)]));
    assert_error_details(&wallet, 404, "WALLET_NOT_FOUND", json!({"operation": 0}));
    let overflow = post_batch(
        &app,
        "b-1",
        &json!([topup("erin", AMOUNT_MAX), topup("erin", 1)]),
    );
    assert_error_details(&overflow, 422, "BALANCE_OVERFLOW", json!({"operation": 1}));

    assert_eq!(app.entry_count(), entries, "a failed batch wrote");
    assert_error(&app.get("/wallets/erin/balance"), 404, "WALLET_NOT_FOUND");
    assert_error(&app.get("/wallets/nobody/balance"), 404, "WALLET_NOT_FOUND");
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
    assert_eq!(app.balance("user_bob", "GOLD"), 500);

    // The key was not used up by any of them.
    let fine = post_batch(
        &app,
        "b-1",
        &json!([topup("erin", 10), spend("erin", 4), spend("erin", 6)]),
    );
    let fine = created(&fine);
    assert_eq!(
        fine["balances"],
        json!([{"userId": "erin", "asset": "GOLD", "balance": 0, "available": 0}])
    );
    assert_eq!(app.entry_count(), entries + 3);
}

/// Goal: a batch body is held to API.md: 1-100 operations, each a known
/// `type` with `to` for transfers only (and never the sender), no unknown
/// fields; every problem listed; and the body may be up to 64 KiB (past
/// it 413), where any other write stops at 16 KiB.
#[test]
fn a_batch_holds_one_to_one_hundred_valid_operations_in_at_most_64_kib() {
    let app = TestApp::spawn();
    let entries = app.entry_count();
    let bonus = json!({"type": "bonus", "userId": "user_bob", "asset": "LOYALTY", "amount": 1});
    let hundred = Value::Array(vec![bonus.clone(); BATCH_OPERATIONS_MAX]);
    let too_many = Value::Array(vec![bonus.clone(); BATCH_OPERATIONS_MAX + 1]);
    assert_invalid(&post_batch(&app, "v-1", &too_many), "operations");
    assert_invalid(&post_batch(&app, "v-1", &json!([])), "operations");
    assert_invalid(&post_batch(&app, "v-1", &json!(bonus)), "operations");
    assert_invalid(
        &app.post("/batch", &json!({"idempotencyKey": "v-1"})),
        "operations",
    );
    assert_invalid(
        &app.post("/batch", &json!({"operations": [bonus]})),
        "idempotencyKey",
    );
    let unknown = app.post(
        "/batch",
        &json!({"idempotencyKey": "v-1", "operations": [bonus], "atomic": true}),
    );
    assert_invalid(&unknown, "atomic");

    let transfer = json!({"type": "transfer", "userId": "user_alice", "to": "user_bob", "asset": "GOLD", "amount": 1});
    let with = |operation: &Value, field: &str, value: Value| {
        let mut operation = operation.clone();
        if value.is_null() {
            operation.as_object_mut().unwrap().remove(field);
        } else {
            operation[field] = value;
        }
        operation
    };
    let cases = [
        (with(&bonus, "to", json!("user_alice")), "operations[1].to"),
        (with(&transfer, "to", Value::Null), "operations[1].to"),
        (
            with(&transfer, "to", json!("user_alice")),
            "operations[1].to",
        ),
        (with(&transfer, "to", json!("..")), "operations[1].to"),
        (with(&bonus, "type", json!("reverse")), "operations[1].type"),
        (with(&bonus, "type", json!("BONUS")), "operations[1].type"),
        (with(&bonus, "type", Value::Null), "operations[1].type"),
        (with(&bonus, "userId", Value::Null), "operations[1].userId"),
        (with(&bonus, "userId", json!(".")), "operations[1].userId"),
        (with(&bonus, "amount", json!(0)), "operations[1].amount"),
        (with(&bonus, "asset", json!("gold")), "operations[1].asset"),
        (
            with(&bonus, "idempotencyKey", json!("inner")),
            "operations[1].idempotencyKey",
        ),
        (json!("bonus"), "operations[1]"),
    ];
    for (operation, field) in cases {
        let response = post_batch(&app, "v-1", &json!([bonus, operation]));
        assert_invalid(&response, field);
    }
    // Every problem, of every operation.
    let response = post_batch(
        &app,
        "v-1",
        &json!([
            with(&bonus, "amount", json!(-1)),
            with(&transfer, "to", Value::Null),
            with(&bonus, "to", json!("x"))
        ]),
    );
    let fields: BTreeSet<String> = response.invalid_fields().into_iter().collect();
    assert_eq!(
        fields,
        key_set(&[
            "operations[0].amount",
            "operations[1].to",
            "operations[2].to"
        ]),
        "{:?}",
        response.body
    );
    assert_eq!(app.entry_count(), entries);

    // 100 operations: one entry each.
    let done = post_batch(&app, "v-100", &hundred);
    assert_eq!(
        created(&done)["transactions"].as_array().unwrap().len(),
        100
    );
    assert_eq!(app.balance("user_bob", "LOYALTY"), 200);

    // 64 KiB exactly (padded with spaces, valid JSON) is read; one byte
    // more is 413 and writes nothing.
    let padded = |key: &str, bytes: usize| {
        let tail = format!(r#""idempotencyKey":"{key}","operations":[{bonus}]}}"#);
        let body = format!("{{{}{tail}", " ".repeat(bytes - 1 - tail.len()));
        assert_eq!(body.len(), bytes);
        body
    };
    let post_text = |body: String| {
        send(
            app.client
                .post(app.url("/batch"))
                .header("content-type", "application/json")
                .body(body),
        )
    };
    assert_eq!(post_text(padded("v-64k", BATCH_BODY_BYTES_MAX)).status, 201);
    let over = post_text(padded("v-64k-1", BATCH_BODY_BYTES_MAX + 1));
    assert_error(&over, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(app.balance("user_bob", "LOYALTY"), 201);
    // A single write's body of the same 17 KiB is 413: the 64 KiB is the
    // batch's alone.
    let single = format!(
        r#"{{{}"asset":"GOLD","amount":1,"idempotencyKey":"v-17k"}}"#,
        " ".repeat(17 * 1024)
    );
    let response = send(
        app.client
            .post(app.url("/wallets/user_bob/bonus"))
            .header("content-type", "application/json")
            .body(single),
    );
    assert_error(&response, 413, "PAYLOAD_TOO_LARGE");
    let in_batch = post_text(padded("v-17k", 17 * 1024));
    created(&in_batch);
}

/// Goal: a batch needs every scope its operations would need one by one,
/// checked once its body is parsed: 403 with the first missing scope (in
/// operation order) as `requiredScope`, nothing written; a key holding them
/// all (or `admin`) gets 201.
#[test]
fn a_batch_needs_every_scope_its_operations_need_and_names_the_first_missing() {
    let (app, keys) = TestApp::spawn_with_keys(
        &[
            ("reader", "read"),
            ("game", "read,spend"),
            ("webhook", "grant"),
            ("both", "spend,grant"),
            ("operator", "admin"),
        ],
        &[],
    );
    let [reader, game, webhook, both, operator] =
        [0, 1, 2, 3, 4].map(|i| client_with_key(Some(&keys[i])));
    let spend = json!({"type": "spend", "userId": "user_alice", "asset": "GOLD", "amount": 1});
    let transfer = json!({"type": "transfer", "userId": "user_alice", "to": "user_bob", "asset": "GOLD", "amount": 1});
    let topup = json!({"type": "topup", "userId": "user_bob", "asset": "GOLD", "amount": 1});
    let bonus = json!({"type": "bonus", "userId": "user_bob", "asset": "GOLD", "amount": 1});
    let batch = |client: &Client, key: &str, operations: Value| {
        post_as(
            &app,
            client,
            "/batch",
            &json!({"idempotencyKey": key, "operations": operations}),
        )
    };
    let entries = app.entry_count();
    let forbidden = |response: ApiResponse, scope: &str| {
        assert_error_details(&response, 403, "FORBIDDEN", json!({"requiredScope": scope}));
    };
    forbidden(
        batch(&game, "p-1", json!([spend, transfer, bonus])),
        "grant",
    );
    forbidden(
        batch(&webhook, "p-1", json!([topup, bonus, transfer])),
        "spend",
    );
    forbidden(batch(&reader, "p-1", json!([spend, topup])), "spend");
    forbidden(batch(&reader, "p-1", json!([topup, spend])), "grant");
    forbidden(batch(&reader, "p-1", json!([bonus])), "grant");
    assert_eq!(app.entry_count(), entries, "a forbidden batch wrote");

    // The same keys, with operations their scopes cover, and the same
    // idempotency key: the refusals did not use it up.
    assert_eq!(
        created(&batch(&game, "p-1", json!([spend, transfer])))["transactions"][1]["type"],
        "TRANSFER"
    );
    assert_eq!(
        created(&batch(&webhook, "p-1", json!([topup, bonus])))["transactions"][1]["type"],
        "BONUS"
    );
    created(&batch(&both, "p-1", json!([spend, topup, transfer, bonus])));
    created(&batch(&operator, "p-1", json!([bonus, spend])));
    assert_eq!(app.entry_count(), entries + 10);
}

// ---------------------------------------------------------------------------
// History filters

/// Goal: history filters by `referenceId` (an exact match, with the other
/// filters too) and by the new types TRANSFER and REVERSAL, on both sides of
/// a transfer; newest first.
#[test]
fn history_filters_by_reference_id_and_by_transfer_and_reversal() {
    let app = TestApp::spawn();
    let write = |path: &str, body: Value| -> Value {
        let response = app.post(path, &body);
        receipt(created(&response)).clone()
    };
    let topup = write(
        "/wallets/user_alice/topup",
        json!({"asset": "GOLD", "amount": 10, "idempotencyKey": "h-1", "referenceId": "order-1"}),
    );
    let spend = write(
        "/wallets/user_alice/spend",
        json!({"asset": "DIAMOND", "amount": 3, "idempotencyKey": "h-2", "referenceId": "order-1"}),
    );
    let transfer = write(
        "/wallets/user_alice/transfer",
        json!({"to": "user_bob", "asset": "GOLD", "amount": 20, "idempotencyKey": "h-3", "referenceId": "order-2"}),
    );
    let reversal = write(
        &format!("/transactions/{}/reverse", spend["id"].as_str().unwrap()),
        json!({"idempotencyKey": "h-4", "amount": 1, "referenceId": "order-1:refund"}),
    );
    let untagged = write(
        "/wallets/user_bob/transfer",
        json!({"to": "user_alice", "asset": "GOLD", "amount": 5, "idempotencyKey": "h-5"}),
    );

    let ids =
        |items: Vec<Value>| -> Vec<Value> { items.iter().map(|item| item["id"].clone()).collect() };
    assert_eq!(
        ids(history(&app, "user_alice", "&referenceId=order-1")),
        [spend["id"].clone(), topup["id"].clone()]
    );
    assert_eq!(
        ids(history(
            &app,
            "user_alice",
            "&referenceId=order-1&asset=GOLD"
        )),
        [topup["id"].clone()]
    );
    assert_eq!(
        ids(history(
            &app,
            "user_alice",
            "&referenceId=order-1&type=SPEND"
        )),
        [spend["id"].clone()]
    );
    assert_eq!(
        ids(history(&app, "user_alice", "&referenceId=order-1%3Arefund")),
        [reversal["id"].clone()]
    );
    assert_eq!(
        ids(history(&app, "user_alice", "&referenceId=order-2")),
        [transfer["id"].clone()]
    );
    assert_eq!(
        ids(history(&app, "user_bob", "&referenceId=order-2")),
        [transfer["id"].clone()]
    );
    assert!(history(&app, "user_alice", "&referenceId=order-").is_empty());
    assert!(history(&app, "user_alice", "&referenceId=ORDER-1").is_empty());
    let page = app.get("/wallets/user_alice/transactions?referenceId=none");
    assert_eq!(page.data(), &json!({"items": [], "nextCursor": null}));

    let alices = history(&app, "user_alice", "&type=TRANSFER");
    assert_eq!(
        ids(alices.clone()),
        [untagged["id"].clone(), transfer["id"].clone()]
    );
    let directions: Vec<&Value> = alices.iter().map(|item| &item["direction"]).collect();
    assert_eq!(directions, ["CREDIT", "DEBIT"]);
    let bobs = history(&app, "user_bob", "&type=TRANSFER");
    assert_eq!(
        ids(bobs.clone()),
        [untagged["id"].clone(), transfer["id"].clone()]
    );
    let directions: Vec<&Value> = bobs.iter().map(|item| &item["direction"]).collect();
    assert_eq!(directions, ["DEBIT", "CREDIT"]);
    assert_eq!(
        history(&app, "user_alice", "&type=REVERSAL"),
        std::slice::from_ref(&reversal)
    );
    assert!(history(&app, "user_bob", "&type=REVERSAL").is_empty());
    for bad in [
        "type=transfer",
        "type=REFUND",
        "referenceId=a&referenceId=b",
    ] {
        assert_error(
            &app.get(&format!("/wallets/user_alice/transactions?{bad}")),
            400,
            "VALIDATION_ERROR",
        );
    }
}

// ---------------------------------------------------------------------------
// held and available

/// Goal: until holds exist, every balance row has `held` 0 and `available`
/// = `balance`, and so does every write's answer (topup, bonus, spend,
/// transfer, reversal, batch), on a keyed deployment as on an open one.
#[test]
fn held_is_zero_and_available_is_the_balance_in_every_row_and_every_answer() {
    let app = TestApp::spawn_with_key();
    for user in ["user_alice", "user_bob"] {
        assert_eq!(balance_rows(&app, user).len(), 3);
    }
    let answers = [
        app.post_topup("user_alice", "GOLD", 5, "a-1"),
        app.post_bonus("user_alice", "DIAMOND", 5, "a-2"),
        app.post_spend("user_alice", "LOYALTY", 5, "a-3"),
        post_transfer(&app, "user_alice", "fresh", "GOLD", 5, "a-4"),
    ];
    let mut balances = Vec::new();
    for answer in &answers {
        let data = created(answer);
        receipt(data);
        balances.push(data["balance"].clone());
    }
    assert_eq!(balances, [json!(1005), json!(105), json!(495), json!(1000)]);
    let id = answers[0].data()["transaction"]["id"].clone();
    let reversal = post_reverse(&app, &id, &json!({"idempotencyKey": "a-5"}));
    assert_eq!(created(&reversal)["available"], 995);
    receipt(reversal.data());
    let batch = post_batch(
        &app,
        "a-6",
        &json!([{"type": "transfer", "userId": "fresh", "to": "user_bob", "asset": "GOLD", "amount": 2}]),
    );
    for row in created(&batch)["balances"].as_array().unwrap() {
        assert_eq!(row["available"], row["balance"], "{row:?}");
    }
    assert_eq!(
        balance_rows(&app, "user_alice"),
        [
            ("DIAMOND".to_owned(), 105),
            ("GOLD".to_owned(), 995),
            ("LOYALTY".to_owned(), 495)
        ]
    );
    assert_eq!(
        balance_rows(&app, "fresh"),
        [
            ("DIAMOND".to_owned(), 0),
            ("GOLD".to_owned(), 3),
            ("LOYALTY".to_owned(), 0)
        ]
    );
    assert_eq!(balance_rows(&app, "user_bob")[1], ("GOLD".to_owned(), 502));
}
