//! The writer: one thread that owns the only read-write connection and applies
//! every write. Handlers hand it commands over a bounded queue and await the
//! reply.
//!
//! Why one writer: our own writes never contend for SQLite's lock, and
//! concurrent retries of one idempotency key line up behind each other, so the
//! second finds the first's entry. Every batch runs inside `BEGIN IMMEDIATE`,
//! so the balance check and the entry it guards are one atomic step.
//!
//! Group commit: the writer takes every command already queued (up to its
//! batch size, `--write-batch-max`) into one transaction, then commits once:
//! one fsync for the whole batch. Replies are sent only after COMMIT returns,
//! so a write that is acknowledged is on disk.
//!
//! Before a batch is acknowledged the writer checks that the database and
//! its WAL are still the files it opened (`files.rs`). If they are not, it
//! acknowledges nothing more (503), skips the shutdown checkpoint that would
//! copy the damage into the database, logs once, and stops the process,
//! which then exits non-zero.
//!
//! Each command is decided from reads alone (`decide_command`: every
//! rejection happens there) and only then written (`append_entry`, which can
//! fail only as storage). So a rejected command has written nothing and
//! needs no savepoint to undo, and a storage failure sinks the whole batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use log::error;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::files::FileWatch;
use super::{
    latest_balance, parse_stored_kind, LedgerError, PostCommand, Receipt, StorageError, UserEntry,
    WriteOutcome,
};
use crate::domain::{AssetRef, Direction, EntryKind};
use crate::ledger::{self, BalancesBefore, Rejection};
use crate::limits::WRITE_QUEUE_DEPTH_MAX;

type Reply = oneshot::Sender<Result<WriteOutcome, LedgerError>>;

enum Message {
    Post { command: PostCommand, reply: Reply },
    Stop,
}

/// Set once the writer finds its files replaced, deleted or truncated: the
/// process must end, and exit non-zero.
static FILES_LOST: AtomicBool = AtomicBool::new(false);

/// Whether this process's writer found its database files no longer its own.
pub fn files_lost() -> bool {
    FILES_LOST.load(Ordering::SeqCst)
}

/// How the writer's last batch went, for `GET /health`.
#[derive(Debug, Default)]
struct WriterStatus {
    /// The last batch failed as storage (disk full, I/O error, files lost).
    failing: AtomicBool,
}

/// The running writer thread; whoever started it stops it.
pub struct Writer {
    sender: SyncSender<Message>,
    thread: JoinHandle<()>,
    status: Arc<WriterStatus>,
}

/// A cheap, cloneable way to hand the writer commands.
#[derive(Clone)]
pub struct WriterHandle {
    sender: SyncSender<Message>,
    status: Arc<WriterStatus>,
}

impl Writer {
    /// Starts the writer on `conn`, which must be the only read-write
    /// connection to the file. It commits up to `batch_max` queued commands
    /// together; 1 commits each alone.
    pub fn start(conn: Connection, batch_max: usize) -> std::io::Result<Writer> {
        let batch_max = batch_max.clamp(1, WRITE_QUEUE_DEPTH_MAX);
        let (sender, receiver) = mpsc::sync_channel(WRITE_QUEUE_DEPTH_MAX);
        let status = Arc::new(WriterStatus::default());
        let thread_status = Arc::clone(&status);
        let thread = std::thread::Builder::new()
            .name("wallet-writer".into())
            .spawn(move || {
                // A panic here is a defect in the writer. Its transaction is
                // uncommitted and so lost, which is safe; serving on without a
                // writer is not, so end the process.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // The WAL hook is per thread: installed on this one.
                    let watch = match FileWatch::start(&conn) {
                        Ok(watch) => watch,
                        Err(failure) => {
                            error!("cannot watch the database files: {failure:#}");
                            None
                        }
                    };
                    let mut writer = WriterState {
                        conn,
                        assets: AssetCache::default(),
                        watch,
                        status: thread_status,
                        clock: WriterClock::default(),
                        files_lost: false,
                    };
                    run(&mut writer, receiver, batch_max);
                    writer.close();
                }));
                if outcome.is_err() {
                    error!("the writer thread panicked; stopping the process");
                    std::process::abort();
                }
            })?;
        Ok(Writer {
            sender,
            thread,
            status,
        })
    }

    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            sender: self.sender.clone(),
            status: Arc::clone(&self.status),
        }
    }

    /// Applies everything queued so far, then ends the thread and closes the
    /// connection (checkpointing the WAL).
    pub fn stop(self) {
        // A blocking send: the stop waits its turn behind queued commands.
        let _ = self.sender.send(Message::Stop);
        if self.thread.join().is_err() {
            error!("the writer thread ended with a panic");
        }
    }
}

