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
//!
//! API keys are written here too, so that a server's only writer writes
//! them: the rules of keys (`create_key`, `revoke_key`) are decided once,
//! against facts a backend reads through `KeyTransaction`, for the server's
//! writer and the command line's own transaction alike.

use std::collections::BTreeMap;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::domain::{
    AssetRef, Caller, IdempotencyKey, KeyName, LimitedKind, Limits, RulesInForce, SpendOrder,
    UserId, UserOverride,
};
use crate::ledger::engine::{
    self, AccountFact, AccountKey, AccountRules, AssetDecision, AssetFact, AssetRow, Command,
    Decision, EntryFact, Facts, HoldFact, NewAsset, Outcome, Owner, Plan, RecordedEntry,
    RetryAfter, StoredRequest, WindowFact,
};
use crate::ledger::Rejection;
use crate::limits::{API_KEYS_ACTIVE_MAX, API_KEYS_TOTAL_MAX};
use crate::store::{
    AssetOutcome, KeyError, KeyListing, KeyRejection, LedgerError, NewKey, RulesChange,
    RulesOutcome, StorageError, UserRulesListing, UserRulesRow,
};

/// What the rules of a new key look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyFacts {
    /// Whether a key ever had the name, revoked ones included.
    pub name_used: bool,
    pub active: usize,
    /// Every key ever created, revoked ones included.
    pub total: usize,
}

/// What a backend does with API keys inside one write transaction.
pub(crate) trait KeyTransaction {
    /// The facts `create_key` decides a new key named `name` on.
    fn key_facts(&mut self, name: &KeyName) -> Result<KeyFacts, StorageError>;

    /// Adds a key the rules allowed; returns it as listed.
    fn write_key(&mut self, key: &NewKey, now_ms: i64) -> Result<KeyListing, StorageError>;

    /// Revokes the active key named `name` at `now_ms` and returns it as
    /// listed; None when no active key has that name.
    fn write_revocation(
        &mut self,
        name: &KeyName,
        now_ms: i64,
    ) -> Result<Option<KeyListing>, StorageError>;
}

/// What a backend does with the asset catalogue inside one write
/// transaction.
pub(crate) trait AssetTransaction {
    /// The asset already named as `asset` is, if any, and how many assets
    /// the catalogue holds.
    fn asset_facts(&mut self, asset: &NewAsset) -> Result<(Option<AssetRow>, usize), StorageError>;

    /// Adds `asset` and its Treasury.
    fn write_asset(&mut self, asset: &NewAsset, now_ms: i64) -> Result<AssetRow, StorageError>;
}

/// One change of rules as stored: the rules of an asset (`user` None) or a
/// user's override in it, as they are once it applies.
#[derive(Debug, Clone)]
pub(crate) struct RulesChangeRow<'a> {
    pub asset_id: &'a str,
    pub user: Option<&'a str>,
    /// Only an asset's rules have a spend order.
    pub spend_order: Option<SpendOrder>,
    pub max_balance: Option<i64>,
    /// An asset's limits (never None), or a user's override of them.
    pub limits: Option<&'a Limits>,
    pub changed_at_ms: i64,
    /// Who: the API key's id, or 0 for the command line or a keyless service.
    pub changed_by: i64,
}

/// What a backend does with rules on value inside one write transaction.
pub(crate) trait RulesTransaction {
    /// The asset `asset` names, with its rules.
    fn asset_with_rules(&mut self, asset: &AssetRef) -> Result<Option<AssetRow>, StorageError>;

    /// `user`'s own values in the asset `asset_id` (empty when none).
    fn user_override(&mut self, user: &str, asset_id: &str) -> Result<UserOverride, StorageError>;

