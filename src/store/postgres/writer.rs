//! PostgreSQL's writer: the thread of the shared queue (`store::queue`) on
//! one connection of its own. Each instance keeps group commit: its queued
//! work goes into one transaction, which the shared loop fills
//! (`store::write::apply_batch`) through `PgWrite`, this file's queries.
//!
//! Several instances write to one database at once. What keeps them apart:
//!
//! * Before it reads any fact, a batch locks every user its commands touch,
//!   once, in one order (the users' hashes, ascending), with
//!   transaction-scoped advisory locks. A user's writes therefore never
//!   overlap: the facts read after the lock are the newest, a balance is
//!   checked and moved as one step, and a user's entries are numbered in
//!   commit order (what history pages by). Locks taken in one order cannot
//!   deadlock with one another.
//! * The Treasury is never locked and keeps no running balance (see the
//!   schema), so no row is locked by every write.
//! * A key used at once on two instances: both insert its idempotency
//!   record; the second waits for the first to commit, fails on the unique
//!   key, and its batch is retried, now finding the first's record (a
//!   replay). A deadlock or a serialization failure is retried the same
//!   way, up to `PG_BATCH_ATTEMPTS` times, so no caller sees one.
//! * Expiring holds takes a user's lock only if it is free
//!   (`pg_try_advisory_xact_lock`), so the sweep never waits and never
//!   deadlocks; a hold it skips is expired by the next sweep, or by the
//!   user's own next write.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use log::{error, warn};
use postgres::error::SqlState;
use postgres::{Client, Row, Statement, Transaction};
use uuid::Uuid;

use super::assets::PgAssets;
use super::keys::PgKeys;
use super::parts;
use super::reads;
use super::rules;
use super::PostgresUrl;
use crate::domain::{
    AssetRef, Caller, IdempotencyKey, KeyName, LimitedKind, RulesInForce, UserOverride,
};
use crate::ledger::engine::{
    self, AccountFact, AccountKey, AnswerState, AssetRow, CanonicalRequest, DueHold, EntryFact,
    HoldFact, NewAsset, Owner, Plan, RecordedEntry, StoredRequest,
};
use crate::ledger::parts::PartBalances;
use crate::store::queue::{
    answer_committed, answer_rolled_back, BatchWriter, WriterClock, WriterStatus,
};
use crate::store::write::{
    self, AccountIds, AssetTransaction, Done, FactSource, KeyFacts, KeyTransaction, ResolvedAsset,
    RulesChangeRow, RulesTransaction, UserAccountRow, Work, WriteTransaction,
};
use crate::store::{KeyListing, NewKey, StorageError, UserRulesRow};

/// How many times a batch is tried when PostgreSQL aborts it for a
/// deadlock, a serialization failure or a key another instance wrote
/// first.
const PG_BATCH_ATTEMPTS: u32 = 8;

/// The advisory lock space of users' locks: `pg_advisory_xact_lock(space,
/// hashtext(user))`. The feed's and the catalogue's locks are in the
/// single-number space, which never meets this one.
pub(super) const USER_LOCK_SPACE: i32 = 7;

/// What the writer thread owns.
pub(super) struct PgWriter {
    url: PostgresUrl,
    /// Connected on first use, and again after the database went away.
    client: Option<Client>,
    assets: HashMap<String, ResolvedAsset>,
    /// The writer's statements, prepared once on its connection: a query
    /// sent as text costs two round trips (prepare, then run), a prepared
    /// one costs one.
    statements: HashMap<String, Statement>,
    status: Arc<WriterStatus>,
}

impl PgWriter {
    pub fn new(url: PostgresUrl, status: Arc<WriterStatus>) -> PgWriter {
        PgWriter {
            url,
            client: None,
            assets: HashMap::new(),
            statements: HashMap::new(),
            status,
        }
    }

    fn client(&mut self) -> Result<&mut Client, StorageError> {
        if self.client.is_none() {
            // Statements belong to the connection they were prepared on.
            self.statements.clear();
            let client = self
                .url
                .serving_config()
                .connect(postgres::NoTls)
                .map_err(|error| StorageError::Unavailable(Box::new(error)))?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StorageError::Backend("no connection".into()))
    }