impl WriterHandle {
    /// Whether the writer's last batch failed as storage: `GET /health`
    /// answers 503 while it does.
    pub fn is_failing(&self) -> bool {
        self.status.failing.load(Ordering::Relaxed)
    }

    /// Queues a command without waiting: a full queue fails at once.
    fn submit(
        &self,
        command: PostCommand,
    ) -> Result<oneshot::Receiver<Result<WriteOutcome, LedgerError>>, StorageError> {
        let (reply, receiver) = oneshot::channel();
        match self.sender.try_send(Message::Post { command, reply }) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(StorageError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(StorageError::WriterStopped),
        }
    }

    /// Posts a command from async code. If the caller goes away the command
    /// still completes, and a retry with the same key replays it.
    pub async fn post(&self, command: PostCommand) -> Result<WriteOutcome, LedgerError> {
        let receiver = self.submit(command)?;
        receiver
            .await
            .map_err(|_| LedgerError::Storage(StorageError::WriterStopped))?
    }

    /// Posts a command from a plain thread (the CLI's seed).
    pub fn post_blocking(&self, command: PostCommand) -> Result<WriteOutcome, LedgerError> {
        let receiver = self.submit(command)?;
        receiver
            .blocking_recv()
            .map_err(|_| LedgerError::Storage(StorageError::WriterStopped))?
    }
}

struct Job {
    command: PostCommand,
    reply: Reply,
}

/// Everything the writer thread owns.
struct WriterState {
    conn: Connection,
    assets: AssetCache,
    watch: Option<FileWatch>,
    status: Arc<WriterStatus>,
    clock: WriterClock,
    /// The files are no longer ours: nothing more is written or acknowledged.
    files_lost: bool,
}

impl WriterState {
    fn close(self) {
        if let Err(close_error) = self.conn.close() {
            error!("closing the write connection failed: {}", close_error.1);
        }
    }

    /// The files under the writer are not the ones it opened. Once, loudly:
    /// stop acknowledging, never checkpoint what may be damage into the
    /// database, and stop the process (SIGTERM: the server drains, answering
    /// every write 503, and `serve` exits non-zero).
    fn lose_files(&mut self, lost: &super::files::FilesLost) {
        error!(
            "STOPPING: the database files changed under the running server: {lost}. \
             No write is acknowledged from now on and the WAL is not checkpointed; \
             the process exits. Check the volume, then run `wallet verify` before serving again."
        );
        self.files_lost = true;
        self.status.failing.store(true, Ordering::Relaxed);
        FILES_LOST.store(true, Ordering::SeqCst);
        if lost.is_deleted_wal() {
            // A deleted WAL lives on, whole, behind the writer's open file:
            // copying it into the database (which is still ours) now keeps
            // every write acknowledged so far. A truncated or replaced file
            // is never copied from.
            match self
                .conn
                .query_row("PRAGMA wal_checkpoint(FULL)", [], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                }) {
                Ok((0, frames, copied)) if frames == copied => error!(
                    "the deleted WAL's {frames} frames were copied into the database: nothing acknowledged is lost"
                ),
                Ok((busy, frames, copied)) => error!(
                    "the deleted WAL was copied only in part ({copied} of {frames} frames, busy {busy})"
                ),
                Err(failure) => error!("the deleted WAL could not be copied: {failure}"),
            }
        }
        let _ = self.conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        );
        // SAFETY: kill on our own pid only delivers a signal.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    }
}

