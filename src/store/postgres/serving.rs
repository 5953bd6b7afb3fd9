//! A server on PostgreSQL: the writer (one connection, group commit), a
//! bounded pool of read connections, and a follower that wakes this
//! instance's event streams when another instance commits.
//!
//! Any number of instances serve one database: what each writes is decided
//! under the users' locks (`writer.rs`), keys are reloaded when the keys'
//! generation moves (the key watcher reads it as on SQLite), and streams
//! see every instance's commits within `FOLLOW_INTERVAL`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::warn;
use r2d2_postgres::PostgresConnectionManager;
use uuid::Uuid;

use super::writer::PgWriter;
use super::{reads, PostgresUrl};
use crate::clock::Clock;
use crate::domain::{AssetRef, Caller, KeyName, UserId};
use crate::ledger::engine::{AssetRow, Command, HoldFact, NewAsset, Outcome};
use crate::limits::{
    PG_WRITER_LANES, READ_POOL_CHECKOUT_TIMEOUT, READ_POOL_OFF_WORKER_SIZE, READ_POOL_SIZE,
    READ_TIME_MAX,
};
use crate::store::queue::{Writer, WriterHandle};
use crate::store::{
    AssetOutcome, BalanceRow, EventRow, HistoryPage, HistoryQuery, HoldPage, HoldQuery, KeyError,
    KeyListing, KeySnapshot, LedgerError, LedgerStore, NewKey, RulesChange, RulesOutcome,
    StorageError, SupplyRow, TransactionDetail, UserRulesListing,
};

type PgPool = r2d2::Pool<PostgresConnectionManager<postgres::NoTls>>;

/// How often an instance looks for commits another instance made.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// How long the writer's statements may run: a batch waits here for the
/// locks of users another instance is writing.
const WRITE_STATEMENT_TIME_MAX: Duration = Duration::from_secs(10);

/// The PostgreSQL store a server holds. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    writer: WriterHandle,
    pool: PgPool,
    /// One permit per connection reads off the HTTP workers may use at
    /// once (see SQLite's store, where 100 woken streams otherwise started
    /// 100 blocking threads).
    off_worker_slots: Arc<tokio::sync::Semaphore>,
    clock: Clock,
}

/// The database as one instance holds it.
pub struct Serving {
    writer: Writer,
    store: PgStore,
    following: Arc<AtomicBool>,
    follower: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    /// Migrates the database (instances starting at once take turns),
    /// seeds it when asked and it holds no asset, starts the writer, the
    /// read pool and the follower.
    pub fn open(
        url: &PostgresUrl,
        write_batch_max: usize,
        seed_demo_if_empty: bool,
        clock: Clock,
    ) -> anyhow::Result<Serving> {
        super::migrate::migrate(url)?;
        let grants = if seed_demo_if_empty {
            super::seed::apply_catalogue_if_empty(url)?
        } else {
            Vec::new()
        };
        let lanes = (0..PG_WRITER_LANES)
            .map(|_| {
                let url = url.clone();
                move |status| PgWriter::new(url, status)
            })
            .collect();
        let writer = Writer::start_lanes("wallet-writer", write_batch_max, clock.clone(), lanes)?;
        if let Err(error) = crate::store::seed_grants(&writer.handle(), &grants) {
            writer.stop();
            return Err(error);
        }
        let manager = PostgresConnectionManager::new(
            url.config_with_statement_time_max(READ_TIME_MAX),
            postgres::NoTls,
        );
        let pool = r2d2::Pool::builder()
            .max_size(READ_POOL_SIZE + READ_POOL_OFF_WORKER_SIZE)
            .min_idle(Some(0))
            .connection_timeout(READ_POOL_CHECKOUT_TIMEOUT)
            // No test query before each read: a connection the server
            // closed fails that one read (503) and is then dropped, as the
            // pool sees it closed.
            .test_on_check_out(false)
            .build_unchecked(manager);
        let store = PgStore {
            writer: writer.handle(),
            pool: pool.clone(),
            off_worker_slots: Arc::new(tokio::sync::Semaphore::new(
                READ_POOL_OFF_WORKER_SIZE as usize,
            )),
            clock,
        };
        let following = Arc::new(AtomicBool::new(true));
        let follower = {
            let following = Arc::clone(&following);
            let writer = writer.handle();
            std::thread::Builder::new()
                .name("wallet-follower".into())
                .spawn(move || follow(&pool, &writer, &following))?
        };
        Ok(Serving {
            writer,
            store,
            following,
            follower: Some(follower),
        })
    }