    /// One attempt: the whole batch in one transaction, committed.
    fn attempt(&mut self, batch: &[Work], now_ms: i64) -> Result<Vec<Done>, StorageError> {
        let mut assets = std::mem::take(&mut self.assets);
        let result = (|| {
            self.client()?;
            let client = self
                .client
                .as_mut()
                .ok_or_else(|| StorageError::Backend("no connection".into()))?;
            let mut tx = client.transaction()?;
            let rules_stored = lock_users(&mut tx, batch)?;
            let results = write::apply_batch(
                &mut PgWrite {
                    tx: &mut tx,
                    assets: &mut assets,
                    statements: &mut self.statements,
                    rules_stored,
                },
                batch,
                now_ms,
            )?;
            tx.commit()?;
            Ok(results)
        })();
        // An asset met inside a rolled-back transaction may not exist.
        if result.is_ok() {
            self.assets = assets;
        }
        result
    }
}

impl BatchWriter for PgWriter {
    fn write(&mut self, batch: &mut Vec<Work>, clock: &mut WriterClock) {
        let began = std::time::Instant::now();
        let now_ms = match clock.now_ms() {
            Ok(now_ms) => now_ms,
            Err(error) => return answer_rolled_back(batch, error, &self.status),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(batch, now_ms) {
                Ok(results) => return answer_committed(batch, results, &self.status, began),
                Err(error) if attempts < PG_BATCH_ATTEMPTS && worth_retrying(&error) => {
                    // Another instance got there first: wait a little
                    // (more each time, never in step with it) and redo it.
                    let jitter = u64::from(Uuid::new_v4().as_bytes()[0] % 8);
                    std::thread::sleep(std::time::Duration::from_millis(
                        u64::from(attempts) * 2 + jitter,
                    ));
                }
                Err(error) => {
                    if self.client.as_ref().is_none_or(Client::is_closed) {
                        // Reconnect for the next batch.
                        self.client = None;
                    }
                    if attempts > 1 {
                        warn!("a write batch failed after {attempts} attempts");
                    }
                    return answer_rolled_back(batch, error, &self.status);
                }
            }
        }
    }

    fn close(self) {
        if let Some(client) = self.client {
            if let Err(failure) = client.close() {
                error!("closing the write connection failed: {failure}");
            }
        }
    }
}

/// Whether PostgreSQL aborted the batch for a reason another attempt
/// resolves: a deadlock, a serialization failure, or a unique key another
/// instance wrote first (a record of the same idempotency key, an account,
/// an asset or a key of the same name).
fn worth_retrying(error: &StorageError) -> bool {
    let cause = match error {
        StorageError::Backend(cause) | StorageError::Unavailable(cause) => cause,
        _ => return false,
    };
    let Some(error) = cause.downcast_ref::<postgres::Error>() else {
        return false;
    };
    matches!(
        error.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED)
            | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            | Some(&SqlState::UNIQUE_VIOLATION)
    )
}

/// Locks every user the batch's commands touch, once each, in one order,
/// and says in the same round trip whether any rules on value are stored
/// (None when no user was locked, so nothing was asked).
fn lock_users(tx: &mut Transaction, batch: &[Work]) -> Result<Option<bool>, StorageError> {
    let mut users: Vec<String> = Vec::new();
    let mut entries: Vec<String> = Vec::new();
    let mut holds: Vec<String> = Vec::new();
    for work in batch {
        let Work::Command { command, .. } = work else {
            continue;
        };
        let needs = engine::needs(command);
        users.extend(
            needs
                .user_accounts
                .iter()
                .map(|(user, _)| user.as_str().to_owned()),
        );
        users.extend(needs.wallets.iter().map(|user| user.as_str().to_owned()));
        entries.extend(needs.entries.iter().map(Uuid::to_string));
        for (hold, to) in &needs.holds {
            holds.push(hold.to_string());
            users.extend(to.iter().map(|to| to.as_str().to_owned()));
        }
    }
    // Whose entries and holds are named: an entry's and a hold's accounts
    // never change, so reading them before the locks is safe.
    if !entries.is_empty() {
        for row in tx.query(
            "SELECT d.owner_id, c.owner_id FROM ledger_entries e
               JOIN accounts d ON d.id = e.debit_account_id
               JOIN accounts c ON c.id = e.credit_account_id
              WHERE e.id = ANY($1::text[]::uuid[])",
            &[&entries],
        )? {
            users.extend(row.get::<_, Option<String>>(0));
            users.extend(row.get::<_, Option<String>>(1));
        }
    }
    if !holds.is_empty() {
        for row in tx.query(
            "SELECT user_id FROM holds WHERE id = ANY($1::text[]::uuid[])",
            &[&holds],
        )? {
            users.push(row.get(0));
        }
    }
    if users.is_empty() {
        return Ok(None);
    }
    users.sort_unstable();
    users.dedup();
    let row = tx.query_one(
        "SELECT (SELECT count(*) FROM
                   (SELECT pg_advisory_xact_lock($1, k)
                      FROM (SELECT DISTINCT hashtext(u) AS k FROM unnest($2::text[]) AS u
                             ORDER BY k) AS s) AS locked),
                EXISTS (SELECT 1 FROM asset_rules) OR EXISTS (SELECT 1 FROM user_rules)",
        &[&USER_LOCK_SPACE, &users],
    )?;
    Ok(Some(row.get(1)))
}

