//! `wallet copy`: a SQLite ledger with every kind of history copied to
//! PostgreSQL and back to a new file. Each copy passes `verify`, answers
//! every balance as the source did, and replays every old idempotency key
//! under the key that sent it; a target that holds a ledger, or the source
//! itself, is refused in one line with nothing written.

use std::path::{Path, PathBuf};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::helpers::{client_with_key, create_key, run_wallet, send, ApiResponse, TestApp};
use crate::postgres::Cluster;

const USERS: [&str; 3] = ["user_alice", "user_bob", "user_carol"];

/// A request as sent, with the answer it got, to replay on a copy.
struct Sent {
    /// Which key sent it (0 or 1).
    caller: usize,
    path: String,
    body: Value,
    answer: Value,
}

struct History {
    secrets: Vec<String>,
    sent: Vec<Sent>,
    balances: Vec<Value>,
    /// `GET /assets` and `GET /wallets/user_bob/rules`: the rules on
    /// value, with when they were set.
    rules: Vec<Value>,
}

/// The assets with their rules, and one user's rules in force.
fn rules(app: &TestApp, client: &Client) -> Vec<Value> {
    ["/assets", "/wallets/user_bob/rules"]
        .iter()
        .map(|path| {
            let response = send(client.get(app.url(path)));
            assert_eq!(response.status, 200, "{:?}", response.body);
            response.data().clone()
        })
        .collect()
}

/// A change of rules the copy must carry, with its time and its event.
fn put_rules(app: &TestApp, client: &Client, path: &str, body: Value) {
    let response = send(client.put(app.url(path)).json(&body));
    assert_eq!(response.status, 200, "{path}: {:?}", response.body);
}

fn post(
    app: &TestApp,
    clients: &[Client],
    sent: &mut Vec<Sent>,
    caller: usize,
    path: &str,
    body: Value,
) -> Value {
    let response = send(clients[caller].post(app.url(path)).json(&body));
    // A void creates nothing: 200.
    assert!(
        [200, 201].contains(&response.status) && response.header("idempotent-replayed").is_none(),
        "{path} {body}: {:?}",
        response.body
    );
    let answer = response.data().clone();
    sent.push(Sent {
        caller,
        path: path.to_owned(),
        body,
        answer: answer.clone(),
    });
    answer
}

/// Every user's balances, as the API answers them.
fn balances(app: &TestApp, client: &Client) -> Vec<Value> {
    USERS
        .iter()
        .map(|user| {
            let response = send(client.get(app.url(&format!("/wallets/{user}/balance"))));
            assert_eq!(response.status, 200, "{:?}", response.body);
            response.data()["balances"].clone()
        })
        .collect()
}

