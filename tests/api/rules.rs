//! Limits (API.md "Limits (next)", issue 29), on the real binary over real
//! HTTP, read as /work/notes/rules-spec.md reads the contract: an asset's
//! rules (`PUT /assets/{asset}/rules`, `rules` on every Asset), a user's
//! overrides (`GET`/`PUT /wallets/{userId}/rules`), `422 BALANCE_LIMIT` and
//! `422 LIMIT_EXCEEDED` on every write that credits or counts, the
//! `asset.rules_changed` and `wallet.rules_changed` events, windows that
//! slide with the service's clock (libfaketime), `wallet assets rules`, and
//! two instances on one PostgreSQL database.
//!
//! The seed's top-ups are TOPUP entries made when the server starts, so
//! they sit in every TOPUP window: TOPUP limits are tried on users the seed
//! does not know.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::cli::assert_one_line_failure;
use crate::crash::assert_verify_passes;
use crate::engine::{key_set, object_keys, snapshot};
use crate::helpers::{client_with_key, run_wallet, send, tool_present, ApiResponse, TestApp};
use crate::instances::{at_once, instances, statuses, verify_clean, within};
use crate::postgres::Cluster;

/// 2^53 - 1: the largest amount, maxBalance and max.
const MAX_AMOUNT: u64 = 9_007_199_254_740_991;

/// A whole window's worth of seconds, less what a slow run of one test can
/// take: the least retryAfterSeconds a window's fresh entries can give.
const SLOW_TEST: i64 = 300;

fn default_rules() -> Value {
    json!({"spendOrder": "free-first", "maxBalance": null, "limits": [], "updatedAt": null})
}

fn limit(kind: &str, window_seconds: u64, max: u64) -> Value {
    json!({"type": kind, "windowSeconds": window_seconds, "max": max})
}

/// The asset with this symbol, as GET /assets lists it.
fn asset(app: &TestApp, symbol: &str) -> Value {
    let response = app.get("/assets");
    assert_eq!(response.status, 200, "{:?}", response.body);
    response
        .data()
        .as_array()
        .expect("a list of assets")
        .iter()
        .find(|asset| asset["symbol"] == symbol)
        .cloned()
        .unwrap_or_else(|| panic!("no asset {symbol} in {:?}", response.body))
}

fn put_rules(app: &TestApp, asset: &str, body: Value) -> ApiResponse {
    app.put(&format!("/assets/{asset}/rules"), &body)
}

/// PUT /assets/{asset}/rules that must succeed: the Asset it answers.
fn set_rules(app: &TestApp, asset: &str, body: Value) -> Value {
    let response = put_rules(app, asset, body.clone());
    assert_eq!(response.status, 200, "{body}: {:?}", response.body);
    response.data().clone()
}

fn put_user_rules(app: &TestApp, user: &str, body: Value) -> ApiResponse {
    app.put(&format!("/wallets/{user}/rules"), &body)
}

/// PUT /wallets/{user}/rules that must succeed: what it answers.
fn set_user_rules(app: &TestApp, user: &str, body: Value) -> Value {
    let response = put_user_rules(app, user, body.clone());
    assert_eq!(response.status, 200, "{body}: {:?}", response.body);
    response.data().clone()
}

/// GET /wallets/{user}/rules that must succeed.
fn user_rules(app: &TestApp, user: &str) -> Value {
    let response = app.get(&format!("/wallets/{user}/rules"));
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.data().clone()
}

/// One row of a user's rules, a row the contract's shape: asset, maxBalance,
/// limits, override.
fn user_row(asset: &str, max_balance: Value, limits: Value, overridden: bool) -> Value {
    json!({"asset": asset, "maxBalance": max_balance, "limits": limits, "override": overridden})
}

/// The seed's three assets, for a user with no override.
fn seed_rows() -> Vec<Value> {
    ["DIAMOND", "GOLD", "LOYALTY"]
        .into_iter()
        .map(|asset| user_row(asset, Value::Null, json!([]), false))
        .collect()
}

/// Every event of the feed, oldest first.
fn all_events(app: &TestApp) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = "/events?limit=1000".to_owned();
    for _ in 0..1000 {
        let page = app.get(&path);
        assert_eq!(page.status, 200, "{:?}", page.body);
        let items = page.data()["items"].as_array().unwrap().clone();
        if items.is_empty() {
            return events;
        }
        let next = page.data()["nextCursor"].as_str().unwrap().to_owned();
        path = format!("/events?after={next}&limit=1000");
        events.extend(items);
    }
    panic!("the feed did not end");
}

/// The feed's events of one type, oldest first.
fn events_of(app: &TestApp, kind: &str) -> Vec<Value> {
    all_events(app)
        .into_iter()
        .filter(|event| event["type"] == kind)
        .collect()
}

fn created(response: &ApiResponse) -> &Value {
    assert_eq!(response.status, 201, "{:?}", response.body);
    response.data()
}

fn transaction_id(response: &ApiResponse) -> String {
    created(response)["transaction"]["id"]
        .as_str()
        .expect("a transaction id")
        .to_owned()
}

fn transfer(app: &TestApp, from: &str, to: &str, amount: u64, key: &str) -> ApiResponse {
    app.post(
        &format!("/wallets/{from}/transfer"),
        &json!({"to": to, "asset": "GOLD", "amount": amount, "idempotencyKey": key}),
    )
}

fn reverse(app: &TestApp, id: &str, amount: Option<u64>, key: &str) -> ApiResponse {
    let mut body = json!({"idempotencyKey": key});
    if let Some(amount) = amount {
        body["amount"] = json!(amount);
    }
    app.post(&format!("/transactions/{id}/reverse"), &body)
}

fn hold(app: &TestApp, user: &str, amount: u64, key: &str) -> String {
    let response = app.post(
        &format!("/wallets/{user}/holds"),
        &json!({"asset": "GOLD", "amount": amount, "idempotencyKey": key}),
    );
    created(&response)["hold"]["id"]
        .as_str()
        .expect("a hold id")
        .to_owned()
}

fn capture(app: &TestApp, hold: &str, body: Value) -> ApiResponse {
    app.post(&format!("/holds/{hold}/capture"), &body)
}

fn hold_status(app: &TestApp, hold: &str) -> Value {
    let response = app.get(&format!("/holds/{hold}"));
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.data()["status"].clone()
}

/// A 400 VALIDATION_ERROR naming exactly `fields`, each once.
fn assert_fields(response: &ApiResponse, fields: &[&str], context: &Value) {
    assert_eq!(response.status, 400, "{context}: {:?}", response.body);
    assert_eq!(response.error_code(), "VALIDATION_ERROR", "{context}");
    let mut named = response.invalid_fields();
    named.sort();
    let mut expected: Vec<String> = fields.iter().map(|field| (*field).to_owned()).collect();
    expected.sort();
    assert_eq!(named, expected, "{context}: {:?}", response.body);
}

/// A 422 BALANCE_LIMIT whose details are exactly `details`.
fn assert_balance_limit(response: &ApiResponse, details: Value) {
    assert_eq!(response.status, 422, "{:?}", response.body);
    assert_eq!(
        response.error_code(),
        "BALANCE_LIMIT",
        "{:?}",
        response.body
    );
    assert_eq!(response.body["error"]["details"], details);
}

/// A 422 LIMIT_EXCEEDED whose details are exactly `details` and a
/// `retryAfterSeconds` that is an integer in `retry`, or null when `retry`
/// is None. Returns retryAfterSeconds.
fn assert_limit_exceeded(
    response: &ApiResponse,
    details: Value,
    retry: Option<RangeInclusive<i64>>,
) -> Option<i64> {
    assert_eq!(response.status, 422, "{:?}", response.body);
    assert_eq!(
        response.error_code(),
        "LIMIT_EXCEEDED",
        "{:?}",
        response.body
    );
    let mut given = response.body["error"]["details"]
        .as_object()
        .unwrap_or_else(|| panic!("no details: {:?}", response.body))
        .clone();
    let retry_after = given
        .remove("retryAfterSeconds")
        .unwrap_or_else(|| panic!("no retryAfterSeconds: {:?}", response.body));
    assert_eq!(Value::Object(given), details, "{:?}", response.body);
    match retry {
        None => {
            assert!(retry_after.is_null(), "{:?}", response.body);
            None
        }
        Some(range) => {
            let seconds = retry_after
                .as_i64()
                .unwrap_or_else(|| panic!("not an integer: {:?}", response.body));
            assert!(
                range.contains(&seconds),
                "retryAfterSeconds {seconds} not in {range:?}"
            );
            Some(seconds)
        }
    }
}

/// retryAfterSeconds for entries made during this test in a window of
/// `window` seconds, when the one that must leave first is among them.
fn fresh(window: i64) -> Option<RangeInclusive<i64>> {
    Some((window - SLOW_TEST).max(1)..=window)
}

fn millis(time: SystemTime) -> i128 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i128
}

/// `updatedAt` is an RFC 3339 UTC time with milliseconds, taken by the
/// service between `from` and `to` (a second of slack either side).
fn assert_updated_between(updated_at: &Value, from: SystemTime, to: SystemTime) {
    let text = updated_at
        .as_str()
        .unwrap_or_else(|| panic!("updatedAt is not a time: {updated_at}"));
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|error| panic!("{text}: {error}"));
    assert!(
        text.len() == 24 && text.ends_with('Z') && text.as_bytes()[19] == b'.',
        "not UTC with milliseconds: {text}"
    );
    let at = parsed.unix_timestamp_nanos() / 1_000_000;
    assert!(
        at >= millis(from) - 1000 && at <= millis(to) + 1000,
        "updatedAt {text} is not the service's clock at the change"
    );
}

// ---------------------------------------------------------------------------
// An asset's rules.