/// What the shared write loop does in PostgreSQL's transaction.
struct PgWrite<'a, 't> {
    tx: &'a mut Transaction<'t>,
    assets: &'a mut HashMap<String, ResolvedAsset>,
    statements: &'a mut HashMap<String, Statement>,
    /// Whether rules are stored, when the users' lock asked already.
    rules_stored: Option<bool>,
}

impl PgWrite<'_, '_> {
    /// `sql` prepared on this connection, once.
    fn statement(&mut self, sql: &str) -> Result<Statement, StorageError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(sql)?;
        // Bounded: the statements are this file's, a few dozen texts.
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StorageError> {
        let statement = self.statement(sql)?;
        Ok(self.tx.query(&statement, params)?)
    }

    fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Row, StorageError> {
        let statement = self.statement(sql)?;
        Ok(self.tx.query_one(&statement, params)?)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<Row>, StorageError> {
        let statement = self.statement(sql)?;
        Ok(self.tx.query_opt(&statement, params)?)
    }

    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, StorageError> {
        let statement = self.statement(sql)?;
        Ok(self.tx.execute(&statement, params)?)
    }
}

impl KeyTransaction for PgWrite<'_, '_> {
    fn key_facts(&mut self, name: &KeyName) -> Result<KeyFacts, StorageError> {
        // Two instances adding keys at once take turns, so both cannot
        // pass the same count (the command line takes the same lock).
        self.tx
            .execute("SELECT pg_advisory_xact_lock(hashtext('wallet.keys'))", &[])?;
        PgKeys(self.tx).key_facts(name)
    }

    fn write_key(&mut self, key: &NewKey, now_ms: i64) -> Result<KeyListing, StorageError> {
        PgKeys(self.tx).write_key(key, now_ms)
    }

    fn write_revocation(
        &mut self,
        name: &KeyName,
        now_ms: i64,
    ) -> Result<Option<KeyListing>, StorageError> {
        PgKeys(self.tx).write_revocation(name, now_ms)
    }
}

impl AssetTransaction for PgWrite<'_, '_> {
    fn asset_facts(&mut self, asset: &NewAsset) -> Result<(Option<AssetRow>, usize), StorageError> {
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtext('wallet.asset_types'))",
            &[],
        )?;
        PgAssets(self.tx).asset_facts(asset)
    }

    fn write_asset(&mut self, asset: &NewAsset, now_ms: i64) -> Result<AssetRow, StorageError> {
        PgAssets(self.tx).write_asset(asset, now_ms)
    }
}

