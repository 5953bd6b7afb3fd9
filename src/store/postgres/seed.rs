//! The demo seed on PostgreSQL, from the one source SQLite applies
//! (`seed.sql`, read through `sqlite::seed::demo_catalogue`): the asset
//! types with their fixed ids and their Treasuries, then the grants posted
//! through a writer as ordinary TOPUP entries. Seeding twice, or from two
//! instances at once, changes nothing the second time.

use super::{connect, locked_transaction, PostgresUrl};
use crate::ledger::engine::AssetRow;
use crate::store::Grant;

/// Adds the demo catalogue's assets that are missing; returns the grants.
/// With `only_if_empty`, adds nothing (and returns no grants) to a
/// database that holds any asset.
fn apply_catalogue(
    url: &PostgresUrl,
    catalogue: &[AssetRow],
    grants: Vec<Grant>,
    only_if_empty: bool,
) -> anyhow::Result<Vec<Grant>> {
    let mut client = connect(url)?;
    let mut tx = locked_transaction(&mut client, "wallet.asset_types")?;
    if only_if_empty
        && tx
            .query_opt("SELECT 1 FROM asset_types LIMIT 1", &[])?
            .is_some()
    {
        return Ok(Vec::new());
    }
    for asset in catalogue {
        let added = tx.execute(
            "INSERT INTO asset_types (id, symbol, name, decimals, created_at)
             VALUES ($1::text::uuid, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &asset.id,
                &asset.symbol,
                &asset.name,
                &i16::from(asset.decimals),
                &asset.created_at_ms,
            ],
        )?;
        if added == 1 {
            tx.execute(
                "INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at)
                 VALUES ('SYSTEM', NULL, $1::text::uuid, $2)",
                &[&asset.id, &asset.created_at_ms],
            )?;
        }
    }
    tx.commit()?;
    Ok(grants)
}

/// `serve` on a database with no asset yet: the catalogue, and the grants
/// to post once the writer runs.
pub fn apply_catalogue_if_empty(url: &PostgresUrl) -> anyhow::Result<Vec<Grant>> {
    let (catalogue, grants) = crate::store::sqlite::seed::demo_catalogue()?;
    apply_catalogue(url, &catalogue, grants, true)
}

/// `wallet seed`.
pub fn seed(url: &PostgresUrl) -> anyhow::Result<crate::store::SeedSummary> {
    super::migrate::migrate(url)?;
    let (catalogue, grants) = crate::store::sqlite::seed::demo_catalogue()?;
    let grants = apply_catalogue(url, &catalogue, grants, false)?;
    let writer = super::serving::start_writer(url)?;
    let summary = crate::store::seed_grants(&writer.handle(), &grants);
    writer.stop();
    summary
}
