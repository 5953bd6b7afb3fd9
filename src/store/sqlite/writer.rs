//! SQLite's writer: the thread of the shared queue (`store::queue`) owns
//! the only read-write connection and applies every write. Handlers hand it
//! commands over the bounded queue and await the reply.
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
//! Inside the transaction, the loop shared by every backend
//! (`store::write`) reads each command's facts, lets the pure engine decide
//! and writes the plan, through `SqliteWrite`: this file's queries.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use log::error;
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::files::FileWatch;
use super::holds;
use super::keys::KeysIn;
use super::parts;
use super::rules;
use super::{latest_balance, parse_stored_kind};
use crate::clock::Clock;
use crate::domain::{
    AssetRef, AssetRules, Caller, IdempotencyKey, KeyName, LimitedKind, RulesInForce, UserOverride,
};
use crate::ledger::engine::{
    AccountFact, AccountKey, AnswerState, AssetRow, CanonicalRequest, EntryFact, HoldFact,
    NewAsset, Owner, Plan, RecordedEntry, StoredRequest,
};
use crate::ledger::parts::PartBalances;
use crate::store::queue::{
    answer_committed, answer_rolled_back, refuse_all, BatchWriter, Writer, WriterClock,
    WriterStatus,
};
use crate::store::write::{
    self, AccountIds, AssetTransaction, Done, FactSource, KeyFacts, KeyTransaction, ResolvedAsset,
    RulesChangeRow, RulesTransaction, UserAccountRow, Work, WriteTransaction,
};
use crate::store::{KeyListing, NewKey, StorageError, UserRulesRow};

/// Set once the writer finds its files replaced, deleted or truncated: the
/// process must end, and exit non-zero.
static FILES_LOST: AtomicBool = AtomicBool::new(false);

/// Whether this process's writer found its database files no longer its own.
pub fn files_lost() -> bool {
    FILES_LOST.load(Ordering::SeqCst)
}

/// Starts the writer on `conn`, which must be the only read-write
/// connection to the file. It commits up to `batch_max` queued commands
/// together; 1 commits each alone.
pub fn start(conn: Connection, batch_max: usize) -> std::io::Result<Writer> {
    start_with_clock(conn, batch_max, Clock::System)
}

/// As `start`, with the writer's time read from `clock`: what tests use
/// to move time (a hold's expiry) at will. The writer still never lets
/// its own clock go back.
pub fn start_with_clock(
    conn: Connection,
    batch_max: usize,
    clock: Clock,
) -> std::io::Result<Writer> {
    Writer::start("wallet-writer", batch_max, clock, move |status| {
        // The WAL hook is per thread: installed on this one.
        let watch = match FileWatch::start(&conn) {
            Ok(watch) => watch,
            Err(failure) => {
                error!("cannot watch the database files: {failure:#}");
                None
            }
        };
        WriterState {
            conn,
            assets: AssetCache::default(),
            watch,
            status,
            files_lost: false,
        }
    })
}

/// Everything the writer thread owns.
struct WriterState {
    conn: Connection,
    assets: AssetCache,
    watch: Option<FileWatch>,
    status: Arc<WriterStatus>,
    /// The files are no longer ours: nothing more is written or acknowledged.
    files_lost: bool,
}

impl WriterState {
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

impl BatchWriter for WriterState {
    /// Applies `batch` in one transaction and replies to every job in it.
    fn write(&mut self, batch: &mut Vec<Work>, clock: &mut WriterClock) {
        if self.files_lost {
            return refuse_all(batch, || StorageError::FilesLost);
        }
        if let Some(lost) = self
            .watch
            .as_mut()
            .and_then(|watch| watch.check_before_write().err())
        {
            self.lose_files(&lost);
            return refuse_all(batch, || StorageError::FilesLost);
        }
        let began = std::time::Instant::now();
        match apply_in_one_transaction(&self.conn, &mut self.assets, clock, batch) {
            Ok(results) => {
                if let Some(lost) = self.watch.as_mut().and_then(|watch| watch.check().err()) {
                    // Committed, but to files that are no longer ours:
                    // nobody is told it stands.
                    self.lose_files(&lost);
                    return refuse_all(batch, || StorageError::FilesLost);
                }
                answer_committed(batch, results, &self.status, began);
            }
            Err(storage_error) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                // An asset met inside the rolled-back transaction may not
                // exist.
                self.assets = AssetCache::default();
                answer_rolled_back(batch, storage_error, &self.status);
            }
        }
    }