impl FactSource for PgWrite<'_, '_> {
    fn find_request(
        &mut self,
        caller: Caller,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredRequest>, StorageError> {
        let Some(row) = self.query_opt(
            "SELECT id, request, hold_seq, answer_state FROM idempotency_records
              WHERE caller_id = $1 AND key = $2",
            &[&caller.stored_id(), &key.as_str()],
        )?
        else {
            return Ok(None);
        };
        let (request_id, request, hold_seq, state): (i64, String, Option<i64>, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let entries = reads::entries_of_request(self.tx, request_id, key.as_str())?;
        // A capture or void names its hold; a hold's creation is found by
        // the hold that names it.
        let hold = match hold_seq {
            Some(seq) => reads::hold_where(self.tx, "h.seq = $1", &seq)?.map(|(hold, _)| hold),
            None if state.is_some() => {
                reads::hold_where(self.tx, "h.request_id = $1", &request_id)?.map(|(hold, _)| hold)
            }
            None => None,
        };
        Ok(Some(StoredRequest {
            request: CanonicalRequest::from_json(request),
            entries,
            hold,
            state: AnswerState::from_json(state.as_deref()),
        }))
    }

    fn resolve_asset(&mut self, asset: &AssetRef) -> Result<Option<ResolvedAsset>, StorageError> {
        let name = match asset {
            AssetRef::Symbol(symbol) => symbol.clone(),
            AssetRef::Id(id) => id.to_string(),
        };
        if let Some(known) = self.assets.get(&name) {
            return Ok(Some(known.clone()));
        }
        let by = match asset {
            AssetRef::Symbol(_) => "t.symbol = $1",
            AssetRef::Id(_) => "t.id = $1::text::uuid",
        };
        let Some(row) = self.query_opt(
            &format!(
                "SELECT t.id::text, t.symbol, a.id FROM asset_types t
                   JOIN accounts a ON a.asset_type_id = t.id AND a.owner_type = 'SYSTEM'
                  WHERE {by}"
            ),
            &[&name],
        )?
        else {
            return Ok(None);
        };
        let found = ResolvedAsset {
            id: row.get(0),
            symbol: row.get(1),
            treasury_account: row.get(2),
        };
        // Bounded: at most `ASSET_TYPES_MAX` assets, each under two names;
        // an unknown name is never kept.
        self.assets.insert(found.id.clone(), found.clone());
        self.assets.insert(found.symbol.clone(), found.clone());
        Ok(Some(found))
    }

    fn find_entry(&mut self, id: &Uuid) -> Result<Option<(EntryFact, i64, i64)>, StorageError> {
        let Some(row) = self.query_opt(
            "SELECT e.seq, e.id::text, e.kind, e.asset_type_id::text, t.symbol, e.amount,
                    e.debit_account_id, d.owner_id, e.credit_account_id, c.owner_id,
                    coalesce((SELECT max(r.reversed_after) FROM ledger_entries r
                               WHERE r.reverses_seq = e.seq), 0),
                    e.parts
               FROM ledger_entries e
               JOIN asset_types t ON t.id = e.asset_type_id
               JOIN accounts d ON d.id = e.debit_account_id
               JOIN accounts c ON c.id = e.credit_account_id
              WHERE e.id = $1::text::uuid",
            &[&id.to_string()],
        )?
        else {
            return Ok(None);
        };
        let asset_id: String = row.get(3);
        let owner = |user: Option<String>| match user {
            Some(user) => AccountKey::user(&user, &asset_id),
            None => AccountKey::treasury(&asset_id),
        };
        let entry = EntryFact {
            parts: parts::read(row.get(11))?,
            seq: row.get(0),
            id: row.get(1),
            kind: reads::stored_kind(&row.get::<_, String>(2))?,
            asset_symbol: row.get(4),
            amount: row.get(5),
            debit: owner(row.get(7)),
            credit: owner(row.get(9)),
            reversed: row.get(10),
            asset_id: asset_id.clone(),
        };
        Ok(Some((entry, row.get(6), row.get(8))))
    }

    fn find_hold(&mut self, id: &Uuid) -> Result<Option<(HoldFact, i64)>, StorageError> {
        reads::hold_where(self.tx, "h.id = $1::text::uuid", &id.to_string())
    }

    fn find_user_account(
        &mut self,
        user: &str,
        asset_id: &str,
    ) -> Result<Option<UserAccountRow>, StorageError> {
        Ok(self
            .query_opt(
                "SELECT id, balance, held, active_holds, paid, held_paid FROM accounts
                  WHERE owner_type = 'USER' AND owner_id = $1 AND asset_type_id = $2::text::uuid",
                &[&user, &asset_id],
            )?
            .map(|row| account_row(&row)))
    }

    fn account_fact(
        &mut self,
        key: &AccountKey,
        account_id: i64,
        known: Option<UserAccountRow>,
        now_ms: i64,
    ) -> Result<AccountFact, StorageError> {
        if key.owner == Owner::Treasury {
            // The Treasury keeps no running balance here: the engine only
            // keeps it within i64, and a sum over the asset's totals never
            // overflows (numeric).
            return Ok(AccountFact::new(key.clone(), 0));
        }
        let row = match known {
            Some(row) => row,
            None => account_row(&self.query_one(
                "SELECT id, balance, held, active_holds, paid, held_paid FROM accounts
                  WHERE id = $1",
                &[&account_id],
            )?),
        };
        let due = if row.active_holds > 0 {
            due_in_account(self, account_id, now_ms)?
        } else {
            Vec::new()
        };
        // Free is the rest of the balance, and of what is held.
        Ok(AccountFact {
            key: key.clone(),
            balance: row.balance,
            held: row.held,
            active_holds: row.active_holds,
            due,
            parts: PartBalances {
                paid: row.paid,
                free: row.balance - row.paid,
                ..PartBalances::default()
            },
            held_parts: PartBalances {
                paid: row.held_paid,
                free: row.held - row.held_paid,
                ..PartBalances::default()
            },
        })
    }

    fn user_has_wallet(&mut self, user: &str) -> Result<bool, StorageError> {
        Ok(self
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM accounts WHERE owner_type = 'USER' AND owner_id = $1)",
                &[&user],
            )?
            .get(0))
    }

