//! A database written by the previous release (schema version 2) opens in
//! this one: it migrates forward in one transaction, keeps every entry,
//! replays every old key over HTTP for its own caller, passes `verify`, and
//! takes the new operations. The file is built with version 2's own
//! migrations and rows shaped as version 2's writer wrote them.

use std::path::Path;

use serde_json::json;

use crate::crash::assert_verify_passes;
use crate::helpers::{run_wallet, TestApp};

const GOLD: &str = "6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a01";

/// ann: a topup of 50 (key k1, referenceId order-1) and a spend of 5 (key
/// k2); ben: a bonus of 20 (key k3, note welcome). All by the anonymous
/// caller, as a service without keys wrote them.
fn version_2_file(path: &Path) {
    // Versions 1 and 2 of the schema, from the files they shipped as, and
    // the catalogue as seed.sql writes it.
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(include_str!("../../schema.sql"))
        .unwrap();
    conn.execute_batch(include_str!("../../migrations/002_api_keys.sql"))
        .unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute_batch(include_str!("../../seed.sql")).unwrap();
    let treasury: i64 = conn
        .query_row(
            "SELECT id FROM accounts WHERE owner_type = 'SYSTEM' AND asset_type_id = ?1",
            [GOLD],
            |row| row.get(0),
        )
        .unwrap();
    let t = treasury;
    conn.execute_batch(&format!(
        "INSERT INTO accounts (id, owner_type, owner_id, asset_type_id, created_at)
              VALUES (100, 'USER', 'ann', '{GOLD}', 1), (101, 'USER', 'ben', '{GOLD}', 2);
         INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                 credit_account_id, amount, idempotency_key, reference_id, note, created_at,
                 caller_id)
              VALUES (1, '0190f0a0-0000-7000-8000-000000000001', 'TOPUP', '{GOLD}', {t}, 100,
                      50, 'k1', 'order-1', NULL, 1795392000001, 0),
                     (2, '0190f0a0-0000-7000-8000-000000000002', 'SPEND', '{GOLD}', 100, {t},
                      5, 'k2', NULL, NULL, 1795392000002, 0),
                     (3, '0190f0a0-0000-7000-8000-000000000003', 'BONUS', '{GOLD}', {t}, 101,
                      20, 'k3', NULL, 'welcome', 1795392000003, 0);
         INSERT INTO postings VALUES (100, 1, 50, 50), ({t}, 1, -50, -50),
                                     (100, 2, -5, 45), ({t}, 2, 5, -45),
                                     (101, 3, 20, 20), ({t}, 3, -20, -65);"
    ))
    .unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

#[test]
fn a_version_2_database_migrates_keeps_every_entry_and_replays_every_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    version_2_file(&db_path);
    // `verify` of this binary refuses a file it has not migrated yet.
    let db = db_path.to_str().unwrap();
    let (status, _, _) = run_wallet(&["verify", "--db", db]);
    assert!(!status.success(), "verify reads only the current schema");

    let (status, stdout, stderr) = run_wallet(&["migrate", "--db", db]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_verify_passes(&db_path);

    let app = TestApp::spawn_on(&db_path);
    assert_eq!(app.entry_count(), 3);
    assert_eq!(app.balance("ann", "GOLD"), 45);
    // Each old key replays: the original entry, the balance as it was then.
    let replay = app.post(
        "/wallets/ann/topup",
        &json!({"asset": "GOLD", "amount": 50, "idempotencyKey": "k1", "referenceId": "order-1"}),
    );
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        replay.data()["transaction"]["id"],
        "0190f0a0-0000-7000-8000-000000000001"
    );
    assert_eq!(replay.data()["balance"], 50);
    assert_eq!(replay.data()["transaction"]["metadata"], json!(null));
    // The asset named by id is the same request.
    let by_id = app.post(
        "/wallets/ben/bonus",
        &json!({"asset": GOLD, "amount": 20, "idempotencyKey": "k3", "note": "welcome"}),
    );
    assert_eq!(by_id.status, 200, "{:?}", by_id.body);
    // An old key for another request names the fields that differ.
    let reused = app.post(
        "/wallets/ann/spend",
        &json!({"asset": "GOLD", "amount": 6, "idempotencyKey": "k2"}),
    );
    assert_eq!(reused.status, 422, "{:?}", reused.body);
    assert_eq!(
        reused.body["error"]["details"]["differing"],
        json!(["amount"])
    );
    // And the old entries take the new operations.
    let reversal = app.post(
        "/transactions/0190f0a0-0000-7000-8000-000000000002/reverse",
        &json!({"idempotencyKey": "refund-k2"}),
    );
    assert_eq!(reversal.status, 201, "{:?}", reversal.body);
    assert_eq!(reversal.data()["balance"], 50);
    let transfer = app.post(
        "/wallets/ben/transfer",
        &json!({"to": "ann", "asset": "GOLD", "amount": 20, "idempotencyKey": "k4"}),
    );
    assert_eq!(transfer.status, 201, "{:?}", transfer.body);
    assert_eq!(app.entry_count(), 5);
    assert!(app.terminate().success());
    assert_verify_passes(&db_path);
}
