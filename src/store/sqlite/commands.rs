//! The command-line tools' work on a SQLite file, without a server: each
//! opens the file, does one thing, and closes it. Writes to the ledger go
//! through a writer of their own, the same path a server's take.

use std::path::Path;

use anyhow::Context;

use super::{keys, migrate, open, reads, seed, verify, writer};
use crate::clock::now_ms;
use crate::domain::{Caller, KeyName};
use crate::ledger::audit::AuditReport;
use crate::ledger::engine::{AssetRow, NewAsset};
use crate::ledger::Rejection;
use crate::limits::WRITE_BATCH_MAX;
use crate::store::{
    AssetOutcome, KeyListing, KeyRejection, LedgerError, NewKey, RulesChange, RulesOutcome,
    SeedSummary,
};

/// `wallet migrate`: the schema version the file is at now.
pub fn migrate(path: &Path) -> anyhow::Result<i64> {
    let mut conn = open::open_read_write(path)?;
    migrate::migrate(&mut conn)?;
    Ok(migrate::SCHEMA_VERSION)
}

/// `wallet seed`.
pub fn seed(path: &Path) -> anyhow::Result<SeedSummary> {
    let mut conn = open::open_read_write(path)?;
    migrate::migrate(&mut conn)?;
    let grants = seed::apply_catalogue(&mut conn)?;
    let writer = writer::start(conn, WRITE_BATCH_MAX).context("cannot start the writer")?;
    let summary = crate::store::seed_grants(&writer.handle(), &grants);
    writer.stop();
    summary
}

/// `wallet verify`; `checked` hears how many entries are checked so far.
pub fn verify(path: &Path, checked: &mut dyn FnMut(u64)) -> anyhow::Result<AuditReport> {
    let mut conn = open::open_read_only(path)?;
    migrate::check_current(&conn)?;
    verify::audit_reporting(&mut conn, checked).context("reading the ledger failed")
}

pub fn create_key(path: &Path, key: NewKey) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
    let mut conn = open::open_read_write(path)?;
    migrate::migrate(&mut conn)?;
    keys::create(&mut conn, &key, now_ms())
}

pub fn list_keys(path: &Path) -> anyhow::Result<Vec<KeyListing>> {
    let conn = open::open_read_only(path)?;
    migrate::check_current(&conn)?;
    Ok(keys::list(&conn)?)
}

pub fn revoke_key(path: &Path, name: &KeyName) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
    let mut conn = open::open_read_write(path)?;
    migrate::check_current(&conn)?;
    keys::revoke(&mut conn, name, now_ms())
}

/// `wallet assets create`: decided and written as `POST /assets` is.
pub fn create_asset(
    path: &Path,
    asset: NewAsset,
) -> anyhow::Result<Result<AssetOutcome, Rejection>> {
    let mut conn = open::open_read_write(path)?;
    migrate::migrate(&mut conn)?;
    let writer = writer::start(conn, 1).context("cannot start the writer")?;
    let outcome = writer.handle().create_asset_blocking(asset);
    writer.stop();
    match outcome {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(LedgerError::Rejected(rejection)) => Ok(Err(rejection)),
        Err(LedgerError::Storage(error)) => {
            Err(anyhow::Error::new(error).context("the asset could not be written"))
        }
    }
}

/// `wallet assets rules`: through a writer of its own, as the server's
/// changes go through its writer.
pub fn change_rules(
    path: &Path,
    change: RulesChange,
) -> anyhow::Result<Result<RulesOutcome, Rejection>> {
    let mut conn = open::open_read_write(path)?;
    migrate::migrate(&mut conn)?;
    let writer = writer::start(conn, 1).context("cannot start the writer")?;
    let outcome = writer
        .handle()
        .change_rules_blocking(change, Caller::Anonymous);
    writer.stop();
    match outcome {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(LedgerError::Rejected(rejection)) => Ok(Err(rejection)),
        Err(LedgerError::Storage(error)) => {
            Err(anyhow::Error::new(error).context("the rules could not be written"))
        }
    }
}

pub fn list_assets(path: &Path) -> anyhow::Result<Vec<AssetRow>> {
    let mut conn = open::open_read_only(path)?;
    migrate::check_current(&conn)?;
    Ok(reads::assets(&mut conn)?)
}
