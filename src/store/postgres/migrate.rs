//! The PostgreSQL schema's versions: numbered files in
//! `migrations/postgres/`, each applied once, all that a run applies in one
//! transaction, so a database is at one version or the next, never between.
//! Instances that migrate at once take turns on an advisory lock.

use anyhow::{bail, Context};

use super::{reason, with_connection, PostgresUrl};

const MIGRATIONS: &[&str] = &[include_str!("../../../migrations/postgres/001_ledger.sql")];

/// The version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to `SCHEMA_VERSION`; returns the version it is at.
pub fn migrate(url: &PostgresUrl) -> anyhow::Result<i64> {
    with_connection(url, async |client| {
        let tx = client
            .transaction()
            .await
            .map_err(|error| anyhow::anyhow!("cannot begin the migration: {}", reason(&error)))?;
        let run = async {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('wallet.migrate'))",
                &[],
            )
            .await?;
            let version = current_version(&tx).await?;
            for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.batch_execute(sql).await.map_err(|error| {
                    anyhow::anyhow!(
                        "migration to schema version {} failed: {}",
                        index + 1,
                        reason(&error)
                    )
                })?;
            }
            if version < SCHEMA_VERSION {
                tx.execute(
                    "INSERT INTO wallet_schema_version (version) VALUES ($1)
                     ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                    &[&(SCHEMA_VERSION as i32)],
                )
                .await?;
            }
            anyhow::Ok(())
        };
        match run.await {
            Ok(()) => {
                tx.commit().await.map_err(|error| {
                    anyhow::anyhow!("cannot commit the migration: {}", reason(&error))
                })?;
                Ok(SCHEMA_VERSION)
            }
            // Dropping the transaction rolls it back: nothing was changed.
            Err(error) => Err(error),
        }
    })
    .with_context(|| format!("cannot migrate {url}"))
}

/// The version the database is at: 0 when it holds no table at all; a
/// database with tables but not ours, or at a newer version, is refused.
async fn current_version(tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<i64> {
    let ours: bool = tx
        .query_one(
            "SELECT to_regclass('wallet_schema_version') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !ours {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )
            .await?
            .get(0);
        if tables > 0 {
            bail!("the database holds tables that are not a wallet's; refusing to change it");
        }
        return Ok(0);
    }
    let version: Option<i32> = tx
        .query_opt("SELECT version FROM wallet_schema_version", &[])
        .await?
        .map(|row| row.get(0));
    let version = i64::from(version.unwrap_or(0));
    if version > SCHEMA_VERSION {
        bail!(
            "the database is at schema version {version}, newer than this wallet's {SCHEMA_VERSION}: use a newer wallet binary"
        );
    }
    Ok(version)
}
