//! The asset catalogue on PostgreSQL: `wallet assets create|list`. Whether
//! an asset is created, found the same, or refused is the engine's
//! decision, through the shared write loop (`store::write::create_asset`);
//! this file reads the catalogue and writes an asset and its Treasury.
//! Two commands at once take turns on an advisory lock, so the second
//! finds the first's asset rather than a unique-key error.

use postgres::Transaction;

use super::migrate::check_current;
use super::{connect, locked_transaction, PostgresUrl};
use crate::clock::now_ms;
use crate::ledger::engine::{AssetRow, NewAsset};
use crate::ledger::Rejection;
use crate::store::write::{self, AssetTransaction};
use crate::store::{AssetOutcome, StorageError};

/// The catalogue's side of one PostgreSQL write transaction.
pub(super) struct PgAssets<'a, 't>(pub &'a mut Transaction<'t>);

impl AssetTransaction for PgAssets<'_, '_> {
    fn asset_facts(&mut self, asset: &NewAsset) -> Result<(Option<AssetRow>, usize), StorageError> {
        let same_symbol = super::rules::asset_by_symbol(self.0, asset.symbol.as_str())?;
        let count: i64 = self
            .0
            .query_one("SELECT count(*) FROM asset_types", &[])?
            .get(0);
        Ok((same_symbol, usize::try_from(count).unwrap_or(usize::MAX)))
    }

    fn write_asset(&mut self, asset: &NewAsset, now_ms: i64) -> Result<AssetRow, StorageError> {
        let id = uuid::Uuid::new_v4().to_string();
        let row = self.0.query_one(
            "INSERT INTO asset_types (id, symbol, name, decimals, created_at)
             VALUES ($1::text::uuid, $2, $3, $4, $5)
             RETURNING id::text, symbol, name, decimals, created_at,
                       NULL::text, NULL::bigint, NULL::text, NULL::bigint",
            &[
                &id,
                &asset.symbol.as_str(),
                &asset.name.as_str(),
                &i16::from(asset.decimals.get()),
                &now_ms,
            ],
        )?;
        self.0.execute(
            "INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at)
             VALUES ('SYSTEM', NULL, $1::text::uuid, $2)",
            &[&id, &now_ms],
        )?;
        // Columns as `rules::asset_row` reads them: a new asset has no
        // rules set.
        super::rules::asset_row(&row)
    }
}

/// `wallet assets create`: created, already the same, or refused. On a
/// new database, after creating the schema, as on a new SQLite file.
pub fn create(
    url: &PostgresUrl,
    asset: NewAsset,
) -> anyhow::Result<Result<AssetOutcome, Rejection>> {
    super::migrate::migrate(url)?;
    let mut client = connect(url)?;
    // The same lock as the catalogue's bound in the schema.
    let mut tx = locked_transaction(&mut client, "wallet.asset_types")?;
    let outcome = write::create_asset(&mut PgAssets(&mut tx), &asset, now_ms())?;
    if matches!(outcome, Ok(AssetOutcome::Created(_))) {
        tx.commit()?;
    }
    Ok(outcome)
}

/// `wallet assets list`: every asset, by symbol.
pub fn list(url: &PostgresUrl) -> anyhow::Result<Vec<AssetRow>> {
    let mut client = connect(url)?;
    check_current(&mut client)?;
    // At most `ASSET_TYPES_MAX` rows: the schema bounds the catalogue.
    Ok(super::rules::assets(&mut client)?)
}