    fn close(self) {
        if let Err(close_error) = self.conn.close() {
            error!("closing the write connection failed: {}", close_error.1);
        }
    }
}

/// Returns each piece of work's result, or the storage failure that sank
/// the batch.
fn apply_in_one_transaction(
    conn: &Connection,
    assets: &mut AssetCache,
    clock: &mut WriterClock,
    batch: &[Work],
) -> Result<Vec<Done>, StorageError> {
    let created_at_ms = clock.now_ms()?;
    // IMMEDIATE: take the write lock now; a deferred transaction that reads
    // first can hit SQLITE_BUSY when it upgrades.
    run_cached(conn, "BEGIN IMMEDIATE")?;
    let results = write::apply_batch(&mut SqliteWrite { conn, assets }, batch, created_at_ms)?;
    run_cached(conn, "COMMIT")?;
    Ok(results)
}

/// What the write loop does in SQLite's transaction: the queries below.
struct SqliteWrite<'a> {
    conn: &'a Connection,
    assets: &'a mut AssetCache,
}

impl KeyTransaction for SqliteWrite<'_> {
    fn key_facts(&mut self, name: &KeyName) -> Result<KeyFacts, StorageError> {
        KeysIn(self.conn).key_facts(name)
    }

    fn write_key(&mut self, key: &NewKey, now_ms: i64) -> Result<KeyListing, StorageError> {
        KeysIn(self.conn).write_key(key, now_ms)
    }

    fn write_revocation(
        &mut self,
        name: &KeyName,
        now_ms: i64,
    ) -> Result<Option<KeyListing>, StorageError> {
        KeysIn(self.conn).write_revocation(name, now_ms)
    }
}

impl AssetTransaction for SqliteWrite<'_> {
    fn asset_facts(&mut self, asset: &NewAsset) -> Result<(Option<AssetRow>, usize), StorageError> {
        let same_symbol = super::reads::asset_by_symbol(self.conn, asset.symbol.as_str())?;
        let count: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM asset_types")?
            .query_row([], |row| row.get(0))?;
        Ok((same_symbol, usize::try_from(count).unwrap_or(usize::MAX)))
    }

    fn write_asset(&mut self, asset: &NewAsset, now_ms: i64) -> Result<AssetRow, StorageError> {
        // Not cached yet: the batch may still roll back.
        write_asset(self.conn, asset, now_ms)
    }
}

impl RulesTransaction for SqliteWrite<'_> {
    fn asset_with_rules(&mut self, asset: &AssetRef) -> Result<Option<AssetRow>, StorageError> {
        rules::asset_with_rules(self.conn, asset)
    }

    fn user_override(&mut self, user: &str, asset_id: &str) -> Result<UserOverride, StorageError> {
        rules::user_override(self.conn, user, asset_id)
    }

    fn write_rules_change(&mut self, change: &RulesChangeRow<'_>) -> Result<(), StorageError> {
        rules::write_change(self.conn, change)
    }

    fn user_rules(&mut self, user: &str) -> Result<Vec<UserRulesRow>, StorageError> {
        rules::user_rules(self.conn, user)
    }
}

impl WriteTransaction for SqliteWrite<'_> {
    fn any_rules(&mut self) -> Result<bool, StorageError> {
        Ok(run_any_rules(self.conn)?)
    }

    fn write_plan(
        &mut self,
        plan: &Plan,
        found: &mut AccountIds,
        now_ms: i64,
    ) -> Result<(Vec<RecordedEntry>, Option<HoldFact>), StorageError> {
        write_plan(self.conn, plan, found, now_ms)
    }

    fn record_key_uses(&mut self, uses: &[(i64, i64)]) -> Result<(), StorageError> {
        Ok(super::keys::record_last_used_in(self.conn, uses)?)
    }

    fn expire_due_holds(&mut self, now_ms: i64, max: usize) -> Result<usize, StorageError> {
        Ok(holds::expire_due(self.conn, now_ms, max)?)
    }
}

