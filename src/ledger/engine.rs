//! The engine: one pure function decides a whole command (one operation, or
//! a batch of them) from the facts the store has read, and says what to
//! write, or why nothing may be.
//!
//! ```text
//! Command -> needs(&Command) -> the store reads Facts -> decide(&Command, &Facts)
//!         -> Replay(Answer) | Apply(Plan) -> the store writes the plan -> answer(...)
//! ```
//!
//! Operations apply in order to an in-memory working set of balances, so a
//! later one sees what the earlier ones left; the first that fails refuses
//! the whole command, and nothing of it is written. The answer to a new
//! command and to its replay come from the same function (`answer`) over the
//! entries it made, so a replay is the original answer, whole.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Rejection;
use crate::domain::{
    Amount, AssetDecimals, AssetName, AssetRef, AssetSymbol, Caller, Direction, EntryKind,
    IdempotencyKey, Metadata, Note, ReferenceId, UserId,
};
use crate::limits::{AMOUNT_MAX, ASSET_TYPES_MAX};

/// The route a command came by. Part of what makes two requests the same: a
/// key used for a spend and then for a transfer names two requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Topup,
    Bonus,
    Spend,
    Transfer,
    Reverse,
    Batch,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::Topup,
        Route::Bonus,
        Route::Spend,
        Route::Transfer,
        Route::Reverse,
        Route::Batch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Topup => "topup",
            Route::Bonus => "bonus",
            Route::Spend => "spend",
            Route::Transfer => "transfer",
            Route::Reverse => "reverse",
            Route::Batch => "batch",
        }
    }

    pub fn parse(raw: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|route| route.as_str() == raw)
    }
}

/// TOPUP or BONUS: the two ways the Treasury pays a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreditKind {
    Topup,
    Bonus,
}

impl CreditKind {
    pub fn entry_kind(self) -> EntryKind {
        match self {
            CreditKind::Topup => EntryKind::Topup,
            CreditKind::Bonus => EntryKind::Bonus,
        }
    }
}

/// What a caller attaches to an entry of its own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryDetails {
    pub reference_id: Option<ReferenceId>,
    pub note: Option<Note>,
    pub metadata: Option<Metadata>,
}

/// One movement a command asks for. Holds come next, as more variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// The Treasury pays `user`.
    Credit {
        kind: CreditKind,
        user: UserId,
        asset: AssetRef,
        amount: Amount,
        details: EntryDetails,
    },
    /// `user` pays the Treasury.
    Spend {
        user: UserId,
        asset: AssetRef,
        amount: Amount,
        details: EntryDetails,
    },
    /// `from` pays `to`.
    Transfer {
        from: UserId,
        to: UserId,
        asset: AssetRef,
        amount: Amount,
        details: EntryDetails,
    },
    /// Moves `amount` (default: all not yet reversed) of `entry` back.
    Reverse {
        entry: Uuid,
        amount: Option<Amount>,
        details: EntryDetails,
    },
}

/// A request to move value, parsed and valid: who asks, under which key, by
/// which route, and the operations, applied all together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub caller: Caller,
    pub key: IdempotencyKey,
    pub route: Route,
    pub operations: Vec<Operation>,
}

/// Who owns an account: a user, or the asset's Treasury.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    User(String),
    Treasury,
}

/// An account named by what it is, whether or not it exists yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    pub owner: Owner,
    pub asset_id: String,
}

impl AccountKey {
    pub fn user(user: &str, asset_id: &str) -> AccountKey {
        AccountKey {
            owner: Owner::User(user.to_owned()),
            asset_id: asset_id.to_owned(),
        }
    }

    pub fn treasury(asset_id: &str) -> AccountKey {
        AccountKey {
            owner: Owner::Treasury,
            asset_id: asset_id.to_owned(),
        }
    }

    fn user_name(&self) -> Option<&str> {
        match &self.owner {
            Owner::User(user) => Some(user),
            Owner::Treasury => None,
        }
    }
}

/// What the store must read before `decide` can run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub assets: Vec<AssetRef>,
    /// Accounts of users in assets named by the command (the treasuries of
    /// every asset read are needed too).
    pub user_accounts: Vec<(UserId, AssetRef)>,
    /// Users whose debit needs "has any wallet at all" (WALLET_NOT_FOUND).
    pub wallets: Vec<UserId>,
    /// Entries to reverse; the store also reads both of their accounts.
    pub entries: Vec<Uuid>,
}

