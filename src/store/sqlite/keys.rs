//! The `api_keys` table: the facts the rules of keys read and the writes
//! they allow (through the server's writer, or the command line's own
//! transaction), listing keys, and loading the active ones and recording
//! their last use (a running server). Secrets never reach this module: only
//! their SHA-256 digests.

use anyhow::Context;
use log::error;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::domain::{KeyName, Scopes};
use crate::limits::{API_KEYS_ACTIVE_MAX, API_KEYS_TOTAL_MAX};
use crate::store::write::{self, KeyFacts, KeyTransaction};
use crate::store::{ActiveKeyRow, KeyListing, KeyRejection, KeySnapshot, NewKey, StorageError};

/// The key queries inside a transaction someone else began and commits:
/// the server's writer's, or the command line's below.
pub(crate) struct KeysIn<'a>(pub &'a Connection);

impl KeyTransaction for KeysIn<'_> {
    fn key_facts(&mut self, name: &KeyName) -> Result<KeyFacts, StorageError> {
        let (name_used, active, total): (bool, i64, i64) = self
            .0
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = ?1),
                        count(*) FILTER (WHERE revoked_at IS NULL), count(*)
                   FROM api_keys",
            )?
            .query_row([name.as_str()], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        Ok(KeyFacts {
            name_used,
            active: usize::try_from(active).unwrap_or(usize::MAX),
            total: usize::try_from(total).unwrap_or(usize::MAX),
        })
    }

    fn write_key(&mut self, key: &NewKey, now_ms: i64) -> Result<KeyListing, StorageError> {
        self.0
            .prepare_cached(
                "INSERT INTO api_keys (name, secret_sha256, scopes, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                key.name.as_str(),
                &key.secret_sha256[..],
                key.scopes.to_string(),
                now_ms
            ])?;
        listing(self.0, &key.name)?
            .ok_or_else(|| StorageError::Backend("a key just added cannot be read".into()))
    }

    fn write_revocation(
        &mut self,
        name: &KeyName,
        now_ms: i64,
    ) -> Result<Option<KeyListing>, StorageError> {
        let changed = self
            .0
            .prepare_cached(
                "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![name.as_str(), now_ms])?;
        if changed == 0 {
            return Ok(None);
        }
        Ok(listing(self.0, name)?)
    }
}

/// `wallet keys create`: adds a key in a transaction of its own, as the
/// rules of keys allow.
pub fn create(
    conn: &mut Connection,
    key: &NewKey,
    created_at_ms: i64,
) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the database to add a key")?;
    let outcome = write::create_key(&mut KeysIn(&tx), key, created_at_ms)?;
    if outcome.is_ok() {
        tx.commit().context("cannot commit the new key")?;
    }
    Ok(outcome)
}

/// `wallet keys revoke`: revokes the active key named `name`, in a
/// transaction of its own.
pub fn revoke(
    conn: &mut Connection,
    name: &KeyName,
    revoked_at_ms: i64,
) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the database to revoke a key")?;
    let outcome = write::revoke_key(&mut KeysIn(&tx), name, revoked_at_ms)?;
    if outcome.is_ok() {
        tx.commit().context("cannot commit the revocation")?;
    }
    Ok(outcome)
}

fn listing_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyListing> {
    Ok(KeyListing {
        name: row.get(0)?,
        scopes: row.get(1)?,
        created_at_ms: row.get(2)?,
        last_used_at_ms: row.get(3)?,
        revoked_at_ms: row.get(4)?,
    })
}

/// One key as listed.
fn listing(conn: &Connection, name: &KeyName) -> rusqlite::Result<Option<KeyListing>> {
    conn.prepare_cached(
        "SELECT name, scopes, created_at, last_used_at, revoked_at FROM api_keys WHERE name = ?1",
    )?
    .query_row([name.as_str()], listing_of)
    .optional()
}

/// Every key, revoked ones included, by name.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<KeyListing>> {
    conn.prepare_cached(
        "SELECT name, scopes, created_at, last_used_at, revoked_at FROM api_keys
          ORDER BY name LIMIT ?1",
    )?
    .query_map([API_KEYS_TOTAL_MAX as i64], listing_of)?
    .collect()
}

/// The table's generation: it changes whenever a key is added or revoked.
pub fn generation(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT generation FROM api_keys_generation WHERE id = 1")?
        .query_row([], |row| row.get(0))
}

