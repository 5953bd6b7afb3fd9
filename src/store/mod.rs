//! The store seam: the one way the rest of the program reaches the ledger's
//! database. `LedgerStore` is what a backend must do, in ledger and domain
//! types only; `Store` picks the backend once, at open, and dispatches
//! statically: SQLite or PostgreSQL. No backend type (a connection, a driver's error) is
//! seen outside its own module.

mod copy;
mod postgres;
mod queue;
mod sqlite;
mod write;

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{
    AssetRef, AssetRulesChange, Caller, Cursor, EntryKind, KeyName, Limits, PageLimit, ReferenceId,
    RulesInForce, Scopes, UserId, UserOverride, UserRulesChange,
};
use crate::ledger::audit::AuditReport;
use crate::ledger::engine::{
    AssetRow, Command, HoldFact, HoldStatus, NewAsset, Outcome, UserEntry,
};
use crate::ledger::Rejection;
use crate::limits::{API_KEYS_ACTIVE_MAX, API_KEYS_TOTAL_MAX};

pub use copy::{CopyCounts, CopyOutcome, CopyStage};

/// A backend's own error, carried as the cause of a `StorageError`.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Failures below the ledger's rules: the file, the locks, the queue.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be used right now (busy, disk full, read-only,
    /// I/O error, a read past its time limit); the same request may succeed
    /// later.
    #[error("the database is unavailable")]
    Unavailable(#[source] BackendError),
    #[error("no database connection could be had")]
    Pool(#[source] BackendError),
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
    /// Anything else the database says: a defect on our side.
    #[error("database error")]
    Backend(#[source] BackendError),
}

/// No pooled connection in time (both backends' read pools are r2d2's).
impl From<r2d2::Error> for StorageError {
    fn from(error: r2d2::Error) -> Self {
        StorageError::Pool(Box::new(error))
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

/// Where the ledger lives, as `--db` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file (created if needed; its folder must exist).
    Sqlite(PathBuf),
    /// A PostgreSQL database, which any number of servers share.
    Postgres(postgres::PostgresUrl),
}

impl DatabaseLocation {
    /// A path, or a `postgres://` (`postgresql://`) URL.
    pub fn parse(raw: &str) -> Result<DatabaseLocation, String> {
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return postgres::PostgresUrl::parse(raw).map(DatabaseLocation::Postgres);
        }
        if raw.is_empty() {
            return Err("must be a file path".into());
        }
        Ok(DatabaseLocation::Sqlite(PathBuf::from(raw)))
    }

    /// How a `--db` value is shown in a message: a URL's password hidden,
    /// anything else as it is.
    pub fn shown(raw: &str) -> String {
        postgres::without_password(raw)
    }

    /// How logs and messages name it: never with a password.
    pub fn display(&self) -> String {
        match self {
            DatabaseLocation::Sqlite(path) => path.display().to_string(),
            DatabaseLocation::Postgres(url) => url.to_string(),
        }
    }
}

/// One asset's row of a user's balances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    pub asset_symbol: String,
    pub asset_type_id: String,
    pub asset_name: String,
    pub balance: i64,
    /// Set aside by active holds.
    pub held: i64,
    pub available: i64,
    /// The paid part of `balance` and the free part (lots included).
    pub paid: i64,
    pub free: i64,
    /// The expiring lots, soonest first: (amount, expiresAt).
    pub expiring: Vec<(i64, i64)>,
}

/// Filters and position of one history page.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub asset: Option<AssetRef>,
    pub kind: Option<EntryKind>,
    pub reference_id: Option<ReferenceId>,
    pub limit: PageLimit,
    pub cursor: Option<Cursor>,
}

/// Filters and position of one page of a user's holds.
#[derive(Debug, Clone)]
pub struct HoldQuery {
    pub status: Option<HoldStatus>,
    pub asset: Option<AssetRef>,
    pub limit: PageLimit,
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct HoldPage {
    pub items: Vec<HoldFact>,
    pub next_cursor: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub items: Vec<UserEntry>,
    pub next_cursor: Option<Cursor>,
}

/// A party to an entry, for `GET /transactions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartyRow {
    User(String),
    Treasury,
}