/// Says what `decide` needs to read for `command`.
pub fn needs(command: &Command) -> Needs {
    let mut needs = Needs::default();
    for operation in &command.operations {
        match operation {
            Operation::Credit { user, asset, .. } => {
                needs.assets.push(asset.clone());
                needs.user_accounts.push((user.clone(), asset.clone()));
            }
            Operation::Spend { user, asset, .. } => {
                needs.assets.push(asset.clone());
                needs.user_accounts.push((user.clone(), asset.clone()));
                needs.wallets.push(user.clone());
            }
            Operation::Transfer {
                from, to, asset, ..
            } => {
                needs.assets.push(asset.clone());
                needs.user_accounts.push((from.clone(), asset.clone()));
                needs.user_accounts.push((to.clone(), asset.clone()));
                needs.wallets.push(from.clone());
            }
            Operation::Reverse { entry, .. } => needs.entries.push(*entry),
        }
    }
    needs
}

/// An asset type as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetFact {
    pub id: String,
    pub symbol: String,
}

/// An account that exists, with its balance now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFact {
    pub key: AccountKey,
    pub balance: i64,
}

/// An entry a command may reverse, with how much of it is reversed already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFact {
    pub seq: i64,
    pub id: String,
    pub kind: EntryKind,
    pub asset_id: String,
    pub asset_symbol: String,
    pub amount: i64,
    pub debit: AccountKey,
    pub credit: AccountKey,
    pub reversed: i64,
}

/// What the caller's key already names: the canonical request and the
/// entries it made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub request: CanonicalRequest,
    pub entries: Vec<RecordedEntry>,
}

/// Everything `decide` looks at, read by the store in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub stored: Option<StoredRequest>,
    /// The assets the command and its entries name.
    pub assets: Vec<AssetFact>,
    /// Accounts that exist among those needed (users and treasuries).
    pub accounts: Vec<AccountFact>,
    /// Users among `Needs::wallets` that have at least one account.
    pub users_with_wallet: Vec<String>,
    pub entries: Vec<EntryFact>,
}

impl Facts {
    fn asset(&self, asset: &AssetRef) -> Option<&AssetFact> {
        self.assets.iter().find(|fact| names_asset(asset, fact))
    }
}

fn names_asset(asset: &AssetRef, fact: &AssetFact) -> bool {
    match asset {
        AssetRef::Symbol(symbol) => *symbol == fact.symbol,
        AssetRef::Id(id) => Uuid::parse_str(&fact.id).is_ok_and(|fact_id| fact_id == *id),
    }
}

/// The request a key names, in a form where two requests are the same
/// exactly when they are equal: the route, the user, every field given, the
/// asset by its id (however the caller named it), metadata with its keys
/// sorted. Stored with the key, as compact JSON with its keys in order.
///
/// Kept as that text: two requests whose texts are equal are the same
/// without parsing either (a replay, the common case); only texts that
/// differ are parsed and compared as JSON (a record written by another
/// writer, such as the version 3 migration, may spell the same request
/// differently), and then named field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest(String);

impl CanonicalRequest {
    pub fn to_json(&self) -> &str {
        &self.0
    }

    /// A stored canonical request, as the store read it.
    pub fn from_json(text: String) -> CanonicalRequest {
        CanonicalRequest(text)
    }

    fn parsed(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.0) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// Whether `self` and `other` name the same request.
    pub fn is_same_as(&self, other: &CanonicalRequest) -> bool {
        self.0 == other.0 || {
            let parsed = self.parsed();
            !parsed.is_empty() && parsed == other.parsed()
        }
    }

    /// The request fields in which `self` and `other` differ, by name
    /// (`amount`, `note`; `operations[2].amount` inside a batch), sorted.
    pub fn differing(&self, other: &CanonicalRequest) -> Vec<String> {
        let mut fields = Vec::new();
        differing_fields(&self.parsed(), &other.parsed(), "", &mut fields);
        fields
    }
}