/// A seeded file with top-ups, spends, transfers, partial reversals, a
/// batch, holds captured (to oneself and to another user), voided,
/// expired and still held, and one idempotency key used by both API keys.
fn ledger_with_history(db: &Path) -> History {
    let secrets = vec![
        create_key(db, "ops", "read,spend,grant,admin"),
        create_key(db, "game", "read,spend,grant"),
    ];
    let app = TestApp::start(db, &[], Some(&secrets[0]));
    let clients: Vec<Client> = secrets
        .iter()
        .map(|key| client_with_key(Some(key)))
        .collect();
    let mut sent = Vec::new();
    let s = &mut sent;
    post(
        &app,
        &clients,
        s,
        0,
        "/wallets/user_carol/topup",
        json!({"asset": "GOLD", "amount": 500, "idempotencyKey": "t-1"}),
    );
    let spend = post(
        &app,
        &clients,
        s,
        1,
        "/wallets/user_alice/spend",
        json!({"asset": "GOLD", "amount": 100, "idempotencyKey": "s-1", "note": "sword", "metadata": {"item": "7"}}),
    );
    post(
        &app,
        &clients,
        s,
        1,
        "/wallets/user_alice/transfer",
        json!({"to": "user_carol", "asset": "GOLD", "amount": 50, "idempotencyKey": "x-1"}),
    );
    // Rules on value, between writes: the copy keeps them, when they were
    // set, and their place in the feed; the caps count the copied history.
    put_rules(
        &app,
        &clients[0],
        "/assets/GOLD/rules",
        json!({"maxBalance": 1000000, "limits": [{"type": "SPEND", "windowSeconds": 86400, "max": 300}]}),
    );
    put_rules(
        &app,
        &clients[0],
        "/wallets/user_bob/rules",
        json!({"asset": "GOLD", "maxBalance": 900000}),
    );
    let spend_id = spend["transaction"]["id"].as_str().unwrap().to_owned();
    for (amount, key) in [(30, "r-1"), (20, "r-2")] {
        post(
            &app,
            &clients,
            s,
            0,
            &format!("/transactions/{spend_id}/reverse"),
            json!({"amount": amount, "idempotencyKey": key}),
        );
    }
    post(
        &app,
        &clients,
        s,
        1,
        "/batch",
        json!({"idempotencyKey": "b-1", "operations": [
            {"type": "spend", "userId": "user_alice", "asset": "GOLD", "amount": 10},
            {"type": "bonus", "userId": "user_bob", "asset": "DIAMOND", "amount": 5, "referenceId": "promo-1"},
            {"type": "transfer", "userId": "user_bob", "to": "user_carol", "asset": "LOYALTY", "amount": 7}
        ]}),
    );
    let hold = |answer: &Value| answer["hold"]["id"].as_str().unwrap().to_owned();
    let captured = hold(&post(
        &app,
        &clients,
        s,
        1,
        "/wallets/user_alice/holds",
        json!({"asset": "GOLD", "amount": 200, "idempotencyKey": "h-1", "note": "bid"}),
    ));
    post(
        &app,
        &clients,
        s,
        1,
        &format!("/holds/{captured}/capture"),
        json!({"amount": 120, "idempotencyKey": "c-1"}),
    );
    let voided = hold(&post(
        &app,
        &clients,
        s,
        1,
        "/wallets/user_bob/holds",
        json!({"asset": "GOLD", "amount": 50, "idempotencyKey": "h-2"}),
    ));
    post(
        &app,
        &clients,
        s,
        1,
        &format!("/holds/{voided}/void"),
        json!({"idempotencyKey": "v-1"}),
    );
    let to_bob = hold(&post(
        &app,
        &clients,
        s,
        0,
        "/wallets/user_carol/holds",
        json!({"asset": "GOLD", "amount": 30, "idempotencyKey": "h-5", "metadata": {"lot": "3"}}),
    ));
    post(
        &app,
        &clients,
        s,
        0,
        &format!("/holds/{to_bob}/capture"),
        json!({"to": "user_bob", "idempotencyKey": "c-2"}),
    );
    post(
        &app,
        &clients,
        s,
        1,
        "/wallets/user_carol/holds",
        json!({"asset": "GOLD", "amount": 40, "idempotencyKey": "h-3", "expiresInSeconds": 1}),
    );
    post(
        &app,
        &clients,
        s,
        1,
        "/wallets/user_alice/holds",
        json!({"asset": "GOLD", "amount": 25, "idempotencyKey": "h-4", "expiresInSeconds": 3600}),
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // A write on the account whose hold fell due, after it did.
    post(
        &app,
        &clients,
        s,
        1,
        "/wallets/user_carol/spend",
        json!({"asset": "GOLD", "amount": 1, "idempotencyKey": "s-2"}),
    );
    // One key, two callers: two requests.
    post(
        &app,
        &clients,
        s,
        0,
        "/wallets/user_bob/topup",
        json!({"asset": "GOLD", "amount": 3, "idempotencyKey": "same"}),
    );
    post(
        &app,
        &clients,
        s,
        1,
        "/wallets/user_carol/bonus",
        json!({"asset": "GOLD", "amount": 4, "idempotencyKey": "same"}),
    );
    let balances = balances(&app, &clients[0]);
    let rules = rules(&app, &clients[0]);
    assert!(app.terminate().success());
    History {
        secrets,
        sent,
        balances,
        rules,
    }
}

/// `wallet copy`, which must succeed and say it proved the copy.
fn copy(from: &str, to: &str) {
    let (status, stdout, stderr) = run_wallet(&["copy", "--from", from, "--to", to]);
    assert!(status.success(), "copy {from} -> {to}:\n{stdout}\n{stderr}");
    assert!(stdout.contains("verify: OK"), "{stdout}");
    assert!(
        stdout.contains("every balance equals the source's"),
        "{stdout}"
    );
    assert!(
        !format!("{stdout}{stderr}").contains("pw-s3cret"),
        "{stdout}{stderr}"
    );
}

fn verify(db: &str) {
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", db]);
    assert!(status.success(), "verify {db}:\n{stdout}\n{stderr}");
}

/// A server on the copy answers the source's balances, and every request
/// sent to the source replays under its own key with the original answer.
fn serves_as_the_source(db: &str, history: &History) {
    let app = TestApp::start(Path::new(db), &[], Some(&history.secrets[0]));
    let clients: Vec<Client> = history
        .secrets
        .iter()
        .map(|key| client_with_key(Some(key)))
        .collect();
    assert_eq!(balances(&app, &clients[0]), history.balances, "on {db}");
    assert_eq!(rules(&app, &clients[0]), history.rules, "on {db}");
    // The caps count the copied history: alice spent 100 + 10 + 120 GOLD.
    let capped = send(
        clients[0]
            .post(app.url("/wallets/user_alice/spend"))
            .json(&json!({"asset": "GOLD", "amount": 71, "idempotencyKey": "over-cap"})),
    );
    assert_eq!(capped.status, 422, "{:?}", capped.body);
    assert_eq!(capped.error_code(), "LIMIT_EXCEEDED");
    assert_eq!(capped.body["error"]["details"]["used"], 230);
    for sent in &history.sent {
        let again: ApiResponse = send(
            clients[sent.caller]
                .post(app.url(&sent.path))
                .json(&sent.body),
        );
        assert_eq!(
            again.status, 200,
            "{} {} on {db}: {:?}",
            sent.path, sent.body, again.body
        );
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(
            again.data(),
            &sent.answer,
            "{} {} on {db}",
            sent.path,
            sent.body
        );
    }
    // The copy takes new writes, numbered past the copied rows.
    let fresh = send(
        clients[0]
            .post(app.url("/wallets/user_dan/topup"))
            .json(&json!({"asset": "GOLD", "amount": 9, "idempotencyKey": "after-copy"})),
    );
    assert_eq!(fresh.status, 201, "{:?}", fresh.body);
    assert!(app.terminate().success());
}

fn entries_in_file(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT count(*) FROM ledger_entries", [], |row| row.get(0))
        .unwrap()
}

/// Goal: SQLite to PostgreSQL to SQLite keeps every balance and every old
/// idempotency key, each copy passes `verify`, and a target that holds a
/// ledger (or the source itself) is refused with nothing written.
#[test]
fn copy_round_trip_sqlite_to_postgres_and_back_keeps_balances_and_keys() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source: PathBuf = dir.path().join("source.db");
    let history = ledger_with_history(&source);
    let statuses: Vec<String> = rusqlite::Connection::open(&source)
        .unwrap()
        .prepare("SELECT DISTINCT status FROM holds ORDER BY status")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(statuses, ["CAPTURED", "EXPIRED", "HELD", "VOIDED"]);
    let source = source.to_str().unwrap().to_owned();
    let source_entries = entries_in_file(Path::new(&source));
    verify(&source);

    let on_postgres = cluster.database("copied");
    copy(&source, &on_postgres);
    verify(&on_postgres);
    let back: PathBuf = dir.path().join("back.db");
    let back = back.to_str().unwrap().to_owned();
    copy(&on_postgres, &back);
    verify(&back);
    assert_eq!(entries_in_file(Path::new(&back)), source_entries);

    // Refused: a target that holds a ledger, and the source itself.
    let entries_on_postgres = cluster.value("copied", "SELECT count(*) FROM ledger_entries");
    for (from, to) in [
        (source.as_str(), on_postgres.as_str()),
        (on_postgres.as_str(), back.as_str()),
        (source.as_str(), source.as_str()),
    ] {
        let (status, stdout, stderr) = run_wallet(&["copy", "--from", from, "--to", to]);
        assert!(!status.success(), "{stdout}\n{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("already holds a ledger") || stderr.contains("the same database"),
            "{stderr}"
        );
        assert!(!stderr.contains("pw-s3cret"), "{stderr}");
    }
    assert_eq!(
        cluster.value("copied", "SELECT count(*) FROM ledger_entries"),
        entries_on_postgres
    );
    assert_eq!(entries_in_file(Path::new(&back)), source_entries);

    serves_as_the_source(&on_postgres, &history);
    serves_as_the_source(&back, &history);
}