/// One entry whole, both sides: `GET /transactions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDetail {
    pub id: String,
    pub kind: EntryKind,
    pub asset_symbol: String,
    pub amount: i64,
    pub debit: PartyRow,
    pub credit: PartyRow,
    pub reverses: Option<String>,
    pub reversed_amount: i64,
    pub hold_id: Option<String>,
    pub idempotency_key: String,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<crate::domain::Metadata>,
    pub created_at_ms: i64,
    /// What it moved, in the order taken.
    pub parts: Vec<crate::ledger::parts::Part>,
}

/// `GET /assets/{asset}/supply`: an asset's totals, kept as entries are
/// written. Sums of amounts may pass 2^53 - 1 (API.md), hence 128 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupplyRow {
    pub asset_symbol: String,
    /// What users hold: the negative of the Treasury's balance.
    pub outstanding: i128,
    pub held: i64,
    /// User accounts with a non-zero balance.
    pub holders: i64,
    pub topup: u128,
    pub bonus: u128,
    pub spent: u128,
    pub reversed: u128,
    /// What users hold of each kind: `outstanding = paid + free`.
    pub paid: i128,
    pub free: i128,
    /// The EXPIRY entries' total ever.
    pub expired: u128,
    /// The time of the newest entry counted; None before the first.
    pub as_of_ms: Option<i64>,
}

/// The types of event of `GET /events` (API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    TransactionCreated,
    HoldCreated,
    HoldCaptured,
    HoldVoided,
    HoldExpired,
    AssetRulesChanged,
    WalletRulesChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::TransactionCreated,
        EventKind::HoldCreated,
        EventKind::HoldCaptured,
        EventKind::HoldVoided,
        EventKind::HoldExpired,
        EventKind::AssetRulesChanged,
        EventKind::WalletRulesChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TransactionCreated => "transaction.created",
            EventKind::HoldCreated => "hold.created",
            EventKind::HoldCaptured => "hold.captured",
            EventKind::HoldVoided => "hold.voided",
            EventKind::HoldExpired => "hold.expired",
            EventKind::AssetRulesChanged => "asset.rules_changed",
            EventKind::WalletRulesChanged => "wallet.rules_changed",
        }
    }

    pub fn parse(raw: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }

    /// The hold as the change of this kind left it, for the feed of either
    /// backend. A hold changes once, so its closing events show it as
    /// stored; its opening shows it as it was made. None when the stored
    /// hold does not match the event.
    pub(crate) fn hold_after(self, stored: HoldFact) -> Option<HoldFact> {
        let status = match self {
            EventKind::HoldCreated => {
                return Some(HoldFact {
                    status: HoldStatus::Held,
                    captured_amount: 0,
                    captured_by: None,
                    closed_at_ms: None,
                    ..stored
                })
            }
            EventKind::HoldCaptured => HoldStatus::Captured,
            EventKind::HoldVoided => HoldStatus::Voided,
            EventKind::HoldExpired => HoldStatus::Expired,
            EventKind::TransactionCreated
            | EventKind::AssetRulesChanged
            | EventKind::WalletRulesChanged => return None,
        };
        (stored.status == status).then_some(stored)
    }
}

/// What an event is about.
#[derive(Debug, Clone)]
pub enum EventData {
    /// An entry as the history of `user` shows it.
    Transaction { user: String, entry: UserEntry },
    /// A hold as the change left it.
    Hold(HoldFact),
    /// An asset, with its rules as the change left them.
    AssetRules(AssetRow),
    /// A user's own values in an asset as the change left them (a field
    /// not overridden is None).
    UserRules {
        user: String,
        asset_symbol: String,
        rules: UserOverride,
    },
}

/// A change of rules on value (API.md, Limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesChange {
    /// `PUT /assets/{asset}/rules`.
    Asset {
        asset: AssetRef,
        change: AssetRulesChange,
    },
    /// `PUT /wallets/{userId}/rules`.
    User {
        user: UserId,
        asset: AssetRef,
        change: UserRulesChange,
    },
}