/// Whether any rules on value are stored: two b-tree roots read.
fn run_any_rules(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM asset_rules) OR EXISTS (SELECT 1 FROM user_rules)",
    )?
    .query_row([], |row| row.get(0))
}

/// Runs a statement without parameters through the statement cache: the
/// writer runs these for every command, and parsing them each time showed in
/// the profile.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

impl FactSource for SqliteWrite<'_> {
    fn find_request(
        &mut self,
        caller: Caller,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredRequest>, StorageError> {
        find_request(self.conn, caller, key)
    }

    fn resolve_asset(&mut self, asset: &AssetRef) -> Result<Option<ResolvedAsset>, StorageError> {
        Ok(self.assets.resolve(self.conn, asset)?.cloned())
    }

    fn find_entry(&mut self, id: &Uuid) -> Result<Option<(EntryFact, i64, i64)>, StorageError> {
        find_entry(self.conn, &id.to_string())
    }

    fn find_hold(&mut self, id: &Uuid) -> Result<Option<(HoldFact, i64)>, StorageError> {
        Ok(holds::by_id(self.conn, &id.to_string())?)
    }

    fn find_user_account(
        &mut self,
        user: &str,
        asset_id: &str,
    ) -> Result<Option<UserAccountRow>, StorageError> {
        Ok(find_user_account(self.conn, user, asset_id)?)
    }

    /// With `known`, the common spend reads its account in one statement.
    fn account_fact(
        &mut self,
        key: &AccountKey,
        account_id: i64,
        known: Option<UserAccountRow>,
        now_ms: i64,
    ) -> Result<AccountFact, StorageError> {
        let conn = self.conn;
        let is_user = matches!(key.owner, Owner::User(_));
        let (balance, held, active, due, paid, held_paid) = match known {
            Some(row) => {
                let due = if row.active_holds > 0 {
                    holds::due_in_account(conn, account_id, now_ms)?
                } else {
                    Vec::new()
                };
                (
                    row.balance,
                    row.held,
                    row.active_holds,
                    due,
                    row.paid,
                    row.held_paid,
                )
            }
            None if is_user => {
                let (held, active, held_paid, due) = holds::account_held(conn, account_id, now_ms)?;
                let (balance, paid) = parts::latest_balance_and_paid(conn, account_id)?;
                (balance, held, active, due, paid, held_paid)
            }
            None => (latest_balance(conn, account_id)?, 0, 0, Vec::new(), 0, 0),
        };
        let (parts, held_parts) = if is_user {
            (
                PartBalances {
                    paid,
                    free: balance - paid,
                    ..PartBalances::default()
                },
                PartBalances {
                    paid: held_paid,
                    free: held - held_paid,
                    ..PartBalances::default()
                },
            )
        } else {
            Default::default()
        };
        Ok(AccountFact {
            key: key.clone(),
            balance,
            held,
            active_holds: active,
            due,
            parts,
            held_parts,
        })
    }

    fn user_has_wallet(&mut self, user: &str) -> Result<bool, StorageError> {
        Ok(user_has_wallet(self.conn, user)?)
    }

    fn rules_in_force(&mut self, user: &str, asset_id: &str) -> Result<RulesInForce, StorageError> {
        rules::rules_in_force(self.conn, user, asset_id)
    }

    fn window_used(
        &mut self,
        account_id: i64,
        kind: LimitedKind,
        since_ms: i64,
    ) -> Result<i64, StorageError> {
        rules::window_used(self.conn, account_id, kind, since_ms)
    }

    fn window_frees_at(
        &mut self,
        account_id: i64,
        kind: LimitedKind,
        since_ms: i64,
        must_leave: i64,
    ) -> Result<Option<i64>, StorageError> {
        rules::window_frees_at(self.conn, account_id, kind, since_ms, must_leave)
    }
}

