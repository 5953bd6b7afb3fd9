//! The schema's versions. `schema.sql` is version 1; each later change comes as
//! a numbered file in `migrations/` appended to `MIGRATIONS`, never as an edit
//! to a released one, so a file migrated step by step matches a fresh one.

use anyhow::{bail, Context};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../schema.sql"),
    include_str!("../../../migrations/002_api_keys.sql"),
    include_str!("../../../migrations/003_engine.sql"),
    include_str!("../../../migrations/004_holds.sql"),
    include_str!("../../../migrations/005_watch.sql"),
    include_str!("../../../migrations/006_limits.sql"),
    include_str!("../../../migrations/007_parts.sql"),
    include_str!("../../../migrations/008_supply_history.sql"),
];

/// A version whose change SQL alone cannot make: after its file, a pass in
/// Rust over the data, then the SQL that holds from the next write.
type Backfill = fn(&rusqlite::Connection) -> anyhow::Result<()>;
const BACKFILLS: &[(i64, Backfill, &str)] = &[(
    7,
    super::parts::backfill,
    include_str!("../../../migrations/007_parts_checks.sql"),
)];

/// The version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the file up to `SCHEMA_VERSION` in one IMMEDIATE transaction, so a
/// crash leaves the old version or the new one, never a mixture.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the file up to version `target` only: how a test builds a file
/// as an older release left it.
#[doc(hidden)]
pub fn migrate_to(conn: &mut Connection, target: i64) -> anyhow::Result<()> {
    let target = target.clamp(1, SCHEMA_VERSION);
    // A migration may rebuild a table that others reference (SQLite's
    // documented way to change a constraint), which an enforced foreign key
    // would refuse half-way; so enforcement is off while it runs and the
    // whole file is checked before COMMIT instead. The pragma is a no-op
    // inside a transaction, hence here.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let migrated = migrate_unchecked(conn, target);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrated
}

fn migrate_unchecked(conn: &mut Connection, target: i64) -> anyhow::Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the database to migrate it")?;
    let version = schema_version(&tx)?;
    if version >= target {
        // Current already: nothing to apply, and nothing to check. The
        // foreign-key check below reads the whole file, which must not be
        // paid on every start of a large ledger.
        return Ok(());
    }
    if version == 0 {
        let tables: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
            [],
            |row| row.get(0),
        )?;
        if tables > 0 {
            bail!("the database holds tables that are not a wallet's; refusing to change it");
        }
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(version as usize)
    {
        let version = index as i64 + 1;
        tx.execute_batch(sql)
            .with_context(|| format!("migration to schema version {version} failed"))?;
        for (_, backfill, after) in BACKFILLS.iter().filter(|(at, ..)| *at == version) {
            backfill(&tx)
                .with_context(|| format!("migration to schema version {version} failed"))?;
            tx.execute_batch(after)
                .with_context(|| format!("migration to schema version {version} failed"))?;
        }
    }
    let broken_reference: Option<String> = tx
        .query_row(
            "SELECT \"table\" FROM pragma_foreign_key_check LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(table) = broken_reference {
        bail!("migration left a broken foreign key in table {table}; nothing was changed");
    }
    tx.pragma_update(None, "user_version", target)?;
    tx.commit().context("cannot commit the migration")?;
    Ok(())
}

/// Refuses a file this binary cannot read: never migrated, or from a newer
/// binary.
pub fn check_current(conn: &Connection) -> anyhow::Result<()> {
    match schema_version(conn)? {
        0 => bail!("the database has no wallet schema; run `wallet migrate` first"),
        v if v == SCHEMA_VERSION => Ok(()),
        v => bail!("the database is at schema version {v}; this wallet understands only version {SCHEMA_VERSION}"),
    }
}