/// The writer's clock: milliseconds since the epoch, never going backwards
/// (a clock stepped back does not reorder entries), and no time at all while
/// the system clock reads before 1970.
#[derive(Default)]
struct WriterClock {
    last_ms: i64,
}

impl WriterClock {
    fn now_ms(&mut self) -> Result<i64, StorageError> {
        self.read(std::time::SystemTime::now())
    }

    fn read(&mut self, now: std::time::SystemTime) -> Result<i64, StorageError> {
        let since_epoch = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| StorageError::ClockBeforeEpoch)?;
        let ms =
            i64::try_from(since_epoch.as_millis()).map_err(|_| StorageError::ClockBeforeEpoch)?;
        self.last_ms = self.last_ms.max(ms);
        Ok(self.last_ms)
    }
}

fn run(writer: &mut WriterState, receiver: Receiver<Message>, batch_max: usize) {
    let mut batch: Vec<Job> = Vec::with_capacity(batch_max);
    let mut stopping = false;
    while !stopping {
        match receiver.recv() {
            Ok(Message::Post { command, reply }) => batch.push(Job { command, reply }),
            Ok(Message::Stop) | Err(_) => break,
        }
        while batch.len() < batch_max {
            match receiver.try_recv() {
                Ok(Message::Post { command, reply }) => batch.push(Job { command, reply }),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        apply_batch(writer, &mut batch);
    }
    // Nothing should follow a stop, but whatever did is applied, not dropped.
    while let Ok(message) = receiver.try_recv() {
        if let Message::Post { command, reply } = message {
            batch.push(Job { command, reply });
            apply_batch(writer, &mut batch);
        }
    }
}

/// Applies `batch` in one transaction and replies to every job in it.
fn apply_batch(writer: &mut WriterState, batch: &mut Vec<Job>) {
    if writer.files_lost {
        return refuse_all(batch, || StorageError::FilesLost);
    }
    if let Some(lost) = writer
        .watch
        .as_mut()
        .and_then(|watch| watch.check_before_write().err())
    {
        writer.lose_files(&lost);
        return refuse_all(batch, || StorageError::FilesLost);
    }
    let conn = &writer.conn;
    let outcome = apply_in_one_transaction(conn, &mut writer.assets, &mut writer.clock, batch);
    match outcome {
        Ok(results) => {
            if let Some(lost) = writer.watch.as_mut().and_then(|watch| watch.check().err()) {
                // Committed, but to files that are no longer ours: nobody
                // is told it stands.
                writer.lose_files(&lost);
                return refuse_all(batch, || StorageError::FilesLost);
            }
            writer.status.failing.store(false, Ordering::Relaxed);
            for (job, result) in batch.drain(..).zip(results) {
                // The caller may have gone; the entry stands either way.
                let _ = job.reply.send(result);
            }
        }
        Err(storage_error) => {
            // Nothing of this batch was committed: every caller is told the
            // database is unavailable, and may retry with the same key.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            writer.status.failing.store(true, Ordering::Relaxed);
            let storage_error_kind = match storage_error {
                StorageError::ClockBeforeEpoch => StorageErrorKind::Clock,
                _ => StorageErrorKind::Other,
            };
            error!(
                "a write batch of {} was rolled back: {:#}",
                batch.len(),
                anyhow::Error::from(storage_error)
            );
            match storage_error_kind {
                StorageErrorKind::Clock => refuse_all(batch, || StorageError::ClockBeforeEpoch),
                StorageErrorKind::Other => refuse_all(batch, || StorageError::BatchRolledBack),
            }
        }
    }
}

/// Answers every job of `batch` with the same storage failure.
fn refuse_all(batch: &mut Vec<Job>, error: impl Fn() -> StorageError) {
    for job in batch.drain(..) {
        let _ = job.reply.send(Err(LedgerError::Storage(error())));
    }
}

/// Which failure sank a batch, kept for the replies once the error itself
/// has been logged.
enum StorageErrorKind {
    Clock,
    Other,
}

/// Returns each job's result, or the storage failure that sank the batch.
fn apply_in_one_transaction(
    conn: &Connection,
    assets: &mut AssetCache,
    clock: &mut WriterClock,
    batch: &[Job],
) -> Result<Vec<Result<WriteOutcome, LedgerError>>, StorageError> {
    let created_at_ms = clock.now_ms()?;
    // IMMEDIATE: take the write lock now; a deferred transaction that reads
    // first can hit SQLITE_BUSY when it upgrades.
    run_cached(conn, "BEGIN IMMEDIATE")?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        // A failed statement may have rolled back the whole transaction
        // (SQLite does so on a full disk or an I/O error): the batch can no
        // longer be trusted, so a storage failure fails it as a whole.
        let result = match decide_command(conn, assets, &job.command) {
            Ok(Decision::Replay(receipt)) => Ok(WriteOutcome::Replayed(receipt)),
            Ok(Decision::Append(plan)) => Ok(WriteOutcome::Created(append_entry(
                conn,
                &plan,
                &job.command,
                created_at_ms,
            )?)),
            Err(LedgerError::Rejected(rejection)) => Err(LedgerError::Rejected(rejection)),
            Err(LedgerError::Storage(storage)) => return Err(storage),
        };
        results.push(result);
    }
    run_cached(conn, "COMMIT")?;
    Ok(results)
}

/// Runs a statement without parameters through the statement cache: the
/// writer runs these for every command, and parsing them each time showed in
/// the profile.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// The asset a command names, with its Treasury.
#[derive(Clone)]
struct ResolvedAsset {
    id: String,
    symbol: String,
    treasury_account: i64,
}

/// What a command comes to, decided before anything is written.
enum Decision<'a> {
    /// Its key names an entry already made by the same request.
    Replay(Receipt),
    /// A new entry, to be written by `append_entry`.
    Append(Plan<'a>),
}

/// A new entry, decided: its asset, the user's account (None: to be opened),
/// and the balances after it.
struct Plan<'a> {
    asset: &'a ResolvedAsset,
    user_account: Option<i64>,
    posting: ledger::Posting,
}