    fn rules_in_force(&mut self, user: &str, asset_id: &str) -> Result<RulesInForce, StorageError> {
        let row = self.query_one(rules::RULES_IN_FORCE, &[&user, &asset_id])?;
        rules::in_force(&row, 0)
    }

    fn window_used(
        &mut self,
        account_id: i64,
        kind: LimitedKind,
        since_ms: i64,
    ) -> Result<i64, StorageError> {
        let row = self.query_one(rules::TOTALS, &[&account_id, &kind.as_str(), &since_ms])?;
        let used = rules::total(row.get(0)) - rules::total(row.get(1));
        Ok(i64::try_from(used).unwrap_or(i64::MAX))
    }

    /// A binary search over time: the first instant at which the total
    /// reaches what the window held at its start plus `must_leave`. About
    /// 40 round trips at most, and only for a refused write.
    fn window_frees_at(
        &mut self,
        account_id: i64,
        kind: LimitedKind,
        since_ms: i64,
        must_leave: i64,
    ) -> Result<Option<i64>, StorageError> {
        let row = self.query_one(rules::TOTALS, &[&account_id, &kind.as_str(), &since_ms])?;
        let newest: Option<Vec<i64>> = row.get(0);
        let target = rules::total(row.get(1)) + i128::from(must_leave);
        let Some(newest_at) = rules::made_at(&newest) else {
            return Ok(None);
        };
        if rules::total(newest) < target {
            return Ok(None);
        }
        // The total at `low` is short of the target, at `high` it is not.
        let (mut low, mut high) = (since_ms, newest_at);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            let row = self.query_one(rules::TOTALS, &[&account_id, &kind.as_str(), &middle])?;
            if rules::total(row.get(1)) >= target {
                high = middle;
            } else {
                low = middle;
            }
        }
        Ok(Some(high))
    }
}

fn account_row(row: &Row) -> UserAccountRow {
    UserAccountRow {
        id: row.get(0),
        balance: row.get(1),
        held: row.get(2),
        active_holds: i64::from(row.get::<_, i32>(3)),
        paid: row.get(4),
        held_paid: row.get(5),
    }
}

/// An account's holds stored HELD whose expiry has come at `now_ms`.
fn due_in_account(
    tx: &mut PgWrite,
    account_id: i64,
    now_ms: i64,
) -> Result<Vec<DueHold>, StorageError> {
    tx.query(
        "SELECT seq, amount, expires_at, parts FROM holds
              WHERE account_id = $1 AND status = 'HELD' AND expires_at <= $2",
        &[&account_id, &now_ms],
    )?
    .iter()
    .filter(|row| engine::has_expired(row.get(2), now_ms))
    .map(|row| {
        Ok(DueHold {
            seq: row.get(0),
            amount: row.get(1),
            parts: parts::read(row.get(3))?,
        })
    })
    .collect::<Result<_, StorageError>>()
}

impl RulesTransaction for PgWrite<'_, '_> {
    fn asset_with_rules(&mut self, asset: &AssetRef) -> Result<Option<AssetRow>, StorageError> {
        rules::PgRules(self.tx).asset_with_rules(asset)
    }

    fn user_override(&mut self, user: &str, asset_id: &str) -> Result<UserOverride, StorageError> {
        rules::PgRules(self.tx).user_override(user, asset_id)
    }