/// Goal: every Asset carries `rules`, the defaults until an operator sets
/// them: in GET /assets, and in POST /assets's answer whether it created the
/// asset or found it already the same (then with the rules it has).
#[test]
fn every_asset_carries_its_rules_and_they_are_the_defaults_until_set() {
    let app = TestApp::spawn();
    let listed = app.get("/assets");
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let assets = listed.data().as_array().unwrap();
    assert_eq!(assets.len(), 3);
    for asset in assets {
        assert_eq!(asset["rules"], default_rules(), "{asset}");
    }
    let gems = json!({"symbol": "GEMS", "name": "Gems", "decimals": 2});
    let made = app.post("/assets", &gems);
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.data()["rules"], default_rules());
    assert_eq!(asset(&app, "GEMS"), *made.data());
    let set = set_rules(&app, "GEMS", json!({"maxBalance": 70}));
    let again = app.post("/assets", &gems);
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(*again.data(), set, "the asset as it stands, rules and all");
    assert_eq!(again.data()["rules"]["maxBalance"], 70);
}

/// Goal: PUT sets the rules and answers 200 with the whole Asset (as it
/// was, with the new rules and `updatedAt` the service's clock), which GET
/// /assets then lists; the asset may be named by its id; the bounds of
/// every field are accepted; other assets keep theirs.
#[test]
fn put_asset_rules_sets_them_and_answers_the_asset_with_its_rules_and_updated_at() {
    let app = TestApp::spawn();
    let before = asset(&app, "GOLD");
    let limits = json!([
        limit("SPEND", 86_400, 1000),
        limit("TOPUP", 60, MAX_AMOUNT),
        limit("TRANSFER", 2_592_000, 1),
        limit("BONUS", 3600, 50),
    ]);
    let started = SystemTime::now();
    let answer = set_rules(
        &app,
        "GOLD",
        json!({"spendOrder": "paid-first", "maxBalance": 5000, "limits": limits}),
    );
    let finished = SystemTime::now();
    assert_eq!(object_keys(&answer), object_keys(&before));
    for field in ["id", "symbol", "name", "decimals", "createdAt"] {
        assert_eq!(answer[field], before[field], "{field}");
    }
    let rules = &answer["rules"];
    assert_eq!(
        object_keys(rules),
        key_set(&["spendOrder", "maxBalance", "limits", "updatedAt"])
    );
    assert_eq!(rules["spendOrder"], "paid-first");
    assert_eq!(rules["maxBalance"], 5000);
    assert_eq!(rules["limits"], limits, "every limit, in the order given");
    assert_updated_between(&rules["updatedAt"], started, finished);
    assert_eq!(asset(&app, "GOLD"), answer);
    assert_eq!(asset(&app, "DIAMOND")["rules"], default_rules());
    assert_eq!(asset(&app, "LOYALTY")["rules"], default_rules());

    // By id, answered by symbol; the least maxBalance there is.
    let diamond_id = app.asset_id("DIAMOND");
    let diamond = set_rules(
        &app,
        &diamond_id,
        json!({"maxBalance": 0, "limits": [limit("BONUS", 60, 1)]}),
    );
    assert_eq!(diamond["symbol"], "DIAMOND");
    assert_eq!(diamond["id"], diamond_id.as_str());
    assert_eq!(diamond["rules"]["spendOrder"], "free-first");
    assert_eq!(diamond["rules"]["maxBalance"], 0);
    assert_eq!(diamond["rules"]["limits"], json!([limit("BONUS", 60, 1)]));
    // The greatest maxBalance, and eight limits.
    let eight: Vec<Value> = ["TOPUP", "BONUS", "SPEND", "TRANSFER"]
        .into_iter()
        .flat_map(|kind| [limit(kind, 60, 1), limit(kind, 2_592_000, MAX_AMOUNT)])
        .collect();
    let loyalty = set_rules(
        &app,
        "LOYALTY",
        json!({"maxBalance": MAX_AMOUNT, "limits": eight}),
    );
    assert_eq!(loyalty["rules"]["maxBalance"], MAX_AMOUNT);
    assert_eq!(loyalty["rules"]["limits"], json!(eight));
    assert_eq!(asset(&app, "GOLD"), answer, "GOLD kept its own");
}

/// Goal: every field is optional: an absent one keeps its value, `null`
/// clears maxBalance, `null` or `[]` clears the limits, a list replaces
/// the list whole; updatedAt moves with each change.
#[test]
fn an_absent_field_keeps_its_value_null_clears_max_balance_and_null_or_an_empty_list_clears_limits()
{
    let app = TestApp::spawn();
    let spend = json!([limit("SPEND", 3600, 100)]);
    let topup = json!([limit("TOPUP", 60, 5)]);
    let mut last = set_rules(
        &app,
        "GOLD",
        json!({"spendOrder": "paid-first", "maxBalance": 5000, "limits": spend}),
    )["rules"]
        .clone();
    let steps = [
        (
            json!({"maxBalance": 7000}),
            json!({"spendOrder": "paid-first", "maxBalance": 7000, "limits": spend}),
        ),
        (
            json!({"spendOrder": "free-first"}),
            json!({"spendOrder": "free-first", "maxBalance": 7000, "limits": spend}),
        ),
        (
            json!({"limits": topup}),
            json!({"spendOrder": "free-first", "maxBalance": 7000, "limits": topup}),
        ),
        (
            json!({"maxBalance": null}),
            json!({"spendOrder": "free-first", "maxBalance": null, "limits": topup}),
        ),
        (
            json!({"limits": []}),
            json!({"spendOrder": "free-first", "maxBalance": null, "limits": []}),
        ),
        (
            json!({"limits": spend, "maxBalance": 1}),
            json!({"spendOrder": "free-first", "maxBalance": 1, "limits": spend}),
        ),
        (
            json!({"limits": null}),
            json!({"spendOrder": "free-first", "maxBalance": 1, "limits": []}),
        ),
    ];
    for (body, expected) in steps {
        std::thread::sleep(Duration::from_millis(5));
        let mut rules = set_rules(&app, "GOLD", body.clone())["rules"].clone();
        let updated_at = rules.as_object_mut().unwrap().remove("updatedAt").unwrap();
        assert_eq!(rules, expected, "after {body}");
        assert!(
            updated_at.as_str() > last["updatedAt"].as_str(),
            "{body}: updatedAt {updated_at} did not move on from {}",
            last["updatedAt"]
        );
        rules["updatedAt"] = updated_at;
        assert_eq!(asset(&app, "GOLD")["rules"], rules);
        last = rules;
    }
}

/// Goal: a PUT that changes nothing writes nothing: same answer, same
/// updatedAt, no event; the defaults given explicitly to an asset never set
/// leave updatedAt null.
#[test]
fn a_put_that_changes_nothing_keeps_updated_at_and_adds_no_event() {
    let app = TestApp::spawn();
    for body in [
        json!({"spendOrder": "free-first", "maxBalance": null, "limits": []}),
        json!({"limits": null}),
        json!({}),
    ] {
        let untouched = set_rules(&app, "DIAMOND", body.clone());
        assert_eq!(untouched["rules"], default_rules(), "{body}");
    }
    assert_eq!(events_of(&app, "asset.rules_changed"), Vec::<Value>::new());

    let limits = json!([limit("SPEND", 3600, 100), limit("TOPUP", 60, 10)]);
    let body = json!({"spendOrder": "paid-first", "maxBalance": 5000, "limits": limits});
    let first = set_rules(&app, "GOLD", body.clone());
    assert_eq!(events_of(&app, "asset.rules_changed").len(), 1);
    for same in [
        body,
        json!({}),
        json!({"maxBalance": 5000}),
        json!({"limits": limits}),
        json!({"spendOrder": "paid-first", "limits": limits}),
    ] {
        // Long enough for another updatedAt to show.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(set_rules(&app, "GOLD", same.clone()), first, "{same}");
    }
    assert_eq!(asset(&app, "GOLD"), first);
    assert_eq!(events_of(&app, "asset.rules_changed").len(), 1);
}

/// Goal: each change of an asset's rules is one `asset.rules_changed`
/// event in the feed, in commit order among the entries, whose data is the
/// Asset as the PUT answered it.
#[test]
fn each_change_of_an_assets_rules_is_one_asset_rules_changed_event_whose_data_is_the_asset() {
    let app = TestApp::spawn();
    let first = set_rules(&app, "GOLD", json!({"maxBalance": 100_000}));
    created(&app.post_topup("user_carol", "GOLD", 5, "between"));
    let second = set_rules(&app, "GOLD", json!({"limits": [limit("SPEND", 60, 9)]}));
    let third = set_rules(
        &app,
        &app.asset_id("DIAMOND"),
        json!({"spendOrder": "paid-first"}),
    );
    let events = all_events(&app);
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            vec!["transaction.created"; 6],
            vec![
                "asset.rules_changed",
                "transaction.created",
                "asset.rules_changed",
                "asset.rules_changed",
            ],
        ]
        .concat()
    );
    let changes: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "asset.rules_changed")
        .collect();
    for (event, answer) in changes.iter().zip([&first, &second, &third]) {
        assert_eq!(event["data"], *answer, "{event}");
        assert!(event["id"].is_string(), "{event}");
        assert!(event["createdAt"].is_string(), "{event}");
    }
}