fn differing_fields(
    left: &Map<String, Value>,
    right: &Map<String, Value>,
    prefix: &str,
    fields: &mut Vec<String>,
) {
    let names: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    for name in names {
        let (a, b) = (
            left.get(name).unwrap_or(&Value::Null),
            right.get(name).unwrap_or(&Value::Null),
        );
        if a == b {
            continue;
        }
        match (name.as_str(), a, b) {
            ("operations", Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (index, (a, b)) in a.iter().zip(b).enumerate() {
                    if let (Value::Object(a), Value::Object(b)) = (a, b) {
                        differing_fields(a, b, &format!("operations[{index}]."), fields);
                    }
                }
            }
            _ => fields.push(format!("{prefix}{name}")),
        }
    }
}

/// One request, or one operation of a batch, as canonical JSON. The fields
/// are in alphabetical order, as they serialise; an absent field of a shape
/// is skipped, a field of the shape not given is `null`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Canonical<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Option<&'a BTreeMap<String, String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operations: Option<Vec<Canonical<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

impl<'a> Canonical<'a> {
    fn empty() -> Canonical<'a> {
        Canonical {
            amount: None,
            asset: None,
            id: None,
            metadata: None,
            note: None,
            operations: None,
            reference_id: None,
            route: None,
            to: None,
            kind: None,
            user_id: None,
        }
    }

    fn with_details(mut self, details: &'a EntryDetails) -> Canonical<'a> {
        self.reference_id = Some(details.reference_id.as_ref().map(|r| r.as_str()));
        self.note = Some(details.note.as_ref().map(|n| n.as_str()));
        self.metadata = Some(details.metadata.as_ref().map(Metadata::entries));
        self
    }
}

/// Builds the canonical form of `command`. An asset the ledger lacks is
/// written as the caller named it: it can never equal a stored request.
pub fn canonical_request(command: &Command, facts: &Facts) -> CanonicalRequest {
    let asset_value = |asset: &AssetRef| match facts.asset(asset) {
        Some(fact) => fact.id.clone(),
        None => match asset {
            AssetRef::Symbol(symbol) => format!("unknown:{symbol}"),
            AssetRef::Id(id) => format!("unknown:{id}"),
        },
    };
    fn operation_fields<'a>(
        operation: &'a Operation,
        asset_value: &dyn Fn(&AssetRef) -> String,
    ) -> Canonical<'a> {
        match operation {
            Operation::Credit {
                user,
                asset,
                amount,
                details,
                ..
            }
            | Operation::Spend {
                user,
                asset,
                amount,
                details,
            } => Canonical {
                user_id: Some(user.as_str()),
                asset: Some(asset_value(asset)),
                amount: Some(Some(amount.get())),
                ..Canonical::empty()
            }
            .with_details(details),
            Operation::Transfer {
                from,
                to,
                asset,
                amount,
                details,
            } => Canonical {
                user_id: Some(from.as_str()),
                to: Some(to.as_str()),
                asset: Some(asset_value(asset)),
                amount: Some(Some(amount.get())),
                ..Canonical::empty()
            }
            .with_details(details),
            Operation::Reverse {
                entry,
                amount,
                details,
            } => Canonical {
                id: Some(entry.to_string()),
                amount: Some(amount.map(Amount::get)),
                ..Canonical::empty()
            }
            .with_details(details),
        }
    }
    let canonical = match command.route {
        Route::Batch => Canonical {
            route: Some(command.route.as_str()),
            operations: Some(
                command
                    .operations
                    .iter()
                    .map(|operation| Canonical {
                        kind: Some(operation_type(operation)),
                        ..operation_fields(operation, &asset_value)
                    })
                    .collect(),
            ),
            ..Canonical::empty()
        },
        route => Canonical {
            route: Some(route.as_str()),
            ..command
                .operations
                .first()
                .map_or_else(Canonical::empty, |operation| {
                    operation_fields(operation, &asset_value)
                })
        },
    };
    CanonicalRequest(serde_json::to_string(&canonical).unwrap_or_else(|_| "{}".to_owned()))
}

/// A batch operation's `type`, as API.md spells it.
fn operation_type(operation: &Operation) -> &'static str {
    match operation {
        Operation::Credit {
            kind: CreditKind::Topup,
            ..
        } => "topup",
        Operation::Credit {
            kind: CreditKind::Bonus,
            ..
        } => "bonus",
        Operation::Spend { .. } => "spend",
        Operation::Transfer { .. } => "transfer",
        Operation::Reverse { .. } => "reverse",
    }
}