/// What a change of rules answers: the asset, or the user's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesOutcome {
    Asset(AssetRow),
    User(UserRulesListing),
}

/// The rules in force for one user in one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRulesRow {
    pub asset_symbol: String,
    pub in_force: RulesInForce,
}

/// `GET /wallets/{userId}/rules`: one row per asset, by symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRulesListing {
    pub user: String,
    pub rows: Vec<UserRulesRow>,
}

/// Reads rules stored as columns back into the domain's types; a stored
/// value the domain refuses is a database changed behind the service's back.
pub(crate) fn stored_limits(text: Option<&str>) -> Result<Option<Limits>, StorageError> {
    text.map(|text| {
        Limits::from_json(text).ok_or_else(|| {
            StorageError::Backend(format!("stored limits are not valid: {text}").into())
        })
    })
    .transpose()
}

/// One event of the feed; `seq` is its cursor.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub kind: EventKind,
    /// When the change was committed (the writer's clock).
    pub created_at_ms: i64,
    pub data: EventData,
}

/// What `POST /assets` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetOutcome {
    Created(AssetRow),
    AlreadyTheSame(AssetRow),
}

/// What seeding did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedSummary {
    pub created: usize,
    pub already_present: usize,
}

/// An initial balance of the demo seed (`seed.sql`), to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user: String,
    pub symbol: String,
    pub amount: i64,
}

