//! The write loop, written once for every backend: for each command of a
//! batch, read the facts it needs, let the pure engine decide, write the
//! plan. A backend supplies only what happens inside its own transaction
//! (`WriteTransaction`): how to read those facts and how to write a plan.
//! Where the transaction begins and commits, how commands are queued and
//! batched, and how a batch is retried stay the backend's.
//!
//! Every rejection happens in `engine::decide`, before anything of the
//! command is written; a plan's writing can fail only as storage, and then
//! the whole batch is rolled back. So a rejected command needs no savepoint.

use tokio::sync::oneshot;

use crate::ledger::engine::{
    self, AssetDecision, AssetRow, Command, Decision, Facts, HoldFact, NewAsset, Outcome, Plan,
    RecordedEntry,
};
use crate::ledger::Rejection;
use crate::store::{AssetOutcome, LedgerError, StorageError};

/// What a backend does inside one write transaction.
pub(crate) trait WriteTransaction {
    /// What a backend learns while reading a command's facts and needs
    /// again to write its plan (the accounts' row ids, say).
    type Found;

    /// Every fact `engine::decide` needs for `command`, read in this
    /// transaction at the writer's time `now_ms`.
    fn read_facts(
        &mut self,
        command: &Command,
        now_ms: i64,
    ) -> Result<(Facts, Self::Found), StorageError>;

    /// Writes a decided plan; returns the entries and the hold as written.
    fn write_plan(
        &mut self,
        plan: &Plan,
        found: &mut Self::Found,
        now_ms: i64,
    ) -> Result<(Vec<RecordedEntry>, Option<HoldFact>), StorageError>;

    /// The asset already named as `asset` is, if any, and how many assets
    /// the catalogue holds.
    fn asset_facts(&mut self, asset: &NewAsset) -> Result<(Option<AssetRow>, usize), StorageError>;

    /// Adds `asset` and its Treasury.
    fn write_asset(&mut self, asset: &NewAsset, now_ms: i64) -> Result<AssetRow, StorageError>;

    /// Records API keys' last uses: `(key id, time)` pairs.
    fn record_key_uses(&mut self, uses: &[(i64, i64)]) -> Result<(), StorageError>;

    /// Records the expiry of at most `max` holds due at `now_ms`; returns
    /// how many.
    fn expire_due_holds(&mut self, now_ms: i64, max: usize) -> Result<usize, StorageError>;
}

/// One piece of work for a writer, with where its answer goes.
pub(crate) enum Work {
    Command {
        command: Command,
        reply: oneshot::Sender<Result<Outcome, LedgerError>>,
    },
    CreateAsset {
        asset: NewAsset,
        reply: oneshot::Sender<Result<AssetOutcome, LedgerError>>,
    },
    /// Last uses of API keys: `(key id, time)` pairs. Written by the writer
    /// so that its connection is the only one that writes.
    KeyUses {
        uses: Vec<(i64, i64)>,
        reply: oneshot::Sender<Result<(), LedgerError>>,
    },
    /// The writer's own: record the expiry of holds that fell due, at most
    /// this many. Nobody waits for it; a hold counts nowhere from its
    /// expiry on either way.
    ExpireHolds { max: usize },
}

impl Work {
    /// Answers the work with a storage failure: nothing of it was written.
    pub(crate) fn refuse(self, error: StorageError) {
        match self {
            Work::Command { reply, .. } => drop(reply.send(Err(error.into()))),
            Work::CreateAsset { reply, .. } => drop(reply.send(Err(error.into()))),
            Work::KeyUses { reply, .. } => drop(reply.send(Err(error.into()))),
            Work::ExpireHolds { .. } => {}
        }
    }
}

/// A piece of work's result, held until the transaction commits.
pub(crate) enum Done {
    Command(Result<Outcome, Rejection>),
    Asset(Result<AssetOutcome, Rejection>),
    KeyUses,
    /// How many holds the sweep recorded as expired.
    Expired(usize),
}

impl Done {
    /// Whether the work wrote anything: a sweep that found nothing due did
    /// not, and wakes no follower of the ledger.
    pub(crate) fn wrote(&self) -> bool {
        !matches!(self, Done::Expired(0))
    }

    /// Answers `work` with this result, once its transaction has committed.
    pub(crate) fn send(self, work: Work) {
        match (self, work) {
            (Done::Command(result), Work::Command { reply, .. }) => {
                let _ = reply.send(result.map_err(LedgerError::from));
            }
            (Done::Asset(result), Work::CreateAsset { reply, .. }) => {
                let _ = reply.send(result.map_err(LedgerError::from));
            }
            (Done::KeyUses, Work::KeyUses { reply, .. }) => {
                let _ = reply.send(Ok(()));
            }
            (Done::Expired(_), Work::ExpireHolds { .. }) => {}
            (_, work) => work.refuse(StorageError::BatchRolledBack),
        }
    }
}

/// Applies every piece of `batch` in `transaction`, in order, at the one
/// time `now_ms`. A storage failure fails the batch as a whole: a failed
/// statement may have rolled back the whole transaction (SQLite does so on
/// a full disk or an I/O error), so nothing after it can be trusted.
pub(crate) fn apply_batch(
    transaction: &mut impl WriteTransaction,
    batch: &[Work],
    now_ms: i64,
) -> Result<Vec<Done>, StorageError> {
    let mut results = Vec::with_capacity(batch.len());
    for work in batch {
        let done = match work {
            Work::Command { command, .. } => {
                Done::Command(apply_command(transaction, command, now_ms)?)
            }
            Work::CreateAsset { asset, .. } => {
                Done::Asset(create_asset(transaction, asset, now_ms)?)
            }
            Work::KeyUses { uses, .. } => {
                transaction.record_key_uses(uses)?;
                Done::KeyUses
            }
            Work::ExpireHolds { max } => Done::Expired(transaction.expire_due_holds(now_ms, *max)?),
        };
        results.push(done);
    }
    Ok(results)
}

/// Reads the facts, lets the engine decide, writes the plan.
fn apply_command(
    transaction: &mut impl WriteTransaction,
    command: &Command,
    now_ms: i64,
) -> Result<Result<Outcome, Rejection>, StorageError> {
    let (facts, mut found) = transaction.read_facts(command, now_ms)?;
    match engine::decide(command, &facts) {
        Err(rejection) => Ok(Err(rejection)),
        Ok(Decision::Replay(answer)) => Ok(Ok(Outcome::Replayed(answer))),
        Ok(Decision::Apply(plan)) => {
            let (entries, hold) = transaction.write_plan(&plan, &mut found, now_ms)?;
            let answer = engine::answer(plan.route, &entries, hold.as_ref(), &plan.state)
                .ok_or_else(|| {
                    StorageError::Backend("a command that wrote no entry has no answer".into())
                })?;
            Ok(Ok(Outcome::Created(answer)))
        }
    }
}

/// `POST /assets`: decided by the engine against the catalogue, then the
/// asset and its Treasury are written.
fn create_asset(
    transaction: &mut impl WriteTransaction,
    asset: &NewAsset,
    now_ms: i64,
) -> Result<Result<AssetOutcome, Rejection>, StorageError> {
    let (same_symbol, count) = transaction.asset_facts(asset)?;
    match engine::decide_asset(asset, same_symbol, count) {
        Err(rejection) => Ok(Err(rejection)),
        Ok(AssetDecision::AlreadyTheSame(row)) => Ok(Ok(AssetOutcome::AlreadyTheSame(row))),
        Ok(AssetDecision::Create) => Ok(Ok(AssetOutcome::Created(
            transaction.write_asset(asset, now_ms)?,
        ))),
    }
}