/// A party to an entry as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    User(String),
    Treasury,
}

impl Party {
    fn user(&self) -> Option<&str> {
        match self {
            Party::User(user) => Some(user),
            Party::Treasury => None,
        }
    }
}

impl From<&AccountKey> for Party {
    fn from(key: &AccountKey) -> Party {
        match &key.owner {
            Owner::User(user) => Party::User(user.clone()),
            Owner::Treasury => Party::Treasury,
        }
    }
}

/// An entry as written: what answers, replays and history are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEntry {
    pub seq: i64,
    pub id: String,
    pub kind: EntryKind,
    pub asset_symbol: String,
    pub amount: i64,
    pub debit: Party,
    pub credit: Party,
    pub debit_balance_after: i64,
    pub credit_balance_after: i64,
    /// For a REVERSAL: the id and kind of the entry it reverses.
    pub reverses: Option<(String, EntryKind)>,
    pub idempotency_key: String,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<Metadata>,
    pub created_at_ms: i64,
}

impl RecordedEntry {
    /// The side of the user whose request this was: the credited user of a
    /// TOPUP or BONUS, the debited user of a SPEND, the sender of a
    /// TRANSFER; for a REVERSAL, the same user as the entry it reverses,
    /// who is on the other side of it.
    pub fn requester_side(&self) -> Direction {
        fn side(kind: EntryKind, reversed: Option<EntryKind>) -> Direction {
            match kind {
                EntryKind::Topup | EntryKind::Bonus => Direction::Credit,
                EntryKind::Spend | EntryKind::Transfer => Direction::Debit,
                EntryKind::Reversal => match side(reversed.unwrap_or(EntryKind::Topup), None) {
                    Direction::Credit => Direction::Debit,
                    Direction::Debit => Direction::Credit,
                },
            }
        }
        side(self.kind, self.reverses.as_ref().map(|(_, kind)| *kind))
    }

    fn party(&self, side: Direction) -> (&Party, i64) {
        match side {
            Direction::Debit => (&self.debit, self.debit_balance_after),
            Direction::Credit => (&self.credit, self.credit_balance_after),
        }
    }

    /// The entry as `side`'s user's history shows it.
    pub fn seen_from(&self, side: Direction) -> UserEntry {
        let (_, balance_after) = self.party(side);
        let other = match side {
            Direction::Debit => &self.credit,
            Direction::Credit => &self.debit,
        };
        UserEntry {
            seq: self.seq,
            id: self.id.clone(),
            kind: self.kind,
            asset_symbol: self.asset_symbol.clone(),
            amount: self.amount,
            direction: side,
            balance_after,
            counterparty: other.user().map(str::to_owned),
            reverses: self.reverses.as_ref().map(|(id, _)| id.clone()),
            hold_id: None,
            idempotency_key: self.idempotency_key.clone(),
            reference_id: self.reference_id.clone(),
            note: self.note.clone(),
            metadata: self.metadata.clone(),
            created_at_ms: self.created_at_ms,
        }
    }
}

/// An entry seen from one user's side: what API.md calls a Transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub seq: i64,
    pub id: String,
    pub kind: EntryKind,
    pub asset_symbol: String,
    pub amount: i64,
    pub direction: Direction,
    pub balance_after: i64,
    pub counterparty: Option<String>,
    pub reverses: Option<String>,
    pub hold_id: Option<String>,
    pub idempotency_key: String,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<Metadata>,
    pub created_at_ms: i64,
}

/// One user's balance in one asset right after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAfter {
    pub user: String,
    pub asset_symbol: String,
    pub balance: i64,
    /// `balance` less what holds set aside; until holds exist, `balance`.
    pub available: i64,
}

/// The answer to a command, as it was when the command was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// One operation: its entry seen from the requesting user, and that
    /// user's balance after it.
    Entry {
        transaction: Box<UserEntry>,
        balance: i64,
        available: i64,
    },
    /// A batch: each entry seen from its operation's user, in order, and one
    /// balance per (user, asset) touched, in the order first touched.
    Batch {
        transactions: Vec<UserEntry>,
        balances: Vec<BalanceAfter>,
    },
}

