//! `GET /assets/{asset}/supply` on the real binary: after a random mix of
//! every kind of write, each asset's figures equal what the balances and
//! the writes themselves add up to, and `wallet verify` agrees; totals past
//! 2^53 - 1 stay exact.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::crash::assert_verify_passes;
use crate::helpers::{Lcg, TestApp};

#[derive(Default, Debug, Clone, PartialEq)]
struct Totals {
    topup: u64,
    bonus: u64,
    spent: u64,
    reversed: u64,
}

fn supply(app: &TestApp, asset: &str) -> Value {
    let response = app.get(&format!("/assets/{asset}/supply"));
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.data().clone()
}

/// Goal: API.md's supply, exact: after a random mix of top-ups, bonuses,
/// spends, transfers, reversals, holds, captures and voids across users and
/// assets, each asset's `outstanding` is the sum of every user balance,
/// `held` the sum of what is held, `holders` the users with a balance, and
/// `issued`, `spent`, `reversed` the totals of the writes that succeeded;
/// `asOf` is the newest entry's time; and `wallet verify` checks the same.
#[test]
fn supply_equals_the_sum_of_the_balances_after_a_random_mix_of_writes() {
    let app = TestApp::spawn();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut random = Lcg(seed);
    let assets = ["GOLD", "DIAMOND", "LOYALTY"];
    let users: Vec<String> = (0..6).map(|i| format!("supply_user_{i}")).collect();
    let mut totals: BTreeMap<&str, Totals> = BTreeMap::new();
    // The seed's top-ups count too.
    for (asset, seeded) in [("GOLD", 1500), ("DIAMOND", 125), ("LOYALTY", 600)] {
        totals.entry(asset).or_default().topup = seeded;
    }
    let mut reversible: Vec<(String, &str, &str)> = Vec::new();
    let mut holds: Vec<String> = Vec::new();
    for step in 0..300 {
        let asset = assets[random.below(3) as usize];
        let user = &users[random.below(users.len() as u64) as usize];
        let amount = 1 + random.below(60);
        let key = format!("supply-{seed}-{step}");
        let total = totals.entry(asset).or_default();
        match random.below(8) {
            0 | 1 => {
                let response = app.post_topup(user, asset, amount, &key);
                assert_eq!(response.status, 201, "{:?}", response.body);
                total.topup += amount;
                let id = response.data()["transaction"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                reversible.push((id, asset, "topup"));
            }
            2 => {
                let response = app.post_bonus(user, asset, amount, &key);
                assert_eq!(response.status, 201, "{:?}", response.body);
                total.bonus += amount;
            }
            3 => {
                let response = app.post_spend(user, asset, amount, &key);
                if response.status == 201 {
                    total.spent += amount;
                    let id = response.data()["transaction"]["id"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    reversible.push((id, asset, "spend"));
                } else {
                    assert_eq!(response.status / 100, 4, "{:?}", response.body);
                }
            }
            4 => {
                let to = &users[random.below(users.len() as u64) as usize];
                let response = app.post(
                    &format!("/wallets/{user}/transfer"),
                    &json!({"asset": asset, "amount": amount, "to": to, "idempotencyKey": key}),
                );
                assert!(
                    response.status == 201 || response.status / 100 == 4,
                    "{:?}",
                    response.body
                );
            }
            5 if !reversible.is_empty() => {
                let (id, asset, _) =
                    reversible[random.below(reversible.len() as u64) as usize].clone();
                let part = 1 + random.below(5);
                let response = app.post(
                    &format!("/transactions/{id}/reverse"),
                    &json!({"amount": part, "idempotencyKey": key}),
                );
                if response.status == 201 {
                    totals.entry(asset).or_default().reversed += part;
                } else {
                    assert_eq!(response.status / 100, 4, "{:?}", response.body);
                }
            }
            6 => {
                let response = app.post(
                    &format!("/wallets/{user}/holds"),
                    &json!({"asset": asset, "amount": amount, "idempotencyKey": key}),
                );
                if response.status == 201 {
                    holds.push(response.data()["hold"]["id"].as_str().unwrap().to_owned());
                }
            }
            _ if !holds.is_empty() => {
                let hold = holds.swap_remove(random.below(holds.len() as u64) as usize);
                if random.below(2) == 0 {
                    let response = app.post(
                        &format!("/holds/{hold}/capture"),
                        &json!({"idempotencyKey": key}),
                    );
                    assert_eq!(response.status, 201, "{:?}", response.body);
                    let captured = response.data()["transaction"]["amount"].as_u64().unwrap();
                    let asset = response.data()["transaction"]["asset"].as_str().unwrap();
                    let asset = assets.iter().find(|a| **a == asset).unwrap();
                    totals.entry(asset).or_default().spent += captured;
                } else {
                    let response = app.post(
                        &format!("/holds/{hold}/void"),
                        &json!({"idempotencyKey": key}),
                    );
                    assert_eq!(response.status, 200, "{:?}", response.body);
                }
            }
            _ => {}
        }
    }

    let everyone: Vec<String> = ["user_alice", "user_bob"]
        .iter()
        .map(|user| user.to_string())
        .chain(users.iter().cloned())
        .collect();
    for asset in assets {
        let figures = supply(&app, asset);
        let (mut outstanding, mut held, mut holders) = (0_i64, 0_i64, 0_i64);
        for user in &everyone {
            let response = app.get(&format!("/wallets/{user}/balance"));
            if response.status == 404 {
                continue;
            }
            let row = response.data()["balances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|row| row["asset"] == asset)
                .unwrap()
                .clone();
            let balance = row["balance"].as_i64().unwrap();
            outstanding += balance;
            held += row["held"].as_i64().unwrap();
            holders += i64::from(balance != 0);
        }
        let total = &totals[asset];
        let context = format!("{asset} (seed {seed}): {figures}");
        assert_eq!(figures["asset"], asset);
        assert_eq!(figures["outstanding"], outstanding, "{context}");
        assert_eq!(figures["held"], held, "{context}");
        assert_eq!(figures["holders"], holders, "{context}");
        assert_eq!(figures["issued"]["TOPUP"], total.topup, "{context}");
        assert_eq!(figures["issued"]["BONUS"], total.bonus, "{context}");
        assert_eq!(figures["spent"], total.spent, "{context}");
        assert_eq!(figures["reversed"], total.reversed, "{context}");
        // asOf: the newest entry of the asset, as the feed tells it.
        let mut newest = None;
        let mut cursor = "0".to_owned();
        loop {
            let page = app.get(&format!("/events?after={cursor}&limit=1000"));
            let items = page.data()["items"].as_array().unwrap().clone();
            if items.is_empty() {
                break;
            }
            for event in &items {
                if event["type"] == "transaction.created" && event["data"]["asset"] == asset {
                    newest = Some(event["createdAt"].clone());
                }
            }
            cursor = page.data()["nextCursor"].as_str().unwrap().to_owned();
        }
        assert_eq!(Some(figures["asOf"].clone()), newest, "{context}");
        // By id as by symbol.
        assert_eq!(supply(&app, &app.asset_id(asset)), figures);
    }
    assert_verify_passes(&app.db_path);
}

/// Goal: sums of many balances may pass 2^53 - 1 (API.md): they stay exact
/// integers on the wire. And a new asset starts at zero, with no `asOf`;
/// an unknown one is 404, a query parameter 400.
#[test]
fn totals_past_two_to_the_fifty_third_stay_exact_and_a_new_asset_starts_at_zero() {
    let app = TestApp::spawn();
    let created = app.post("/assets", &json!({"symbol": "GEMS", "name": "Gems"}));
    assert_eq!(created.status, 201, "{:?}", created.body);
    let fresh = supply(&app, "GEMS");
    assert_eq!(
        fresh,
        json!({"asset": "GEMS", "outstanding": 0, "held": 0, "holders": 0,
               "issued": {"TOPUP": 0, "BONUS": 0}, "spent": 0, "reversed": 0,
               "paid": 0, "free": 0, "expired": 0, "asOf": null})
    );
    const MAX: u64 = 9_007_199_254_740_991;
    for round in 0..3 {
        assert_eq!(
            app.post_topup("whale", "GEMS", MAX, &format!("whale-in-{round}"))
                .status,
            201
        );
        assert_eq!(
            app.post_spend("whale", "GEMS", MAX, &format!("whale-out-{round}"))
                .status,
            201
        );
    }
    let response = app.get("/assets/GEMS/supply");
    // Read as text: a JSON reader that turns numbers into doubles would
    // round these.
    let text = response.body.to_string();
    let three_max = (3 * u128::from(MAX)).to_string();
    assert!(text.contains(&format!("\"TOPUP\":{three_max}")), "{text}");
    assert!(text.contains(&format!("\"spent\":{three_max}")), "{text}");
    assert_eq!(response.data()["outstanding"], 0);
    assert_eq!(response.data()["holders"], 0);
    assert_verify_passes(&app.db_path);
    // And verify notices totals that drift from the ledger.
    if crate::helpers::sqlite_only("totals changed by hand in the file") {
        supply_drift_is_noticed(&app.db_path);
    }

    let unknown = app.get("/assets/NOPE/supply");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "ASSET_NOT_FOUND");
    // `at` is the one parameter (tests/api/parts.rs reads the supply back
    // in time); any other is refused.
    let query = app.get("/assets/GOLD/supply?asOf=2026-01-01T00:00:00Z");
    assert_eq!(query.status, 400);
    assert_eq!(query.invalid_fields(), vec!["asOf".to_owned()]);
    let bad = app.get("/assets/gold!/supply");
    assert_eq!(bad.status, 400, "{:?}", bad.body);
}

/// Verify notices supply totals that drift from the ledger: one changed
/// by hand in the file.
fn supply_drift_is_noticed(db_path: &std::path::Path) {
    let conn = rusqlite::Connection::open(db_path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.execute(
        "UPDATE asset_supply SET spent_low = spent_low + 1
          WHERE asset_type_id = (SELECT id FROM asset_types WHERE symbol = 'GEMS')",
        [],
    )
    .unwrap();
    let failure = crate::crash::verify_failure(db_path).expect("verify fails");
    assert!(failure.contains("asset GEMS: supply totals"), "{failure}");
}