/// Writes a decided plan, in the order `Plan` gives: a hold is closed or
/// made before the entries, so the schema's checks on held money see the
/// hold's release first. Only storage can fail here. Returns the entries
/// and the hold as written.
fn write_plan(
    conn: &Connection,
    plan: &Plan,
    account_ids: &mut BTreeMap<AccountKey, i64>,
    created_at_ms: i64,
) -> Result<(Vec<RecordedEntry>, Option<HoldFact>), StorageError> {
    for seq in &plan.expire {
        holds::expire(conn, *seq)?;
    }
    for key in &plan.new_accounts {
        let Owner::User(user) = &key.owner else {
            return Err(StorageError::Backend("the engine opened a Treasury".into()));
        };
        let id = open_user_account(conn, user, &key.asset_id, created_at_ms)?;
        account_ids.insert(key.clone(), id);
    }
    conn.prepare_cached(
        "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at,
                                          hold_seq, answer_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        plan.caller.stored_id(),
        plan.key.as_str(),
        plan.request.to_json(),
        plan.entries.len() as i64,
        created_at_ms,
        plan.close_hold.as_ref().map(|hold| hold.seq),
        plan.state.to_json(),
    ])?;
    let request_id = conn.last_insert_rowid();
    let mut hold = None;
    if let Some(closed) = &plan.close_hold {
        let changed = conn
            .prepare_cached(
                "UPDATE holds SET status = ?2, captured_amount = ?3, closed_at = ?4
                  WHERE seq = ?1 AND status = 'HELD'",
            )?
            .execute(params![
                closed.seq,
                closed.status.as_str(),
                closed.captured_amount,
                created_at_ms
            ])?;
        if changed != 1 {
            return Err(StorageError::Backend(
                "the hold the engine closed was not HELD".into(),
            ));
        }
        hold = Some(closed.clone());
    }
    if let Some(new) = &plan.new_hold {
        let account = account_ids.get(&new.account).copied().ok_or_else(|| {
            StorageError::Backend(format!("no account id for {:?}", new.account).into())
        })?;
        let id = write::entry_id_at(created_at_ms);
        conn.prepare_cached(
            "INSERT INTO holds (id, account_id, user_id, asset_type_id, amount, status, request_id,
                                reference_id, note, metadata, expires_at, created_at, parts)
             VALUES (?1, ?2, ?3, ?4, ?5, 'HELD', ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            id,
            account,
            new.user,
            new.account.asset_id,
            new.amount,
            request_id,
            new.reference_id,
            new.note,
            new.metadata.as_ref().map(|m| m.to_json()),
            new.expires_at_ms,
            created_at_ms,
            parts::encode(&new.parts),
        ])?;
        hold = Some(new.recorded(conn.last_insert_rowid(), id, &plan.key, created_at_ms));
    }
    let mut insert_entry = conn.prepare_cached(
        "INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id, credit_account_id,
                                     amount, request_id, reference_id, note, metadata,
                                     reverses_seq, reversed_after, hold_seq, created_at, parts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?;
    let mut insert_posting = conn.prepare_cached(rules::INSERT_POSTING)?;
    let account_id = |key: &AccountKey| {
        account_ids
            .get(key)
            .copied()
            .ok_or_else(|| StorageError::Backend(format!("no account id for {key:?}").into()))
    };
    let mut recorded = Vec::with_capacity(plan.entries.len());
    for entry in &plan.entries {
        let debit = account_id(&entry.debit)?;
        let credit = account_id(&entry.credit)?;
        let entry_id = write::entry_id_at(created_at_ms);
        insert_entry.execute(params![
            entry_id,
            entry.kind.as_str(),
            entry.asset_id,
            debit,
            credit,
            entry.amount,
            request_id,
            entry.reference_id,
            entry.note,
            entry.metadata.as_ref().map(|m| m.to_json()),
            entry.reverses.as_ref().map(|r| r.seq),
            entry.reverses.as_ref().map(|r| r.reversed_after),
            entry.hold.as_ref().map(|(seq, _)| *seq),
            created_at_ms,
            parts::encode(&entry.parts),
        ])?;
        let seq = conn.last_insert_rowid();
        let paid = parts::paid_of(&entry.parts);
        // A user's posting carries the running totals the caps read.
        for (key, id, delta, balance_after, credited, paid_delta) in [
            (
                &entry.debit,
                debit,
                -entry.amount,
                entry.debit_balance_after,
                false,
                -paid,
            ),
            (
                &entry.credit,
                credit,
                entry.amount,
                entry.credit_balance_after,
                true,
                paid,
            ),
        ] {
            insert_posting.execute(params![
                id,
                seq,
                delta,
                balance_after,
                rules::counted_kind(entry.kind, credited, matches!(key.owner, Owner::User(_))),
                entry.amount,
                paid_delta
            ])?;
        }
        let entry = entry.recorded(seq, entry_id, &plan.key, created_at_ms);
        if let Some(hold) = hold.as_mut().filter(|_| entry.hold_id.is_some()) {
            hold.captured_by = Some(entry.id.clone());
        }
        recorded.push(entry);
    }
    Ok((recorded, hold))
}