/// Goal: bad rules are one 400 VALIDATION_ERROR naming every problem
/// (details.fields), each alone and all in one body; nothing changes and no
/// event is written.
#[test]
fn bad_asset_rules_are_refused_naming_every_problem_in_one_answer_and_change_nothing() {
    let app = TestApp::spawn();
    let kept = set_rules(
        &app,
        "GOLD",
        json!({"spendOrder": "paid-first", "maxBalance": 5000, "limits": [limit("SPEND", 3600, 100)]}),
    );
    let all_at_once = json!({
        "spendOrder": "cheapest-first",
        "maxBalance": -1,
        "limits": [
            {"type": "WITHDRAW", "windowSeconds": 59, "max": 0},
            limit("SPEND", 2_592_001, 1),
            {"type": "TOPUP", "windowSeconds": 60, "max": 5, "per": "user"},
        ],
        "colour": "red",
    });
    assert_fields(
        &put_rules(&app, "GOLD", all_at_once.clone()),
        &[
            "spendOrder",
            "maxBalance",
            "limits[0].type",
            "limits[0].windowSeconds",
            "limits[0].max",
            "limits[1].windowSeconds",
            "limits[2].per",
            "colour",
        ],
        &all_at_once,
    );
    let nine: Vec<Value> = ["TOPUP", "BONUS", "SPEND"]
        .into_iter()
        .flat_map(|kind| [60, 120, 180].map(|window| limit(kind, window, 10)))
        .collect();
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"spendOrder": "cheapest-first"}), &["spendOrder"]),
        (json!({"spendOrder": "PAID-FIRST"}), &["spendOrder"]),
        (json!({"spendOrder": null}), &["spendOrder"]),
        (json!({"spendOrder": 1}), &["spendOrder"]),
        (json!({"maxBalance": -1}), &["maxBalance"]),
        (json!({"maxBalance": 1.5}), &["maxBalance"]),
        (json!({"maxBalance": "10"}), &["maxBalance"]),
        (json!({"maxBalance": MAX_AMOUNT + 1}), &["maxBalance"]),
        (
            json!({"limits": limit("SPEND", 60, 1)}),
            &["limits"] as &[&str],
        ),
        (json!({"limits": "SPEND:60:1"}), &["limits"]),
        (json!({"limits": nine}), &["limits"]),
        (
            json!({"limits": [{"type": "WITHDRAW", "windowSeconds": 60, "max": 1}]}),
            &["limits[0].type"],
        ),
        (
            json!({"limits": [limit("SPEND", 60, 1), limit("TOPUP", 59, 1)]}),
            &["limits[1].windowSeconds"],
        ),
        (
            json!({"limits": [limit("SPEND", 2_592_001, 1)]}),
            &["limits[0].windowSeconds"],
        ),
        (
            json!({"limits": [limit("SPEND", 60, 0)]}),
            &["limits[0].max"],
        ),
        (
            json!({"limits": [limit("SPEND", 60, MAX_AMOUNT + 1)]}),
            &["limits[0].max"],
        ),
        (
            json!({"limits": [{"type": "SPEND", "windowSeconds": 60, "max": 1.5}]}),
            &["limits[0].max"],
        ),
        (
            json!({"limits": [{"windowSeconds": 60, "max": 1}]}),
            &["limits[0].type"],
        ),
        (
            json!({"limits": [limit("SPEND", 3600, 10), limit("TOPUP", 3600, 10), limit("SPEND", 3600, 20)]}),
            &["limits[2]"],
        ),
        (
            json!({"limits": [{"type": "SPEND", "windowSeconds": 60, "max": 1, "per": "day"}]}),
            &["limits[0].per"],
        ),
        (json!({"limits": [5]}), &["limits[0]"]),
        (json!({"colour": "red"}), &["colour"]),
    ];
    for (body, fields) in cases {
        assert_fields(&put_rules(&app, "GOLD", body.clone()), fields, &body);
    }
    assert_eq!(asset(&app, "GOLD"), kept);
    assert_eq!(events_of(&app, "asset.rules_changed").len(), 1);
}

/// Goal: rules of an asset that does not exist, by symbol or by id, are
/// 404 ASSET_NOT_FOUND, for the asset and for a user's override alike.
#[test]
fn rules_of_an_unknown_asset_are_asset_not_found() {
    let app = TestApp::spawn();
    let unknown_id = uuid::Uuid::new_v4().to_string();
    for asset in ["NOPE", unknown_id.as_str()] {
        let response = put_rules(&app, asset, json!({"maxBalance": 1}));
        assert_eq!(response.status, 404, "{:?}", response.body);
        assert_eq!(response.error_code(), "ASSET_NOT_FOUND");
        let response = put_user_rules(&app, "user_alice", json!({"asset": asset, "maxBalance": 1}));
        assert_eq!(response.status, 404, "{:?}", response.body);
        assert_eq!(response.error_code(), "ASSET_NOT_FOUND");
    }
    assert_eq!(
        user_rules(&app, "user_alice"),
        json!({"userId": "user_alice", "rules": seed_rows()})
    );
    assert_eq!(all_events(&app).len(), 6, "the seed's alone");
}

/// Goal: a user's override is refused, naming every problem, when its
/// asset is missing, a value is bad, or it carries a field a user cannot
/// have (spendOrder is the asset's alone); a bad userId is 400; nothing is
/// written.
#[test]
fn bad_user_rules_are_refused_naming_every_problem_and_change_nothing() {
    let app = TestApp::spawn();
    let nine: Vec<Value> = ["TOPUP", "BONUS", "SPEND"]
        .into_iter()
        .flat_map(|kind| [60, 120, 180].map(|window| limit(kind, window, 10)))
        .collect();
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({"maxBalance": 1}), &["asset"]),
        (json!({"asset": 5, "maxBalance": 1}), &["asset"]),
        (
            json!({"asset": "GOLD", "maxBalance": -1, "limits": [limit("SPEND", 59, 0)]}),
            &["maxBalance", "limits[0].windowSeconds", "limits[0].max"],
        ),
        (json!({"asset": "GOLD", "maxBalance": 1.5}), &["maxBalance"]),
        (
            json!({"asset": "GOLD", "spendOrder": "paid-first"}),
            &["spendOrder"],
        ),
        (json!({"asset": "GOLD", "limits": "none"}), &["limits"]),
        (json!({"asset": "GOLD", "limits": nine}), &["limits"]),
        (
            json!({"asset": "GOLD", "limits": [limit("SPEND", 60, 1), limit("SPEND", 60, 2)]}),
            &["limits[1]"],
        ),
        (
            json!({"asset": "GOLD", "limits": [{"type": "EXPIRY", "windowSeconds": 60, "max": 1}]}),
            &["limits[0].type"],
        ),
    ];
    for (body, fields) in cases {
        assert_fields(&put_user_rules(&app, "kid", body.clone()), fields, &body);
    }
    for user in ["bad!user", "a%20b"] {
        let put = put_user_rules(&app, user, json!({"asset": "GOLD", "maxBalance": 1}));
        assert_eq!(put.status, 400, "{user}: {:?}", put.body);
        assert_eq!(put.error_code(), "VALIDATION_ERROR");
        let get = app.get(&format!("/wallets/{user}/rules"));
        assert_eq!(get.status, 400, "{user}: {:?}", get.body);
        assert_eq!(get.error_code(), "VALIDATION_ERROR");
    }
    assert_eq!(
        user_rules(&app, "kid"),
        json!({"userId": "kid", "rules": seed_rows()})
    );
    assert_eq!(events_of(&app, "wallet.rules_changed").len(), 0);
}

// ---------------------------------------------------------------------------
// Scopes.

/// Goal: both PUTs need `admin` (403 FORBIDDEN naming it, checked before
/// the body, so even a bad body is 403), GET /wallets/{u}/rules needs
/// `read`; no key is 401; a refused PUT changes nothing.
#[test]
fn only_an_admin_key_may_put_rules_and_a_users_rules_are_read_with_read() {
    let (app, secrets) = TestApp::spawn_with_keys(
        &[
            ("reader", "read"),
            ("game", "read,spend"),
            ("spender", "spend"),
            ("webhook", "grant"),
            ("ops", "admin"),
        ],
        &[],
    );
    let [reader, game, spender, webhook, ops] =
        [0, 1, 2, 3, 4].map(|n| client_with_key(Some(&secrets[n])));
    let anonymous = client_with_key(None);
    for (name, client) in [
        ("read", &reader),
        ("read,spend", &game),
        ("spend", &spender),
        ("grant", &webhook),
    ] {
        for (path, body) in [
            ("/assets/GOLD/rules", json!({"maxBalance": 1})),
            ("/assets/GOLD/rules", json!({"maxBalance": -1})),
            (
                "/wallets/kid/rules",
                json!({"asset": "GOLD", "maxBalance": 1}),
            ),
            ("/wallets/kid/rules", json!({"asset": "GOLD", "colour": 1})),
        ] {
            let response = send(client.put(app.url(path)).json(&body));
            assert_eq!(response.status, 403, "{name} {path}: {:?}", response.body);
            assert_eq!(response.error_code(), "FORBIDDEN");
            assert_eq!(
                response.body["error"]["details"],
                json!({"requiredScope": "admin"}),
                "{name} {path}"
            );
        }
    }
    for path in ["/assets/GOLD/rules", "/wallets/kid/rules"] {
        let response = send(
            anonymous
                .put(app.url(path))
                .json(&json!({"asset": "GOLD", "maxBalance": 1})),
        );
        assert_eq!(response.status, 401, "{path}: {:?}", response.body);
        assert_eq!(response.error_code(), "UNAUTHORIZED");
    }
    for (name, client) in [("spend", &spender), ("grant", &webhook)] {
        let response = send(client.get(app.url("/wallets/kid/rules")));
        assert_eq!(response.status, 403, "{name}: {:?}", response.body);
        assert_eq!(response.error_code(), "FORBIDDEN");
        assert_eq!(
            response.body["error"]["details"],
            json!({"requiredScope": "read"})
        );
    }
    let response = send(anonymous.get(app.url("/wallets/kid/rules")));
    assert_eq!(response.status, 401, "{:?}", response.body);
    let untouched = json!({"userId": "kid", "rules": seed_rows()});
    for client in [&reader, &game, &ops] {
        let response = send(client.get(app.url("/wallets/kid/rules")));
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(*response.data(), untouched);
    }
    let listed = send(ops.get(app.url("/assets")));
    for asset in listed.data().as_array().unwrap() {
        assert_eq!(asset["rules"], default_rules(), "a refused PUT wrote");
    }
    // The admin key may.
    let put = send(
        ops.put(app.url("/assets/GOLD/rules"))
            .json(&json!({"maxBalance": 1})),
    );
    assert_eq!(put.status, 200, "{:?}", put.body);
    let put = send(
        ops.put(app.url("/wallets/kid/rules"))
            .json(&json!({"asset": "GOLD", "maxBalance": 1})),
    );
    assert_eq!(put.status, 200, "{:?}", put.body);
}

// ---------------------------------------------------------------------------
// maxBalance.