/// Posts the seed's grants through a writer, the same path as `POST
/// /topup`, each with the key `seed:<userId>:<SYMBOL>`: a second run
/// replays and writes nothing.
fn seed_grants(writer: &queue::WriterHandle, grants: &[Grant]) -> anyhow::Result<SeedSummary> {
    use crate::domain::{Amount, Caller, IdempotencyKey};
    use crate::ledger::engine::{CreditKind, EntryDetails, Operation, Route};
    use anyhow::Context;
    let command = |grant: &Grant| -> anyhow::Result<Command> {
        let user = UserId::parse(&grant.user)?;
        Ok(Command {
            // The seed's keys belong to the anonymous caller, as every
            // entry of a version 1 file does.
            caller: Caller::Anonymous,
            key: IdempotencyKey::for_seed(&user, &grant.symbol)?,
            route: Route::Topup,
            operations: vec![Operation::Credit {
                kind: CreditKind::Topup,
                user,
                asset: AssetRef::parse(&grant.symbol)?,
                amount: Amount::parse(u64::try_from(grant.amount)?)?,
                details: EntryDetails::default(),
            }],
        })
    };
    let mut summary = SeedSummary::default();
    for grant in grants {
        let command =
            command(grant).with_context(|| format!("seed.sql has an invalid grant {grant:?}"))?;
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

/// What a backend does for a running server: one method per use.
pub trait LedgerStore {
    /// Applies a command through the backend's writer: decided by
    /// `ledger::engine::decide`, written whole or not at all.
    fn apply(
        &self,
        command: Command,
    ) -> impl std::future::Future<Output = Result<Outcome, LedgerError>>;
    fn create_asset(
        &self,
        asset: NewAsset,
    ) -> impl std::future::Future<Output = Result<AssetOutcome, LedgerError>>;
    fn health(&self) -> Result<(), StorageError>;
    fn assets(&self) -> Result<Vec<AssetRow>, StorageError>;
    fn balances(&self, user: &UserId) -> Result<Vec<BalanceRow>, LedgerError>;
    /// Balances as they stood at `at_ms` (no holds counted), in O(log n).
    fn balances_as_of(&self, user: &UserId, at_ms: i64) -> Result<Vec<BalanceRow>, LedgerError>;
    /// A page of history; may read from disk, so it runs off the caller's
    /// thread, under a time limit.
    fn history(
        &self,
        user: UserId,
        query: HistoryQuery,
    ) -> impl std::future::Future<Output = Result<HistoryPage, LedgerError>>;
    fn transaction(&self, id: Uuid) -> Result<TransactionDetail, LedgerError>;
    /// One hold as it stands now (a HELD hold past its expiry is EXPIRED).
    fn hold(&self, id: Uuid) -> Result<HoldFact, LedgerError>;
    /// A page of a user's holds, newest first, as they stand now.
    fn holds(&self, user: &UserId, query: HoldQuery) -> Result<HoldPage, LedgerError>;
    /// An asset's supply figures, in O(log n).
    fn supply(&self, asset: &AssetRef) -> Result<SupplyRow, LedgerError>;
    /// An asset's supply figures as they stood at `at_ms`, in O(log n):
    /// `held` and `holders` are not kept back in time (left 0).
    fn supply_as_of(&self, asset: &AssetRef, at_ms: i64) -> Result<SupplyRow, LedgerError>;
    /// Up to `limit` events after the cursor `after` (0: from the start),
    /// oldest first. Off the caller's thread, under a time limit.
    fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<EventRow>, StorageError>>;
    /// The largest event cursor given out so far (0 before the first).
    fn events_end(&self) -> Result<i64, StorageError>;
    /// Changes each time a write transaction commits: what event streams
    /// wait on between reads.
    fn commits(&self) -> tokio::sync::watch::Receiver<u64>;
    /// What a metrics scrape reads from the ledger.
    fn ledger_figures(&self) -> Result<crate::metrics::LedgerFigures, StorageError>;
    /// Entries in the ledger (what `wallet bench` counts its 201s against).
    fn entry_count(&self) -> Result<u64, StorageError>;
    /// Whether the last write failed as storage: health answers 503.
    fn is_failing(&self) -> bool;
    fn key_generation(&self) -> Result<i64, StorageError>;
    fn load_keys(&self) -> Result<KeySnapshot, StorageError>;
    /// Records when keys were last used, through the writer.
    fn record_key_uses(&self, uses: Vec<(i64, i64)>) -> Result<(), StorageError>;
    /// Every API key, revoked ones included, by name: never a digest.
    fn keys(&self) -> Result<Vec<KeyListing>, StorageError>;
    /// Adds a key through the writer, if its name was never used and the
    /// bounds on keys allow one more.
    fn create_key(
        &self,
        key: NewKey,
    ) -> impl std::future::Future<Output = Result<KeyListing, KeyError>>;
    /// Revokes the active key named `name` through the writer: final.
    fn revoke_key(
        &self,
        name: KeyName,
    ) -> impl std::future::Future<Output = Result<KeyListing, KeyError>>;
    /// Changes rules on value through the writer.
    fn change_rules(
        &self,
        change: RulesChange,
        caller: Caller,
    ) -> impl std::future::Future<Output = Result<RulesOutcome, LedgerError>>;
    /// The rules in force for `user`, one row per asset.
    fn user_rules(&self, user: &UserId) -> Result<UserRulesListing, StorageError>;
}

/// The store a server holds: cheap to clone, one per backend.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::serving::PgStore),
}

/// Dispatches one call to the backend.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sqlite($store) => $call,
            Store::Postgres($store) => $call,
        }
    };
}

impl Store {
    pub async fn apply(&self, command: Command) -> Result<Outcome, LedgerError> {
        dispatch!(self, store => store.apply(command).await)
    }

    pub async fn create_asset(&self, asset: NewAsset) -> Result<AssetOutcome, LedgerError> {
        dispatch!(self, store => store.create_asset(asset).await)
    }

    pub fn health(&self) -> Result<(), StorageError> {
        dispatch!(self, store => store.health())
    }

    pub async fn change_rules(
        &self,
        change: RulesChange,
        caller: Caller,
    ) -> Result<RulesOutcome, LedgerError> {
        dispatch!(self, store => store.change_rules(change, caller).await)
    }

    pub fn user_rules(&self, user: &UserId) -> Result<UserRulesListing, StorageError> {
        dispatch!(self, store => store.user_rules(user))
    }

    pub fn assets(&self) -> Result<Vec<AssetRow>, StorageError> {
        dispatch!(self, store => store.assets())
    }

    pub fn balances(&self, user: &UserId) -> Result<Vec<BalanceRow>, LedgerError> {
        dispatch!(self, store => store.balances(user))
    }

    pub fn balances_as_of(
        &self,
        user: &UserId,
        at_ms: i64,
    ) -> Result<Vec<BalanceRow>, LedgerError> {
        dispatch!(self, store => store.balances_as_of(user, at_ms))
    }