/// Decides a command from reads alone: every rejection happens here, before
/// anything is written. See the module comment.
fn decide_command<'a>(
    conn: &Connection,
    assets: &'a mut AssetCache,
    command: &PostCommand,
) -> Result<Decision<'a>, LedgerError> {
    if let Some(stored) = find_by_key(conn, command)? {
        return if stored.is_same_request(command) {
            Ok(Decision::Replay(stored.receipt))
        } else {
            Err(Rejection::IdempotencyKeyReused.into())
        };
    }
    let asset = assets
        .resolve(conn, &command.asset)?
        .ok_or(Rejection::AssetNotFound)?;
    let user_account = find_user_account(conn, command.user.as_str(), &asset.id)?;
    if user_account.is_none() && command.kind == EntryKind::Spend {
        let has_wallet = user_has_wallet(conn, command.user.as_str())?;
        return Err(if has_wallet {
            Rejection::InsufficientFunds {
                balance: 0,
                requested: command.amount.get(),
            }
        } else {
            Rejection::WalletNotFound
        }
        .into());
    }
    let before = BalancesBefore {
        user: user_account.map_or(0, |account| account.balance),
        treasury: latest_balance(conn, asset.treasury_account)?,
    };
    let posting = ledger::decide(command.kind, command.amount, before)?;
    Ok(Decision::Append(Plan {
        asset,
        user_account: user_account.map(|account| account.id),
        posting,
    }))
}