/// Goal: a top-up that would take a balance past maxBalance is 422
/// BALANCE_LIMIT with {maxBalance, balance (before), requested}; reaching
/// it exactly is allowed; nothing is written (balance, history, entries),
/// and the key is not consumed: once the max is raised the same request
/// with the same key is applied. A user with no account has balance 0.
#[test]
fn a_topup_past_max_balance_is_balance_limit_writes_nothing_and_its_key_works_once_the_max_is_raised(
) {
    let app = TestApp::spawn();
    set_rules(&app, "GOLD", json!({"maxBalance": 1200}));
    let before = snapshot(&app, &["user_alice", "newbie"]);
    let entries = app.entry_count();
    let over = app.post_topup("user_alice", "GOLD", 201, "over");
    assert_balance_limit(
        &over,
        json!({"maxBalance": 1200, "balance": 1000, "requested": 201}),
    );
    let newbie = app.post_topup("newbie", "GOLD", 1201, "newbie-over");
    assert_balance_limit(
        &newbie,
        json!({"maxBalance": 1200, "balance": 0, "requested": 1201}),
    );
    assert_eq!(snapshot(&app, &["user_alice", "newbie"]), before);
    assert_eq!(app.entry_count(), entries);
    // Up to the max exactly.
    assert_eq!(
        created(&app.post_topup("user_alice", "GOLD", 200, "to-the-max"))["balance"],
        1200
    );
    assert_balance_limit(
        &app.post_topup("user_alice", "GOLD", 1, "one-more"),
        json!({"maxBalance": 1200, "balance": 1200, "requested": 1}),
    );
    // Other assets have no max.
    created(&app.post_topup("user_alice", "DIAMOND", 100_000, "diamonds"));
    // Raised: the refused key is applied, as new.
    set_rules(&app, "GOLD", json!({"maxBalance": 1401}));
    let retried = app.post_topup("user_alice", "GOLD", 201, "over");
    assert_eq!(created(&retried)["balance"], 1401);
    assert_eq!(retried.header("idempotent-replayed"), None);
    assert_balance_limit(
        &app.post_topup("user_alice", "GOLD", 1, "one-more"),
        json!({"maxBalance": 1401, "balance": 1401, "requested": 1}),
    );
    assert_verify_passes(&app.db_path);
}

/// Goal: every other credit to a user is held to maxBalance the same way:
/// a bonus, a transfer's recipient (the sender is not limited), a capture
/// `to` a user, and a refund (the reversal of a SPEND), whole or partial;
/// nothing is written, the hold stays HELD.
#[test]
fn a_bonus_a_transfers_recipient_a_capture_to_a_user_and_a_refund_are_held_to_max_balance() {
    let app = TestApp::spawn();
    set_rules(&app, "GOLD", json!({"maxBalance": 1100}));
    let users = ["user_alice", "user_bob"];
    let before = snapshot(&app, &users);
    assert_balance_limit(
        &app.post_bonus("user_alice", "GOLD", 101, "bonus-over"),
        json!({"maxBalance": 1100, "balance": 1000, "requested": 101}),
    );
    assert_eq!(snapshot(&app, &users), before);
    assert_eq!(
        created(&app.post_bonus("user_alice", "GOLD", 100, "bonus"))["balance"],
        1100
    );

    // A transfer to a user at the max.
    let before = snapshot(&app, &users);
    assert_balance_limit(
        &transfer(&app, "user_bob", "user_alice", 1, "to-alice"),
        json!({"maxBalance": 1100, "balance": 1100, "requested": 1}),
    );
    // A capture to her.
    let bobs = hold(&app, "user_bob", 10, "bob-hold");
    let before_capture = snapshot(&app, &users);
    assert_balance_limit(
        &capture(
            &app,
            &bobs,
            json!({"idempotencyKey": "bob-capture", "to": "user_alice"}),
        ),
        json!({"maxBalance": 1100, "balance": 1100, "requested": 10}),
    );
    assert_eq!(hold_status(&app, &bobs), "HELD");
    assert_eq!(snapshot(&app, &users), before_capture);
    let voided = app.post(
        &format!("/holds/{bobs}/void"),
        &json!({"idempotencyKey": "bob-void"}),
    );
    assert_eq!(voided.status, 200, "{:?}", voided.body);
    assert_eq!(snapshot(&app, &users), before);
    // The sender is not limited by maxBalance: alice sends out freely.
    created(&transfer(&app, "user_alice", "user_bob", 60, "to-bob"));

    // A refund of a spend: alice at 1040, spends 50, is back to 1100.
    let spend = transaction_id(&app.post_spend("user_alice", "GOLD", 50, "spend"));
    created(&app.post_bonus("user_alice", "GOLD", 110, "refill"));
    assert_eq!(app.balance("user_alice", "GOLD"), 1100);
    let before = snapshot(&app, &users);
    assert_balance_limit(
        &reverse(&app, &spend, None, "refund"),
        json!({"maxBalance": 1100, "balance": 1100, "requested": 50}),
    );
    assert_balance_limit(
        &reverse(&app, &spend, Some(1), "refund-part"),
        json!({"maxBalance": 1100, "balance": 1100, "requested": 1}),
    );
    assert_eq!(snapshot(&app, &users), before);
    created(&app.post_spend("user_alice", "GOLD", 30, "room"));
    assert_balance_limit(
        &reverse(&app, &spend, None, "refund"),
        json!({"maxBalance": 1100, "balance": 1070, "requested": 50}),
    );
    assert_eq!(
        created(&reverse(&app, &spend, Some(30), "refund-part"))["balance"],
        1100
    );
    assert_verify_passes(&app.db_path);
}

/// Goal: lowering maxBalance below a user's balance takes nothing away:
/// the balance stays, debits (spend, transfer out, a chargeback) still
/// work, and only credits are refused.
#[test]
fn lowering_max_balance_below_a_balance_takes_nothing_away_and_debits_still_work() {
    let app = TestApp::spawn();
    let seed_topup = crate::engine::history(&app, "user_alice", "&asset=GOLD")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    set_rules(&app, "GOLD", json!({"maxBalance": 100}));
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
    assert_eq!(
        created(&app.post_spend("user_alice", "GOLD", 10, "spend"))["balance"],
        990
    );
    assert_eq!(
        created(&transfer(&app, "user_alice", "newbie", 10, "out"))["balance"],
        980
    );
    assert_eq!(
        created(&reverse(&app, &seed_topup, Some(5), "chargeback"))["balance"],
        975
    );
    assert_balance_limit(
        &app.post_topup("user_alice", "GOLD", 1, "topup"),
        json!({"maxBalance": 100, "balance": 975, "requested": 1}),
    );
    assert_balance_limit(
        &app.post_bonus("user_alice", "GOLD", 1, "bonus"),
        json!({"maxBalance": 100, "balance": 975, "requested": 1}),
    );
    assert_eq!(app.balance("user_alice", "GOLD"), 975);
    assert_eq!(app.balance("user_bob", "GOLD"), 500);
    assert_verify_passes(&app.db_path);
}

// ---------------------------------------------------------------------------
// Limits.

/// Goal: spends pass up to a SPEND limit's max; the next is 422
/// LIMIT_EXCEEDED with {type, windowSeconds, max, used, requested,
/// retryAfterSeconds} (an integer, the time until the window's first entry
/// leaves it), nothing written, the key not consumed; the limit is per user
/// and per asset, and counts nothing but spends.
#[test]
fn spends_pass_up_to_a_spend_limit_and_the_next_is_limit_exceeded_with_its_details() {
    let app = TestApp::spawn();
    set_rules(&app, "GOLD", json!({"limits": [limit("SPEND", 3600, 100)]}));
    created(&app.post_spend("user_alice", "GOLD", 40, "s-40"));
    created(&app.post_spend("user_alice", "GOLD", 60, "s-60"));
    let before = snapshot(&app, &["user_alice"]);
    let entries = app.entry_count();
    let expected =
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 1});
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "s-1"),
        expected.clone(),
        fresh(3600),
    );
    // Refused again with the same key: it was not consumed, nor replayed.
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "s-1"),
        expected,
        fresh(3600),
    );
    assert_eq!(snapshot(&app, &["user_alice"]), before);
    assert_eq!(app.entry_count(), entries);
    // Per user, per asset, spends only.
    created(&app.post_spend("user_bob", "GOLD", 100, "bob-100"));
    created(&app.post_spend("user_alice", "DIAMOND", 100, "diamonds"));
    created(&app.post_topup("user_alice", "GOLD", 500, "topup"));
    created(&app.post_bonus("user_alice", "GOLD", 500, "bonus"));
    created(&transfer(&app, "user_alice", "user_bob", 500, "transfer"));
    // Raised, the same key is applied.
    set_rules(&app, "GOLD", json!({"limits": [limit("SPEND", 3600, 101)]}));
    created(&app.post_spend("user_alice", "GOLD", 1, "s-1"));
    assert_verify_passes(&app.db_path);
}

/// Goal: a request over max by itself never fits: retryAfterSeconds is
/// null, whatever the window already holds.
#[test]
fn a_request_over_max_by_itself_is_limit_exceeded_with_a_null_retry_after() {
    let app = TestApp::spawn();
    set_rules(&app, "GOLD", json!({"limits": [limit("SPEND", 3600, 100)]}));
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 101, "alone"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 0, "requested": 101}),
        None,
    );
    created(&app.post_spend("user_alice", "GOLD", 10, "ten"));
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 101, "alone"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 10, "requested": 101}),
        None,
    );
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 91, "just-over"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 10, "requested": 91}),
        fresh(3600),
    );
    assert_eq!(app.balance("user_alice", "GOLD"), 990);
}