/// A command either wrote something new or found what its key already names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(Answer),
    Replayed(Answer),
}

/// The answer to a command of `route` that made `entries`, in order. The
/// one place answers come from, for new commands and their replays alike.
pub fn answer(route: Route, entries: &[RecordedEntry]) -> Option<Answer> {
    if route == Route::Batch {
        let mut balances: Vec<BalanceAfter> = Vec::new();
        let mut touch = |party: &Party, symbol: &str, balance: i64| {
            let Party::User(user) = party else { return };
            match balances
                .iter_mut()
                .find(|row| row.user == *user && row.asset_symbol == symbol)
            {
                Some(row) => {
                    row.balance = balance;
                    row.available = balance;
                }
                None => balances.push(BalanceAfter {
                    user: user.clone(),
                    asset_symbol: symbol.to_owned(),
                    balance,
                    available: balance,
                }),
            }
        };
        let mut transactions = Vec::with_capacity(entries.len());
        for entry in entries {
            let side = entry.requester_side();
            let (party, balance) = entry.party(side);
            touch(party, &entry.asset_symbol, balance);
            let other = match side {
                Direction::Debit => Direction::Credit,
                Direction::Credit => Direction::Debit,
            };
            let (other_party, other_balance) = entry.party(other);
            touch(other_party, &entry.asset_symbol, other_balance);
            transactions.push(entry.seen_from(side));
        }
        return Some(Answer::Batch {
            transactions,
            balances,
        });
    }
    let entry = entries.first()?;
    let side = entry.requester_side();
    let (_, balance) = entry.party(side);
    Some(Answer::Entry {
        transaction: Box::new(entry.seen_from(side)),
        balance,
        available: balance,
    })
}

/// An entry decided, to be written by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    pub kind: EntryKind,
    pub asset_id: String,
    pub asset_symbol: String,
    pub amount: i64,
    pub debit: AccountKey,
    pub credit: AccountKey,
    pub debit_balance_after: i64,
    pub credit_balance_after: i64,
    /// For a REVERSAL: what it reverses, and the total reversed after it.
    pub reverses: Option<PlannedReversal>,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedReversal {
    pub seq: i64,
    pub id: String,
    pub kind: EntryKind,
    pub reversed_after: i64,
}

/// Everything a new command writes: the idempotency record, the user
/// accounts it opens, its entries in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub caller: Caller,
    pub key: IdempotencyKey,
    pub route: Route,
    pub request: CanonicalRequest,
    pub new_accounts: Vec<AccountKey>,
    pub entries: Vec<PlannedEntry>,
}

/// What a command comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Its key already names this same request: answer as then.
    Replay(Answer),
    /// New: write this.
    Apply(Plan),
}

/// Decides `command` from `facts`. Every rejection is found here; see the
/// module comment.
pub fn decide(command: &Command, facts: &Facts) -> Result<Decision, Rejection> {
    let request = canonical_request(command, facts);
    if let Some(stored) = &facts.stored {
        if !stored.request.is_same_as(&request) {
            return Err(Rejection::IdempotencyKeyReused {
                differing: stored.request.differing(&request),
            });
        }
        // The same request: the same route as the original's.
        return answer(command.route, &stored.entries)
            .map(Decision::Replay)
            .ok_or(Rejection::StoredRequestUnreadable);
    }
    let mut working = Working::new(facts);
    let mut entries = Vec::with_capacity(command.operations.len());
    for (index, operation) in command.operations.iter().enumerate() {
        match apply(operation, facts, &mut working) {
            Ok(entry) => entries.push(entry),
            Err(rejection) if command.route == Route::Batch => {
                return Err(Rejection::InBatch {
                    operation: index,
                    cause: Box::new(rejection),
                })
            }
            Err(rejection) => return Err(rejection),
        }
    }
    Ok(Decision::Apply(Plan {
        caller: command.caller,
        key: command.key.clone(),
        route: command.route,
        request,
        new_accounts: working.new_accounts,
        entries,
    }))
}

