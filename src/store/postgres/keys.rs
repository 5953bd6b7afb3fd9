//! API keys on PostgreSQL: `wallet keys create|list|revoke`. The rules of
//! keys (a name never reused, at most so many active and in all, a
//! revocation final) are the shared write loop's (`store::write`); this
//! file reads their facts and writes what they allow. Two commands at once
//! take turns on an advisory lock, so both cannot pass the same count.

use postgres::{Row, Transaction};

use super::migrate::check_current;
use super::{connect, locked_transaction, PostgresUrl};
use crate::clock::now_ms;
use crate::domain::KeyName;
use crate::limits::API_KEYS_TOTAL_MAX;
use crate::store::write::{self, KeyFacts, KeyTransaction};
use crate::store::{KeyListing, KeyRejection, NewKey, StorageError};

const LISTED: &str = "SELECT name, scopes, created_at, last_used_at, revoked_at FROM api_keys";

/// The keys' side of one PostgreSQL write transaction.
pub(super) struct PgKeys<'a, 't>(pub &'a mut Transaction<'t>);

impl KeyTransaction for PgKeys<'_, '_> {
    fn key_facts(&mut self, name: &KeyName) -> Result<KeyFacts, StorageError> {
        let row = self.0.query_one(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = $1),
                    count(*) FILTER (WHERE revoked_at IS NULL), count(*)
               FROM api_keys",
            &[&name.as_str()],
        )?;
        let (active, total): (i64, i64) = (row.get(1), row.get(2));
        Ok(KeyFacts {
            name_used: row.get(0),
            active: usize::try_from(active).unwrap_or(usize::MAX),
            total: usize::try_from(total).unwrap_or(usize::MAX),
        })
    }

    fn write_key(&mut self, key: &NewKey, now_ms: i64) -> Result<KeyListing, StorageError> {
        let row = self.0.query_one(
            "INSERT INTO api_keys (name, secret_sha256, scopes, created_at)
             VALUES ($1, $2, $3, $4)
             RETURNING name, scopes, created_at, last_used_at, revoked_at",
            &[
                &key.name.as_str(),
                &&key.secret_sha256[..],
                &key.scopes.to_string(),
                &now_ms,
            ],
        )?;
        Ok(listing_of(&row))
    }

    fn write_revocation(
        &mut self,
        name: &KeyName,
        now_ms: i64,
    ) -> Result<Option<KeyListing>, StorageError> {
        let row = self.0.query_opt(
            "UPDATE api_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL
             RETURNING name, scopes, created_at, last_used_at, revoked_at",
            &[&name.as_str(), &now_ms],
        )?;
        Ok(row.as_ref().map(listing_of))
    }
}

fn listing_of(row: &Row) -> KeyListing {
    KeyListing {
        name: row.get(0),
        scopes: row.get(1),
        created_at_ms: row.get(2),
        last_used_at_ms: row.get(3),
        revoked_at_ms: row.get(4),
    }
}

/// Runs `change` in a transaction holding the keys' lock; commits only
/// what the rules allowed.
fn change_keys(
    url: &PostgresUrl,
    change: impl FnOnce(&mut PgKeys) -> Result<Result<KeyListing, KeyRejection>, StorageError>,
) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
    let mut client = connect(url)?;
    let mut tx = locked_transaction(&mut client, "wallet.keys")?;
    let outcome = change(&mut PgKeys(&mut tx))?;
    if outcome.is_ok() {
        tx.commit()?;
    }
    Ok(outcome)
}

/// `wallet keys create`: on a new database, after creating the schema,
/// as on a new SQLite file.
pub fn create(url: &PostgresUrl, key: &NewKey) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
    super::migrate::migrate(url)?;
    change_keys(url, |keys| write::create_key(keys, key, now_ms()))
}

/// `wallet keys revoke`.
pub fn revoke(
    url: &PostgresUrl,
    name: &KeyName,
) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
    change_keys(url, |keys| write::revoke_key(keys, name, now_ms()))
}

/// `wallet keys list`: every key, revoked ones included, by name.
pub fn list(url: &PostgresUrl) -> anyhow::Result<Vec<KeyListing>> {
    let mut client = connect(url)?;
    check_current(&mut client)?;
    let rows = client.query(
        &format!("{LISTED} ORDER BY name LIMIT $1"),
        &[&(API_KEYS_TOTAL_MAX as i64)],
    )?;
    Ok(rows.iter().map(listing_of).collect())
}