/// Goal: TOPUP and BONUS limits count what the user was credited by
/// top-ups and by bonuses, each its own; another user has a window of
/// their own.
#[test]
fn topup_and_bonus_limits_count_what_the_user_was_credited_each_its_own() {
    let app = TestApp::spawn();
    set_rules(
        &app,
        "GOLD",
        json!({"limits": [limit("TOPUP", 3600, 100), limit("BONUS", 600, 50)]}),
    );
    created(&app.post_topup("kid", "GOLD", 70, "t-70"));
    created(&app.post_topup("kid", "GOLD", 30, "t-30"));
    let before = snapshot(&app, &["kid"]);
    assert_limit_exceeded(
        &app.post_topup("kid", "GOLD", 1, "t-1"),
        json!({"type": "TOPUP", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 1}),
        fresh(3600),
    );
    assert_eq!(snapshot(&app, &["kid"]), before);
    created(&app.post_bonus("kid", "GOLD", 50, "b-50"));
    assert_limit_exceeded(
        &app.post_bonus("kid", "GOLD", 1, "b-1"),
        json!({"type": "BONUS", "windowSeconds": 600, "max": 50, "used": 50, "requested": 1}),
        fresh(600),
    );
    // Spends count for neither.
    created(&app.post_spend("kid", "GOLD", 150, "spent"));
    assert_limit_exceeded(
        &app.post_topup("kid", "GOLD", 1, "t-1"),
        json!({"type": "TOPUP", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 1}),
        fresh(3600),
    );
    created(&app.post_topup("sibling", "GOLD", 100, "sibling-t"));
    created(&app.post_bonus("sibling", "GOLD", 50, "sibling-b"));
    assert_eq!(app.balance("kid", "GOLD"), 0);
}

/// Goal: when several rules fail, the first in the list's order is named.
#[test]
fn the_first_failing_rule_in_the_lists_order_is_named() {
    let app = TestApp::spawn();
    set_rules(
        &app,
        "GOLD",
        json!({"limits": [limit("SPEND", 3600, 100), limit("SPEND", 60, 100)]}),
    );
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 101, "over"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 0, "requested": 101}),
        None,
    );
    set_rules(
        &app,
        "GOLD",
        json!({"limits": [limit("SPEND", 60, 100), limit("SPEND", 3600, 100)]}),
    );
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 101, "over"),
        json!({"type": "SPEND", "windowSeconds": 60, "max": 100, "used": 0, "requested": 101}),
        None,
    );
    // The first that fails, not the first in the list.
    set_rules(
        &app,
        "GOLD",
        json!({"limits": [limit("SPEND", 60, 1000), limit("SPEND", 3600, 100)]}),
    );
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 101, "over"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 0, "requested": 101}),
        None,
    );
}

/// Goal: a TRANSFER limit counts what the user sent, never what they
/// received, and transfers are not spends.
#[test]
fn a_transfer_limit_counts_what_the_user_sent_not_what_they_received() {
    let app = TestApp::spawn();
    set_rules(
        &app,
        "GOLD",
        json!({"limits": [limit("TRANSFER", 3600, 100), limit("SPEND", 3600, 10)]}),
    );
    created(&transfer(&app, "user_alice", "user_bob", 60, "a-60"));
    // Bob received 60: his own window is empty.
    created(&transfer(&app, "user_bob", "user_alice", 90, "b-90"));
    created(&transfer(&app, "user_alice", "user_bob", 40, "a-40"));
    let users = ["user_alice", "user_bob"];
    let before = snapshot(&app, &users);
    let alice_sent =
        json!({"type": "TRANSFER", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 1});
    assert_limit_exceeded(
        &transfer(&app, "user_alice", "user_bob", 1, "a-1"),
        alice_sent,
        fresh(3600),
    );
    assert_limit_exceeded(
        &transfer(&app, "user_bob", "user_alice", 11, "b-11"),
        json!({"type": "TRANSFER", "windowSeconds": 3600, "max": 100, "used": 90, "requested": 11}),
        fresh(3600),
    );
    assert_eq!(snapshot(&app, &users), before);
    created(&transfer(&app, "user_bob", "user_alice", 10, "b-10"));
    // Transfers are not spends: alice's SPEND window is empty.
    created(&app.post_spend("user_alice", "GOLD", 10, "s-10"));
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "s-1"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 10, "used": 10, "requested": 1}),
        fresh(3600),
    );
    assert_eq!(
        app.balance("user_alice", "GOLD"),
        1000 - 60 + 90 - 40 + 10 - 10
    );
    assert_eq!(app.balance("user_bob", "GOLD"), 500 + 60 - 90 + 40 - 10);
}

/// Goal: a capture is a write like the others: without `to` it counts as
/// a SPEND (a partial capture by what it takes), with `to` as the hold
/// user's TRANSFER; a refused capture writes nothing and leaves the hold
/// HELD.
#[test]
fn a_capture_counts_as_a_spend_or_with_to_as_a_transfer() {
    let app = TestApp::spawn();
    set_rules(
        &app,
        "GOLD",
        json!({"limits": [limit("SPEND", 3600, 100), limit("TRANSFER", 3600, 50)]}),
    );
    let first = hold(&app, "user_alice", 60, "h-1");
    let second = hold(&app, "user_alice", 60, "h-2");
    let third = hold(&app, "user_alice", 50, "h-3");
    let fourth = hold(&app, "user_alice", 1, "h-4");
    created(&capture(&app, &first, json!({"idempotencyKey": "c-1"})));
    let users = ["user_alice", "user_bob"];
    let before = snapshot(&app, &users);
    assert_limit_exceeded(
        &capture(&app, &second, json!({"idempotencyKey": "c-2"})),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 60, "requested": 60}),
        fresh(3600),
    );
    assert_eq!(hold_status(&app, &second), "HELD");
    assert_eq!(snapshot(&app, &users), before);
    let partial = capture(
        &app,
        &second,
        json!({"idempotencyKey": "c-2", "amount": 40}),
    );
    assert_eq!(created(&partial)["transaction"]["amount"], 40);
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "s-1"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 1}),
        fresh(3600),
    );
    // With `to`: a transfer of alice's.
    created(&capture(
        &app,
        &third,
        json!({"idempotencyKey": "c-3", "to": "user_bob"}),
    ));
    let before = snapshot(&app, &users);
    assert_limit_exceeded(
        &capture(
            &app,
            &fourth,
            json!({"idempotencyKey": "c-4", "to": "user_bob"}),
        ),
        json!({"type": "TRANSFER", "windowSeconds": 3600, "max": 50, "used": 50, "requested": 1}),
        fresh(3600),
    );
    assert_limit_exceeded(
        &capture(&app, &fourth, json!({"idempotencyKey": "c-4b"})),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 1}),
        fresh(3600),
    );
    assert_eq!(hold_status(&app, &fourth), "HELD");
    assert_eq!(snapshot(&app, &users), before);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000 - 60 - 40 - 50);
    assert_eq!(app.balance("user_bob", "GOLD"), 550);
}

/// Goal: a reversal gives nothing back to a window (a refunded spend still
/// counts, a charged-back top-up still counts) and is itself counted in no
/// window: a chargeback is not a spend, a refund is not a top-up.
#[test]
fn a_reversal_gives_nothing_back_to_the_window_and_counts_in_none() {
    let app = TestApp::spawn();
    set_rules(
        &app,
        "GOLD",
        json!({"limits": [limit("SPEND", 3600, 50), limit("TOPUP", 3600, 100)]}),
    );
    let kid_full =
        json!({"type": "TOPUP", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 1});
    let topup = transaction_id(&app.post_topup("kid", "GOLD", 100, "kid-topup"));
    assert_limit_exceeded(
        &app.post_topup("kid", "GOLD", 1, "kid-topup-1"),
        kid_full.clone(),
        fresh(3600),
    );
    created(&reverse(&app, &topup, Some(60), "chargeback"));
    assert_limit_exceeded(
        &app.post_topup("kid", "GOLD", 1, "kid-topup-1"),
        kid_full,
        fresh(3600),
    );
    // The chargeback debited kid 60; were it a spend, 40 more would pass 50.
    created(&app.post_spend("kid", "GOLD", 40, "kid-spend"));
    assert_eq!(app.balance("kid", "GOLD"), 0);

    let spend = transaction_id(&app.post_spend("user_alice", "GOLD", 50, "alice-spend"));
    created(&reverse(&app, &spend, None, "refund"));
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "alice-spend-1"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 50, "used": 50, "requested": 1}),
        fresh(3600),
    );
    // The refund credited her 50; it is not a top-up (the seed's 1000 is).
    assert_limit_exceeded(
        &app.post_topup("user_alice", "GOLD", 1, "alice-topup"),
        json!({"type": "TOPUP", "windowSeconds": 3600, "max": 100, "used": 1000, "requested": 1}),
        fresh(3600),
    );
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}

/// Goal: the checks of one write come in the notes' order: funds first,
/// then the debited user's limit, then the credited user's limit, then
/// maxBalance.
#[test]
fn funds_come_before_limits_and_limits_before_max_balance() {
    let app = TestApp::spawn();
    set_rules(
        &app,
        "GOLD",
        json!({"maxBalance": 15, "limits": [limit("SPEND", 3600, 10), limit("TOPUP", 3600, 10), limit("TRANSFER", 3600, 5)]}),
    );
    created(&app.post_topup("kid", "GOLD", 10, "kid-topup"));
    created(&app.post_spend("kid", "GOLD", 10, "kid-spend"));
    // Short of funds and over the SPEND limit: funds.
    let short = app.post_spend("kid", "GOLD", 20, "kid-spend-2");
    assert_eq!(short.status, 422, "{:?}", short.body);
    assert_eq!(short.error_code(), "INSUFFICIENT_FUNDS");
    // Over the TOPUP limit and past maxBalance: the limit.
    assert_limit_exceeded(
        &app.post_topup("kid", "GOLD", 16, "kid-topup-2"),
        json!({"type": "TOPUP", "windowSeconds": 3600, "max": 10, "used": 10, "requested": 16}),
        None,
    );
    // The sender over the TRANSFER limit, the recipient past maxBalance:
    // the limit.
    created(&app.post_bonus("teen", "GOLD", 15, "teen-bonus"));
    created(&transfer(&app, "teen", "friend", 5, "teen-5"));
    created(&app.post_bonus("minor", "GOLD", 15, "minor-bonus"));
    assert_limit_exceeded(
        &transfer(&app, "teen", "minor", 1, "teen-1"),
        json!({"type": "TRANSFER", "windowSeconds": 3600, "max": 5, "used": 5, "requested": 1}),
        fresh(3600),
    );
    // Within the limit, the recipient's maxBalance.
    assert_balance_limit(
        &transfer(&app, "friend", "minor", 1, "friend-1"),
        json!({"maxBalance": 15, "balance": 15, "requested": 1}),
    );
    // Short of funds, the recipient past maxBalance: funds.
    let short = transfer(&app, "friend", "minor", 6, "friend-6");
    assert_eq!(short.error_code(), "INSUFFICIENT_FUNDS", "{:?}", short.body);
}