    fn write_rules_change(&mut self, change: &RulesChangeRow<'_>) -> Result<(), StorageError> {
        rules::PgRules(self.tx).write_rules_change(change)
    }

    fn user_rules(&mut self, user: &str) -> Result<Vec<UserRulesRow>, StorageError> {
        rules::PgRules(self.tx).user_rules(user)
    }
}

impl WriteTransaction for PgWrite<'_, '_> {
    fn any_rules(&mut self) -> Result<bool, StorageError> {
        if let Some(known) = self.rules_stored {
            return Ok(known);
        }
        Ok(self
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM asset_rules) OR EXISTS (SELECT 1 FROM user_rules)",
                &[],
            )?
            .get(0))
    }

    fn write_plan(
        &mut self,
        plan: &Plan,
        found: &mut AccountIds,
        now_ms: i64,
    ) -> Result<(Vec<RecordedEntry>, Option<HoldFact>), StorageError> {
        write_plan(self, plan, found, now_ms)
    }

    fn record_key_uses(&mut self, uses: &[(i64, i64)]) -> Result<(), StorageError> {
        // In key order, so two instances recording the same keys cannot
        // deadlock on them.
        let mut uses = uses.to_vec();
        uses.sort_unstable();
        for (id, used_at_ms) in uses {
            self.execute(
                "UPDATE api_keys SET last_used_at = greatest(coalesce(last_used_at, 0), $2)
                  WHERE id = $1",
                &[&id, &used_at_ms],
            )?;
        }
        Ok(())
    }

    fn expire_due_holds(&mut self, now_ms: i64, max: usize) -> Result<usize, StorageError> {
        // Holds another instance is closing are skipped, as are those of a
        // user whose lock is taken: never a wait.
        let expired = self.execute(
            "UPDATE holds SET status = 'EXPIRED', closed_at = expires_at
              WHERE seq IN (SELECT seq FROM holds
                             WHERE status = 'HELD' AND expires_at <= $1
                             ORDER BY expires_at LIMIT $2
                             FOR UPDATE SKIP LOCKED)
                AND status = 'HELD' AND expires_at <= $1
                AND pg_try_advisory_xact_lock($3, hashtext(user_id))",
            &[&now_ms, &(max as i64), &USER_LOCK_SPACE],
        )?;
        Ok(usize::try_from(expired).unwrap_or(usize::MAX))
    }
}