    pub fn store(&self) -> PgStore {
        self.store.clone()
    }

    /// Applies every queued write, then closes the connections.
    pub fn close(mut self) {
        self.following.store(false, Ordering::SeqCst);
        if let Some(follower) = self.follower.take() {
            let _ = follower.join();
        }
        drop(self.store);
        self.writer.stop();
    }
}

/// Wakes this instance's event streams whenever the feed grew, whoever
/// wrote to it. One cheap read of the feed's sequence an interval.
fn follow(pool: &PgPool, writer: &WriterHandle, following: &AtomicBool) {
    let mut last_seen: Option<i64> = None;
    let mut warned = false;
    while following.load(Ordering::SeqCst) {
        std::thread::sleep(FOLLOW_INTERVAL);
        let read = pool
            .get()
            .map_err(StorageError::from)
            .and_then(|mut client| {
                Ok(client
                    .query_one("SELECT last_value FROM events_feed_seq", &[])?
                    .get::<_, i64>(0))
            });
        match read {
            Ok(end) => {
                warned = false;
                if last_seen.is_some_and(|seen| seen != end) {
                    writer.tell_followers();
                }
                last_seen = Some(end);
            }
            Err(failure) if !warned => {
                warned = true;
                warn!("cannot follow the event feed: {failure}");
            }
            Err(_) => {}
        }
    }
}

impl PgStore {
    /// A read on a pooled connection. Every such read is bounded (a row or
    /// a few per asset) and under the read connections' statement time
    /// limit. The driver runs a runtime of its own, which cannot run on an
    /// HTTP worker's thread: the read runs on a thread of its own while the
    /// worker waits for it.
    fn read<T: Send, E: From<StorageError> + Send>(
        &self,
        query: impl FnOnce(&mut postgres::Client) -> Result<T, E> + Send,
    ) -> Result<T, E> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut client = self.pool.get().map_err(StorageError::from)?;
                    query(&mut client)
                })
                .join()
                .unwrap_or_else(|_| Err(StorageError::Backend("a read panicked".into()).into()))
        })
    }

    /// A read that may take long enough to matter (a page of history or
    /// of events), on the blocking pool, at most one per permit.
    async fn read_off_worker<T: Send + 'static, E: From<StorageError> + Send + 'static>(
        &self,
        query: impl FnOnce(&mut postgres::Client) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let slot = tokio::time::timeout(
            READ_POOL_CHECKOUT_TIMEOUT,
            Arc::clone(&self.off_worker_slots).acquire_owned(),
        )
        .await
        .map_err(|_| StorageError::Pool("every off-worker read connection stayed busy".into()))?
        .map_err(|closed| StorageError::Backend(Box::new(closed)))?;
        let pool = self.pool.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut client = pool.get().map_err(StorageError::from)?;
            query(&mut client)
        })
        .await;
        drop(slot);
        read.map_err(|error| StorageError::Backend(Box::new(error)))?
    }
}

impl LedgerStore for PgStore {
    async fn apply(&self, command: Command) -> Result<Outcome, LedgerError> {
        self.writer.apply(command).await
    }

    async fn create_asset(&self, asset: NewAsset) -> Result<AssetOutcome, LedgerError> {
        self.writer.create_asset(asset).await
    }

    fn health(&self) -> Result<(), StorageError> {
        self.read(reads::health)
    }