/// Goal: a batch counts each operation against the windows and balances
/// the earlier ones left: the failing one is named by details.operation
/// beside the usual details, nothing of the batch is written, and its key
/// stays free; a batch's entries then count for the writes after it.
#[test]
fn a_batch_counts_each_operation_against_the_ones_before_it() {
    let app = TestApp::spawn();
    set_rules(
        &app,
        "GOLD",
        json!({"maxBalance": 100, "limits": [limit("SPEND", 3600, 100), limit("TRANSFER", 3600, 50)]}),
    );
    let op = |kind: &str, user: &str, amount: u64| json!({"type": kind, "userId": user, "asset": "GOLD", "amount": amount});
    let to_carol = |amount: u64| {
        let mut sent = op("transfer", "user_alice", amount);
        sent["to"] = json!("carol");
        sent
    };
    let users = ["user_alice", "user_bob", "kid", "carol"];
    let before = snapshot(&app, &users);
    let entries = app.entry_count();
    let spends = app.post(
        "/batch",
        &json!({"idempotencyKey": "b-1", "operations": [
            op("spend", "user_alice", 60),
            op("spend", "user_bob", 60),
            op("spend", "user_alice", 30),
            op("spend", "user_alice", 20),
        ]}),
    );
    assert_limit_exceeded(
        &spends,
        json!({"operation": 3, "type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 90, "requested": 20}),
        fresh(3600),
    );
    let credits = app.post(
        "/batch",
        &json!({"idempotencyKey": "b-2", "operations": [
            op("topup", "kid", 60),
            op("bonus", "kid", 40),
            op("bonus", "kid", 1),
        ]}),
    );
    assert_balance_limit(
        &credits,
        json!({"operation": 2, "maxBalance": 100, "balance": 100, "requested": 1}),
    );
    let transfers = app.post(
        "/batch",
        &json!({"idempotencyKey": "b-3", "operations": [to_carol(30), to_carol(21)]}),
    );
    assert_limit_exceeded(
        &transfers,
        json!({"operation": 1, "type": "TRANSFER", "windowSeconds": 3600, "max": 50, "used": 30, "requested": 21}),
        fresh(3600),
    );
    assert_eq!(snapshot(&app, &users), before, "no batch wrote anything");
    assert_eq!(app.entry_count(), entries);

    // A single spend, then a batch under a refused batch's key: its
    // operations count on from the spend, and later writes count them.
    created(&app.post_spend("user_alice", "GOLD", 50, "single"));
    let fits = app.post(
        "/batch",
        &json!({"idempotencyKey": "b-1", "operations": [
            op("spend", "user_alice", 50),
            op("spend", "user_bob", 60),
        ]}),
    );
    assert_eq!(fits.status, 201, "{:?}", fits.body);
    assert_eq!(fits.header("idempotent-replayed"), None);
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "after"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 1}),
        fresh(3600),
    );
    assert_eq!(app.entry_count(), entries + 3);
    assert_eq!(app.balance("user_alice", "GOLD"), 900);
    assert_eq!(app.balance("user_bob", "GOLD"), 440);
}

// ---------------------------------------------------------------------------
// A user's overrides.

/// Goal: an override sets maxBalance and limits for that user only: GET
/// shows one row per asset, by symbol, with the values in force and
/// `override`; the user is held to them, another user to the asset's.
#[test]
fn a_users_override_replaces_the_assets_rules_for_that_user_only() {
    let app = TestApp::spawn();
    let asset_limits = json!([limit("SPEND", 3600, 500)]);
    set_rules(
        &app,
        "GOLD",
        json!({"maxBalance": 2000, "limits": asset_limits}),
    );
    let bob_limits = json!([limit("SPEND", 3600, 50)]);
    let answer = set_user_rules(
        &app,
        "user_bob",
        json!({"asset": "GOLD", "maxBalance": 600, "limits": bob_limits}),
    );
    let bobs = json!({"userId": "user_bob", "rules": [
        user_row("DIAMOND", Value::Null, json!([]), false),
        user_row("GOLD", json!(600), bob_limits.clone(), true),
        user_row("LOYALTY", Value::Null, json!([]), false),
    ]});
    assert_eq!(answer, bobs, "PUT answers as GET does");
    assert_eq!(user_rules(&app, "user_bob"), bobs);
    let alices = json!({"userId": "user_alice", "rules": [
        user_row("DIAMOND", Value::Null, json!([]), false),
        user_row("GOLD", json!(2000), asset_limits.clone(), false),
        user_row("LOYALTY", Value::Null, json!([]), false),
    ]});
    assert_eq!(user_rules(&app, "user_alice"), alices);
    // The asset's own rules are untouched.
    assert_eq!(asset(&app, "GOLD")["rules"]["maxBalance"], 2000);
    assert_eq!(asset(&app, "GOLD")["rules"]["limits"], asset_limits);

    // Bob: his own.
    assert_balance_limit(
        &app.post_topup("user_bob", "GOLD", 101, "bob-topup"),
        json!({"maxBalance": 600, "balance": 500, "requested": 101}),
    );
    assert_limit_exceeded(
        &app.post_spend("user_bob", "GOLD", 51, "bob-51"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 50, "used": 0, "requested": 51}),
        None,
    );
    created(&app.post_spend("user_bob", "GOLD", 50, "bob-50"));
    assert_limit_exceeded(
        &app.post_spend("user_bob", "GOLD", 1, "bob-1"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 50, "used": 50, "requested": 1}),
        fresh(3600),
    );
    // Alice: the asset's.
    created(&app.post_topup("user_alice", "GOLD", 1000, "alice-topup"));
    assert_balance_limit(
        &app.post_topup("user_alice", "GOLD", 1, "alice-topup-1"),
        json!({"maxBalance": 2000, "balance": 2000, "requested": 1}),
    );
    created(&app.post_spend("user_alice", "GOLD", 500, "alice-500"));
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "alice-1"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 500, "used": 500, "requested": 1}),
        fresh(3600),
    );
}