/// Writes a decided entry: the user's account if it has none yet, the entry
/// and its two postings. Only storage can fail here.
fn append_entry(
    conn: &Connection,
    plan: &Plan<'_>,
    command: &PostCommand,
    created_at_ms: i64,
) -> Result<Receipt, StorageError> {
    let Plan {
        asset,
        user_account,
        posting,
    } = plan;
    let user_account = match *user_account {
        Some(account) => account,
        None => open_user_account(conn, command.user.as_str(), &asset.id, created_at_ms)?,
    };
    let direction = command.kind.user_direction();
    let (debit_account, credit_account) = match direction {
        Direction::Credit => (asset.treasury_account, user_account),
        Direction::Debit => (user_account, asset.treasury_account),
    };
    // Version 7: time-ordered, so each new id lands at the right edge of the
    // ids' unique index instead of on a random page of it; inserts stay
    // cheap however long the ledger grows.
    // From the writer's clock, not the system's: never before the epoch.
    let entry_id = entry_id_at(created_at_ms);
    let reference_id = command.reference_id.as_ref().map(|r| r.as_str());
    let note = command.note.as_ref().map(|n| n.as_str());
    conn.prepare_cached(
        "INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id, credit_account_id,
                                     amount, idempotency_key, reference_id, note, created_at,
                                     caller_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        entry_id,
        command.kind.as_str(),
        asset.id,
        debit_account,
        credit_account,
        command.amount.as_i64(),
        command.idempotency_key.as_str(),
        reference_id,
        note,
        created_at_ms,
        command.caller.stored_id(),
    ])?;
    let seq = conn.last_insert_rowid();
    let mut insert_posting = conn.prepare_cached(
        "INSERT INTO postings (account_id, entry_seq, delta, balance_after) VALUES (?1, ?2, ?3, ?4)",
    )?;
    insert_posting.execute(params![
        user_account,
        seq,
        posting.user_delta,
        posting.user_balance_after
    ])?;
    insert_posting.execute(params![
        asset.treasury_account,
        seq,
        posting.treasury_delta(),
        posting.treasury_balance_after
    ])?;
    Ok(Receipt {
        transaction: UserEntry {
            seq,
            id: entry_id,
            kind: command.kind,
            asset_symbol: asset.symbol.clone(),
            amount: command.amount.as_i64(),
            direction,
            balance_after: posting.user_balance_after,
            idempotency_key: command.idempotency_key.as_str().to_owned(),
            reference_id: reference_id.map(str::to_owned),
            note: note.map(str::to_owned),
            created_at_ms,
        },
        balance: posting.user_balance_after,
    })
}

/// A version 7 UUID for an entry made at `created_at_ms` (not negative: the
/// writer's clock refuses times before the epoch).
fn entry_id_at(created_at_ms: i64) -> String {
    let ms = u64::try_from(created_at_ms).unwrap_or(0);
    let timestamp =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    Uuid::new_v7(timestamp).to_string()
}

/// An entry found by its idempotency key, with what the original request said.
struct StoredRequest {
    user_id: String,
    asset_type_id: String,
    receipt: Receipt,
}

impl StoredRequest {
    /// Same user, operation, asset, amount, referenceId and note (API.md). The
    /// asset counts as the same whether named by symbol or by id.
    fn is_same_request(&self, command: &PostCommand) -> bool {
        let entry = &self.receipt.transaction;
        let same_asset = match &command.asset {
            AssetRef::Symbol(symbol) => *symbol == entry.asset_symbol,
            AssetRef::Id(id) => id.to_string() == self.asset_type_id,
        };
        self.user_id == command.user.as_str()
            && entry.kind == command.kind
            && same_asset
            && entry.amount == command.amount.as_i64()
            && entry.reference_id.as_deref() == command.reference_id.as_ref().map(|r| r.as_str())
            && entry.note.as_deref() == command.note.as_ref().map(|n| n.as_str())
    }
}

