//! The only code that speaks SQL: opening the file, migrations, the read pool,
//! the writer thread, queries, the seed, the audit's reading of the ledger,
//! backups and restores.

pub mod backup;
pub mod files;
pub mod holds;
pub mod keys;
pub mod migrate;
pub mod open;
mod parts;
pub mod reads;
pub mod restore;
mod rules;
pub mod seed;
pub mod verify;
pub mod watch;
pub mod writer;

pub mod commands;
pub mod copy;

use anyhow::Context;
use rusqlite::{ErrorCode, OptionalExtension};
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{AssetRef, Caller, EntryKind, KeyName, Metadata, UserId};
use crate::ledger::engine::{AssetRow, Command, HoldFact, NewAsset, Outcome};
use crate::store::{
    AssetOutcome, BalanceRow, EventRow, HistoryPage, HistoryQuery, HoldPage, HoldQuery, KeyError,
    KeyListing, KeySnapshot, LedgerError, LedgerStore, NewKey, RulesChange, RulesOutcome,
    StorageError, SupplyRow, TransactionDetail, UserRulesListing,
};

pub type ReadPool = r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>;

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
            StorageError::Unavailable(Box::new(error))
        } else {
            StorageError::Backend(Box::new(error))
        }
    }
}

impl From<rusqlite::Error> for LedgerError {
    fn from(error: rusqlite::Error) -> Self {
        LedgerError::Storage(error.into())
    }
}

fn parse_stored_kind(raw: &str) -> rusqlite::Result<EntryKind> {
    EntryKind::parse(raw).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

/// Stored metadata (compact JSON, or NULL) as the domain type.
fn read_metadata(raw: Option<String>) -> rusqlite::Result<Option<Metadata>> {
    let Some(text) = raw else { return Ok(None) };
    let conversion = |error: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, error)
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| conversion(Box::new(error)))?;
    Metadata::parse(&value)
        .map(Some)
        .map_err(|error| conversion(Box::new(error)))
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

/// The SQLite store a server holds: the writer's queue and the read pools.
/// Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: crate::store::queue::WriterHandle,
    pool: ReadPool,
    /// For reads that may take long enough to matter (history pages): used
    /// from the blocking pool, never on an HTTP worker, each under
    /// `READ_TIME_MAX`.
    off_worker_pool: ReadPool,
    /// One permit per connection of `off_worker_pool`, taken before a read
    /// goes to the blocking pool: readers past that wait here, as tasks,
    /// instead of each waking a blocking thread of its own to wait for a
    /// connection. Without it, 100 event streams woken by one commit
    /// started about 100 threads, each keeping megabytes of allocator and
    /// stack memory long after (`scripts/stream-memory.py`).
    off_worker_slots: std::sync::Arc<tokio::sync::Semaphore>,
    /// The WAL beside the database, whose size the metrics report.
    wal_path: std::path::PathBuf,
    /// What "now" is for the reads that depend on it (what holds set
    /// aside, whether a hold has expired): the writer's clock.
    clock: Clock,
}

/// The database as the server holds it: the lock, the writer with the only
/// read-write connection, and the store over it.
pub struct Serving {
    /// Held while serving: one server per file.
    _lock: open::ServeLock,
    writer: crate::store::queue::Writer,
    store: SqliteStore,
}

impl Serving {
    /// Opens the file for serving: creates it if needed, migrates it, applies
    /// the demo seed when `seed_demo_if_empty` and it has no asset types yet,
    /// starts the writer and the read pools. The writer commits up to
    /// `write_batch_max` queued writes together.
    pub fn open(
        path: &std::path::Path,
        write_batch_max: usize,
        seed_demo_if_empty: bool,
        clock: Clock,
    ) -> anyhow::Result<Serving> {
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
        let writer = writer::start_with_clock(conn, write_batch_max, clock.clone())?;
        if let Err(error) = crate::store::seed_grants(&writer.handle(), &grants) {
            writer.stop();
            return Err(error);
        }
        let pool = open::read_pool(path)?;
        let off_worker_pool = open::read_pool_of(path, crate::limits::READ_POOL_OFF_WORKER_SIZE)?;
        let store = SqliteStore {
            writer: writer.handle(),
            pool,
            off_worker_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                off_worker_pool.max_size() as usize,
            )),
            off_worker_pool,
            wal_path: files::wal_path_of(path),
            clock,
        };
        Ok(Serving {
            _lock: lock,
            writer,
            store,
        })
    }

    pub fn store(&self) -> SqliteStore {
        self.store.clone()
    }

    /// Applies every queued write, then closes the file (and only then lets
    /// go of the lock).
    pub fn close(self) {
        drop(self.store);
        self.writer.stop();
        drop(self._lock);
    }
}