    pub async fn history(
        &self,
        user: UserId,
        query: HistoryQuery,
    ) -> Result<HistoryPage, LedgerError> {
        dispatch!(self, store => store.history(user, query).await)
    }

    pub fn transaction(&self, id: Uuid) -> Result<TransactionDetail, LedgerError> {
        dispatch!(self, store => store.transaction(id))
    }

    pub fn hold(&self, id: Uuid) -> Result<HoldFact, LedgerError> {
        dispatch!(self, store => store.hold(id))
    }

    pub fn holds(&self, user: &UserId, query: HoldQuery) -> Result<HoldPage, LedgerError> {
        dispatch!(self, store => store.holds(user, query))
    }

    pub fn supply(&self, asset: &AssetRef) -> Result<SupplyRow, LedgerError> {
        dispatch!(self, store => store.supply(asset))
    }

    pub fn supply_as_of(&self, asset: &AssetRef, at_ms: i64) -> Result<SupplyRow, LedgerError> {
        dispatch!(self, store => store.supply_as_of(asset, at_ms))
    }

    pub async fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventRow>, StorageError> {
        dispatch!(self, store => store.events_after(after, limit).await)
    }

    pub fn events_end(&self) -> Result<i64, StorageError> {
        dispatch!(self, store => store.events_end())
    }

    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        dispatch!(self, store => store.commits())
    }

    pub fn ledger_figures(&self) -> Result<crate::metrics::LedgerFigures, StorageError> {
        dispatch!(self, store => store.ledger_figures())
    }

    pub fn entry_count(&self) -> Result<u64, StorageError> {
        dispatch!(self, store => store.entry_count())
    }

    pub fn is_failing(&self) -> bool {
        dispatch!(self, store => store.is_failing())
    }

    pub fn key_generation(&self) -> Result<i64, StorageError> {
        dispatch!(self, store => store.key_generation())
    }

    pub fn load_keys(&self) -> Result<KeySnapshot, StorageError> {
        dispatch!(self, store => store.load_keys())
    }

    pub fn record_key_uses(&self, uses: Vec<(i64, i64)>) -> Result<(), StorageError> {
        dispatch!(self, store => store.record_key_uses(uses))
    }

    pub fn keys(&self) -> Result<Vec<KeyListing>, StorageError> {
        dispatch!(self, store => store.keys())
    }

    pub async fn create_key(&self, key: NewKey) -> Result<KeyListing, KeyError> {
        dispatch!(self, store => store.create_key(key).await)
    }

    pub async fn revoke_key(&self, name: KeyName) -> Result<KeyListing, KeyError> {
        dispatch!(self, store => store.revoke_key(name).await)
    }
}

/// A database opened for serving: the store, and what must be closed in
/// order when the server stops (the writer drains, then the lock goes).
pub enum OpenedStore {
    Sqlite(sqlite::Serving),
    Postgres(postgres::serving::Serving),
}

impl OpenedStore {
    /// Opens `location` for serving: creates and migrates it, applies the
    /// demo seed when asked and it is empty, starts the writer. Blocking:
    /// call it before the async runtime starts.
    pub fn open(
        location: &DatabaseLocation,
        write_batch_max: usize,
        seed_demo_if_empty: bool,
    ) -> anyhow::Result<OpenedStore> {
        OpenedStore::open_with_clock(location, write_batch_max, seed_demo_if_empty, Clock::System)
    }

    /// As `open`, with the store's time read from `clock` (tests move it).
    pub fn open_with_clock(
        location: &DatabaseLocation,
        write_batch_max: usize,
        seed_demo_if_empty: bool,
        clock: Clock,
    ) -> anyhow::Result<OpenedStore> {
        match location {
            DatabaseLocation::Sqlite(path) => Ok(OpenedStore::Sqlite(sqlite::Serving::open(
                path,
                write_batch_max,
                seed_demo_if_empty,
                clock,
            )?)),
            DatabaseLocation::Postgres(url) => Ok(OpenedStore::Postgres(
                postgres::serving::Serving::open(url, write_batch_max, seed_demo_if_empty, clock)?,
            )),
        }
    }