/// The entry this caller already wrote under the command's key: keys are
/// unique per caller, so another caller's entry is never found, or replayed.
fn find_by_key(
    conn: &Connection,
    command: &PostCommand,
) -> rusqlite::Result<Option<StoredRequest>> {
    let key = command.idempotency_key.as_str();
    // The user's account is the credit side of a TOPUP or BONUS and the debit
    // side of a SPEND; its posting holds the balance the original answer gave.
    conn.prepare_cached(
        "SELECT e.seq, e.id, e.kind, e.asset_type_id, t.symbol, e.amount, e.reference_id,
                e.note, e.created_at, a.owner_id, p.balance_after
           FROM ledger_entries e
           JOIN asset_types t ON t.id = e.asset_type_id
           JOIN accounts a ON a.id = CASE e.kind WHEN 'SPEND' THEN e.debit_account_id
                                                 ELSE e.credit_account_id END
           JOIN postings p ON p.account_id = a.id AND p.entry_seq = e.seq
          WHERE e.caller_id = ?1 AND e.idempotency_key = ?2",
    )?
    .query_row(params![command.caller.stored_id(), key], |row| {
        let kind = parse_stored_kind(&row.get::<_, String>(2)?)?;
        let balance_after: i64 = row.get(10)?;
        Ok(StoredRequest {
            user_id: row.get(9)?,
            asset_type_id: row.get(3)?,
            receipt: Receipt {
                transaction: UserEntry {
                    seq: row.get(0)?,
                    id: row.get(1)?,
                    kind,
                    asset_symbol: row.get(4)?,
                    amount: row.get(5)?,
                    direction: kind.user_direction(),
                    balance_after,
                    idempotency_key: key.to_owned(),
                    reference_id: row.get(6)?,
                    note: row.get(7)?,
                    created_at_ms: row.get(8)?,
                },
                balance: balance_after,
            },
        })
    })
    .optional()
}

/// The asset catalogue as the writer has met it. An asset type and its
/// Treasury never change once created, so an entry here never goes stale; a
/// name not met yet is looked up (an asset added by `wallet seed` while
/// serving is found then).
#[derive(Default)]
struct AssetCache {
    by_symbol: HashMap<String, ResolvedAsset>,
    by_id: HashMap<Uuid, ResolvedAsset>,
}

impl AssetCache {
    fn resolve(
        &mut self,
        conn: &Connection,
        asset: &AssetRef,
    ) -> rusqlite::Result<Option<&ResolvedAsset>> {
        let known = match asset {
            AssetRef::Symbol(symbol) => self.by_symbol.contains_key(symbol),
            AssetRef::Id(id) => self.by_id.contains_key(id),
        };
        if !known {
            let Some(found) = lookup_asset(conn, asset)? else {
                return Ok(None);
            };
            // A bounded map: the catalogue is a handful of assets, and an
            // unknown name is never cached.
            if let Ok(id) = Uuid::parse_str(&found.id) {
                self.by_id.insert(id, found.clone());
            }
            self.by_symbol.insert(found.symbol.clone(), found);
        }
        Ok(match asset {
            AssetRef::Symbol(symbol) => self.by_symbol.get(symbol),
            AssetRef::Id(id) => self.by_id.get(id),
        })
    }
}

fn lookup_asset(conn: &Connection, asset: &AssetRef) -> rusqlite::Result<Option<ResolvedAsset>> {
    let (sql, value) = match asset {
        AssetRef::Symbol(symbol) => (
            "SELECT t.id, t.symbol, a.id FROM asset_types t
               JOIN accounts a ON a.asset_type_id = t.id AND a.owner_type = 'SYSTEM'
              WHERE t.symbol = ?1",
            symbol.clone(),
        ),
        AssetRef::Id(id) => (
            "SELECT t.id, t.symbol, a.id FROM asset_types t
               JOIN accounts a ON a.asset_type_id = t.id AND a.owner_type = 'SYSTEM'
              WHERE t.id = ?1",
            id.to_string(),
        ),
    };
    conn.prepare_cached(sql)?
        .query_row([value], |row| {
            Ok(ResolvedAsset {
                id: row.get(0)?,
                symbol: row.get(1)?,
                treasury_account: row.get(2)?,
            })
        })
        .optional()
}