    /// Records a change: the rules in force and the event feed follow it.
    fn write_rules_change(&mut self, change: &RulesChangeRow<'_>) -> Result<(), StorageError>;

    /// The rules in force for `user`, one row per asset, by symbol.
    fn user_rules(&mut self, user: &str) -> Result<Vec<UserRulesRow>, StorageError>;
}

/// The ids of the accounts among a command's facts, as `read_facts` found
/// them: writing the plan needs them again.
pub(crate) type AccountIds = BTreeMap<AccountKey, i64>;

/// What a backend does inside one write transaction.
pub(crate) trait WriteTransaction:
    KeyTransaction + AssetTransaction + RulesTransaction + FactSource
{
    /// Every fact `engine::decide` needs for `command`, read in this
    /// transaction at the writer's time `now_ms`.
    fn read_facts(
        &mut self,
        command: &Command,
        now_ms: i64,
        rules_stored: bool,
    ) -> Result<(Facts, AccountIds), StorageError>
    where
        Self: Sized,
    {
        read_facts(self, command, now_ms, rules_stored)
    }

    /// Whether any rules on value are stored at all. Asked once per batch:
    /// while none are, no command reads any (the common case pays nothing).
    fn any_rules(&mut self) -> Result<bool, StorageError>;

    /// Writes a decided plan; returns the entries and the hold as written.
    fn write_plan(
        &mut self,
        plan: &Plan,
        found: &mut AccountIds,
        now_ms: i64,
    ) -> Result<(Vec<RecordedEntry>, Option<HoldFact>), StorageError>;

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
    /// `POST /keys`: a new API key.
    CreateKey {
        key: NewKey,
        reply: oneshot::Sender<Result<KeyListing, KeyError>>,
    },
    /// `POST /keys/{name}/revoke`.
    RevokeKey {
        name: KeyName,
        reply: oneshot::Sender<Result<KeyListing, KeyError>>,
    },
    /// `PUT /assets/{asset}/rules`, `PUT /wallets/{userId}/rules`.
    ChangeRules {
        change: RulesChange,
        caller: Caller,
        reply: oneshot::Sender<Result<RulesOutcome, LedgerError>>,
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
            Work::ChangeRules { reply, .. } => drop(reply.send(Err(error.into()))),
            Work::KeyUses { reply, .. } => drop(reply.send(Err(error.into()))),
            Work::CreateKey { reply, .. } | Work::RevokeKey { reply, .. } => {
                drop(reply.send(Err(error.into())))
            }
            Work::ExpireHolds { .. } => {}
        }
    }
}

/// A piece of work's result, held until the transaction commits.
pub(crate) enum Done {
    Command(Result<Outcome, Rejection>),
    Asset(Result<AssetOutcome, Rejection>),
    Rules(Result<RulesOutcome, Rejection>),
    KeyUses,
    /// A key created or revoked, or why not.
    Key(Result<KeyListing, KeyRejection>),
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
            (Done::Rules(result), Work::ChangeRules { reply, .. }) => {
                let _ = reply.send(result.map_err(LedgerError::from));
            }
            (Done::KeyUses, Work::KeyUses { reply, .. }) => {
                let _ = reply.send(Ok(()));
            }
            (Done::Key(result), Work::CreateKey { reply, .. } | Work::RevokeKey { reply, .. }) => {
                let _ = reply.send(result.map_err(KeyError::from));
            }
            (Done::Expired(_), Work::ExpireHolds { .. }) => {}
            (_, work) => work.refuse(StorageError::BatchRolledBack),
        }
    }
}

/// An asset a command names, with its Treasury's account.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedAsset {
    pub id: String,
    pub symbol: String,
    pub treasury_account: i64,
}

/// A user's account in one asset, as stored now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserAccountRow {
    pub id: i64,
    pub balance: i64,
    pub held: i64,
    pub active_holds: i64,
    /// The paid part of `balance`, and of `held` (the rest is free).
    pub paid: i64,
    pub held_paid: i64,
}