/// Goal: in an override an absent field keeps its value, `null` removes
/// that field's override (the asset's applies again), `[]` is an override
/// with no limits; `override` is true while either field is overridden; a
/// PUT that changes nothing writes no event.
#[test]
fn null_removes_an_override_field_so_the_assets_value_applies_again() {
    let app = TestApp::spawn();
    let asset_limits = json!([limit("SPEND", 3600, 500)]);
    set_rules(
        &app,
        "GOLD",
        json!({"maxBalance": 2000, "limits": asset_limits}),
    );
    let gold_row = |app: &TestApp| -> Value {
        user_rules(app, "user_bob")["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["asset"] == "GOLD")
            .cloned()
            .unwrap()
    };
    set_user_rules(
        &app,
        "user_bob",
        json!({"asset": "GOLD", "maxBalance": 600, "limits": []}),
    );
    assert_eq!(
        gold_row(&app),
        user_row("GOLD", json!(600), json!([]), true)
    );
    // No limits for bob: he spends past the asset's 500.
    created(&app.post_topup("user_bob", "GOLD", 100, "bob-topup"));
    created(&app.post_spend("user_bob", "GOLD", 600, "bob-spend"));
    // Limits back to the asset's; maxBalance still his own.
    set_user_rules(&app, "user_bob", json!({"asset": "GOLD", "limits": null}));
    assert_eq!(
        gold_row(&app),
        user_row("GOLD", json!(600), asset_limits.clone(), true)
    );
    assert_balance_limit(
        &app.post_topup("user_bob", "GOLD", 601, "bob-601"),
        json!({"maxBalance": 600, "balance": 0, "requested": 601}),
    );
    // maxBalance back to the asset's: no override left.
    set_user_rules(
        &app,
        "user_bob",
        json!({"asset": "GOLD", "maxBalance": null}),
    );
    assert_eq!(
        gold_row(&app),
        user_row("GOLD", json!(2000), asset_limits.clone(), false)
    );
    created(&app.post_topup("user_bob", "GOLD", 601, "bob-601"));
    // The window counts the spend made while bob had no limits.
    assert_limit_exceeded(
        &app.post_spend("user_bob", "GOLD", 1, "bob-1"),
        json!({"type": "SPEND", "windowSeconds": 3600, "max": 500, "used": 600, "requested": 1}),
        fresh(3600),
    );
    let events = events_of(&app, "wallet.rules_changed").len();
    assert_eq!(events, 3);
    for same in [
        json!({"asset": "GOLD"}),
        json!({"asset": "GOLD", "maxBalance": null, "limits": null}),
    ] {
        let answer = set_user_rules(&app, "user_bob", same.clone());
        assert_eq!(answer["rules"][1], gold_row(&app), "{same}");
    }
    assert_eq!(events_of(&app, "wallet.rules_changed").len(), events);
}

/// Goal: GET /wallets/{u}/rules answers for any valid user, one without an
/// account too, one row per asset type ordered by symbol (new assets
/// included); an override can be set before the user's first credit (by
/// the asset's id as well) and holds at that first credit; it opens no
/// account.
#[test]
fn rules_can_be_read_and_set_for_a_user_without_an_account_one_row_per_asset_by_symbol() {
    let app = TestApp::spawn();
    for (symbol, name) in [("ZINC", "Zinc"), ("ACORN", "Acorns")] {
        let made = app.post("/assets", &json!({"symbol": symbol, "name": name}));
        assert_eq!(made.status, 201, "{:?}", made.body);
    }
    let symbols = ["ACORN", "DIAMOND", "GOLD", "LOYALTY", "ZINC"];
    let untouched = json!({"userId": "minor_1", "rules": symbols
        .iter()
        .map(|symbol| user_row(symbol, Value::Null, json!([]), false))
        .collect::<Vec<_>>()});
    assert_eq!(user_rules(&app, "minor_1"), untouched);
    let zinc_limits = json!([limit("TOPUP", 86_400, 80)]);
    set_user_rules(
        &app,
        "minor_1",
        json!({"asset": "ZINC", "maxBalance": 50, "limits": zinc_limits}),
    );
    let answer = set_user_rules(
        &app,
        "minor_1",
        json!({"asset": app.asset_id("DIAMOND"), "maxBalance": 5}),
    );
    let expected = json!({"userId": "minor_1", "rules": [
        user_row("ACORN", Value::Null, json!([]), false),
        user_row("DIAMOND", json!(5), json!([]), true),
        user_row("GOLD", Value::Null, json!([]), false),
        user_row("LOYALTY", Value::Null, json!([]), false),
        user_row("ZINC", json!(50), zinc_limits, true),
    ]});
    assert_eq!(answer, expected);
    assert_eq!(user_rules(&app, "minor_1"), expected);
    let no_wallet = app.get("/wallets/minor_1/balance");
    assert_eq!(no_wallet.status, 404, "an override opens no account");
    assert_eq!(no_wallet.error_code(), "WALLET_NOT_FOUND");
    assert_balance_limit(
        &app.post_topup("minor_1", "ZINC", 51, "first"),
        json!({"maxBalance": 50, "balance": 0, "requested": 51}),
    );
    assert_limit_exceeded(
        &app.post_topup("minor_1", "ZINC", 81, "first"),
        json!({"type": "TOPUP", "windowSeconds": 86400, "max": 80, "used": 0, "requested": 81}),
        None,
    );
    assert_eq!(app.get("/wallets/minor_1/balance").status, 404);
    created(&app.post_topup("minor_1", "ZINC", 50, "first"));
    assert_balance_limit(
        &app.post_bonus("minor_1", "DIAMOND", 6, "diamonds"),
        json!({"maxBalance": 5, "balance": 0, "requested": 6}),
    );
    // Another minor is held to nothing.
    created(&app.post_topup("minor_2", "ZINC", 1000, "other"));
}

/// Goal: each change of an override is one `wallet.rules_changed` event
/// whose data is {userId, asset, maxBalance, limits}: the override's own
/// values after the change, null where not overridden; no change, no
/// event.
#[test]
fn each_change_of_an_override_is_one_wallet_rules_changed_event_with_the_overrides_own_values() {
    let app = TestApp::spawn();
    set_rules(&app, "GOLD", json!({"maxBalance": 9000}));
    let limits = json!([limit("BONUS", 3600, 10)]);
    set_user_rules(&app, "kid", json!({"asset": "GOLD", "maxBalance": 100}));
    set_user_rules(&app, "kid", json!({"asset": "GOLD", "limits": limits}));
    set_user_rules(&app, "kid", json!({"asset": "GOLD", "limits": limits}));
    set_user_rules(
        &app,
        "kid",
        json!({"asset": "DIAMOND", "limits": [], "maxBalance": null}),
    );
    set_user_rules(
        &app,
        "kid",
        json!({"asset": "GOLD", "maxBalance": null, "limits": null}),
    );
    set_user_rules(
        &app,
        "kid",
        json!({"asset": "GOLD", "maxBalance": null, "limits": null}),
    );
    let data: Vec<Value> = events_of(&app, "wallet.rules_changed")
        .into_iter()
        .map(|event| event["data"].clone())
        .collect();
    assert_eq!(
        data,
        [
            json!({"userId": "kid", "asset": "GOLD", "maxBalance": 100, "limits": null}),
            json!({"userId": "kid", "asset": "GOLD", "maxBalance": 100, "limits": limits}),
            json!({"userId": "kid", "asset": "DIAMOND", "maxBalance": null, "limits": []}),
            json!({"userId": "kid", "asset": "GOLD", "maxBalance": null, "limits": null}),
        ]
    );
    assert_eq!(events_of(&app, "asset.rules_changed").len(), 1);
}

// ---------------------------------------------------------------------------
// Windows that slide with the service's clock.

/// libfaketime, from Debian's `faketime` package (`.ci/run` installs it).
const FAKETIME_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A server whose wall clock is the real one moved by an offset the test
/// sets at will: libfaketime reads the offset from a file on every call
/// (`FAKETIME_TIMESTAMP_FILE`, `FAKETIME_NO_CACHE`); the monotonic clock,
/// which timers and timeouts use, is left alone.
struct MovedClock {
    app: TestApp,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl MovedClock {
    /// None (skipped, or failed under CI) when libfaketime is missing.
    fn start() -> Option<MovedClock> {
        if !tool_present(
            Path::new(FAKETIME_LIBRARY).exists(),
            FAKETIME_LIBRARY,
            "apt-get install faketime",
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faketimerc");
        MovedClock::write(&file, 0);
        let app = TestApp::spawn_with_env(&[
            ("LD_PRELOAD", FAKETIME_LIBRARY),
            ("FAKETIME_TIMESTAMP_FILE", file.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]);
        Some(MovedClock {
            app,
            file,
            _dir: dir,
        })
    }

    /// Writes the offset whole (a new file renamed over the old), so the
    /// server never reads half of it.
    fn write(file: &Path, offset_seconds: i64) {
        let fresh = file.with_extension("new");
        std::fs::write(&fresh, format!("{offset_seconds:+}\n")).unwrap();
        std::fs::rename(&fresh, file).unwrap();
    }

    /// The server's clock is now the real one plus `offset_seconds`.
    fn set(&self, offset_seconds: i64) {
        MovedClock::write(&self.file, offset_seconds);
    }
}

/// Goal: a 60-second window slides with the service's clock: a spend
/// refused at the limit is still refused 30 s later (retryAfterSeconds
/// counting down), and passes with the same key once the clock has moved
/// past the window; the window then holds only what came since.
#[test]
fn a_spend_refused_by_a_sixty_second_window_passes_with_the_same_key_once_the_clock_has_moved_past_it(
) {
    let Some(clock) = MovedClock::start() else {
        return;
    };
    let app = &clock.app;
    set_rules(app, "GOLD", json!({"limits": [limit("SPEND", 60, 100)]}));
    created(&app.post_spend("user_alice", "GOLD", 100, "first"));
    let full =
        json!({"type": "SPEND", "windowSeconds": 60, "max": 100, "used": 100, "requested": 1});
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "second"),
        full.clone(),
        Some(55..=60),
    );
    clock.set(30);
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "second"),
        full.clone(),
        Some(25..=30),
    );
    clock.set(61);
    let passed = app.post_spend("user_alice", "GOLD", 1, "second");
    assert_eq!(created(&passed)["balance"], 899);
    assert_eq!(passed.header("idempotent-replayed"), None);
    created(&app.post_spend("user_alice", "GOLD", 99, "third"));
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 1, "fourth"),
        full,
        Some(55..=60),
    );
    assert_eq!(app.balance("user_alice", "GOLD"), 800);
}

/// Goal: retryAfterSeconds is the time until enough of the window's
/// entries have left it for the request to fit: the oldest alone for a
/// small request, both for a larger one; at that time the larger one
/// passes.
#[test]
fn retry_after_seconds_waits_for_just_enough_of_the_window_to_leave() {
    let Some(clock) = MovedClock::start() else {
        return;
    };
    let app = &clock.app;
    set_rules(app, "GOLD", json!({"limits": [limit("SPEND", 60, 100)]}));
    created(&app.post_spend("user_alice", "GOLD", 40, "at-0"));
    clock.set(20);
    created(&app.post_spend("user_alice", "GOLD", 60, "at-20"));
    let details = |requested: u64| json!({"type": "SPEND", "windowSeconds": 60, "max": 100, "used": 100, "requested": requested});
    // 40 fits once the first entry (at 0) leaves, 40 s from now.
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 40, "forty"),
        details(40),
        Some(38..=40),
    );
    // 41 needs the second (at 20) gone too: 60 s from now.
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 41, "forty-one"),
        details(41),
        Some(58..=60),
    );
    clock.set(61);
    assert_limit_exceeded(
        &app.post_spend("user_alice", "GOLD", 41, "forty-one"),
        json!({"type": "SPEND", "windowSeconds": 60, "max": 100, "used": 60, "requested": 41}),
        Some(17..=19),
    );
    created(&app.post_spend("user_alice", "GOLD", 40, "forty"));
    clock.set(81);
    created(&app.post_spend("user_alice", "GOLD", 41, "forty-one"));
}

// ---------------------------------------------------------------------------
// The command line.

/// `wallet assets rules ARGS --db <the app's database>`.
fn rules_command(app: &TestApp, args: &[&str]) -> (ExitStatus, String, String) {
    let db = app.db_path.to_str().expect("a UTF-8 database name");
    let mut all = vec!["assets", "rules"];
    all.extend_from_slice(args);
    all.extend(["--db", db]);
    run_wallet(&all)
}

/// What a successful `wallet assets rules` printed: its lines, each with
/// its words one space apart.
fn printed(args: &[&str], (status, stdout, stderr): (ExitStatus, String, String)) -> Vec<String> {
    assert!(status.success(), "{args:?}: {stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect()
}

fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|line| (*line).to_owned()).collect()
}