/// A user's account in one asset, with its current balance.
#[derive(Clone, Copy)]
struct UserAccount {
    id: i64,
    balance: i64,
}

/// One statement for both: the account, then its latest posting by one
/// descent of the postings primary key.
fn find_user_account(
    conn: &Connection,
    user: &str,
    asset_id: &str,
) -> rusqlite::Result<Option<UserAccount>> {
    conn.prepare_cached(
        "SELECT a.id,
                coalesce((SELECT p.balance_after FROM postings p WHERE p.account_id = a.id
                           ORDER BY p.entry_seq DESC LIMIT 1), 0)
           FROM accounts a
          WHERE a.owner_type = 'USER' AND a.owner_id = ?1 AND a.asset_type_id = ?2",
    )?
    .query_row([user, asset_id], |row| {
        Ok(UserAccount {
            id: row.get(0)?,
            balance: row.get(1)?,
        })
    })
    .optional()
}

fn user_has_wallet(conn: &Connection, user: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE owner_type = 'USER' AND owner_id = ?1)",
    )?
    .query_row([user], |row| row.get(0))
}

fn open_user_account(
    conn: &Connection,
    user: &str,
    asset_id: &str,
    created_at_ms: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at) VALUES ('USER', ?1, ?2, ?3)",
    )?
    .execute(params![user, asset_id, created_at_ms])?;
    Ok(conn.last_insert_rowid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, IdempotencyKey, UserId};
    use crate::limits::WRITE_BATCH_MAX;
    use crate::storage::{migrate, open, seed, verify};

    fn command(kind: EntryKind, user: &str, amount: u64, key: &str) -> PostCommand {
        PostCommand {
            caller: crate::domain::Caller::Anonymous,
            user: UserId::parse(user).unwrap(),
            kind,
            asset: AssetRef::parse("GOLD").unwrap(),
            amount: Amount::parse(amount).unwrap(),
            idempotency_key: IdempotencyKey::parse(key).unwrap(),
            reference_id: None,
            note: None,
        }
    }

    /// A migrated database with the asset catalogue and no entries.
    fn empty_ledger() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open::open_read_write(&dir.path().join("wallet.db")).unwrap();
        migrate::migrate(&mut conn).unwrap();
        seed::apply_catalogue(&mut conn).unwrap();
        (dir, conn)
    }

    fn entries(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM ledger_entries", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_refused_command_in_a_batch_is_rolled_back_alone() {
        let (_dir, mut conn) = empty_ledger();
        let commands = [
            command(EntryKind::Topup, "alice", 50, "k1"),
            command(EntryKind::Spend, "carol", 1, "k2"),
            command(EntryKind::Spend, "alice", 51, "k3"),
            command(EntryKind::Spend, "alice", 20, "k4"),
            command(EntryKind::Topup, "alice", 50, "k1"),
            command(EntryKind::Topup, "alice", 51, "k1"),
            command(EntryKind::Bonus, "dave", 7, "k5"),
        ];
        let mut receivers = Vec::new();
        let jobs: Vec<Job> = commands
            .into_iter()
            .map(|command| {
                let (reply, receiver) = oneshot::channel();
                receivers.push(receiver);
                Job { command, reply }
            })
            .collect();
        // All seven in one transaction, as the writer batches them.
        let results = apply_in_one_transaction(
            &conn,
            &mut AssetCache::default(),
            &mut WriterClock::default(),
            &jobs,
        )
        .unwrap();

        let created_id = |result: &Result<WriteOutcome, LedgerError>| match result {
            Ok(WriteOutcome::Created(receipt)) => receipt.transaction.id.clone(),
            other => panic!("expected a new entry, got {other:?}"),
        };
        let first_id = created_id(&results[0]);
        assert!(matches!(
            results[1],
            Err(LedgerError::Rejected(Rejection::WalletNotFound))
        ));
        assert!(matches!(
            results[2],
            Err(LedgerError::Rejected(Rejection::InsufficientFunds {
                balance: 50,
                requested: 51
            }))
        ));
        match &results[3] {
            Ok(WriteOutcome::Created(receipt)) => assert_eq!(receipt.balance, 30),
            other => panic!("expected the spend of 20 to pass, got {other:?}"),
        }
        match &results[4] {
            Ok(WriteOutcome::Replayed(receipt)) => {
                assert_eq!(receipt.transaction.id, first_id);
                assert_eq!(
                    receipt.balance, 50,
                    "a replay answers the balance as it was then"
                );
            }
            other => panic!("expected a replay, got {other:?}"),
        }
        assert!(matches!(
            results[5],
            Err(LedgerError::Rejected(Rejection::IdempotencyKeyReused))
        ));
        created_id(&results[6]);
        assert_eq!(entries(&conn), 3);
        // Refused commands left no account behind: carol never got one.
        let carol: i64 = conn
            .query_row(
                "SELECT count(*) FROM accounts WHERE owner_id = 'carol'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(carol, 0);
        assert!(verify::audit(&mut conn).unwrap().is_clean());
    }

    #[test]
    fn the_writer_clock_never_goes_back_and_refuses_times_before_1970() {
        use std::time::{Duration, UNIX_EPOCH};
        let mut clock = WriterClock::default();
        let later = UNIX_EPOCH + Duration::from_millis(2_000);
        assert_eq!(clock.read(later).unwrap(), 2_000);
        assert_eq!(
            clock
                .read(UNIX_EPOCH + Duration::from_millis(1_000))
                .unwrap(),
            2_000,
            "a clock stepped back does not move entries back"
        );
        assert!(matches!(
            clock.read(UNIX_EPOCH - Duration::from_secs(1)),
            Err(StorageError::ClockBeforeEpoch)
        ));
        assert_eq!(entry_id_at(2_000).len(), 36);
        assert!(entry_id_at(1_000) < entry_id_at(2_000), "ids sort by time");
    }

    #[test]
    fn a_full_queue_answers_overloaded_at_once_and_loses_nothing_it_accepted() {
        let (dir, conn) = empty_ledger();
        // Another connection holds the write lock, so the writer stalls in
        // BEGIN IMMEDIATE (within busy_timeout) and the queue fills up.
        let blocker = open::open_read_write(&dir.path().join("wallet.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writer = Writer::start(conn, WRITE_BATCH_MAX).unwrap();
        let handle = writer.handle();
        let mut accepted = Vec::new();
        let started = std::time::Instant::now();
        let overloaded_at = loop {
            let key = format!("k{}", accepted.len());
            match handle.submit(command(EntryKind::Topup, "alice", 1, &key)) {
                Ok(receiver) => accepted.push(receiver),
                Err(StorageError::Overloaded) => break accepted.len(),
                Err(other) => panic!("unexpected {other:?}"),
            }
            assert!(accepted.len() <= WRITE_QUEUE_DEPTH_MAX + WRITE_BATCH_MAX + 1);
        };
        // The queue holds WRITE_QUEUE_DEPTH_MAX; the writer may have taken
        // one batch off it before it stalled.
        assert!(overloaded_at >= WRITE_QUEUE_DEPTH_MAX, "{overloaded_at}");
        assert!(
            overloaded_at <= WRITE_QUEUE_DEPTH_MAX + WRITE_BATCH_MAX + 1,
            "{overloaded_at}"
        );
        assert!(
            started.elapsed() < crate::limits::SQLITE_BUSY_TIMEOUT,
            "it did not wait"
        );
        blocker.execute_batch("ROLLBACK").unwrap();
        for receiver in accepted {
            let outcome = receiver.blocking_recv().unwrap();
            assert!(
                matches!(outcome, Ok(WriteOutcome::Created(_))),
                "{outcome:?}"
            );
        }
        writer.stop();
        let conn = open::open_read_only(&dir.path().join("wallet.db")).unwrap();
        assert_eq!(entries(&conn), overloaded_at as i64);
    }
}
