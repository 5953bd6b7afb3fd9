//! The seed data of API.md. `seed.sql` holds it all: the asset types and
//! Treasuries it inserts directly, and the users' initial balances it lists in
//! a temporary table, which are then posted as ordinary TOPUP entries through
//! the writer, each with the key `seed:<userId>:<SYMBOL>`. Seeding twice
//! therefore changes nothing: the second run's entries are replays.

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};

use crate::domain::{Amount, AssetRef, Caller, IdempotencyKey, UserId};
use crate::ledger::engine::{Command, CreditKind, EntryDetails, Operation, Outcome, Route};
use crate::store::queue::WriterHandle;
use crate::store::{LedgerError, SeedSummary};

const SEED_SQL: &str = include_str!("../../../seed.sql");

/// An initial balance to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    pub symbol: String,
    pub amount: i64,
}

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

/// Posts the grants through the writer, the same path as `POST /topup`.
pub fn post_grants(writer: &WriterHandle, grants: &[Grant]) -> anyhow::Result<SeedSummary> {
    let mut summary = SeedSummary::default();
    for grant in grants {
        let command = grant_command(grant)
            .with_context(|| format!("seed.sql has an invalid grant {grant:?}"))?;
        match writer.apply_blocking(command) {
            Ok(Outcome::Created(_)) => summary.created += 1,
            Ok(Outcome::Replayed(_)) => summary.already_present += 1,
            Err(LedgerError::Rejected(rejection)) => {
                anyhow::bail!("seeding {grant:?} was refused: {rejection}")
            }
            Err(LedgerError::Storage(error)) => {
                return Err(anyhow::Error::new(error).context(format!("seeding {grant:?} failed")))
            }
        }
    }
    Ok(summary)
}

fn grant_command(grant: &Grant) -> anyhow::Result<Command> {
    let user = UserId::parse(&grant.user)?;
    let amount = Amount::parse(u64::try_from(grant.amount)?)?;
    Ok(Command {
        // The seed's keys belong to the anonymous caller, as every entry of
        // a version 1 file does.
        caller: Caller::Anonymous,
        key: IdempotencyKey::for_seed(&user, &grant.symbol)?,
        route: Route::Topup,
        operations: vec![Operation::Credit {
            kind: CreditKind::Topup,
            user,
            asset: AssetRef::parse(&grant.symbol)?,
            amount,
            details: EntryDetails::default(),
        }],
    })
}
