//! `GET /wallets/{userId}/transactions` of API.md: newest first, filters,
//! page limits, query validation, and cursor paging that never repeats or
//! skips an entry, even while new entries arrive.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{ApiResponse, TestApp, TRANSACTION_FIELDS};

// ---------------------------------------------------------------------------
// Helpers of this file.

/// Posts `count` entries for `user`, alternating GOLD and DIAMOND and cycling
/// through topup, bonus and spend (a spend never exceeds the balance), and
/// returns each answer's Transaction in the order written.
fn post_mixed_entries(app: &TestApp, user: &str, count: usize, key_prefix: &str) -> Vec<Value> {
    (0..count)
        .map(|n| {
            let asset = if n % 2 == 0 { "GOLD" } else { "DIAMOND" };
            let key = format!("{key_prefix}-{n}");
            let amount = 100 + u64::try_from(n).unwrap();
            let response = match n % 3 {
                0 => app.post_topup(user, asset, amount, &key),
                1 => app.post_bonus(user, asset, 7, &key),
                _ => app.post_spend(user, asset, 30, &key),
            };
            assert_eq!(response.status, 201, "{:?}", response.body);
            response.data()["transaction"].clone()
        })
        .collect()
}

/// Posts `count` topups for `user` from several threads at once: quick, in no
/// particular order.
fn post_topups_in_parallel(app: &TestApp, user: &str, count: usize) {
    let threads = 4;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            scope.spawn(move || {
                for n in (thread..count).step_by(threads) {
                    let response = app.post_topup(user, "GOLD", 1, &format!("p-{n}"));
                    assert_eq!(response.status, 201, "{:?}", response.body);
                }
            });
        }
    });
}

/// One page: its items and its nextCursor.
fn page(app: &TestApp, user: &str, query: &str) -> (Vec<Value>, Option<String>) {
    let response = app.get(&format!("/wallets/{user}/transactions{query}"));
    assert_eq!(response.status, 200, "{query}: {:?}", response.body);
    let data = response.data();
    let keys: BTreeSet<&str> = data
        .as_object()
        .expect("data is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["items", "nextCursor"]));
    let items = data["items"].as_array().expect("items is a list").clone();
    let next_cursor = match &data["nextCursor"] {
        Value::Null => None,
        Value::String(cursor) => Some(cursor.clone()),
        other => panic!("nextCursor is neither a string nor null: {other:?}"),
    };
    (items, next_cursor)
}

/// Every page from the first, following nextCursor: the items in order and
/// the size of each page.
fn all_pages(app: &TestApp, user: &str, filters: &str, limit: usize) -> (Vec<Value>, Vec<usize>) {
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = format!("?limit={limit}{filters}");
        if let Some(cursor) = &cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let (page_items, next_cursor) = page(app, user, &query);
        sizes.push(page_items.len());
        items.extend(page_items);
        assert!(sizes.len() < 1000, "paging does not end");
        match next_cursor {
            Some(next) => cursor = Some(next),
            None => return (items, sizes),
        }
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().expect("id is a string").to_owned())
        .collect()
}

fn newest_first(written: &[Value]) -> Vec<Value> {
    written.iter().rev().cloned().collect()
}

fn assert_refused(response: &ApiResponse, field: &str) {
    assert_eq!(response.status, 400, "{:?}", response.body);
    assert_eq!(response.error_code(), "VALIDATION_ERROR");
    assert_eq!(response.invalid_fields(), [field], "{:?}", response.body);
}

// ---------------------------------------------------------------------------
// Items and order