    fn assets(&self) -> Result<Vec<AssetRow>, StorageError> {
        self.read(reads::assets)
    }

    fn balances(&self, user: &UserId) -> Result<Vec<BalanceRow>, LedgerError> {
        self.read(|client| reads::balances_at(client, user, self.clock.now_ms()))
    }

    fn balances_as_of(&self, user: &UserId, at_ms: i64) -> Result<Vec<BalanceRow>, LedgerError> {
        self.read(|client| reads::balances_as_of(client, user, at_ms))
    }

    async fn history(&self, user: UserId, query: HistoryQuery) -> Result<HistoryPage, LedgerError> {
        self.read_off_worker(move |client| reads::history(client, &user, &query))
            .await
    }

    fn transaction(&self, id: Uuid) -> Result<TransactionDetail, LedgerError> {
        self.read(|client| reads::transaction(client, &id.to_string()))
    }

    fn hold(&self, id: Uuid) -> Result<HoldFact, LedgerError> {
        self.read(|client| reads::hold(client, &id.to_string(), self.clock.now_ms()))
    }

    fn holds(&self, user: &UserId, query: HoldQuery) -> Result<HoldPage, LedgerError> {
        self.read(|client| reads::user_holds(client, user, &query, self.clock.now_ms()))
    }

    fn supply(&self, asset: &AssetRef) -> Result<SupplyRow, LedgerError> {
        self.read(|client| reads::supply(client, asset))
    }

    fn supply_as_of(&self, asset: &AssetRef, at_ms: i64) -> Result<SupplyRow, LedgerError> {
        self.read(|client| reads::supply_as_of(client, asset, at_ms))
    }

    async fn events_after(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, StorageError> {
        self.read_off_worker(move |client| reads::events_after(client, after, limit))
            .await
    }

    fn events_end(&self) -> Result<i64, StorageError> {
        self.read(reads::events_end)
    }

    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.writer.commits()
    }

    fn ledger_figures(&self) -> Result<crate::metrics::LedgerFigures, StorageError> {
        self.read(reads::ledger_figures)
    }

    fn entry_count(&self) -> Result<u64, StorageError> {
        self.read(reads::entry_count)
    }

    fn is_failing(&self) -> bool {
        self.writer.is_failing()
    }

    fn key_generation(&self) -> Result<i64, StorageError> {
        self.read(reads::key_generation)
    }

    fn load_keys(&self) -> Result<KeySnapshot, StorageError> {
        self.read(reads::load_keys)
    }

    fn record_key_uses(&self, uses: Vec<(i64, i64)>) -> Result<(), StorageError> {
        self.writer.record_key_uses_blocking(uses)
    }

    fn keys(&self) -> Result<Vec<KeyListing>, StorageError> {
        self.read(reads::keys)
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
        self.read(|client| {
            Ok(UserRulesListing {
                user: user.as_str().to_owned(),
                rows: super::rules::user_rules(client, user.as_str())?,
            })
        })
    }
}

/// `wallet seed` and `serve --seed-demo`'s writer for the command line: a
/// writer of its own, stopped once the grants are posted.
pub fn start_writer(url: &PostgresUrl) -> anyhow::Result<Writer> {
    let url = url.clone();
    Ok(Writer::start(
        "wallet-writer",
        crate::limits::WRITE_BATCH_MAX,
        Clock::System,
        move |status| PgWriter::new(url, status),
    )?)
}

impl PostgresUrl {
    /// The serving connections' settings: statements stopped past
    /// `time_max`, so a stuck query answers 503 instead of holding a
    /// worker.
    pub(super) fn config_with_statement_time_max(&self, time_max: Duration) -> postgres::Config {
        let mut config = self.config();
        config.options(&format!("-c statement_timeout={}", time_max.as_millis()));
        config
    }

    /// The writer's connection settings.
    pub(super) fn serving_config(&self) -> postgres::Config {
        self.config_with_statement_time_max(WRITE_STATEMENT_TIME_MAX)
    }
}
