//! The seed data of API.md. `seed.sql` holds it all: the asset types and
//! Treasuries it inserts directly, and the users' initial balances it lists in
//! a temporary table, which are then posted as ordinary TOPUP entries through
//! the writer, each with the key `seed:<userId>:<SYMBOL>`. Seeding twice
//! therefore changes nothing: the second run's entries are replays.

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};

use crate::ledger::engine::AssetRow;
use crate::store::Grant;

const SEED_SQL: &str = include_str!("../../../seed.sql");

/// Applies the asset types and Treasuries, and returns the grants to post.
/// Runs on the read-write connection before the writer takes it.
pub fn apply_catalogue(conn: &mut Connection) -> anyhow::Result<Vec<Grant>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SEED_SQL)
        .context("applying seed.sql failed")?;
    let grants = tx
        .prepare("SELECT user_id, symbol, amount FROM temp.seed_grants ORDER BY rowid")?
        .query_map([], |row| {
            Ok(Grant {
                user: row.get(0)?,
                symbol: row.get(1)?,
                amount: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.execute_batch("DROP TABLE temp.seed_grants")?;
    tx.commit()?;
    Ok(grants)
}

/// The demo catalogue and grants of `seed.sql`, read by applying it to a
/// database in memory: what another backend seeds, from the one source.
pub fn demo_catalogue() -> anyhow::Result<(Vec<AssetRow>, Vec<Grant>)> {
    let mut conn = Connection::open_in_memory()?;
    super::migrate::migrate(&mut conn)?;
    let grants = apply_catalogue(&mut conn)?;
    let assets = super::reads::assets(&mut conn)?;
    Ok((assets, grants))
}