/// Writes a decided plan, in the order `Plan` gives (see SQLite's writer):
/// expiries, new accounts, the idempotency record, the hold closed or
/// made, the entries and their postings. A Treasury's posting carries no
/// balance.
fn write_plan(
    tx: &mut PgWrite,
    plan: &Plan,
    account_ids: &mut BTreeMap<AccountKey, i64>,
    created_at_ms: i64,
) -> Result<(Vec<RecordedEntry>, Option<HoldFact>), StorageError> {
    for seq in &plan.expire {
        tx.execute(
            "UPDATE holds SET status = 'EXPIRED', closed_at = expires_at
              WHERE seq = $1 AND status = 'HELD'",
            &[seq],
        )?;
    }
    for key in &plan.new_accounts {
        let Owner::User(user) = &key.owner else {
            return Err(StorageError::Backend("the engine opened a Treasury".into()));
        };
        let id: i64 = tx
            .query_one(
                "INSERT INTO accounts (owner_type, owner_id, asset_type_id, created_at)
                 VALUES ('USER', $1, $2::text::uuid, $3) RETURNING id",
                &[user, &key.asset_id, &created_at_ms],
            )?
            .get(0);
        account_ids.insert(key.clone(), id);
    }
    let request_id: i64 = tx
        .query_one(
            "INSERT INTO idempotency_records (caller_id, key, request, entry_count, created_at,
                                              hold_seq, answer_state)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &plan.caller.stored_id(),
                &plan.key.as_str(),
                &plan.request.to_json(),
                &(plan.entries.len() as i32),
                &created_at_ms,
                &plan.close_hold.as_ref().map(|hold| hold.seq),
                &plan.state.to_json(),
            ],
        )?
        .get(0);
    let mut hold = None;
    if let Some(closed) = &plan.close_hold {
        let changed = tx.execute(
            "UPDATE holds SET status = $2, captured_amount = $3, closed_at = $4
              WHERE seq = $1 AND status = 'HELD'",
            &[
                &closed.seq,
                &closed.status.as_str(),
                &closed.captured_amount,
                &created_at_ms,
            ],
        )?;
        if changed != 1 {
            return Err(StorageError::Backend(
                "the hold the engine closed was not HELD".into(),
            ));
        }
        hold = Some(closed.clone());
    }
    let account_id = |key: &AccountKey| {
        account_ids
            .get(key)
            .copied()
            .ok_or_else(|| StorageError::Backend(format!("no account id for {key:?}").into()))
    };
    if let Some(new) = &plan.new_hold {
        let account = account_id(&new.account)?;
        let id = write::entry_id_at(created_at_ms);
        let seq: i64 = tx
            .query_one(
                "INSERT INTO holds (id, account_id, user_id, asset_type_id, amount, status,
                                    request_id, reference_id, note, metadata, expires_at,
                                    created_at, parts)
                 VALUES ($1::text::uuid, $2, $3, $4::text::uuid, $5, 'HELD', $6, $7, $8,
                         $9::text, $10, $11, $12)
                 RETURNING seq",
                &[
                    &id,
                    &account,
                    &new.user,
                    &new.account.asset_id,
                    &new.amount,
                    &request_id,
                    &new.reference_id,
                    &new.note,
                    &new.metadata.as_ref().map(|m| m.to_json()),
                    &new.expires_at_ms,
                    &created_at_ms,
                    &crate::ledger::parts::encode(&new.parts),
                ],
            )?
            .get(0);
        hold = Some(new.recorded(seq, id, &plan.key, created_at_ms));
    }
    let insert_entry = tx.statement(
        "INSERT INTO ledger_entries (id, kind, asset_type_id, debit_account_id,
                                     credit_account_id, amount, request_id, reference_id, note,
                                     metadata, reverses_seq, reversed_after, hold_seq, created_at,
                                     parts, paid)
         VALUES ($1::text::uuid, $2, $3::text::uuid, $4, $5, $6, $7, $8, $9, $10::text, $11, $12,
                 $13, $14, $15, $16)
         RETURNING seq",
    )?;
    // A user's posting carries its running paid total (see the statement).
    let insert_posting = tx.statement(parts::INSERT_POSTING)?;
    let balance_after = |key: &AccountKey, balance: i64| match key.owner {
        Owner::User(_) => Some(balance),
        Owner::Treasury => None,
    };
    let mut recorded = Vec::with_capacity(plan.entries.len());
    for entry in &plan.entries {
        let debit = account_id(&entry.debit)?;
        let credit = account_id(&entry.credit)?;
        let entry_id = write::entry_id_at(created_at_ms);
        let seq: i64 = tx
            .tx
            .query_one(
                &insert_entry,
                &[
                    &entry_id,
                    &entry.kind.as_str(),
                    &entry.asset_id,
                    &debit,
                    &credit,
                    &entry.amount,
                    &request_id,
                    &entry.reference_id,
                    &entry.note,
                    &entry.metadata.as_ref().map(|m| m.to_json()),
                    &entry.reverses.as_ref().map(|r| r.seq),
                    &entry.reverses.as_ref().map(|r| r.reversed_after),
                    &entry.hold.as_ref().map(|(seq, _)| *seq),
                    &created_at_ms,
                    &crate::ledger::parts::encode(&entry.parts),
                    &crate::ledger::parts::paid_of(&entry.parts),
                ],
            )?
            .get(0);
        for (account, delta, after) in [
            (
                debit,
                -entry.amount,
                balance_after(&entry.debit, entry.debit_balance_after),
            ),
            (
                credit,
                entry.amount,
                balance_after(&entry.credit, entry.credit_balance_after),
            ),
        ] {
            let paid = parts::paid_delta(&entry.parts, delta);
            let written = tx
                .tx
                .execute(&insert_posting, &[&account, &seq, &delta, &after, &paid])?;
            if written != 1 {
                return Err(StorageError::Backend(
                    format!("no account {account} to post to").into(),
                ));
            }
        }
        let entry = entry.recorded(seq, entry_id, &plan.key, created_at_ms);
        if let Some(hold) = hold.as_mut().filter(|_| entry.hold_id.is_some()) {
            hold.captured_by = Some(entry.id.clone());
        }
        recorded.push(entry);
    }
    Ok((recorded, hold))
}