/// The reads a backend answers inside its write transaction, from which
/// `read_facts` assembles what `engine::decide` needs. Each is one lookup;
/// which to make, and in what order, is decided once, here.
pub(crate) trait FactSource {
    /// What this caller's key already names, with the entries it made.
    fn find_request(
        &mut self,
        caller: Caller,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredRequest>, StorageError>;

    /// The asset a command names, if it exists.
    fn resolve_asset(&mut self, asset: &AssetRef) -> Result<Option<ResolvedAsset>, StorageError>;

    /// An entry to reverse, by id, with its debit and credit accounts' ids.
    fn find_entry(&mut self, id: &Uuid) -> Result<Option<(EntryFact, i64, i64)>, StorageError>;

    /// A hold to capture or void, by id, with its account's id.
    fn find_hold(&mut self, id: &Uuid) -> Result<Option<(HoldFact, i64)>, StorageError>;

    /// A user's account in an asset, with what it holds.
    fn find_user_account(
        &mut self,
        user: &str,
        asset_id: &str,
    ) -> Result<Option<UserAccountRow>, StorageError>;

    /// The account `key`, whose id is `account_id`, as the engine sees it
    /// at `now_ms`; `known` is its row when already read.
    fn account_fact(
        &mut self,
        key: &AccountKey,
        account_id: i64,
        known: Option<UserAccountRow>,
        now_ms: i64,
    ) -> Result<AccountFact, StorageError>;

    /// Whether `user` has an account in any asset.
    fn user_has_wallet(&mut self, user: &str) -> Result<bool, StorageError>;

    /// The rules in force for `user` in the asset `asset_id`.
    fn rules_in_force(&mut self, user: &str, asset_id: &str) -> Result<RulesInForce, StorageError>;

    /// The amounts of the entries of `kind` counted for the account
    /// `account_id` made after `since_ms`: two index descents.
    fn window_used(
        &mut self,
        account_id: i64,
        kind: LimitedKind,
        since_ms: i64,
    ) -> Result<i64, StorageError>;

    /// When the oldest entries of `kind` counted for `account_id` after
    /// `since_ms` that together hold `must_leave` were made: the time the
    /// last of them was made, or None when they hold less.
    fn window_frees_at(
        &mut self,
        account_id: i64,
        kind: LimitedKind,
        since_ms: i64,
        must_leave: i64,
    ) -> Result<Option<i64>, StorageError>;
}

/// Every fact `decide` needs for `command`, read through `source` at the
/// writer's clock `now_ms`, and the ids of the accounts among them. Rules
/// are read only when some are stored (`rules_stored`).
pub(crate) fn read_facts(
    source: &mut impl FactSource,
    command: &Command,
    now_ms: i64,
    rules_stored: bool,
) -> Result<(Facts, BTreeMap<AccountKey, i64>), StorageError> {
    let needs = engine::needs(command);
    let mut facts = Facts {
        stored: source.find_request(command.caller, &command.key)?,
        now_ms,
        ..Facts::default()
    };
    let mut account_ids: BTreeMap<AccountKey, i64> = BTreeMap::new();
    let mut accounts: BTreeMap<AccountKey, AccountFact> = BTreeMap::new();
    let add_asset = |facts: &mut Facts, asset: &ResolvedAsset| {
        if !facts.assets.iter().any(|known| known.id == asset.id) {
            facts.assets.push(AssetFact {
                id: asset.id.clone(),
                symbol: asset.symbol.clone(),
                // Read with the rules, when any are stored.
                spend_order: SpendOrder::default(),
            });
        }
    };
    let mut treasuries: Vec<ResolvedAsset> = Vec::new();
    for asset in &needs.assets {
        if let Some(resolved) = source.resolve_asset(asset)? {
            add_asset(&mut facts, &resolved);
            treasuries.push(resolved);
        }
    }
    if facts.stored.is_some() {
        // A replay or a reuse: the canonical request needs only the assets.
        return Ok((facts, account_ids));
    }
    for id in &needs.entries {
        let Some((entry, debit_id, credit_id)) = source.find_entry(id)? else {
            continue;
        };
        if let Some(resolved) =
            source.resolve_asset(&AssetRef::Symbol(entry.asset_symbol.clone()))?
        {
            add_asset(&mut facts, &resolved);
            treasuries.push(resolved);
        }
        for (key, account_id) in [(&entry.debit, debit_id), (&entry.credit, credit_id)] {
            read_account(
                source,
                &mut accounts,
                &mut account_ids,
                key,
                account_id,
                None,
                now_ms,
            )?;
        }
        facts.entries.push(entry);
    }
    let mut recipients: Vec<(UserId, String)> = Vec::new();
    for (id, to) in &needs.holds {
        let Some((hold, account_id)) = source.find_hold(id)? else {
            continue;
        };
        if let Some(resolved) =
            source.resolve_asset(&AssetRef::Symbol(hold.asset_symbol.clone()))?
        {
            add_asset(&mut facts, &resolved);
            treasuries.push(resolved);
        }
        let key = AccountKey::user(&hold.user, &hold.asset_id);
        read_account(
            source,
            &mut accounts,
            &mut account_ids,
            &key,
            account_id,
            None,
            now_ms,
        )?;
        if let Some(to) = to {
            recipients.push((to.clone(), hold.asset_id.clone()));
        }
        facts.holds.push(hold);
    }
    for treasury in &treasuries {
        let key = AccountKey::treasury(&treasury.id);
        read_account(
            source,
            &mut accounts,
            &mut account_ids,
            &key,
            treasury.treasury_account,
            None,
            now_ms,
        )?;
    }
    let mut user_accounts: Vec<(&str, String)> = Vec::new();
    for (user, asset) in &needs.user_accounts {
        if let Some(resolved) = source.resolve_asset(asset)? {
            user_accounts.push((user.as_str(), resolved.id));
        }
    }
    user_accounts.extend(
        recipients
            .iter()
            .map(|(to, asset_id)| (to.as_str(), asset_id.clone())),
    );
    for (user, asset_id) in &user_accounts {
        let key = AccountKey::user(user, asset_id);
        if accounts.contains_key(&key) {
            continue;
        }
        if let Some(account) = source.find_user_account(user, asset_id)? {
            read_account(
                source,
                &mut accounts,
                &mut account_ids,
                &key,
                account.id,
                Some(account),
                now_ms,
            )?;
        }
    }
    for user in &needs.wallets {
        if facts
            .users_with_wallet
            .iter()
            .any(|known| known == user.as_str())
        {
            continue;
        }
        // An account already read is a wallet: no query in the common case.
        let has_account_read = accounts
            .keys()
            .any(|key| matches!(&key.owner, Owner::User(owner) if owner == user.as_str()));
        if has_account_read || source.user_has_wallet(user.as_str())? {
            facts.users_with_wallet.push(user.as_str().to_owned());
        }
    }
    if rules_stored {
        let (rules, spend_orders) =
            read_rules(source, &accounts, &account_ids, &user_accounts, now_ms)?;
        facts.rules = rules;
        for asset in &mut facts.assets {
            if let Some(order) = spend_orders.get(&asset.id) {
                asset.spend_order = *order;
            }
        }
    }
    facts.accounts = accounts.into_values().collect();
    Ok((facts, account_ids))
}

/// The rules of every user account the command may move, open or not (a
/// first top-up opens its account), with what each cap's window holds, and
/// the spend order of their assets. Most accounts have no rule, and then
/// nothing more is read.
fn read_rules(
    source: &mut impl FactSource,
    accounts: &BTreeMap<AccountKey, AccountFact>,
    account_ids: &AccountIds,
    named: &[(&str, String)],
    now_ms: i64,
) -> Result<(Vec<AccountRules>, BTreeMap<String, SpendOrder>), StorageError> {
    let mut keys: Vec<AccountKey> = accounts
        .keys()
        .filter(|key| matches!(key.owner, Owner::User(_)))
        .cloned()
        .collect();
    for (user, asset_id) in named {
        let key = AccountKey::user(user, asset_id);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut rules = Vec::new();
    let mut spend_orders = BTreeMap::new();
    for key in keys {
        let Owner::User(user) = &key.owner else {
            continue;
        };
        let in_force = source.rules_in_force(user, &key.asset_id)?;
        spend_orders.insert(key.asset_id.clone(), in_force.spend_order);
        if in_force.is_unbounded() {
            continue;
        }
        let mut windows = Vec::with_capacity(in_force.limits.as_slice().len());
        for limit in in_force.limits.as_slice() {
            let used = match account_ids.get(&key) {
                Some(account_id) => source.window_used(
                    *account_id,
                    limit.kind,
                    now_ms.saturating_sub(limit.window_ms()),
                )?,
                None => 0,
            };
            windows.push(WindowFact {
                limit: *limit,
                used,
            });
        }
        rules.push(AccountRules {
            key,
            max_balance: in_force.max_balance,
            windows,
        });
    }
    Ok((rules, spend_orders))
}

/// A version 7 UUID for an entry or hold made at `created_at_ms` (not
/// negative: the writer's clock refuses times before the epoch). Ids sort by
/// time, so each new id lands at the right edge of the ids' unique index
/// instead of on a random page of it.
pub(crate) fn entry_id_at(created_at_ms: i64) -> String {
    let ms = u64::try_from(created_at_ms).unwrap_or(0);
    let timestamp =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    Uuid::new_v7(timestamp).to_string()
}

/// Reads the account `key` once: a second mention finds it read.
fn read_account(
    source: &mut impl FactSource,
    accounts: &mut BTreeMap<AccountKey, AccountFact>,
    account_ids: &mut BTreeMap<AccountKey, i64>,
    key: &AccountKey,
    account_id: i64,
    known: Option<UserAccountRow>,
    now_ms: i64,
) -> Result<(), StorageError> {
    if accounts.contains_key(key) {
        return Ok(());
    }
    let account = source.account_fact(key, account_id, known, now_ms)?;
    accounts.insert(key.clone(), account);
    account_ids.insert(key.clone(), account_id);
    Ok(())
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
    let mut rules_stored = batch
        .iter()
        .any(|work| matches!(work, Work::Command { .. }))
        && transaction.any_rules()?;
    for work in batch {
        let done = match work {
            Work::Command { command, .. } => {
                Done::Command(apply_command(transaction, command, now_ms, rules_stored)?)
            }
            Work::CreateAsset { asset, .. } => {
                Done::Asset(create_asset(transaction, asset, now_ms)?)
            }
            Work::ChangeRules { change, caller, .. } => {
                // The batch's later commands read the rules it leaves.
                rules_stored = true;
                Done::Rules(change_rules(transaction, change, *caller, now_ms)?)
            }
            Work::KeyUses { uses, .. } => {
                transaction.record_key_uses(uses)?;
                Done::KeyUses
            }
            Work::CreateKey { key, .. } => Done::Key(create_key(transaction, key, now_ms)?),
            Work::RevokeKey { name, .. } => Done::Key(revoke_key(transaction, name, now_ms)?),
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
    rules_stored: bool,
) -> Result<Result<Outcome, Rejection>, StorageError> {
    let (facts, mut found) = transaction.read_facts(command, now_ms, rules_stored)?;
    match engine::decide(command, &facts) {
        Err(rejection) => Ok(Err(resolve_retry(transaction, rejection, &found, now_ms)?)),
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

/// A cap's refusal says when the amount would fit; when that depends on
/// entries already stored leaving the window, the store finds when the last
/// of them that must leave was made (one index descent).
fn resolve_retry(
    source: &mut impl FactSource,
    rejection: Rejection,
    found: &AccountIds,
    now_ms: i64,
) -> Result<Rejection, StorageError> {
    Ok(match rejection {
        Rejection::InBatch { operation, cause } => Rejection::InBatch {
            operation,
            cause: Box::new(resolve_retry(source, *cause, found, now_ms)?),
        },
        Rejection::LimitExceeded {
            kind,
            window_seconds,
            max,
            used,
            requested,
            retry_after:
                RetryAfter::WhenStoredLeave {
                    account,
                    must_leave,
                },
        } => {
            let window_ms = i64::from(window_seconds) * 1000;
            let made_at = match found.get(&account) {
                Some(account_id) => source.window_frees_at(
                    *account_id,
                    kind,
                    now_ms.saturating_sub(window_ms),
                    must_leave,
                )?,
                None => None,
            };
            let seconds = match made_at {
                // It leaves the window once `window_ms` have passed since
                // it was made: whole seconds, rounded up, at least one, and
                // never more than the window (on PostgreSQL another
                // instance may have made it after this batch read its
                // clock, while this batch waited for the user's lock).
                Some(made_at) => {
                    let wait_ms = made_at.saturating_add(window_ms).saturating_sub(now_ms);
                    u64::try_from((wait_ms + 999) / 1000)
                        .unwrap_or(0)
                        .clamp(1, u64::from(window_seconds))
                }
                None => u64::from(window_seconds),
            };
            Rejection::LimitExceeded {
                kind,
                window_seconds,
                max,
                used,
                requested,
                retry_after: RetryAfter::Seconds(seconds),
            }
        }
        other => other,
    })
}

/// `PUT /assets/{asset}/rules` and `PUT /wallets/{userId}/rules`: the
/// change merged into the rules as they are (`domain::rules`); a change
/// that changes nothing writes nothing (no new `updatedAt`, no event).
pub(crate) fn change_rules(
    transaction: &mut impl RulesTransaction,
    change: &RulesChange,
    caller: Caller,
    now_ms: i64,
) -> Result<Result<RulesOutcome, Rejection>, StorageError> {
    match change {
        RulesChange::Asset { asset, change } => {
            let Some(row) = transaction.asset_with_rules(asset)? else {
                return Ok(Err(Rejection::AssetNotFound));
            };
            let rules = change.applied_to(&row.rules);
            if rules == row.rules {
                return Ok(Ok(RulesOutcome::Asset(row)));
            }
            transaction.write_rules_change(&RulesChangeRow {
                asset_id: &row.id,
                user: None,
                spend_order: Some(rules.spend_order),
                max_balance: rules.max_balance,
                limits: Some(&rules.limits),
                changed_at_ms: now_ms,
                changed_by: caller.stored_id(),
            })?;
            let written = transaction.asset_with_rules(asset)?.ok_or_else(|| {
                StorageError::Backend("an asset vanished in its transaction".into())
            })?;
            Ok(Ok(RulesOutcome::Asset(written)))
        }
        RulesChange::User {
            user,
            asset,
            change,
        } => {
            let Some(row) = transaction.asset_with_rules(asset)? else {
                return Ok(Err(Rejection::AssetNotFound));
            };
            let current = transaction.user_override(user.as_str(), &row.id)?;
            let changed = change.applied_to(&current);
            if changed != current {
                transaction.write_rules_change(&RulesChangeRow {
                    asset_id: &row.id,
                    user: Some(user.as_str()),
                    spend_order: None,
                    max_balance: changed.max_balance,
                    limits: changed.limits.as_ref(),
                    changed_at_ms: now_ms,
                    changed_by: caller.stored_id(),
                })?;
            }
            Ok(Ok(RulesOutcome::User(UserRulesListing {
                user: user.as_str().to_owned(),
                rows: transaction.user_rules(user.as_str())?,
            })))
        }
    }
}

/// `POST /assets`: decided by the engine against the catalogue, then the
/// asset and its Treasury are written.
pub(crate) fn create_asset(
    transaction: &mut impl AssetTransaction,
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

/// A new API key: refused when its name was ever used (a name in a log
/// always means one key), when `API_KEYS_ACTIVE_MAX` keys are active, or
/// when `API_KEYS_TOTAL_MAX` were ever created; written otherwise.
pub(crate) fn create_key(
    transaction: &mut impl KeyTransaction,
    key: &NewKey,
    now_ms: i64,
) -> Result<Result<KeyListing, KeyRejection>, StorageError> {
    let facts = transaction.key_facts(&key.name)?;
    if facts.name_used {
        return Ok(Err(KeyRejection::KeyExists(key.name.clone())));
    }
    if facts.active >= API_KEYS_ACTIVE_MAX {
        return Ok(Err(KeyRejection::TooManyActiveKeys));
    }
    if facts.total >= API_KEYS_TOTAL_MAX {
        return Ok(Err(KeyRejection::TooManyKeysInAll));
    }
    let written = transaction.write_key(key, now_ms)?;
    if written.name != key.name.as_str() || written.revoked_at_ms.is_some() {
        return Err(StorageError::Backend(
            "the key written is not the key asked for, active".into(),
        ));
    }
    Ok(Ok(written))
}

/// A revocation: final, so a key that is unknown or already revoked is
/// `KeyNotFound`, as `wallet keys revoke` has always said.
pub(crate) fn revoke_key(
    transaction: &mut impl KeyTransaction,
    name: &KeyName,
    now_ms: i64,
) -> Result<Result<KeyListing, KeyRejection>, StorageError> {
    Ok(transaction
        .write_revocation(name, now_ms)?
        .ok_or_else(|| KeyRejection::KeyNotFound(name.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Scopes;

    /// Keys held in memory, to test the rules without a database.
    #[derive(Default)]
    struct Keys(Vec<KeyListing>);

    impl KeyTransaction for Keys {
        fn key_facts(&mut self, name: &KeyName) -> Result<KeyFacts, StorageError> {
            Ok(KeyFacts {
                name_used: self.0.iter().any(|key| key.name == name.as_str()),
                active: self
                    .0
                    .iter()
                    .filter(|key| key.revoked_at_ms.is_none())
                    .count(),
                total: self.0.len(),
            })
        }

        fn write_key(&mut self, key: &NewKey, now_ms: i64) -> Result<KeyListing, StorageError> {
            let listing = KeyListing {
                name: key.name.as_str().to_owned(),
                scopes: key.scopes.to_string(),
                created_at_ms: now_ms,
                last_used_at_ms: None,
                revoked_at_ms: None,
            };
            self.0.push(listing.clone());
            Ok(listing)
        }

        fn write_revocation(
            &mut self,
            name: &KeyName,
            now_ms: i64,
        ) -> Result<Option<KeyListing>, StorageError> {
            Ok(self
                .0
                .iter_mut()
                .find(|key| key.name == name.as_str() && key.revoked_at_ms.is_none())
                .map(|key| {
                    key.revoked_at_ms = Some(now_ms);
                    key.clone()
                }))
        }
    }

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: KeyName::parse(name).unwrap(),
            scopes: Scopes::parse("read").unwrap(),
            // The rules never look at the digest.
            secret_sha256: [0; 32],
        }
    }

    #[test]
    fn the_last_active_key_allowed_is_created_and_one_more_is_refused_until_one_is_revoked() {
        let mut keys = Keys::default();
        for index in 0..API_KEYS_ACTIVE_MAX {
            let created = create_key(&mut keys, &new_key(&format!("k{index}")), 1).unwrap();
            assert!(created.is_ok(), "key {index}: {created:?}");
        }
        assert_eq!(
            create_key(&mut keys, &new_key("one-too-many"), 1).unwrap(),
            Err(KeyRejection::TooManyActiveKeys)
        );
        revoke_key(&mut keys, &KeyName::parse("k0").unwrap(), 2)
            .unwrap()
            .unwrap();
        assert!(create_key(&mut keys, &new_key("one-more"), 3)
            .unwrap()
            .is_ok());
    }

    #[test]
    fn a_name_is_never_reused_and_a_revocation_is_final() {
        let mut keys = Keys::default();
        let game = KeyName::parse("game").unwrap();
        create_key(&mut keys, &new_key("game"), 1).unwrap().unwrap();
        assert_eq!(
            create_key(&mut keys, &new_key("game"), 2).unwrap(),
            Err(KeyRejection::KeyExists(game.clone()))
        );
        let revoked = revoke_key(&mut keys, &game, 3).unwrap().unwrap();
        assert_eq!(revoked.revoked_at_ms, Some(3));
        assert_eq!(
            create_key(&mut keys, &new_key("game"), 4).unwrap(),
            Err(KeyRejection::KeyExists(game.clone()))
        );
        assert_eq!(
            revoke_key(&mut keys, &game, 5).unwrap(),
            Err(KeyRejection::KeyNotFound(game.clone()))
        );
        let unknown = KeyName::parse("nobody").unwrap();
        assert_eq!(
            revoke_key(&mut keys, &unknown, 5).unwrap(),
            Err(KeyRejection::KeyNotFound(unknown))
        );
    }

    #[test]
    fn no_more_keys_are_created_once_the_total_was_reached_even_if_all_are_revoked() {
        let mut keys = Keys(
            (0..API_KEYS_TOTAL_MAX - 1)
                .map(|index| KeyListing {
                    name: format!("old{index}"),
                    scopes: "read".into(),
                    created_at_ms: 0,
                    last_used_at_ms: None,
                    revoked_at_ms: Some(1),
                })
                .collect(),
        );
        create_key(&mut keys, &new_key("last"), 2).unwrap().unwrap();
        assert_eq!(
            create_key(&mut keys, &new_key("past-the-total"), 3).unwrap(),
            Err(KeyRejection::TooManyKeysInAll)
        );
    }
}