    pub fn store(&self) -> Store {
        match self {
            OpenedStore::Sqlite(serving) => Store::Sqlite(serving.store()),
            OpenedStore::Postgres(serving) => Store::Postgres(serving.store()),
        }
    }

    /// Applies every queued write, then closes the database.
    pub fn close(self) {
        match self {
            OpenedStore::Sqlite(serving) => serving.close(),
            OpenedStore::Postgres(serving) => serving.close(),
        }
    }

    /// Whether the writer found its database files replaced under it.
    pub fn files_lost() -> bool {
        sqlite::writer::files_lost()
    }
}

/// The commands that run on a database without a server: each opens it,
/// does one thing, and closes it.
pub mod commands {
    use super::*;
    use crate::ledger::audit::AuditReport;

    pub fn migrate(location: &DatabaseLocation) -> anyhow::Result<i64> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::migrate(path),
            DatabaseLocation::Postgres(url) => postgres::migrate::migrate(url),
        }
    }

    pub fn seed(location: &DatabaseLocation) -> anyhow::Result<SeedSummary> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::seed(path),
            DatabaseLocation::Postgres(url) => postgres::seed::seed(url),
        }
    }

    pub fn verify(location: &DatabaseLocation) -> anyhow::Result<AuditReport> {
        verify_reporting(location, &mut |_| {})
    }

    /// As `verify`, telling `checked` how many entries it has checked so
    /// far, batch by batch (for a progress line).
    pub fn verify_reporting(
        location: &DatabaseLocation,
        checked: &mut dyn FnMut(u64),
    ) -> anyhow::Result<AuditReport> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::verify(path, checked),
            DatabaseLocation::Postgres(url) => postgres::verify::audit(url, checked),
        }
    }

    /// `wallet keys create`: the key, or why the rules refused it.
    pub fn create_key(
        location: &DatabaseLocation,
        key: NewKey,
    ) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::create_key(path, key),
            DatabaseLocation::Postgres(url) => postgres::keys::create(url, &key),
        }
    }

    pub fn list_keys(location: &DatabaseLocation) -> anyhow::Result<Vec<KeyListing>> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::list_keys(path),
            DatabaseLocation::Postgres(url) => postgres::keys::list(url),
        }
    }

    /// `wallet keys revoke`: the key as revoked, or `KeyNotFound` when no
    /// active key has that name.
    pub fn revoke_key(
        location: &DatabaseLocation,
        name: &KeyName,
    ) -> anyhow::Result<Result<KeyListing, KeyRejection>> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::revoke_key(path, name),
            DatabaseLocation::Postgres(url) => postgres::keys::revoke(url, name),
        }
    }

    pub fn create_asset(
        location: &DatabaseLocation,
        asset: NewAsset,
    ) -> anyhow::Result<Result<AssetOutcome, Rejection>> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::create_asset(path, asset),
            DatabaseLocation::Postgres(url) => postgres::assets::create(url, asset),
        }
    }

    /// `wallet assets rules`: as `PUT /assets/{asset}/rules`, by the
    /// command line (its changes are recorded as made by no key).
    pub fn change_rules(
        location: &DatabaseLocation,
        change: RulesChange,
    ) -> anyhow::Result<Result<RulesOutcome, Rejection>> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::change_rules(path, change),
            DatabaseLocation::Postgres(url) => postgres::rules::change(url, change),
        }
    }

    pub fn list_assets(location: &DatabaseLocation) -> anyhow::Result<Vec<AssetRow>> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::commands::list_assets(path),
            DatabaseLocation::Postgres(url) => postgres::assets::list(url),
        }
    }

    /// `wallet copy`: the whole ledger at `from` into the new or empty
    /// database `to`, in one transaction; then the copy's audit and every
    /// balance compared with the source's. `progress` hears each stage's
    /// count, and its total when known.
    pub fn copy(
        from: &DatabaseLocation,
        to: &DatabaseLocation,
        progress: &mut dyn FnMut(CopyStage, u64, Option<u64>),
    ) -> anyhow::Result<CopyOutcome> {
        super::copy::copy(from, to, progress)
    }

    /// `wallet backup` and `restore` are for SQLite files; PostgreSQL has
    /// its own tools, which know its replication and its point-in-time
    /// recovery.
    fn use_the_databases_own_tools(url: &postgres::PostgresUrl) -> anyhow::Error {
        anyhow::anyhow!(
            "{url} is a PostgreSQL database: back it up and restore it with PostgreSQL's own tools (pg_dump and pg_restore, or your provider's backups); wallet backup and restore are for SQLite files"
        )
    }

    /// `wallet backup`: a SQLite file's own consistent copy.
    /// `checked` hears how many entries of the copy's audit are checked so
    /// far (for a progress line).
    pub fn backup(
        location: &DatabaseLocation,
        dest: &Path,
        checked: &mut dyn FnMut(u64),
    ) -> anyhow::Result<BackupOutcome> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::backup::backup(path, dest, checked),
            DatabaseLocation::Postgres(url) => Err(use_the_databases_own_tools(url)),
        }
    }

    /// `wallet restore`: a SQLite file replaced by an audited backup.
    /// `checked` hears how many entries of the backup's audit are checked
    /// so far (for a progress line).
    pub fn restore(
        location: &DatabaseLocation,
        source: &Path,
        checked: &mut dyn FnMut(u64),
    ) -> anyhow::Result<RestoreOutcome> {
        match location {
            DatabaseLocation::Sqlite(path) => sqlite::restore::restore(source, path, checked),
            DatabaseLocation::Postgres(url) => Err(use_the_databases_own_tools(url)),
        }
    }
}

