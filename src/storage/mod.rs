//! The only code that speaks SQL: opening the file, migrations, the read pool,
//! the writer thread, queries, the seed, the audit's reading of the ledger,
//! backups and restores.

pub mod backup;
pub mod files;
pub mod keys;
pub mod migrate;
pub mod open;
pub mod reads;
pub mod restore;
pub mod seed;
pub mod verify;
pub mod writer;

use crate::domain::Amount;
use crate::domain::{
    AssetRef, Caller, Direction, EntryKind, IdempotencyKey, Note, ReferenceId, UserId,
};
use crate::ledger::Rejection;
use anyhow::Context;
use rusqlite::{ErrorCode, OptionalExtension};

pub type ReadPool = r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>;

/// Failures below the ledger's rules: the file, the locks, the queue.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be used right now (busy past `busy_timeout`, disk
    /// full, read-only, I/O error); the same request may succeed later.
    #[error("the database is unavailable")]
    Unavailable(#[source] rusqlite::Error),
    #[error("no read connection could be had")]
    ReadPool(#[source] r2d2::Error),
    /// The write queue is full: the service is saturated.
    #[error("the write queue is full")]
    Overloaded,
    #[error("the writer has stopped")]
    WriterStopped,
    /// A storage failure sank the write batch this command was in; nothing of
    /// it was committed. The writer logged the cause.
    #[error("the write was rolled back")]
    BatchRolledBack,
    /// The system clock reads before 1970: no entry can be timed, so no
    /// write is applied until it is set.
    #[error("the system clock reads before 1970; writes are refused until it is set")]
    ClockBeforeEpoch,
    /// The database or its WAL is no longer the file the writer opened:
    /// nothing is acknowledged any more, and the process stops.
    #[error("the database files were replaced, deleted or truncated under the server")]
    FilesLost,
    /// The writer's last batch failed as storage: health says so.
    #[error("the last write to the database failed")]
    WritesFailing,
    /// Anything else SQLite says: a defect on our side.
    #[error("database error")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for StorageError {
    fn from(error: rusqlite::Error) -> Self {
        let transient = matches!(
            error.sqlite_error_code(),
            Some(
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::ReadOnly
                    | ErrorCode::CannotOpen
                    | ErrorCode::DatabaseCorrupt
                    | ErrorCode::NotADatabase
                    | ErrorCode::OutOfMemory
                    | ErrorCode::FileLockingProtocolFailed
                    // A read stopped by its time limit (`reads::within_time_limit`).
                    | ErrorCode::OperationInterrupted
            )
        );
        if transient {
            StorageError::Unavailable(error)
        } else {
            StorageError::Sqlite(error)
        }
    }
}

impl From<r2d2::Error> for StorageError {
    fn from(error: r2d2::Error) -> Self {
        StorageError::ReadPool(error)
    }
}

/// A ledger operation's failure: refused by the rules, or by storage.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<rusqlite::Error> for LedgerError {
    fn from(error: rusqlite::Error) -> Self {
        LedgerError::Storage(error.into())
    }
}

/// A request to move value, parsed and valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostCommand {
    /// Whose idempotency key this is: keys are unique per caller.
    pub caller: Caller,
    pub user: UserId,
    pub kind: EntryKind,
    pub asset: AssetRef,
    pub amount: Amount,
    pub idempotency_key: IdempotencyKey,
    pub reference_id: Option<ReferenceId>,
    pub note: Option<Note>,
}

/// An entry seen from the user's side: what API.md calls a Transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub seq: i64,
    pub id: String,
    pub kind: EntryKind,
    pub asset_symbol: String,
    pub amount: i64,
    pub direction: Direction,
    pub balance_after: i64,
    pub idempotency_key: String,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub created_at_ms: i64,
}

/// The answer to a write: the entry and the user's balance right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub transaction: UserEntry,
    pub balance: i64,
}

/// A write either appended a new entry or found the one its key already names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Created(Receipt),
    Replayed(Receipt),
}

fn parse_stored_kind(raw: &str) -> rusqlite::Result<EntryKind> {
    EntryKind::parse(raw).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

/// The balance after the account's latest posting: one descent of the
/// postings primary key, however long the history.
pub(crate) fn latest_balance(conn: &rusqlite::Connection, account: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT balance_after FROM postings WHERE account_id = ?1 ORDER BY entry_seq DESC LIMIT 1",
    )?
    .query_row([account], |row| row.get(0))
    .optional()
    .map(|balance| balance.unwrap_or(0))
}

/// Refuses to serve while the system clock reads before 1970: no entry could
/// be timed, and actix-http's `Date` header cannot be written either.
pub fn check_clock() -> anyhow::Result<()> {
    if std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .is_err()
    {
        anyhow::bail!("the system clock reads before 1970; set it, then start again");
    }
    Ok(())
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The database as the server holds it: the writer with the only read-write
/// connection, and the pool of read-only ones.
pub struct Storage {
    /// Held while serving: one server per file.
    _lock: open::ServeLock,
    pub writer: writer::Writer,
    pub pool: ReadPool,
    /// For reads that run off the HTTP workers (`OffWorkerPool`).
    pub off_worker_pool: OffWorkerPool,
}

/// Read-only connections for reads that may take long enough to matter
/// (history pages): used from actix's blocking pool, never on an HTTP
/// worker, and each read under `READ_TIME_MAX`.
#[derive(Clone)]
pub struct OffWorkerPool(pub ReadPool);

impl Storage {
    /// Opens the file for serving: creates it if needed, migrates it, applies
    /// the demo seed when `seed_demo_if_empty` and it has no asset types yet,
    /// starts the writer and the read pool. The writer commits up to
    /// `write_batch_max` queued writes together. Blocking: call it before the
    /// async runtime starts.
    pub fn open(
        path: &std::path::Path,
        write_batch_max: usize,
        seed_demo_if_empty: bool,
    ) -> anyhow::Result<Storage> {
        open::existing_folder_of(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        let lock = open::lock_for_serving(path)?;
        let mut conn = open::open_read_write(path)?;
        open::check_integrity(&conn, path)?;
        migrate::migrate(&mut conn)?;
        let grants = if seed_demo_if_empty && reads::is_unseeded(&conn)? {
            seed::apply_catalogue(&mut conn)?
        } else {
            Vec::new()
        };
        let writer = writer::Writer::start(conn, write_batch_max)?;
        if let Err(error) = seed::post_grants(&writer.handle(), &grants) {
            writer.stop();
            return Err(error);
        }
        let pool = open::read_pool(path)?;
        let off_worker_pool = OffWorkerPool(open::read_pool_of(
            path,
            crate::limits::READ_POOL_OFF_WORKER_SIZE,
        )?);
        Ok(Storage {
            _lock: lock,
            writer,
            pool,
            off_worker_pool,
        })
    }

    /// Applies every queued write, then closes the file (and only then lets
    /// go of the lock).
    pub fn close(self) {
        drop(self.pool);
        drop(self.off_worker_pool);
        self.writer.stop();
        drop(self._lock);
    }
}