/// The active keys and the generation they belong to, read in one
/// transaction so the two agree.
pub fn load(conn: &mut Connection) -> rusqlite::Result<KeySnapshot> {
    let tx = conn.transaction()?;
    let generation = generation(&tx)?;
    let any_key_exists = tx
        .query_row("SELECT 1 FROM api_keys LIMIT 1", [], |row| {
            row.get::<_, i64>(0)
        })
        .optional()?
        .is_some();
    let rows: Vec<(i64, String, String, Vec<u8>)> = tx
        .prepare(
            "SELECT id, name, scopes, secret_sha256 FROM api_keys
              WHERE revoked_at IS NULL ORDER BY id LIMIT ?1",
        )?
        .query_map([API_KEYS_ACTIVE_MAX as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    tx.commit()?;
    let mut active = Vec::with_capacity(rows.len());
    for (id, name, scopes, digest) in rows {
        // The table's CHECKs admit what `create` never writes (a hand edit):
        // such a key is left out, so it fails closed.
        match (
            Scopes::parse(&scopes),
            <[u8; 32]>::try_from(digest.as_slice()),
        ) {
            (Ok(scopes), Ok(secret_sha256)) => active.push(ActiveKeyRow {
                id,
                name,
                scopes,
                secret_sha256,
            }),
            _ => error!("api key {name:?} has unreadable scopes {scopes:?}; it is not accepted"),
        }
    }
    Ok(KeySnapshot {
        generation,
        any_key_exists,
        active,
    })
}

/// Records when keys were last used: `(key id, time)` pairs, inside the
/// writer's transaction. A time never moves back.
pub fn record_last_used_in(conn: &Connection, uses: &[(i64, i64)]) -> rusqlite::Result<()> {
    let mut update = conn.prepare_cached(
        "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1",
    )?;
    for (id, used_at_ms) in uses {
        update.execute(params![id, used_at_ms])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{migrate, open};

    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open::open_read_write(&dir.path().join("wallet.db")).unwrap();
        migrate::migrate(&mut conn).unwrap();
        (dir, conn)
    }

    fn name(raw: &str) -> KeyName {
        KeyName::parse(raw).unwrap()
    }

    /// Adds a key whose digest is made from its name, so each is distinct.
    fn add(conn: &mut Connection, raw: &str) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
        let key = NewKey {
            name: name(raw),
            scopes: Scopes::parse("spend,read").unwrap(),
            secret_sha256: crate::auth::secret::digest(raw),
        };
        create(conn, &key, 1)
    }

    #[test]
    fn adding_and_revoking_a_key_each_change_the_generation_and_a_last_use_does_not() {
        let (_dir, mut conn) = database();
        let empty = load(&mut conn).unwrap();
        assert!(!empty.any_key_exists);
        let added = add(&mut conn, "game").unwrap().unwrap();
        assert_eq!(
            added,
            KeyListing {
                name: "game".into(),
                scopes: "read,spend".into(),
                created_at_ms: 1,
                last_used_at_ms: None,
                revoked_at_ms: None,
            }
        );
        let one = load(&mut conn).unwrap();
        assert_ne!(one.generation, empty.generation);
        assert!(one.any_key_exists);
        assert_eq!(one.active.len(), 1);
        record_last_used_in(&conn, &[(one.active[0].id, 5)]).unwrap();
        assert_eq!(generation(&conn).unwrap(), one.generation);
        assert_eq!(list(&conn).unwrap()[0].last_used_at_ms, Some(5));
        let revoked_key = revoke(&mut conn, &name("game"), 9).unwrap().unwrap();
        assert_eq!(revoked_key.revoked_at_ms, Some(9));
        assert_eq!(revoked_key.last_used_at_ms, Some(5));
        let revoked = load(&mut conn).unwrap();
        assert_ne!(revoked.generation, one.generation);
        assert!(revoked.active.is_empty());
        assert!(
            revoked.any_key_exists,
            "revoking the last key keeps keys required"
        );
        assert_eq!(
            revoke(&mut conn, &name("game"), 10).unwrap(),
            Err(KeyRejection::KeyNotFound(name("game")))
        );
        assert_eq!(list(&conn).unwrap()[0].revoked_at_ms, Some(9), "final");
    }

    #[test]
    fn a_name_is_never_reused_and_active_keys_are_bounded_in_the_table_too() {
        let (_dir, mut conn) = database();
        for index in 0..API_KEYS_ACTIVE_MAX {
            add(&mut conn, &format!("k{index}"))
                .unwrap()
                .unwrap_or_else(|rejection| panic!("{rejection}"));
        }
        let refused = add(&mut conn, "one-too-many").unwrap().unwrap_err();
        assert!(
            refused.to_string().contains("revoke one first"),
            "{refused}"
        );
        revoke(&mut conn, &name("k0"), 2).unwrap().unwrap();
        let refused = add(&mut conn, "k0").unwrap().unwrap_err();
        assert!(refused.to_string().contains("never reused"), "{refused}");
        add(&mut conn, "one-more").unwrap().unwrap();
        assert_eq!(list(&conn).unwrap().len(), API_KEYS_ACTIVE_MAX + 1);
    }

    #[test]
    fn the_database_refuses_to_delete_a_key_rename_it_or_undo_a_revocation() {
        let (_dir, mut conn) = database();
        add(&mut conn, "game").unwrap().unwrap();
        revoke(&mut conn, &name("game"), 9).unwrap().unwrap();
        for sql in [
            "DELETE FROM api_keys",
            "UPDATE api_keys SET name = 'other'",
            "UPDATE api_keys SET scopes = 'admin'",
            "UPDATE api_keys SET revoked_at = NULL",
        ] {
            assert!(conn.execute_batch(sql).is_err(), "{sql} was accepted");
        }
    }

    #[test]
    fn an_entry_may_name_only_a_known_caller() {
        let (_dir, mut conn) = database();
        crate::store::sqlite::seed::apply_catalogue(&mut conn).unwrap();
        // The caller is named by the idempotency record behind the entry.
        let insert = |caller: i64| {
            format!(
                "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at)
                      VALUES ({caller}, 'k', '{{}}', 0, 0);"
            )
        };
        let error = conn.execute_batch(&insert(7)).unwrap_err().to_string();
        assert!(error.contains("caller"), "{error}");
        conn.execute_batch(&insert(0)).unwrap();
    }
}