/// Adds an asset the engine let through, and its Treasury.
fn write_asset(
    conn: &Connection,
    asset: &NewAsset,
    created_at_ms: i64,
) -> Result<AssetRow, StorageError> {
    let id = Uuid::new_v4().to_string();
    conn.prepare_cached(
        "INSERT INTO asset_types (id, symbol, name, decimals, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        id,
        asset.symbol.as_str(),
        asset.name.as_str(),
        asset.decimals.get(),
        created_at_ms
    ])?;
    conn.prepare_cached(
        "INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at)
         VALUES ('SYSTEM', NULL, ?1, ?2)",
    )?
    .execute(params![id, created_at_ms])?;
    Ok(AssetRow {
        id,
        symbol: asset.symbol.as_str().to_owned(),
        name: asset.name.as_str().to_owned(),
        decimals: asset.decimals.get(),
        created_at_ms,
        rules: AssetRules::default(),
    })
}

/// What this caller's key already names, with the entries it made: keys
/// are unique per caller, so another caller's record is never found.
fn find_request(
    conn: &Connection,
    caller: Caller,
    key: &IdempotencyKey,
) -> Result<Option<StoredRequest>, StorageError> {
    type Found = (i64, String, Option<i64>, Option<String>);
    let found: Option<Found> = conn
        .prepare_cached(
            "SELECT id, request, hold_seq, answer_state FROM idempotency_records
              WHERE caller_id = ?1 AND key = ?2",
        )?
        .query_row(params![caller.stored_id(), key.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let Some((request_id, request, hold_seq, state)) = found else {
        return Ok(None);
    };
    let request = CanonicalRequest::from_json(request);
    let entries = super::reads::entries_of_request(conn, request_id, key.as_str())?;
    // A capture or void names its hold; a hold's creation is found by the
    // hold that names it.
    let hold = match hold_seq {
        Some(seq) => holds::by_seq(conn, seq)?,
        None if state.is_some() => holds::made_by_request(conn, request_id)?,
        None => None,
    };
    Ok(Some(StoredRequest {
        request,
        entries,
        hold,
        state: AnswerState::from_json(state.as_deref()),
    }))
}

/// An entry to reverse, by id, with its two accounts' ids.
fn find_entry(conn: &Connection, id: &str) -> Result<Option<(EntryFact, i64, i64)>, StorageError> {
    let owner = |user: Option<String>, asset_id: &str| match user {
        Some(user) => AccountKey::user(&user, asset_id),
        None => AccountKey::treasury(asset_id),
    };
    Ok(conn
        .prepare_cached(
            "SELECT e.seq, e.id, e.kind, e.asset_type_id, t.symbol, e.amount,
                    e.debit_account_id, d.owner_id, e.credit_account_id, c.owner_id,
                    coalesce((SELECT r.reversed_after FROM ledger_entries r
                               WHERE r.reverses_seq = e.seq ORDER BY r.seq DESC LIMIT 1), 0),
                    e.parts
               FROM ledger_entries e
               JOIN asset_types t ON t.id = e.asset_type_id
               JOIN accounts d ON d.id = e.debit_account_id
               JOIN accounts c ON c.id = e.credit_account_id
              WHERE e.id = ?1",
        )?
        .query_row([id], |row| {
            let asset_id: String = row.get(3)?;
            let kind = parse_stored_kind(&row.get::<_, String>(2)?)?;
            Ok((
                EntryFact {
                    seq: row.get(0)?,
                    id: row.get(1)?,
                    kind,
                    asset_symbol: row.get(4)?,
                    amount: row.get(5)?,
                    debit: owner(row.get(7)?, &asset_id),
                    credit: owner(row.get(9)?, &asset_id),
                    reversed: row.get(10)?,
                    parts: parts::read_parts(row.get(11)?)?,
                    asset_id,
                },
                row.get(6)?,
                row.get(8)?,
            ))
        })
        .optional()?)
}

/// The asset catalogue as the writer has met it. An asset type and its
/// Treasury never change once created, so an entry here never goes stale
/// (the cache is dropped when a batch rolls back); a name not met yet is
/// looked up (an asset added while serving is found then).
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
            // Bounded: at most `ASSET_TYPES_MAX` assets exist, and an
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

/// One statement for all: the account, its latest posting by one descent
/// of the postings primary key, and its hold totals.
fn find_user_account(
    conn: &Connection,
    user: &str,
    asset_id: &str,
) -> rusqlite::Result<Option<UserAccountRow>> {
    conn.prepare_cached(
        "SELECT a.id,
                coalesce((SELECT p.balance_after FROM postings p WHERE p.account_id = a.id
                           ORDER BY p.entry_seq DESC LIMIT 1), 0),
                coalesce(h.held, 0), coalesce(h.active, 0),
                coalesce((SELECT p.paid_after FROM postings p WHERE p.account_id = a.id
                           ORDER BY p.entry_seq DESC LIMIT 1), 0),
                coalesce(h.held_paid, 0)
           FROM accounts a
           LEFT JOIN account_holds h ON h.account_id = a.id
          WHERE a.owner_type = 'USER' AND a.owner_id = ?1 AND a.asset_type_id = ?2",
    )?
    .query_row([user, asset_id], |row| {
        Ok(UserAccountRow {
            id: row.get(0)?,
            balance: row.get(1)?,
            held: row.get(2)?,
            active_holds: row.get(3)?,
            paid: row.get(4)?,
            held_paid: row.get(5)?,
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
    use crate::domain::{Amount, EntryKind, UserId};
    use crate::ledger::engine::{
        Answer, Command, CreditKind, EntryDetails, Operation, Outcome, Route,
    };
    use crate::ledger::Rejection;
    use crate::limits::{WRITE_BATCH_MAX, WRITE_QUEUE_DEPTH_MAX};
    use crate::store::sqlite::{migrate, open, seed, verify};
    use tokio::sync::oneshot;

    fn command(kind: EntryKind, user: &str, amount: u64, key: &str) -> Command {
        let user = UserId::parse(user).unwrap();
        let asset = AssetRef::parse("GOLD").unwrap();
        let amount = Amount::parse(amount).unwrap();
        let details = EntryDetails::default();
        let (route, operation) = match kind {
            EntryKind::Spend => (
                Route::Spend,
                Operation::Spend {
                    user,
                    asset,
                    amount,
                    details,
                },
            ),
            EntryKind::Bonus => (
                Route::Bonus,
                Operation::Credit {
                    kind: CreditKind::Bonus,
                    user,
                    asset,
                    amount,
                    details,
                },
            ),
            _ => (
                Route::Topup,
                Operation::Credit {
                    kind: CreditKind::Topup,
                    user,
                    asset,
                    amount,
                    details,
                },
            ),
        };
        Command {
            caller: crate::domain::Caller::Anonymous,
            key: IdempotencyKey::parse(key).unwrap(),
            route,
            operations: vec![operation],
        }
    }

    fn balance_of(outcome: &Outcome) -> i64 {
        match outcome {
            Outcome::Created(Answer::Entry { balance, .. })
            | Outcome::Replayed(Answer::Entry { balance, .. }) => *balance,
            other => panic!("an entry answer, not {other:?}"),
        }
    }

    fn id_of(outcome: &Outcome) -> String {
        match outcome {
            Outcome::Created(Answer::Entry { transaction, .. })
            | Outcome::Replayed(Answer::Entry { transaction, .. }) => transaction.id.clone(),
            other => panic!("an entry answer, not {other:?}"),
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
        let jobs: Vec<Work> = commands
            .into_iter()
            .map(|command| {
                let (reply, _receiver) = oneshot::channel();
                Work::Command { command, reply }
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
        let results: Vec<Result<Outcome, Rejection>> = results
            .into_iter()
            .map(|done| match done {
                Done::Command(result) => result,
                _ => panic!("a command's result"),
            })
            .collect();

        let created = |result: &Result<Outcome, Rejection>| match result {
            Ok(outcome @ Outcome::Created(_)) => outcome.clone(),
            other => panic!("expected a new entry, got {other:?}"),
        };
        let first_id = id_of(&created(&results[0]));
        assert_eq!(results[1], Err(Rejection::WalletNotFound));
        assert_eq!(
            results[2],
            Err(Rejection::InsufficientFunds {
                balance: 50,
                available: 50,
                requested: 51
            })
        );
        assert_eq!(balance_of(&created(&results[3])), 30);
        match &results[4] {
            Ok(outcome @ Outcome::Replayed(_)) => {
                assert_eq!(id_of(outcome), first_id);
                assert_eq!(
                    balance_of(outcome),
                    50,
                    "a replay answers the balance as it was then"
                );
            }
            other => panic!("expected a replay, got {other:?}"),
        }
        assert_eq!(
            results[5],
            Err(Rejection::IdempotencyKeyReused {
                differing: vec!["amount".into()]
            })
        );
        created(&results[6]);
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

    /// Goal: key writes in one batch see each other, as commands do: the
    /// second key of a name is refused, and a key revoked in the batch is
    /// gone from the keys loaded after it.
    #[test]
    fn key_writes_in_one_batch_see_each_other() {
        let (_dir, conn) = empty_ledger();
        let game = crate::domain::KeyName::parse("game").unwrap();
        let new_key = |scopes: &str, digest_byte: u8| NewKey {
            name: game.clone(),
            scopes: crate::domain::Scopes::parse(scopes).unwrap(),
            secret_sha256: [digest_byte; 32],
        };
        let jobs = vec![
            Work::CreateKey {
                key: new_key("read", 1),
                reply: oneshot::channel().0,
            },
            Work::CreateKey {
                key: new_key("admin", 2),
                reply: oneshot::channel().0,
            },
            Work::RevokeKey {
                name: game.clone(),
                reply: oneshot::channel().0,
            },
            Work::RevokeKey {
                name: game.clone(),
                reply: oneshot::channel().0,
            },
        ];
        let results = apply_in_one_transaction(
            &conn,
            &mut AssetCache::default(),
            &mut WriterClock::default(),
            &jobs,
        )
        .unwrap();
        let results: Vec<_> = results
            .into_iter()
            .map(|done| match done {
                Done::Key(result) => result,
                _ => panic!("a key's result"),
            })
            .collect();
        let created = results[0].as_ref().unwrap();
        assert_eq!(
            (created.scopes.as_str(), created.revoked_at_ms),
            ("read", None)
        );
        assert_eq!(
            results[1],
            Err(crate::store::KeyRejection::KeyExists(game.clone()))
        );
        let revoked = results[2].as_ref().unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(created.created_at_ms));
        assert_eq!(
            results[3],
            Err(crate::store::KeyRejection::KeyNotFound(game))
        );
        let mut reader = conn;
        let snapshot = super::super::keys::load(&mut reader).unwrap();
        assert!(snapshot.any_key_exists && snapshot.active.is_empty());
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
        assert_eq!(write::entry_id_at(2_000).len(), 36);
        assert!(
            write::entry_id_at(1_000) < write::entry_id_at(2_000),
            "ids sort by time"
        );
    }

    #[test]
    fn a_full_queue_answers_overloaded_at_once_and_loses_nothing_it_accepted() {
        let (dir, conn) = empty_ledger();
        // Another connection holds the write lock, so the writer stalls in
        // BEGIN IMMEDIATE (within busy_timeout) and the queue fills up.
        let blocker = open::open_read_write(&dir.path().join("wallet.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writer = start(conn, WRITE_BATCH_MAX).unwrap();
        let handle = writer.handle();
        let mut accepted = Vec::new();
        let started = std::time::Instant::now();
        let overloaded_at = loop {
            let key = format!("k{}", accepted.len());
            let command = command(EntryKind::Topup, "alice", 1, &key);
            match handle.submit(|reply| Work::Command { command, reply }) {
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
            assert!(matches!(outcome, Ok(Outcome::Created(_))), "{outcome:?}");
        }
        writer.stop();
        let conn = open::open_read_only(&dir.path().join("wallet.db")).unwrap();
        assert_eq!(entries(&conn), overloaded_at as i64);
    }
}