impl SqliteStore {
    /// Runs a read on a pooled read-only connection, on the calling thread.
    /// Every such read is bounded (a balance is a row per asset, an entry
    /// one row) and WAL readers never wait for the writer, so it takes
    /// microseconds; a hop to the blocking pool and back would cost more
    /// (balance reads went from about 42,000 to 55,000 a second on two
    /// cores without it, `wallet bench --scenarios read`).
    fn read<T, E: From<StorageError>>(
        &self,
        query: impl FnOnce(&mut rusqlite::Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.pool.get().map_err(StorageError::from)?;
        query(&mut conn)
    }

    /// Runs a read that may take long enough to matter (a page of history
    /// or of events) on the blocking pool, never on an HTTP worker, under
    /// `READ_TIME_MAX`; at most one at a time per off-worker connection.
    async fn read_off_worker<T: Send + 'static, E: From<StorageError> + Send + 'static>(
        &self,
        query: impl FnOnce(&mut rusqlite::Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let slot = tokio::time::timeout(
            crate::limits::READ_POOL_CHECKOUT_TIMEOUT,
            std::sync::Arc::clone(&self.off_worker_slots).acquire_owned(),
        )
        .await
        .map_err(|_| StorageError::Pool("every off-worker read connection stayed busy".into()))?
        .map_err(|closed| StorageError::Backend(Box::new(closed)))?;
        let pool = self.off_worker_pool.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(StorageError::from)?;
            reads::within_time_limit(&mut conn, query)
        })
        .await;
        // Given back once the blocking thread is done, not from inside it:
        // the next read then finds that thread idle rather than starting
        // another.
        drop(slot);
        read.map_err(|error| StorageError::Backend(Box::new(error)))?
    }
}

impl LedgerStore for SqliteStore {
    async fn apply(&self, command: Command) -> Result<Outcome, LedgerError> {
        self.writer.apply(command).await
    }

    async fn create_asset(&self, asset: NewAsset) -> Result<AssetOutcome, LedgerError> {
        self.writer.create_asset(asset).await
    }

    fn health(&self) -> Result<(), StorageError> {
        self.read(|conn| reads::health(conn))
    }

    fn assets(&self) -> Result<Vec<AssetRow>, StorageError> {
        self.read(reads::assets)
    }

    fn balances(&self, user: &UserId) -> Result<Vec<BalanceRow>, LedgerError> {
        self.read(|conn| reads::balances_at(conn, user, self.clock.now_ms()))
    }

    fn balances_as_of(&self, user: &UserId, at_ms: i64) -> Result<Vec<BalanceRow>, LedgerError> {
        self.read(|conn| reads::balances_as_of(conn, user, at_ms))
    }

    async fn history(&self, user: UserId, query: HistoryQuery) -> Result<HistoryPage, LedgerError> {
        // A page is bounded work, but a cold page cache makes it disk
        // reads: it must never stall an HTTP worker (health checks, writes).
        self.read_off_worker(move |conn| reads::history(conn, &user, &query))
            .await
    }

    fn transaction(&self, id: Uuid) -> Result<TransactionDetail, LedgerError> {
        self.read(|conn| reads::transaction(conn, &id.to_string()))
    }

    fn hold(&self, id: Uuid) -> Result<HoldFact, LedgerError> {
        self.read(|conn| holds::hold(conn, &id.to_string(), self.clock.now_ms()))
    }

    fn holds(&self, user: &UserId, query: HoldQuery) -> Result<HoldPage, LedgerError> {
        // Bounded: at most `HISTORY_ROWS_EXAMINED_MAX` holds a page, and a
        // time limit besides.
        self.read(|conn| {
            reads::within_time_limit(conn, |conn| {
                holds::user_holds(conn, user, &query, self.clock.now_ms())
            })
        })
    }

    fn supply(&self, asset: &AssetRef) -> Result<SupplyRow, LedgerError> {
        self.read(|conn| watch::supply(conn, asset))
    }

    fn supply_as_of(&self, asset: &AssetRef, at_ms: i64) -> Result<SupplyRow, LedgerError> {
        self.read(|conn| watch::supply_as_of(conn, asset, at_ms))
    }

    async fn events_after(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, StorageError> {
        // A page of up to 1000 events is a few thousand index descents: off
        // the HTTP workers, as history pages are.
        self.read_off_worker(move |conn| watch::events_after(conn, after, limit))
            .await
    }

    fn events_end(&self) -> Result<i64, StorageError> {
        self.read(|conn| watch::events_end(conn))
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.writer.commits()
    }

    fn ledger_figures(&self) -> Result<crate::metrics::LedgerFigures, StorageError> {
        self.read(|conn| watch::ledger_figures(conn, &self.wal_path))
    }

    fn entry_count(&self) -> Result<u64, StorageError> {
        self.read(|conn| reads::entry_count(conn))
    }

    fn is_failing(&self) -> bool {
        self.writer.is_failing()
    }

    fn key_generation(&self) -> Result<i64, StorageError> {
        self.read(|conn| Ok(keys::generation(conn)?))
    }

    fn load_keys(&self) -> Result<KeySnapshot, StorageError> {
        self.read(|conn| Ok(keys::load(conn)?))
    }

    fn record_key_uses(&self, uses: Vec<(i64, i64)>) -> Result<(), StorageError> {
        self.writer.record_key_uses_blocking(uses)
    }

    fn keys(&self) -> Result<Vec<KeyListing>, StorageError> {
        // At most `API_KEYS_TOTAL_MAX` short rows, by the name index.
        self.read(|conn| Ok(keys::list(conn)?))
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyListing, KeyError> {
        self.writer.create_key(key).await
    }

    async fn revoke_key(&self, name: KeyName) -> Result<KeyListing, KeyError> {
        self.writer.revoke_key(name).await
    }

    async fn change_rules(
        &self,
        change: RulesChange,
        caller: Caller,
    ) -> Result<RulesOutcome, LedgerError> {
        self.writer.change_rules(change, caller).await
    }

    fn user_rules(&self, user: &UserId) -> Result<UserRulesListing, StorageError> {
        self.read(|conn| {
            let tx = conn.transaction()?;
            let rows = rules::user_rules(&tx, user.as_str())?;
            tx.commit()?;
            Ok(UserRulesListing {
                user: user.as_str().to_owned(),
                rows,
            })
        })
    }
}