/// An API key as `wallet keys list` and `GET /keys` show it: everything but
/// the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListing {
    pub name: String,
    /// As stored: the canonical comma-separated list (`read,spend`).
    pub scopes: String,
    pub created_at_ms: i64,
    pub last_used_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl KeyListing {
    /// The scopes one name each, in the stored (canonical) order.
    pub fn scope_names(&self) -> impl Iterator<Item = &str> {
        self.scopes.split(',').filter(|name| !name.is_empty())
    }
}

/// A key to add: only the digest of its secret reaches the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub name: KeyName,
    pub scopes: Scopes,
    pub secret_sha256: [u8; 32],
}

/// Why a key was not created or revoked: the rules of keys, decided in the
/// write transaction (`write::create_key`, `write::revoke_key`) for the
/// server and the command line alike. The messages are the command line's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    #[error(
        "a key named {} exists already (names are never reused, even once revoked); choose another name",
        .0.as_str()
    )]
    KeyExists(KeyName),
    #[error(
        "{} keys are active already, the most allowed; revoke one first",
        API_KEYS_ACTIVE_MAX
    )]
    TooManyActiveKeys,
    #[error(
        "{} keys were created already, the most one database holds",
        API_KEYS_TOTAL_MAX
    )]
    TooManyKeysInAll,
    /// Unknown, or revoked already: a revocation is final.
    #[error("no active key is named {}", .0.as_str())]
    KeyNotFound(KeyName),
}

/// A key write's failure: refused by the rules of keys, or by storage.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Rejected(#[from] KeyRejection),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A key a server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveKeyRow {
    pub id: i64,
    pub name: String,
    pub scopes: Scopes,
    pub secret_sha256: [u8; 32],
}

/// Who may call, as of one generation of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySnapshot {
    pub generation: i64,
    /// Whether any key was ever created. Once one was, the service requires
    /// a key on every route but health, even after the last is revoked:
    /// revoking keys must never open the service.
    pub any_key_exists: bool,
    pub active: Vec<ActiveKeyRow>,
}

/// What a finished backup found when it audited the copy.
pub enum BackupOutcome {
    /// The copy passed the audit and is at its destination.
    Written(AuditReport),
    /// The copy failed the audit and was deleted; the source needs `verify`.
    FailedAudit(AuditReport),
}

/// What a restore did.
pub enum RestoreOutcome {
    /// The backup passed its audit and is now the database.
    Restored(AuditReport),
    /// The backup failed its audit; the database was not touched.
    FailedAudit(AuditReport),
}