fn schema_version(conn: &Connection) -> anyhow::Result<i64> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        bail!(
            "the database is at schema version {version}, newer than this wallet's {SCHEMA_VERSION}: use a newer wallet binary"
        );
    }
    if version < 0 {
        bail!("the database has an invalid schema version {version}");
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    //! The schema's own defences, exercised with raw SQL as a buggy writer or
    //! a hand edit would: each must be refused by SQLite itself.
    use super::*;
    use crate::store::sqlite::{open, seed};

    const GOLD: &str = "6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a01";
    const DIAMOND: &str = "6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a02";

    /// A catalogue, a user account in GOLD (id 100) and one in DIAMOND (101),
    /// and one valid topup of 10 GOLD (entry 1, of request 1) with its
    /// postings.
    fn ledger() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open::open_read_write(&dir.path().join("wallet.db")).unwrap();
        migrate(&mut conn).unwrap();
        seed::apply_catalogue(&mut conn).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO accounts (id, owner_type, owner_id, asset_type_id, created_at)
                  VALUES (100, 'USER', 'u', '{GOLD}', 0), (101, 'USER', 'u', '{DIAMOND}', 0);
             INSERT INTO idempotency_records (id, caller_id, key, request, entry_count, created_at)
                  VALUES (1, 0, 'k1', '{{}}', 1, 0);
             INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                                         credit_account_id, amount, request_id, created_at, parts)
                  VALUES (1, 'e1', 'TOPUP', '{GOLD}', {treasury}, 100, 10, 1, 0,
                          '[{{\"kind\":\"PAID\",\"amount\":10}}]');
             INSERT INTO postings (account_id, entry_seq, delta, balance_after, paid_after)
                  VALUES (100, 1, 10, 10, 10), ({treasury}, 1, -10, -10, -10);",
            treasury = treasury(&conn, GOLD),
        ))
        .unwrap();
        (dir, conn)
    }

    fn treasury(conn: &Connection, asset: &str) -> i64 {
        conn.query_row(
            "SELECT id FROM accounts WHERE owner_type = 'SYSTEM' AND asset_type_id = ?1",
            [asset],
            |row| row.get(0),
        )
        .unwrap()
    }

    fn refused(conn: &Connection, sql: &str) -> String {
        match conn.execute_batch(sql) {
            Ok(()) => panic!("the database accepted: {sql}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn entries_and_postings_cannot_be_updated_or_deleted() {
        let (_dir, conn) = ledger();
        for sql in [
            "UPDATE ledger_entries SET amount = 11",
            "DELETE FROM ledger_entries",
            "UPDATE postings SET balance_after = 99",
            "DELETE FROM postings",
            "UPDATE idempotency_records SET key = 'k2'",
            "DELETE FROM idempotency_records",
        ] {
            assert!(refused(&conn, sql).contains("append-only"), "{sql}");
        }
    }

    #[test]
    fn an_entry_needs_a_positive_safe_amount_and_two_different_accounts() {
        let (_dir, conn) = ledger();
        let t = treasury(&conn, GOLD);
        let insert = |amount: i64, debit: i64, credit: i64| {
            format!(
                "INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id,
                        credit_account_id, amount, request_id, created_at, parts)
                 VALUES ('x', 'TOPUP', '{GOLD}', {debit}, {credit}, {amount}, 1, 0, '[]')"
            )
        };
        refused(&conn, &insert(0, t, 100));
        refused(&conn, &insert(-5, t, 100));
        refused(&conn, &insert(9_007_199_254_740_992, t, 100));
        refused(&conn, &insert(5, 100, 100));
        // Both accounts must hold the entry's asset: 101 is a DIAMOND account.
        refused(&conn, &insert(5, t, 101));
        conn.execute_batch(&insert(5, t, 100)).unwrap();
    }

    #[test]
    fn an_idempotency_key_names_one_request_only_per_caller() {
        let (_dir, conn) = ledger();
        let error = refused(
            &conn,
            "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
             VALUES (0, 'k1', '{}', 0, 0)",
        );
        assert!(error.contains("UNIQUE"), "{error}");
        let error = refused(
            &conn,
            "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
             VALUES (0, 'k2', 'not json', 0, 0)",
        );
        assert!(error.contains("CHECK"), "{error}");
    }

    #[test]
    fn an_entry_needs_a_known_kind_a_record_and_small_object_metadata() {
        let (_dir, conn) = ledger();
        let t = treasury(&conn, GOLD);
        let insert = |kind: &str, request: i64, metadata: &str| {
            format!(
                "INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id,
                        credit_account_id, amount, request_id, metadata, created_at, parts)
                 VALUES ('x', '{kind}', '{GOLD}', {t}, 100, 1, {request}, {metadata}, 0, '[]')"
            )
        };
        assert!(refused(&conn, &insert("REFUND", 1, "NULL")).contains("FOREIGN KEY"));
        assert!(refused(&conn, &insert("TOPUP", 9, "NULL")).contains("FOREIGN KEY"));
        refused(&conn, &insert("TOPUP", 1, "'[1]'"));
        refused(
            &conn,
            &insert("TOPUP", 1, &format!("'{{\"a\":\"{}\"}}'", "v".repeat(2048))),
        );
        conn.execute_batch(&insert("TOPUP", 1, "'{\"a\":\"1\"}'"))
            .unwrap();
    }

    #[test]
    fn a_reversal_must_undo_what_is_left_of_a_reversible_entry_the_other_way_round() {
        let (_dir, conn) = ledger();
        let t = treasury(&conn, GOLD);
        let reversal = |seq: i64, debit: i64, credit: i64, amount: i64, after: i64| {
            format!(
                "INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                        credit_account_id, amount, request_id, reverses_seq, reversed_after,
                        created_at, parts)
                 VALUES ({seq}, 'r{seq}', 'REVERSAL', '{GOLD}', {debit}, {credit}, {amount}, 1,
                         1, {after}, 0, '[]')"
            )
        };
        // The same way round as the original, not the other.
        refused(&conn, &reversal(2, t, 100, 4, 4));
        // A running total that does not follow from the amounts.
        refused(&conn, &reversal(2, 100, t, 4, 5));
        conn.execute_batch(&reversal(2, 100, t, 4, 4)).unwrap();
        // More than is left (6): refused, however the total is written.
        refused(&conn, &reversal(3, 100, t, 7, 11));
        conn.execute_batch(&reversal(3, 100, t, 6, 10)).unwrap();
        // A reversal of a reversal.
        let error = refused(
            &conn,
            &format!(
                "INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                        credit_account_id, amount, request_id, reverses_seq, reversed_after,
                        created_at, parts)
                 VALUES (4, 'r4', 'REVERSAL', '{GOLD}', {t}, 100, 1, 1, 2, 1, 0, '[]')"
            ),
        );
        assert!(error.contains("reversal"), "{error}");
        // A REVERSAL must name what it reverses, and nothing else may.
        refused(
            &conn,
            &format!(
                "INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id,
                        credit_account_id, amount, request_id, created_at, parts)
                 VALUES ('r5', 'REVERSAL', '{GOLD}', 100, {t}, 1, 1, 0, '[]')"
            ),
        );
    }

    /// A ledger as the version 2 release left it: two users' topups, a
    /// spend, and an entry of an API key's, under their keys.
    fn version_2_ledger() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open::open_read_write(&dir.path().join("wallet.db")).unwrap();
        migrate_to(&mut conn, 2).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 2);
        seed::apply_catalogue(&mut conn).unwrap();
        let t = treasury(&conn, GOLD);
        conn.execute_batch(&format!(
            "INSERT INTO api_keys (id, name, secret_sha256, scopes, created_at)
                  VALUES (1, 'game', zeroblob(32), 'read,spend', 0);
             INSERT INTO accounts (id, owner_type, owner_id, asset_type_id, created_at)
                  VALUES (100, 'USER', 'ann', '{GOLD}', 0), (101, 'USER', 'ben', '{GOLD}', 0);
             INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                     credit_account_id, amount, idempotency_key, reference_id, note, created_at,
                     caller_id)
                  VALUES (1, 'e1', 'TOPUP', '{GOLD}', {t}, 100, 50, 'k1', 'order-1', NULL, 1, 0),
                         (2, 'e2', 'BONUS', '{GOLD}', {t}, 101, 20, 'k2', NULL, 'welcome', 2, 0),
                         (3, 'e3', 'SPEND', '{GOLD}', 100, {t}, 5, 'k1', NULL, NULL, 3, 1);
             INSERT INTO postings (account_id, entry_seq, delta, balance_after) VALUES (100, 1, 50, 50), ({t}, 1, -50, -50),
                                         (101, 2, 20, 20), ({t}, 2, -20, -70),
                                         (100, 3, -5, 45), ({t}, 3, 5, -65);"
        ))
        .unwrap();
        (dir, conn)
    }

    #[test]
    fn a_version_2_ledger_migrates_keeping_every_entry_and_replaying_every_key() {
        use crate::domain::{Amount, AssetRef, Caller, IdempotencyKey, ReferenceId, UserId};
        use crate::ledger::engine::{
            Answer, Command, CreditKind, EntryDetails, Operation, Outcome, Route,
        };
        use crate::ledger::Rejection;
        use crate::store::LedgerError;

        let (_dir, mut conn) = version_2_ledger();
        migrate(&mut conn).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM ledger_entries"), 3);
        assert_eq!(count("SELECT count(*) FROM idempotency_records"), 3);
        assert_eq!(count("SELECT count(*) FROM postings"), 6);
        let report = crate::store::sqlite::verify::audit(&mut conn).unwrap();
        assert!(report.is_clean(), "{report}");

        // Every old key replays for its own caller, with the answer as then.
        let writer = crate::store::sqlite::writer::start(conn, 8).unwrap();
        let handle = writer.handle();
        let topup = |caller: Caller, amount: u64, reference: Option<&str>| Command {
            caller,
            key: IdempotencyKey::parse("k1").unwrap(),
            route: Route::Topup,
            operations: vec![Operation::Credit {
                kind: CreditKind::Topup,
                user: UserId::parse("ann").unwrap(),
                asset: AssetRef::parse("GOLD").unwrap(),
                amount: Amount::parse(amount).unwrap(),
                details: EntryDetails {
                    reference_id: reference.map(|r| ReferenceId::parse(r).unwrap()),
                    ..EntryDetails::default()
                },
            }],
        };
        match handle.apply_blocking(topup(Caller::Anonymous, 50, Some("order-1"))) {
            Ok(Outcome::Replayed(Answer::Entry {
                transaction,
                balance,
                ..
            })) => {
                assert_eq!(transaction.id, "e1");
                assert_eq!(balance, 50, "the balance as it was then");
            }
            other => panic!("expected the old key to replay, got {other:?}"),
        }
        match handle.apply_blocking(topup(Caller::Anonymous, 51, None)) {
            Err(LedgerError::Rejected(Rejection::IdempotencyKeyReused { differing })) => {
                assert_eq!(differing, vec!["amount", "referenceId"]);
            }
            other => panic!("expected a reuse, got {other:?}"),
        }
        let spend = Command {
            caller: Caller::Key(1),
            key: IdempotencyKey::parse("k1").unwrap(),
            route: Route::Spend,
            operations: vec![Operation::Spend {
                user: UserId::parse("ann").unwrap(),
                asset: AssetRef::parse(GOLD).unwrap(),
                amount: Amount::parse(5).unwrap(),
                details: EntryDetails::default(),
            }],
        };
        match handle.apply_blocking(spend) {
            Ok(Outcome::Replayed(Answer::Entry { balance, .. })) => assert_eq!(balance, 45),
            other => panic!("expected the key's own caller to replay, got {other:?}"),
        }
        writer.stop();
    }

    /// Entry 2: user account 100 spends `amount` GOLD, with no postings yet.
    fn spend_entry_2(conn: &Connection, amount: i64) {
        let t = treasury(conn, GOLD);
        conn.execute_batch(&format!(
            "INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                    credit_account_id, amount, request_id, created_at, parts)
             VALUES (2, 'e2', 'SPEND', '{GOLD}', 100, {t}, {amount}, 1, 0, '[]')"
        ))
        .unwrap();
    }

    #[test]
    fn a_posting_must_follow_its_entry_and_the_running_balance() {
        let (_dir, conn) = ledger();
        spend_entry_2(&conn, 4);
        // Wrong sign, wrong account, wrong balance.
        let posting = |values: &str| {
            format!(
                "INSERT INTO postings (account_id, entry_seq, delta, balance_after, paid_after)
                 VALUES {values}"
            )
        };
        refused(&conn, &posting("(100, 2, 4, 14, 10)"));
        refused(&conn, &posting("(101, 2, -4, -4, 0)"));
        let error = refused(&conn, &posting("(100, 2, -4, 7, 7)"));
        assert!(error.contains("continue"), "{error}");
        // A posting that does not name its running paid total.
        refused(
            &conn,
            "INSERT INTO postings (account_id, entry_seq, delta, balance_after) VALUES (100, 2, -4, 6)",
        );
        conn.execute_batch(&posting("(100, 2, -4, 6, 6)")).unwrap();
    }

    #[test]
    fn a_user_posting_below_zero_is_refused_by_the_database() {
        let (_dir, conn) = ledger();
        spend_entry_2(&conn, 11);
        let posting = |values: &str| {
            format!(
                "INSERT INTO postings (account_id, entry_seq, delta, balance_after, paid_after)
                 VALUES {values}"
            )
        };
        let error = refused(&conn, &posting("(100, 2, -11, -1, 0)"));
        assert!(error.contains("below zero"), "{error}");
        // Neither part may go below zero: paid past the balance leaves free
        // below it.
        let error = refused(&conn, &posting("(100, 2, -4, 6, -1)"));
        assert!(error.contains("below zero"), "{error}");
        let error = refused(&conn, &posting("(100, 2, -4, 6, 7)"));
        assert!(error.contains("below zero"), "{error}");
    }

    #[test]
    fn migrating_twice_changes_nothing_and_a_newer_file_is_refused() {
        let (dir, mut conn) = ledger();
        migrate(&mut conn).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let error = migrate(&mut conn).unwrap_err().to_string();
        assert!(error.contains("newer"), "{error}");
        assert!(check_current(&conn).is_err());
        drop(dir);
    }

    #[test]
    fn a_database_with_foreign_tables_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open::open_read_write(&dir.path().join("other.db")).unwrap();
        conn.execute_batch("CREATE TABLE invoices (id INTEGER)")
            .unwrap();
        let error = migrate(&mut conn).unwrap_err().to_string();
        assert!(error.contains("not a wallet"), "{error}");
        assert_eq!(schema_version(&conn).unwrap(), 0);
    }
}