/// The balances as the command's operations leave them, in memory. Ordered
/// maps: a command touches a handful of accounts, and hashing them cost
/// more than comparing (callgrind, `wallet bench` spend).
struct Working {
    balances: BTreeMap<AccountKey, i64>,
    existing: BTreeSet<AccountKey>,
    new_accounts: Vec<AccountKey>,
    users_with_wallet: BTreeSet<String>,
    reversed: BTreeMap<i64, i64>,
}

impl Working {
    fn new(facts: &Facts) -> Working {
        Working {
            balances: facts
                .accounts
                .iter()
                .map(|account| (account.key.clone(), account.balance))
                .collect(),
            existing: facts
                .accounts
                .iter()
                .map(|account| account.key.clone())
                .collect(),
            new_accounts: Vec::new(),
            users_with_wallet: facts.users_with_wallet.iter().cloned().collect(),
            reversed: facts
                .entries
                .iter()
                .map(|entry| (entry.seq, entry.reversed))
                .collect(),
        }
    }

    fn balance(&self, key: &AccountKey) -> i64 {
        self.balances.get(key).copied().unwrap_or(0)
    }

    /// Takes `amount` from `key`: a user must have it (and an account, and
    /// a wallet at all); a Treasury only stays within i64.
    fn debit(&mut self, key: &AccountKey, amount: i64) -> Result<i64, Rejection> {
        let before = self.balance(key);
        let after = match &key.owner {
            Owner::User(user) => {
                if !self.existing.contains(key) && !self.users_with_wallet.contains(user) {
                    return Err(Rejection::WalletNotFound);
                }
                if before < amount {
                    return Err(Rejection::InsufficientFunds {
                        balance: before,
                        available: before,
                        requested: amount.unsigned_abs(),
                    });
                }
                before - amount
            }
            Owner::Treasury => before
                .checked_sub(amount)
                .ok_or(Rejection::BalanceOverflow)?,
        };
        self.balances.insert(key.clone(), after);
        Ok(after)
    }

    /// Gives `amount` to `key`, opening a user's account on its first
    /// credit: a user's balance stays within 2^53 - 1 (API.md), a
    /// Treasury's within i64.
    fn credit(&mut self, key: &AccountKey, amount: i64) -> Result<i64, Rejection> {
        let before = self.balance(key);
        let after = before
            .checked_add(amount)
            .ok_or(Rejection::BalanceOverflow)?;
        if let Owner::User(user) = &key.owner {
            if after.unsigned_abs() > AMOUNT_MAX {
                return Err(Rejection::BalanceOverflow);
            }
            if self.existing.insert(key.clone()) {
                self.new_accounts.push(key.clone());
            }
            self.users_with_wallet.insert(user.clone());
        }
        self.balances.insert(key.clone(), after);
        Ok(after)
    }
}