#[test]
fn history_lists_the_users_entries_newest_first_as_the_writes_returned_them() {
    let app = TestApp::spawn();
    let written = post_mixed_entries(&app, "nina", 9, "k");
    let (items, next_cursor) = page(&app, "nina", "");
    assert_eq!(items, newest_first(&written));
    assert_eq!(next_cursor, None);
    for item in &items {
        let direction = match item["type"].as_str().unwrap() {
            "TOPUP" | "BONUS" => "CREDIT",
            "SPEND" => "DEBIT",
            other => panic!("unknown type {other}"),
        };
        assert_eq!(item["direction"], direction, "{item:?}");
    }
    // createdAt never increases down the list.
    let times: Vec<&str> = items
        .iter()
        .map(|item| item["createdAt"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
}

#[test]
fn history_items_have_every_field_of_a_transaction() {
    let app = TestApp::spawn();
    let response = app.post(
        "/wallets/user_alice/spend",
        &json!({
            "asset": "DIAMOND",
            "amount": 40,
            "idempotencyKey": "k-1",
            "referenceId": "order-9",
            "note": "a hat"
        }),
    );
    assert_eq!(response.status, 201, "{:?}", response.body);
    let (items, _) = page(&app, "user_alice", "?limit=1");
    let item = &items[0];
    let fields: BTreeSet<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, BTreeSet::from(TRANSACTION_FIELDS));
    let mut rest = item.clone();
    let id = rest.as_object_mut().unwrap().remove("id").unwrap();
    let created_at = rest.as_object_mut().unwrap().remove("createdAt").unwrap();
    assert_eq!(
        rest,
        json!({
            "type": "SPEND",
            "asset": "DIAMOND",
            "amount": 40,
            "direction": "DEBIT",
            "balanceAfter": 60,
            "counterparty": null,
            "reverses": null,
            "holdId": null,
            "idempotencyKey": "k-1",
            "referenceId": "order-9",
            "note": "a hat",
            "metadata": null,
            "parts": [{"kind": "PAID", "amount": 40}]
        })
    );
    assert_eq!(id, response.data()["transaction"]["id"]);
    assert_eq!(created_at, response.data()["transaction"]["createdAt"]);
}

#[test]
fn the_seed_entries_are_in_the_history_of_the_seeded_users() {
    let app = TestApp::spawn();
    let (items, next_cursor) = page(&app, "user_bob", "");
    assert_eq!(next_cursor, None);
    let summary: Vec<(&str, &str, i64, i64, &str)> = items
        .iter()
        .map(|item| {
            (
                item["type"].as_str().unwrap(),
                item["asset"].as_str().unwrap(),
                item["amount"].as_i64().unwrap(),
                item["balanceAfter"].as_i64().unwrap(),
                item["idempotencyKey"].as_str().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![
        ("TOPUP", "GOLD", 500, 500, "seed:user_bob:GOLD"),
        ("TOPUP", "DIAMOND", 25, 25, "seed:user_bob:DIAMOND"),
        ("TOPUP", "LOYALTY", 100, 100, "seed:user_bob:LOYALTY"),
    ];
    // API.md does not fix the order the seed wrote them in: compare as sets.
    let mut summary_sorted = summary.clone();
    summary_sorted.sort();
    expected.sort();
    assert_eq!(summary_sorted, expected);
}

#[test]
fn balance_after_in_history_is_the_running_balance_of_each_asset() {
    let app = TestApp::spawn();
    post_mixed_entries(&app, "user_alice", 30, "k");
    let (items, _) = all_pages(&app, "user_alice", "", 200);
    assert_eq!(items.len(), 33);
    for symbol in ["GOLD", "DIAMOND", "LOYALTY"] {
        let mut running = 0_i64;
        let oldest_first = items.iter().rev().filter(|item| item["asset"] == symbol);
        for item in oldest_first {
            let amount = item["amount"].as_i64().unwrap();
            running += match item["direction"].as_str().unwrap() {
                "CREDIT" => amount,
                "DEBIT" => -amount,
                other => panic!("unknown direction {other}"),
            };
            assert_eq!(item["balanceAfter"], running, "{item:?}");
        }
        assert_eq!(running, app.balance("user_alice", symbol));
    }
}

// ---------------------------------------------------------------------------
// Limits

#[test]
fn the_default_page_holds_50_entries_and_a_page_at_most_200() {
    let app = TestApp::spawn();
    post_topups_in_parallel(&app, "olga", 205);

    let (default_page, cursor) = page(&app, "olga", "");
    assert_eq!(default_page.len(), 50);
    assert!(cursor.is_some());
    let (largest_page, cursor) = page(&app, "olga", "?limit=200");
    assert_eq!(largest_page.len(), 200);
    assert!(cursor.is_some());
    assert_eq!(default_page[..], largest_page[..50]);
    let (rest, cursor) = page(
        &app,
        "olga",
        &format!("?limit=200&cursor={}", cursor.unwrap()),
    );
    assert_eq!(rest.len(), 5);
    assert_eq!(cursor, None);
    let (one, _) = page(&app, "olga", "?limit=1");
    assert_eq!(one[..], largest_page[..1]);
}

#[test]
fn a_limit_outside_1_to_200_or_not_a_number_is_a_validation_error() {
    let app = TestApp::spawn();
    for limit in [
        "0",
        "201",
        "abc",
        "-1",
        "1.5",
        "1e2",
        "99999999999999999999",
    ] {
        let response = app.get(&format!("/wallets/user_alice/transactions?limit={limit}"));
        assert_refused(&response, "limit");
    }
}

// ---------------------------------------------------------------------------
// Filters

#[test]
fn history_filters_by_asset_named_by_symbol_or_by_id() {
    let app = TestApp::spawn();
    let written = post_mixed_entries(&app, "pia", 12, "k");
    let gold: Vec<Value> = newest_first(&written)
        .into_iter()
        .filter(|item| item["asset"] == "GOLD")
        .collect();
    assert_eq!(gold.len(), 6);
    let (by_symbol, _) = page(&app, "pia", "?asset=GOLD");
    assert_eq!(by_symbol, gold);
    let (by_id, _) = page(&app, "pia", &format!("?asset={}", app.asset_id("GOLD")));
    assert_eq!(by_id, gold);
    // An asset the user holds no account in is an empty history, not an error.
    let (loyalty, next_cursor) = page(&app, "pia", "?asset=LOYALTY");
    assert_eq!(loyalty, Vec::<Value>::new());
    assert_eq!(next_cursor, None);
}

#[test]
fn history_filters_by_type_and_by_type_and_asset_together() {
    let app = TestApp::spawn();
    let written = newest_first(&post_mixed_entries(&app, "quinn", 18, "k"));
    for kind in ["TOPUP", "BONUS", "SPEND"] {
        let expected: Vec<Value> = written
            .iter()
            .filter(|item| item["type"] == kind)
            .cloned()
            .collect();
        assert_eq!(expected.len(), 6);
        let (items, _) = page(&app, "quinn", &format!("?type={kind}"));
        assert_eq!(items, expected, "type={kind}");

        let expected: Vec<Value> = expected
            .into_iter()
            .filter(|item| item["asset"] == "DIAMOND")
            .collect();
        let (items, _) = page(&app, "quinn", &format!("?type={kind}&asset=DIAMOND"));
        assert_eq!(items, expected, "type={kind}&asset=DIAMOND");
    }
}

#[test]
fn a_filter_matching_nothing_gives_an_empty_page() {
    let app = TestApp::spawn();
    let (items, next_cursor) = page(&app, "user_alice", "?type=BONUS");
    assert_eq!(items, Vec::<Value>::new());
    assert_eq!(next_cursor, None);
}

#[test]
fn an_invalid_asset_type_or_cursor_is_a_validation_error() {
    let app = TestApp::spawn();
    for (query, field) in [
        ("asset=gold%20coins", "asset"),
        ("asset=GO%20LD", "asset"),
        ("asset=6f1d8b52", "asset"),
        ("type=topup", "type"),
        ("type=REFUND", "type"),
        ("type=TOPUP,SPEND", "type"),
        ("cursor=abc", "cursor"),
        ("cursor=-1", "cursor"),
        ("cursor=0", "cursor"),
        ("cursor=1.5", "cursor"),
        ("cursor=99999999999999999999999", "cursor"),
    ] {
        let response = app.get(&format!("/wallets/user_alice/transactions?{query}"));
        assert_refused(&response, field);
    }
}

#[test]
fn an_asset_filter_naming_no_asset_is_a_validation_error() {
    let app = TestApp::spawn();
    for asset in ["SILVER", "00000000-0000-4000-8000-000000000000"] {
        let response = app.get(&format!("/wallets/user_alice/transactions?asset={asset}"));
        assert_refused(&response, "asset");
    }
}

#[test]
fn the_history_of_an_unknown_user_is_wallet_not_found() {
    let app = TestApp::spawn();
    for query in ["", "?limit=5", "?type=TOPUP&asset=GOLD"] {
        let response = app.get(&format!("/wallets/nobody/transactions{query}"));
        assert_eq!(response.status, 404, "{:?}", response.body);
        assert_eq!(response.error_code(), "WALLET_NOT_FOUND");
    }
}

#[test]
fn an_unknown_query_parameter_is_a_validation_error() {
    let app = TestApp::spawn();
    for (query, field) in [
        ("foo=1", "foo"),
        ("Limit=5", "Limit"),
        ("assets=GOLD", "assets"),
        ("limit=5&page=2", "page"),
    ] {
        let response = app.get(&format!("/wallets/user_alice/transactions?{query}"));
        assert_refused(&response, field);
    }
}

// ---------------------------------------------------------------------------
// Cursor paging

#[test]
fn paging_with_limit_7_visits_every_entry_once_newest_first() {
    let app = TestApp::spawn();
    let written = post_mixed_entries(&app, "rosa", 120, "k");
    let (items, sizes) = all_pages(&app, "rosa", "", 7);
    // 120 = 17 * 7 + 1
    let mut expected_sizes = vec![7; 17];
    expected_sizes.push(1);
    assert_eq!(sizes, expected_sizes);
    assert_eq!(ids(&items), ids(&newest_first(&written)));
    assert_eq!(items, newest_first(&written));
    let unique: BTreeSet<String> = ids(&items).into_iter().collect();
    assert_eq!(unique.len(), 120);
}

#[test]
fn paging_a_filtered_history_visits_every_matching_entry_once() {
    let app = TestApp::spawn();
    let written = post_mixed_entries(&app, "sara", 60, "k");
    let gold_topups: Vec<Value> = newest_first(&written)
        .into_iter()
        .filter(|item| item["asset"] == "GOLD" && item["type"] == "TOPUP")
        .collect();
    assert_eq!(gold_topups.len(), 10);
    let (items, sizes) = all_pages(&app, "sara", "&asset=GOLD&type=TOPUP", 3);
    assert_eq!(sizes, [3, 3, 3, 1]);
    assert_eq!(items, gold_topups);
}

#[test]
fn the_last_page_has_a_null_next_cursor_even_when_it_is_full() {
    let app = TestApp::spawn();
    let written = post_mixed_entries(&app, "tara", 21, "k");
    let (items, sizes) = all_pages(&app, "tara", "", 7);
    assert_eq!(sizes, [7, 7, 7], "a page after the last entry was offered");
    assert_eq!(items, newest_first(&written));
}

#[test]
fn paging_while_new_entries_arrive_never_repeats_or_skips_an_entry() {
    let app = TestApp::spawn();
    let written = post_mixed_entries(&app, "uma", 40, "k");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut new_entries = Vec::new();
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("?limit=7&cursor={cursor}"),
            None => "?limit=7".to_owned(),
        };
        let (items, next_cursor) = page(&app, "uma", &query);
        seen.extend(items);
        pages += 1;
        // Entries arrive between page fetches, in both assets.
        for asset in ["GOLD", "DIAMOND"] {
            let key = format!("new-{pages}-{asset}");
            let response = app.post_topup("uma", asset, 1, &key);
            assert_eq!(response.status, 201, "{:?}", response.body);
            new_entries.push(response.data()["transaction"].clone());
        }
        let spend = app.post_spend("uma", "GOLD", 1, &format!("new-{pages}-spend"));
        assert_eq!(spend.status, 201, "{:?}", spend.body);
        new_entries.push(spend.data()["transaction"].clone());
        match next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 6);
    assert_eq!(ids(&seen), ids(&newest_first(&written)));
    // A fresh first page starts with what arrived meanwhile.
    let (first, _) = page(&app, "uma", "?limit=200");
    assert_eq!(first.len(), 40 + new_entries.len());
    assert_eq!(first[..new_entries.len()], newest_first(&new_entries)[..]);
}
