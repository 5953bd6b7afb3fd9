//! The schema's versions. `schema.sql` is version 1; a later change comes as a
//! numbered migration appended to `MIGRATIONS`, never as an edit to a released
//! one, so a file migrated step by step matches a fresh one.

use anyhow::{bail, Context};
use rusqlite::{Connection, TransactionBehavior};

const MIGRATIONS: &[&str] = &[include_str!("../../schema.sql")];

/// The version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the file up to `SCHEMA_VERSION` in one IMMEDIATE transaction, so a
/// crash leaves the old version or the new one, never a mixture.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the database to migrate it")?;
    let version = schema_version(&tx)?;
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
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .with_context(|| format!("migration to schema version {} failed", index + 1))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
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