/// Goal: `wallet assets rules GOLD` prints the rules in force, line by
/// line; with options it changes them as PUT does (absent keeps, `none`
/// clears maxBalance, `--no-limits` the limits; each change an event) and
/// prints them; what it sets is what GET /assets shows.
#[test]
fn wallet_assets_rules_prints_the_rules_and_sets_them_as_put_does() {
    let app = TestApp::spawn();
    let show = |args: &[&str]| printed(args, rules_command(&app, args));
    assert_eq!(
        show(&["GOLD"]),
        lines(&[
            "spendOrder free-first",
            "maxBalance none",
            "limits none",
            "updatedAt never"
        ])
    );
    let set = [
        "GOLD",
        "--max-balance",
        "5000",
        "--limit",
        "SPEND:86400:1000",
        "--limit",
        "TOPUP:60:10",
        "--spend-order",
        "paid-first",
    ];
    let after_set = show(&set);
    let rules = asset(&app, "GOLD")["rules"].clone();
    let updated_at = rules["updatedAt"].as_str().expect("set").to_owned();
    assert_eq!(
        rules,
        json!({"spendOrder": "paid-first", "maxBalance": 5000,
            "limits": [limit("SPEND", 86_400, 1000), limit("TOPUP", 60, 10)],
            "updatedAt": updated_at})
    );
    let expected = lines(&[
        "spendOrder paid-first",
        "maxBalance 5000",
        "limit SPEND 86400 1000",
        "limit TOPUP 60 10",
        &format!("updatedAt {updated_at}"),
    ]);
    assert_eq!(after_set, expected);
    assert_eq!(show(&["GOLD"]), expected, "printing changes nothing");
    assert_eq!(asset(&app, "GOLD")["rules"], rules);

    let after_none = show(&["GOLD", "--max-balance", "none"]);
    let updated_at = asset(&app, "GOLD")["rules"]["updatedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        after_none,
        lines(&[
            "spendOrder paid-first",
            "maxBalance none",
            "limit SPEND 86400 1000",
            "limit TOPUP 60 10",
            &format!("updatedAt {updated_at}"),
        ])
    );
    let after_no_limits = show(&["GOLD", "--no-limits"]);
    let rules = asset(&app, "GOLD")["rules"].clone();
    let updated_at = rules["updatedAt"].as_str().unwrap().to_owned();
    assert_eq!(
        after_no_limits,
        lines(&[
            "spendOrder paid-first",
            "maxBalance none",
            "limits none",
            &format!("updatedAt {updated_at}"),
        ])
    );
    assert_eq!(
        rules,
        json!({"spendOrder": "paid-first", "maxBalance": null, "limits": [], "updatedAt": updated_at})
    );
    assert_eq!(
        show(&["DIAMOND"]),
        lines(&[
            "spendOrder free-first",
            "maxBalance none",
            "limits none",
            "updatedAt never"
        ])
    );
    assert_eq!(events_of(&app, "asset.rules_changed").len(), 3);
}

/// Goal: a bad option (a bad number, a bad limit, an unknown type or spend
/// order, limits and --no-limits together, a duplicate, nine limits) or
/// an unknown asset exits non-zero with one line and no panic, and changes
/// nothing.
#[test]
fn a_bad_option_to_wallet_assets_rules_exits_non_zero_with_one_line_and_changes_nothing() {
    let app = TestApp::spawn();
    let set = [
        "GOLD",
        "--max-balance",
        "5000",
        "--limit",
        "SPEND:86400:1000",
    ];
    let kept = printed(&set, rules_command(&app, &set));
    let kept_rules = asset(&app, "GOLD")["rules"].clone();
    let mut nine = vec!["GOLD"];
    for limit in [
        "SPEND:60:1",
        "SPEND:120:1",
        "SPEND:180:1",
        "TOPUP:60:1",
        "TOPUP:120:1",
        "TOPUP:180:1",
        "BONUS:60:1",
        "BONUS:120:1",
        "BONUS:180:1",
    ] {
        nine.extend(["--limit", limit]);
    }
    let bad: Vec<Vec<&str>> = vec![
        vec!["GOLD", "--max-balance=-5"],
        vec!["GOLD", "--max-balance", "1.5"],
        vec!["GOLD", "--max-balance", "lots"],
        vec!["GOLD", "--max-balance", "9007199254740992"],
        vec!["GOLD", "--limit", "SPEND:59:10"],
        vec!["GOLD", "--limit", "SPEND:2592001:10"],
        vec!["GOLD", "--limit", "SPEND:60:0"],
        vec!["GOLD", "--limit", "WITHDRAW:60:10"],
        vec!["GOLD", "--limit", "SPEND:60"],
        vec!["GOLD", "--limit", "SPEND:60:10:5"],
        vec!["GOLD", "--limit", "SPEND:60:10", "--limit", "SPEND:60:20"],
        vec!["GOLD", "--limit", "SPEND:60:10", "--no-limits"],
        vec!["GOLD", "--spend-order", "cheapest-first"],
        vec!["GOLD", "--colour", "red"],
        nine,
        vec!["NOPE"],
        vec!["NOPE", "--max-balance", "1"],
    ];
    for args in bad {
        let (status, stdout, stderr) = rules_command(&app, &args);
        let line = assert_one_line_failure(status, &stdout, &stderr);
        eprintln!("{args:?}: {line}");
    }
    assert_eq!(printed(&["GOLD"], rules_command(&app, &["GOLD"])), kept);
    assert_eq!(asset(&app, "GOLD")["rules"], kept_rules);
    assert_eq!(events_of(&app, "asset.rules_changed").len(), 1);
}

/// Goal: rules set from the command line while a server runs are in force
/// on that server within a second, as keys revoked from the command line
/// are.
#[test]
fn rules_set_from_the_command_line_are_in_force_on_a_running_server_within_a_second() {
    let app = TestApp::spawn();
    let args = ["GOLD", "--limit", "SPEND:3600:10"];
    printed(&args, rules_command(&app, &args));
    let mut probe = 0;
    let refused = within(Duration::from_secs(1), || {
        probe += 1;
        let response = app.post_spend("user_alice", "GOLD", 11, &format!("probe-{probe}"));
        if response.status == 201 {
            return false;
        }
        assert_eq!(
            response.error_code(),
            "LIMIT_EXCEEDED",
            "{:?}",
            response.body
        );
        assert_eq!(response.body["error"]["details"]["requested"], 11);
        true
    });
    assert!(
        refused.is_some(),
        "the running server never applied the rule"
    );
}

// ---------------------------------------------------------------------------
// Two instances on one PostgreSQL database.

/// Goal: a TOPUP limit of 100 per hour, 50 top-ups of 10 at once spread
/// over two instances: exactly 10 are applied and 40 are LIMIT_EXCEEDED
/// (each with the window full: used 100), the balance is 100 on both
/// instances, and the ledger audits clean.
#[test]
fn a_topup_limit_holds_across_two_instances_under_fifty_concurrent_topups() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "rules_topups", 2, &[]);
    let answer = set_rules(
        &apps[0],
        "GOLD",
        json!({"limits": [limit("TOPUP", 3600, 100)]}),
    );
    let seen = within(Duration::from_secs(1), || asset(&apps[1], "GOLD") == answer);
    assert!(seen.is_some(), "the other instance never showed the rules");
    let requests = (0..50)
        .map(|n| {
            (
                apps[n % 2].address.clone(),
                "/wallets/whale/topup".to_owned(),
                json!({"asset": "GOLD", "amount": 10, "idempotencyKey": format!("topup-{n}")}),
            )
        })
        .collect();
    let answers = at_once(requests, 25, None);
    assert_eq!(
        statuses(&answers),
        BTreeMap::from([
            ("201".to_owned(), 10),
            ("422 LIMIT_EXCEEDED".to_owned(), 40)
        ])
    );
    for refused in answers.iter().filter(|answer| answer.status == 422) {
        assert_limit_exceeded(
            refused,
            json!({"type": "TOPUP", "windowSeconds": 3600, "max": 100, "used": 100, "requested": 10}),
            fresh(3600),
        );
    }
    for app in &apps {
        assert_eq!(app.balance("whale", "GOLD"), 100);
    }
    verify_clean(&url);
}

/// Goal: a rule changed on one instance is in force on the other within a
/// second, each way: a maxBalance set on A refuses a top-up on B, cleared
/// on B lets one through on A, a limit set on B refuses a spend on A.
#[test]
fn a_rule_changed_on_one_instance_is_in_force_on_the_other_within_a_second() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "rules_spread", 2, &[]);
    let (a, b) = (&apps[0], &apps[1]);
    set_rules(a, "GOLD", json!({"maxBalance": 1000}));
    let mut probe = 0;
    let refused = within(Duration::from_secs(1), || {
        probe += 1;
        let response = b.post_topup("user_alice", "GOLD", 1, &format!("b-{probe}"));
        if response.status == 201 {
            return false;
        }
        assert_eq!(
            response.error_code(),
            "BALANCE_LIMIT",
            "{:?}",
            response.body
        );
        true
    });
    assert!(refused.is_some(), "B never applied A's maxBalance");
    set_rules(b, "GOLD", json!({"maxBalance": null}));
    let allowed = within(Duration::from_secs(1), || {
        a.post_topup("user_alice", "GOLD", 1, "a-after-clear")
            .status
            == 201
    });
    assert!(
        allowed.is_some(),
        "A never dropped the maxBalance B cleared"
    );
    set_rules(b, "GOLD", json!({"limits": [limit("SPEND", 3600, 1)]}));
    let refused = within(Duration::from_secs(1), || {
        probe += 1;
        let response = a.post_spend("user_alice", "GOLD", 2, &format!("a-{probe}"));
        response.status == 422 && response.error_code() == "LIMIT_EXCEEDED"
    });
    assert!(refused.is_some(), "A never applied B's limit");
    verify_clean(&url);
}

/// Goal: as the notes read the contract, a change is in force for every
/// write applied after the PUT's answer on every instance: the very next
/// write on the other instance already sees it, round after round.
#[test]
fn a_rule_changed_on_one_instance_applies_on_the_other_to_the_next_write_after_the_answer() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "rules_next_write", 2, &[]);
    for round in 0..6_u64 {
        let (first, second) = if round % 2 == 0 {
            (&apps[0], &apps[1])
        } else {
            (&apps[1], &apps[0])
        };
        let balance = 1000 + round;
        set_rules(first, "GOLD", json!({"maxBalance": balance}));
        assert_balance_limit(
            &second.post_topup("user_alice", "GOLD", 1, &format!("round-{round}")),
            json!({"maxBalance": balance, "balance": balance, "requested": 1}),
        );
        set_rules(second, "GOLD", json!({"maxBalance": null}));
        let applied = first.post_topup("user_alice", "GOLD", 1, &format!("round-{round}"));
        assert_eq!(created(&applied)["balance"], balance + 1, "round {round}");
    }
    verify_clean(&url);
}