/// Applies one operation to the working set: its entry, or why not.
fn apply(
    operation: &Operation,
    facts: &Facts,
    working: &mut Working,
) -> Result<PlannedEntry, Rejection> {
    let details_of = |details: &EntryDetails| {
        (
            details.reference_id.as_ref().map(|r| r.as_str().to_owned()),
            details.note.as_ref().map(|n| n.as_str().to_owned()),
            details.metadata.clone(),
        )
    };
    let (kind, asset, amount, debit, credit, reverses, details) = match operation {
        Operation::Credit {
            kind,
            user,
            asset,
            amount,
            details,
        } => {
            let asset = facts.asset(asset).ok_or(Rejection::AssetNotFound)?;
            (
                kind.entry_kind(),
                asset.clone(),
                amount.as_i64(),
                AccountKey::treasury(&asset.id),
                AccountKey::user(user.as_str(), &asset.id),
                None,
                details_of(details),
            )
        }
        Operation::Spend {
            user,
            asset,
            amount,
            details,
        } => {
            let asset = facts.asset(asset).ok_or(Rejection::AssetNotFound)?;
            (
                EntryKind::Spend,
                asset.clone(),
                amount.as_i64(),
                AccountKey::user(user.as_str(), &asset.id),
                AccountKey::treasury(&asset.id),
                None,
                details_of(details),
            )
        }
        Operation::Transfer {
            from,
            to,
            asset,
            amount,
            details,
        } => {
            if from == to {
                return Err(Rejection::TransferToSelf);
            }
            let asset = facts.asset(asset).ok_or(Rejection::AssetNotFound)?;
            (
                EntryKind::Transfer,
                asset.clone(),
                amount.as_i64(),
                AccountKey::user(from.as_str(), &asset.id),
                AccountKey::user(to.as_str(), &asset.id),
                None,
                details_of(details),
            )
        }
        Operation::Reverse {
            entry,
            amount,
            details,
        } => {
            let original = facts
                .entries
                .iter()
                .find(|fact| Uuid::parse_str(&fact.id).is_ok_and(|id| id == *entry))
                .ok_or(Rejection::TransactionNotFound)?;
            if !original.kind.is_reversible() {
                return Err(Rejection::NotReversible);
            }
            let reversed = working
                .reversed
                .get(&original.seq)
                .copied()
                .unwrap_or(original.reversed);
            let reversible = original.amount - reversed;
            let amount = amount.map_or(reversible, Amount::as_i64);
            if amount <= 0 || amount > reversible {
                return Err(Rejection::ReversalExceedsOriginal { reversible });
            }
            working.reversed.insert(original.seq, reversed + amount);
            (
                EntryKind::Reversal,
                AssetFact {
                    id: original.asset_id.clone(),
                    symbol: original.asset_symbol.clone(),
                },
                amount,
                original.credit.clone(),
                original.debit.clone(),
                Some(PlannedReversal {
                    seq: original.seq,
                    id: original.id.clone(),
                    kind: original.kind,
                    reversed_after: reversed + amount,
                }),
                details_of(details),
            )
        }
    };
    let debit_balance_after = working.debit(&debit, amount)?;
    let credit_balance_after = working.credit(&credit, amount)?;
    let (reference_id, note, metadata) = details;
    Ok(PlannedEntry {
        kind,
        asset_id: asset.id,
        asset_symbol: asset.symbol,
        amount,
        debit,
        credit,
        debit_balance_after,
        credit_balance_after,
        reverses,
        reference_id,
        note,
        metadata,
    })
}

impl PlannedEntry {
    /// The entry as written, once the store has given it its place, id and
    /// time; `idempotency_key` is the command's.
    pub fn recorded(
        &self,
        seq: i64,
        id: String,
        idempotency_key: &IdempotencyKey,
        created_at_ms: i64,
    ) -> RecordedEntry {
        RecordedEntry {
            seq,
            id,
            kind: self.kind,
            asset_symbol: self.asset_symbol.clone(),
            amount: self.amount,
            debit: Party::from(&self.debit),
            credit: Party::from(&self.credit),
            debit_balance_after: self.debit_balance_after,
            credit_balance_after: self.credit_balance_after,
            reverses: self
                .reverses
                .as_ref()
                .map(|reversal| (reversal.id.clone(), reversal.kind)),
            idempotency_key: idempotency_key.as_str().to_owned(),
            reference_id: self.reference_id.clone(),
            note: self.note.clone(),
            metadata: self.metadata.clone(),
            created_at_ms,
        }
    }

    /// The user accounts this entry touches, by name.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        [self.debit.user_name(), self.credit.user_name()]
            .into_iter()
            .flatten()
    }
}

/// A new asset type as `POST /assets` asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAsset {
    pub symbol: AssetSymbol,
    pub name: AssetName,
    pub decimals: AssetDecimals,
}

/// An asset type that exists, as the catalogue lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    pub id: String,
    pub symbol: String,
    pub name: String,
    pub decimals: u8,
    pub created_at_ms: i64,
}

/// Whether `POST /assets` creates, finds the same, or refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetDecision {
    Create,
    AlreadyTheSame(AssetRow),
}

/// Decides a new asset against the one of the same symbol (if any) and the
/// number that exist: assets are never renamed, and at most
/// `ASSET_TYPES_MAX` exist.
pub fn decide_asset(
    new: &NewAsset,
    same_symbol: Option<AssetRow>,
    asset_count: usize,
) -> Result<AssetDecision, Rejection> {
    match same_symbol {
        Some(existing)
            if existing.name == new.name.as_str() && existing.decimals == new.decimals.get() =>
        {
            Ok(AssetDecision::AlreadyTheSame(existing))
        }
        Some(_) => Err(Rejection::AssetExists),
        None if asset_count >= ASSET_TYPES_MAX => Err(Rejection::TooManyAssets),
        None => Ok(AssetDecision::Create),
    }
}
