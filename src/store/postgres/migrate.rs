//! The PostgreSQL schema's versions: numbered files in
//! `migrations/postgres/`, each applied once, all that a run applies in one
//! transaction, so a database is at one version or the next, never between.
//! Instances that migrate at once take turns on an advisory lock.

use anyhow::{bail, Context};

use super::{connect, reason, PostgresUrl};

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/001_ledger.sql"),
    include_str!("../../../migrations/postgres/002_limits.sql"),
    include_str!("../../../migrations/postgres/003_parts.sql"),
    include_str!("../../../migrations/postgres/004_supply_history.sql"),
];

/// A version whose change SQL alone cannot make: after its file, a pass in
/// Rust over the data (in the same transaction), then the SQL that holds
/// from the next write.
type Backfill = fn(&mut postgres::Transaction<'_>) -> anyhow::Result<()>;
const BACKFILLS: &[(i64, Backfill, &str)] = &[(
    3,
    super::parts::backfill,
    include_str!("../../../migrations/postgres/003_parts_checks.sql"),
)];

/// The version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to `SCHEMA_VERSION`; returns the version it is at.
pub fn migrate(url: &PostgresUrl) -> anyhow::Result<i64> {
    let mut client = connect(url)?;
    let mut tx = client
        .transaction()
        .map_err(|error| anyhow::anyhow!("cannot begin the migration: {}", reason(&error)))?;
    let applied = (|| {
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('wallet.migrate'))",
            &[],
        )?;
        let version = current_version(&mut tx)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let version = index as i64 + 1;
            let failed = |error: &postgres::Error| {
                anyhow::anyhow!(
                    "migration to schema version {version} failed: {}",
                    reason(error)
                )
            };
            tx.batch_execute(sql).map_err(|error| failed(&error))?;
            for (_, backfill, after) in BACKFILLS.iter().filter(|(at, ..)| *at == version) {
                backfill(&mut tx)
                    .with_context(|| format!("migration to schema version {version} failed"))?;
                tx.batch_execute(after).map_err(|error| failed(&error))?;
            }
        }
        if version < SCHEMA_VERSION {
            tx.execute(
                "INSERT INTO wallet_schema_version (version) VALUES ($1)
                 ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                &[&(SCHEMA_VERSION as i32)],
            )?;
        }
        anyhow::Ok(())
    })();
    // On an error the transaction is dropped, so rolled back: nothing changed.
    applied.with_context(|| format!("cannot migrate {url}"))?;
    tx.commit().map_err(|error| {
        anyhow::anyhow!("cannot commit the migration of {url}: {}", reason(&error))
    })?;
    Ok(SCHEMA_VERSION)
}

/// Refuses a database this binary cannot use: never migrated, or newer.
pub fn check_current(client: &mut impl postgres::GenericClient) -> anyhow::Result<()> {
    match current_version(client)? {
        0 => bail!("the database has no wallet schema; run `wallet migrate` first"),
        v if v == SCHEMA_VERSION => Ok(()),
        v => bail!("the database is at schema version {v}; this wallet understands only version {SCHEMA_VERSION}"),
    }
}

/// The version the database is at: 0 when it holds no table at all; a
/// database with tables but not ours, or at a newer version, is refused.
fn current_version(client: &mut impl postgres::GenericClient) -> anyhow::Result<i64> {
    let ours: bool = client
        .query_one(
            "SELECT to_regclass('wallet_schema_version') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !ours {
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )?
            .get(0);
        if tables > 0 {
            bail!("the database holds tables that are not a wallet's; refusing to change it");
        }
        return Ok(0);
    }
    let version: Option<i32> = client
        .query_opt("SELECT version FROM wallet_schema_version", &[])?
        .map(|row| row.get(0));
    let version = i64::from(version.unwrap_or(0));
    if version > SCHEMA_VERSION {
        bail!(
            "the database is at schema version {version}, newer than this wallet's {SCHEMA_VERSION}: use a newer wallet binary"
        );
    }
    Ok(version)
}
