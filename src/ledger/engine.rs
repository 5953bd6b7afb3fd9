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

use super::parts::{self, Part, PartBalances};
use super::Rejection;
use crate::domain::{
    Amount, AssetDecimals, AssetName, AssetRef, AssetRules, AssetSymbol, Caller, Direction,
    EntryKind, IdempotencyKey, Limit, LimitedKind, Metadata, Note, ReferenceId, SpendOrder, UserId,
};
use crate::limits::{AMOUNT_MAX, ASSET_TYPES_MAX, HOLDS_PER_ACCOUNT_MAX};

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
    Hold,
    Capture,
    Void,
}

impl Route {
    pub const ALL: [Route; 9] = [
        Route::Topup,
        Route::Bonus,
        Route::Spend,
        Route::Transfer,
        Route::Reverse,
        Route::Batch,
        Route::Hold,
        Route::Capture,
        Route::Void,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Topup => "topup",
            Route::Bonus => "bonus",
            Route::Spend => "spend",
            Route::Transfer => "transfer",
            Route::Reverse => "reverse",
            Route::Batch => "batch",
            Route::Hold => "hold",
            Route::Capture => "capture",
            Route::Void => "void",
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

/// Where a hold stands. Stored as HELD until it closes; a HELD hold whose
/// `expiresAt` has come is EXPIRED from that instant, whether or not the
/// writer has recorded it yet (`HoldFact::status_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldStatus {
    Held,
    Captured,
    Voided,
    Expired,
}

impl HoldStatus {
    pub const ALL: [HoldStatus; 4] = [
        HoldStatus::Held,
        HoldStatus::Captured,
        HoldStatus::Voided,
        HoldStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Held => "HELD",
            HoldStatus::Captured => "CAPTURED",
            HoldStatus::Voided => "VOIDED",
            HoldStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(raw: &str) -> Option<HoldStatus> {
        HoldStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
    }
}

/// Whether a hold that expires at `expires_at_ms` has expired at `now_ms`:
/// from the instant itself on. The one place this rule lives; the SQLite
/// queries that find due holds say `expires_at <= now` to match it.
pub fn has_expired(expires_at_ms: i64, now_ms: i64) -> bool {
    now_ms >= expires_at_ms
}

/// A hold as stored, with what its answers and reads show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldFact {
    pub seq: i64,
    pub id: String,
    pub user: String,
    pub asset_id: String,
    pub asset_symbol: String,
    pub amount: i64,
    /// As stored: HELD until it closes.
    pub status: HoldStatus,
    pub captured_amount: i64,
    /// The id of the entry its capture made.
    pub captured_by: Option<String>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    pub idempotency_key: String,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<Metadata>,
    /// The parts of the balance it set aside when it was made.
    pub parts: Vec<Part>,
}

impl HoldFact {
    /// Its status at `now_ms`: a HELD hold past its expiry is EXPIRED.
    pub fn status_at(&self, now_ms: i64) -> HoldStatus {
        match self.status {
            HoldStatus::Held if has_expired(self.expires_at_ms, now_ms) => HoldStatus::Expired,
            status => status,
        }
    }

    /// The hold as callers see it at `now_ms`: an expired one closed at its
    /// `expiresAt`.
    pub fn seen_at(&self, now_ms: i64) -> HoldFact {
        let status = self.status_at(now_ms);
        HoldFact {
            status,
            closed_at_ms: match status {
                HoldStatus::Expired => Some(self.expires_at_ms),
                _ => self.closed_at_ms,
            },
            ..self.clone()
        }
    }

    /// The hold as it was when it was made: what its creation's replay shows.
    fn as_created(&self) -> HoldFact {
        HoldFact {
            status: HoldStatus::Held,
            captured_amount: 0,
            captured_by: None,
            closed_at_ms: None,
            ..self.clone()
        }
    }
}

/// One movement a command asks for.
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
    /// Sets `amount` of `user`'s available balance aside until `expires_in_seconds` pass.
    Hold {
        user: UserId,
        asset: AssetRef,
        amount: Amount,
        expires_in_seconds: u32,
        details: EntryDetails,
    },
    /// Captures `amount` (default: all) of `hold`, to the Treasury or to
    /// `to`, and releases the rest. `details` gives the entry's note and
    /// metadata; its referenceId is the hold's.
    Capture {
        hold: Uuid,
        amount: Option<Amount>,
        to: Option<UserId>,
        details: EntryDetails,
    },
    /// Releases `hold`, writing no entry.
    Void { hold: Uuid },
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
    /// Holds to capture or void, with a capture's recipient; the store also
    /// reads the hold's account, its Treasury and the recipient's account.
    pub holds: Vec<(Uuid, Option<UserId>)>,
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
            Operation::Hold { user, asset, .. } => {
                needs.assets.push(asset.clone());
                needs.user_accounts.push((user.clone(), asset.clone()));
                needs.wallets.push(user.clone());
            }
            Operation::Capture { hold, to, .. } => needs.holds.push((*hold, to.clone())),
            Operation::Void { hold } => needs.holds.push((*hold, None)),
        }
    }
    needs
}

/// An asset type as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetFact {
    pub id: String,
    pub symbol: String,
    /// Which part a debit takes first (the asset's rules; free-first while
    /// none are stored).
    pub spend_order: SpendOrder,
}

/// An account that exists, with its balance now and what holds set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFact {
    pub key: AccountKey,
    pub balance: i64,
    /// Held by the holds still stored as HELD, and how many they are,
    /// including `due` ones.
    pub held: i64,
    pub active_holds: i64,
    /// Holds stored as HELD whose expiry has come at `Facts::now_ms`: they
    /// count nowhere, and a command that writes records their expiry.
    pub due: Vec<DueHold>,
    /// A user's balance by part (they add up to `balance`), and what the
    /// HELD holds set aside of each (they add up to `held`). Empty for a
    /// Treasury, which keeps no parts.
    pub parts: PartBalances,
    pub held_parts: PartBalances,
}

impl AccountFact {
    /// An account with nothing held, all of it paid.
    pub fn new(key: AccountKey, balance: i64) -> AccountFact {
        let parts = match key.owner {
            Owner::User(_) => PartBalances {
                paid: balance,
                ..PartBalances::default()
            },
            Owner::Treasury => PartBalances::default(),
        };
        AccountFact {
            key,
            balance,
            held: 0,
            active_holds: 0,
            due: Vec::new(),
            parts,
            held_parts: PartBalances::default(),
        }
    }
}

/// A hold past its expiry that is still stored as HELD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueHold {
    pub seq: i64,
    pub amount: i64,
    pub parts: Vec<Part>,
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
    /// What it moved, in the order taken.
    pub parts: Vec<Part>,
}

/// The rules in force on a user account a command may move, with what each
/// cap's window holds already (API.md, Limits). Only accounts with a rule
/// are here: most read none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRules {
    pub key: AccountKey,
    pub max_balance: Option<i64>,
    pub windows: Vec<WindowFact>,
}

/// One cap and the amounts of the user's entries it counts that were made
/// in its trailing window before this command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowFact {
    pub limit: Limit,
    pub used: i64,
}

/// When a refused amount would fit under its cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryAfter {
    /// The amount alone is over the cap: no wait lets it through.
    Never,
    Seconds(u64),
    /// When entries already stored that hold `must_leave` of the window
    /// have left it. Only the store can say when: it turns this into
    /// `Seconds` before anyone sees it (`store::write`).
    WhenStoredLeave {
        account: AccountKey,
        must_leave: i64,
    },
}

/// What the caller's key already names: the canonical request and the
/// entries it made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub request: CanonicalRequest,
    pub entries: Vec<RecordedEntry>,
    /// The hold it made, captured or voided.
    pub hold: Option<HoldFact>,
    /// The balances and held amounts its answer showed (see `AnswerState`).
    pub state: AnswerState,
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
    /// The holds the command names that exist.
    pub holds: Vec<HoldFact>,
    /// The rules on the user accounts the command names, where any binds.
    pub rules: Vec<AccountRules>,
    /// The writer's clock: holds expire, and new ones are timed, by it.
    pub now_ms: i64,
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
    expires_in_seconds: Option<u32>,
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
    to: Option<Option<&'a str>>,
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
            expires_in_seconds: None,
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
                to: Some(Some(to.as_str())),
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
            Operation::Hold {
                user,
                asset,
                amount,
                expires_in_seconds,
                details,
            } => Canonical {
                user_id: Some(user.as_str()),
                asset: Some(asset_value(asset)),
                amount: Some(Some(amount.get())),
                expires_in_seconds: Some(*expires_in_seconds),
                ..Canonical::empty()
            }
            .with_details(details),
            Operation::Capture {
                hold,
                amount,
                to,
                details,
            } => Canonical {
                id: Some(hold.to_string()),
                amount: Some(amount.map(Amount::get)),
                to: Some(to.as_ref().map(UserId::as_str)),
                note: Some(details.note.as_ref().map(|n| n.as_str())),
                metadata: Some(details.metadata.as_ref().map(Metadata::entries)),
                ..Canonical::empty()
            },
            Operation::Void { hold } => Canonical {
                id: Some(hold.to_string()),
                ..Canonical::empty()
            },
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
        Operation::Hold { .. } => "hold",
        Operation::Capture { .. } => "capture",
        Operation::Void { .. } => "void",
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
    /// For a capture: the hold it captured.
    pub hold_id: Option<String>,
    pub idempotency_key: String,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<Metadata>,
    pub created_at_ms: i64,
    /// The parts it moved, in the order taken (the same on both sides).
    pub parts: Vec<Part>,
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
            hold_id: self.hold_id.clone(),
            idempotency_key: self.idempotency_key.clone(),
            reference_id: self.reference_id.clone(),
            note: self.note.clone(),
            metadata: self.metadata.clone(),
            created_at_ms: self.created_at_ms,
            parts: self.parts.clone(),
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
    pub parts: Vec<Part>,
}

/// One user's balance in one asset right after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAfter {
    pub user: String,
    pub asset_symbol: String,
    pub balance: i64,
    /// `balance` less what active holds set aside.
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
    /// A hold made or voided: the hold, and its user's balance then.
    Hold {
        hold: Box<HoldFact>,
        balance: i64,
        held: i64,
        available: i64,
    },
    /// A capture: the hold, its entry seen from the hold's user, and that
    /// user's balance after it.
    Capture {
        hold: Box<HoldFact>,
        transaction: Box<UserEntry>,
        balance: i64,
        held: i64,
        available: i64,
    },
}

/// What an answer showed that its entries alone do not tell: each touched
/// user's held amount then (and, for a hold or a void, which write no
/// entry, the balance). Stored with the idempotency record, so a replay
/// answers `available` as it was. Empty, and stored as nothing, when no
/// user touched had anything held and no hold was involved: the common case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AnswerState {
    rows: Vec<StateRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
struct StateRow {
    user: String,
    asset: String,
    balance: i64,
    held: i64,
}

impl AnswerState {
    /// As stored: None when empty.
    pub fn to_json(&self) -> Option<String> {
        if self.rows.is_empty() {
            return None;
        }
        serde_json::to_string(self).ok()
    }

    /// A stored state; None or unreadable text is the empty one.
    pub fn from_json(text: Option<&str>) -> AnswerState {
        text.and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }

    fn row(&self, user: &str, asset_symbol: &str) -> Option<&StateRow> {
        self.rows
            .iter()
            .find(|row| row.user == user && row.asset == asset_symbol)
    }

    fn held(&self, user: &str, asset_symbol: &str) -> i64 {
        self.row(user, asset_symbol).map_or(0, |row| row.held)
    }
}

/// A command either wrote something new or found what its key already names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(Answer),
    Replayed(Answer),
}

/// The answer to a command of `route` that made `entries`, in order, and
/// made or closed `hold`, with `state` as it left the balances. The one
/// place answers come from, for new commands and their replays alike.
pub fn answer(
    route: Route,
    entries: &[RecordedEntry],
    hold: Option<&HoldFact>,
    state: &AnswerState,
) -> Option<Answer> {
    match route {
        Route::Hold | Route::Void => {
            let hold = hold?;
            let row = state.row(&hold.user, &hold.asset_symbol)?;
            let shown = if route == Route::Hold {
                hold.as_created()
            } else {
                hold.clone()
            };
            return Some(Answer::Hold {
                hold: Box::new(shown),
                balance: row.balance,
                held: row.held,
                available: row.balance - row.held,
            });
        }
        Route::Capture => {
            let (hold, entry) = (hold?, entries.first()?);
            let held = state.held(&hold.user, &hold.asset_symbol);
            return Some(Answer::Capture {
                hold: Box::new(hold.clone()),
                transaction: Box::new(entry.seen_from(Direction::Debit)),
                balance: entry.debit_balance_after,
                held,
                available: entry.debit_balance_after - held,
            });
        }
        _ => {}
    }
    if route == Route::Batch {
        let mut balances: Vec<BalanceAfter> = Vec::new();
        let mut touch = |party: &Party, symbol: &str, balance: i64| {
            let Party::User(user) = party else { return };
            let available = balance - state.held(user, symbol);
            match balances
                .iter_mut()
                .find(|row| row.user == *user && row.asset_symbol == symbol)
            {
                Some(row) => {
                    row.balance = balance;
                    row.available = available;
                }
                None => balances.push(BalanceAfter {
                    user: user.clone(),
                    asset_symbol: symbol.to_owned(),
                    balance,
                    available,
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
    let (party, balance) = entry.party(side);
    let held = party
        .user()
        .map_or(0, |user| state.held(user, &entry.asset_symbol));
    Some(Answer::Entry {
        transaction: Box::new(entry.seen_from(side)),
        balance,
        available: balance - held,
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
    /// For a capture: the hold's seq and id.
    pub hold: Option<(i64, String)>,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<Metadata>,
    /// The parts it moves, in the order taken: what the user side takes or
    /// is given (a Treasury keeps no parts).
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedReversal {
    pub seq: i64,
    pub id: String,
    pub kind: EntryKind,
    pub reversed_after: i64,
}

/// A hold decided, to be written by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedHold {
    pub account: AccountKey,
    pub user: String,
    pub asset_symbol: String,
    pub amount: i64,
    pub expires_at_ms: i64,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<Metadata>,
    /// The parts it sets aside, in spend order.
    pub parts: Vec<Part>,
}

impl PlannedHold {
    /// The hold as written, once the store has given it its place and id.
    pub fn recorded(
        &self,
        seq: i64,
        id: String,
        idempotency_key: &IdempotencyKey,
        created_at_ms: i64,
    ) -> HoldFact {
        HoldFact {
            seq,
            id,
            user: self.user.clone(),
            asset_id: self.account.asset_id.clone(),
            asset_symbol: self.asset_symbol.clone(),
            amount: self.amount,
            status: HoldStatus::Held,
            captured_amount: 0,
            captured_by: None,
            expires_at_ms: self.expires_at_ms,
            created_at_ms,
            closed_at_ms: None,
            idempotency_key: idempotency_key.as_str().to_owned(),
            reference_id: self.reference_id.clone(),
            note: self.note.clone(),
            metadata: self.metadata.clone(),
            parts: self.parts.clone(),
        }
    }
}

/// Everything a new command writes, in this order: the expiry of the holds
/// found due, the user accounts it opens, the idempotency record, the hold
/// it closes, the hold it makes, its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub caller: Caller,
    pub key: IdempotencyKey,
    pub route: Route,
    pub request: CanonicalRequest,
    /// Holds of the accounts read that were due: recorded EXPIRED.
    pub expire: Vec<i64>,
    pub new_accounts: Vec<AccountKey>,
    /// A capture's or void's hold, as it is once closed (`captured_by` is
    /// the store's to fill in, once the entry has its id).
    pub close_hold: Option<HoldFact>,
    pub new_hold: Option<PlannedHold>,
    pub entries: Vec<PlannedEntry>,
    pub state: AnswerState,
}

/// What a command comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Its key already names this same request: answer as then.
    Replay(Answer),
    /// New: write this.
    Apply(Box<Plan>),
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
        return answer(
            command.route,
            &stored.entries,
            stored.hold.as_ref(),
            &stored.state,
        )
        .map(Decision::Replay)
        .ok_or(Rejection::StoredRequestUnreadable);
    }
    let mut working = Working::new(facts);
    let mut entries = Vec::with_capacity(command.operations.len());
    for (index, operation) in command.operations.iter().enumerate() {
        match apply(operation, facts, &mut working) {
            Ok(entry) => entries.extend(entry),
            Err(rejection) if command.route == Route::Batch => {
                return Err(Rejection::InBatch {
                    operation: index,
                    cause: Box::new(rejection),
                })
            }
            Err(rejection) => return Err(rejection),
        }
    }
    let state = working.state(&entries);
    Ok(Decision::Apply(Box::new(Plan {
        caller: command.caller,
        key: command.key.clone(),
        route: command.route,
        request,
        expire: working.expire,
        new_accounts: working.new_accounts,
        close_hold: working.close_hold,
        new_hold: working.new_hold,
        entries,
        state,
    })))
}

/// The balances as the command's operations leave them, in memory. Ordered
/// maps: a command touches a handful of accounts, and hashing them cost
/// more than comparing (callgrind, `wallet bench` spend).
struct Working {
    balances: BTreeMap<AccountKey, i64>,
    /// What holds set aside per account, and how many, expired ones not
    /// counted.
    holds: BTreeMap<AccountKey, (i64, i64)>,
    existing: BTreeSet<AccountKey>,
    new_accounts: Vec<AccountKey>,
    users_with_wallet: BTreeSet<String>,
    reversed: BTreeMap<i64, i64>,
    expire: Vec<i64>,
    close_hold: Option<HoldFact>,
    new_hold: Option<PlannedHold>,
    rules: BTreeMap<AccountKey, AccountRules>,
    /// What earlier operations of this command counted, per account and
    /// kind: a batch counts each operation against the ones before it.
    counted: BTreeMap<(AccountKey, LimitedKind), i64>,
    /// Each user account's balance by part, and what holds set aside of
    /// each.
    parts: BTreeMap<AccountKey, PartBalances>,
    held_parts: BTreeMap<AccountKey, PartBalances>,
    spend_orders: BTreeMap<String, SpendOrder>,
    now_ms: i64,
}

/// How a debit chooses the parts it takes from a user.
enum Take<'a> {
    /// These first, as far as the user has them, then the spend order.
    Preferring(&'a [Part]),
    /// Exactly these: a capture takes the parts its hold set aside.
    Exactly(&'a [Part]),
}

impl Working {
    fn new(facts: &Facts) -> Working {
        let mut holds = BTreeMap::new();
        let mut expire = Vec::new();
        let mut parts = BTreeMap::new();
        let mut held_parts = BTreeMap::new();
        for account in &facts.accounts {
            let due: i64 = account.due.iter().map(|hold| hold.amount).sum();
            expire.extend(account.due.iter().map(|hold| hold.seq));
            if let Owner::User(_) = account.key.owner {
                parts.insert(account.key.clone(), account.parts.clone());
                // Most accounts hold nothing: no entry, nothing set aside.
                if account.held != 0 || !account.due.is_empty() {
                    let mut held = account.held_parts.clone();
                    for hold in &account.due {
                        for part in &hold.parts {
                            held.remove(part);
                        }
                    }
                    held_parts.insert(account.key.clone(), held);
                }
            }
            if account.held != 0 || account.active_holds != 0 {
                holds.insert(
                    account.key.clone(),
                    (
                        account.held - due,
                        account.active_holds - account.due.len() as i64,
                    ),
                );
            }
        }
        Working {
            holds,
            expire,
            close_hold: None,
            new_hold: None,
            rules: facts
                .rules
                .iter()
                .map(|rules| (rules.key.clone(), rules.clone()))
                .collect(),
            counted: BTreeMap::new(),
            parts,
            held_parts,
            spend_orders: facts
                .assets
                .iter()
                .map(|asset| (asset.id.clone(), asset.spend_order))
                .collect(),
            now_ms: facts.now_ms,
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

    /// What holds set aside in `key`, and how many they are.
    fn held(&self, key: &AccountKey) -> (i64, i64) {
        self.holds.get(key).copied().unwrap_or((0, 0))
    }

    /// `key`'s user must have a wallet to be debited or to hold.
    fn has_wallet(&self, key: &AccountKey, user: &str) -> bool {
        self.existing.contains(key) || self.users_with_wallet.contains(user)
    }

    fn spend_order(&self, key: &AccountKey) -> SpendOrder {
        self.spend_orders
            .get(&key.asset_id)
            .copied()
            .unwrap_or_default()
    }

    /// A user account's parts that no hold sets aside.
    fn available_parts(&self, key: &AccountKey) -> PartBalances {
        let whole = self.parts.get(key).cloned().unwrap_or_default();
        match self.held_parts.get(key) {
            Some(held) => whole.less(held),
            None => whole,
        }
    }

    /// Sets `amount` of `key`'s available balance aside, and the parts it
    /// takes in spend order.
    fn hold(&mut self, key: &AccountKey, user: &str, amount: i64) -> Result<Vec<Part>, Rejection> {
        if !self.has_wallet(key, user) {
            return Err(Rejection::WalletNotFound);
        }
        let balance = self.balance(key);
        let (held, active) = self.held(key);
        // The bound first: it holds whatever the balance.
        if active >= HOLDS_PER_ACCOUNT_MAX {
            return Err(Rejection::TooManyHolds);
        }
        if balance - held < amount {
            return Err(Rejection::InsufficientFunds {
                balance,
                available: balance - held,
                requested: amount.unsigned_abs(),
            });
        }
        let parts = self
            .available_parts(key)
            .take(amount, self.spend_order(key), &[])
            .ok_or(Rejection::PartsInconsistent)?;
        let held_parts = self.held_parts.entry(key.clone()).or_default();
        for part in &parts {
            held_parts.add(part);
        }
        self.holds.insert(key.clone(), (held + amount, active + 1));
        Ok(parts)
    }

    /// Releases a hold of `amount` on `key`, and the parts it set aside.
    fn release(&mut self, key: &AccountKey, amount: i64, parts: &[Part]) {
        let (held, active) = self.held(key);
        self.holds.insert(key.clone(), (held - amount, active - 1));
        if let Some(held_parts) = self.held_parts.get_mut(key) {
            for part in parts {
                held_parts.remove(part);
            }
        }
    }

    /// What the answer must remember beside its entries: the held amount of
    /// each user touched that has any, and for a hold route the hold's
    /// account whole.
    fn state(&self, entries: &[PlannedEntry]) -> AnswerState {
        let mut rows: Vec<StateRow> = Vec::new();
        let mut add = |key: &AccountKey, symbol: &str, always: bool| {
            let Some(user) = key.user_name() else { return };
            let (held, _) = self.held(key);
            if (held != 0 || always)
                && !rows
                    .iter()
                    .any(|row| row.user == user && row.asset == symbol)
            {
                rows.push(StateRow {
                    user: user.to_owned(),
                    asset: symbol.to_owned(),
                    balance: self.balance(key),
                    held,
                });
            }
        };
        let hold_account = match (&self.close_hold, &self.new_hold) {
            (Some(hold), _) => Some((
                AccountKey::user(&hold.user, &hold.asset_id),
                hold.asset_symbol.clone(),
            )),
            (None, Some(hold)) => Some((hold.account.clone(), hold.asset_symbol.clone())),
            (None, None) => None,
        };
        if let Some((key, symbol)) = &hold_account {
            add(key, symbol, true);
        }
        for entry in entries {
            add(&entry.debit, &entry.asset_symbol, false);
            add(&entry.credit, &entry.asset_symbol, false);
        }
        AnswerState { rows }
    }

    /// Takes `amount` from `key`: a user must have it (and an account, and
    /// a wallet at all), and gives the parts it took as `take` says; a
    /// Treasury only stays within i64, and takes no parts (None).
    fn debit(
        &mut self,
        key: &AccountKey,
        amount: i64,
        take: Take<'_>,
    ) -> Result<(i64, Option<Vec<Part>>), Rejection> {
        let before = self.balance(key);
        let mut taken = None;
        let after = match &key.owner {
            Owner::User(user) => {
                if !self.has_wallet(key, user) {
                    return Err(Rejection::WalletNotFound);
                }
                // What holds set aside is not there to spend (API.md).
                let (held, _) = self.held(key);
                if before - held < amount {
                    return Err(Rejection::InsufficientFunds {
                        balance: before,
                        available: before - held,
                        requested: amount.unsigned_abs(),
                    });
                }
                let available = self.available_parts(key);
                let parts = match take {
                    Take::Preferring(first) => available.take(amount, self.spend_order(key), first),
                    Take::Exactly(parts) => parts
                        .iter()
                        .all(|part| available.get(part.kind) >= part.amount)
                        .then(|| parts.to_vec()),
                }
                .ok_or(Rejection::PartsInconsistent)?;
                let whole = self.parts.entry(key.clone()).or_default();
                for part in &parts {
                    whole.remove(part);
                }
                taken = Some(parts);
                before - amount
            }
            Owner::Treasury => before
                .checked_sub(amount)
                .ok_or(Rejection::BalanceOverflow)?,
        };
        self.balances.insert(key.clone(), after);
        Ok((after, taken))
    }

    /// Counts an entry of `kind` and `amount` against the caps of the user
    /// it counts for (`account`): refused when the window, with the earlier
    /// operations of this command and this amount, would pass a cap. The
    /// first cap in the rules' order that would is named.
    fn count(
        &mut self,
        account: &AccountKey,
        kind: LimitedKind,
        amount: i64,
    ) -> Result<(), Rejection> {
        // Only an account with rules keeps a count: the common spend
        // allocates nothing here.
        let Some(rules) = self.rules.get(account) else {
            return Ok(());
        };
        let counted = self
            .counted
            .get(&(account.clone(), kind))
            .copied()
            .unwrap_or(0);
        for window in rules
            .windows
            .iter()
            .filter(|window| window.limit.kind == kind)
        {
            let max = window.limit.max;
            let used = window.used.saturating_add(counted);
            if used.saturating_add(amount) <= max {
                continue;
            }
            let retry_after = if amount > max {
                RetryAfter::Never
            } else if counted.saturating_add(amount) > max {
                // This command's own earlier operations must leave the
                // window: they are made now.
                RetryAfter::Seconds(u64::from(window.limit.window_seconds))
            } else {
                RetryAfter::WhenStoredLeave {
                    account: account.clone(),
                    must_leave: used + amount - max,
                }
            };
            return Err(Rejection::LimitExceeded {
                kind,
                window_seconds: window.limit.window_seconds,
                max,
                used,
                requested: amount.unsigned_abs(),
                retry_after,
            });
        }
        self.counted
            .insert((account.clone(), kind), counted.saturating_add(amount));
        Ok(())
    }

    /// Gives `amount` to `key` as `parts`, opening a user's account on its
    /// first credit: a user's balance stays within its maximum (API.md,
    /// Limits) and 2^53 - 1 (API.md), a Treasury's within i64.
    fn credit(&mut self, key: &AccountKey, amount: i64, parts: &[Part]) -> Result<i64, Rejection> {
        let before = self.balance(key);
        if let Some(max_balance) = self.rules.get(key).and_then(|rules| rules.max_balance) {
            if before.saturating_add(amount) > max_balance {
                return Err(Rejection::BalanceLimit {
                    max_balance,
                    balance: before,
                    requested: amount.unsigned_abs(),
                });
            }
        }
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
            let whole = self.parts.entry(key.clone()).or_default();
            for part in parts {
                whole.add(part);
            }
        }
        self.balances.insert(key.clone(), after);
        Ok(after)
    }
}

/// Applies one operation to the working set: its entry (a hold or a void
/// makes none), or why not.
fn apply(
    operation: &Operation,
    facts: &Facts,
    working: &mut Working,
) -> Result<Option<PlannedEntry>, Rejection> {
    let details_of = |details: &EntryDetails| {
        (
            details.reference_id.as_ref().map(|r| r.as_str().to_owned()),
            details.note.as_ref().map(|n| n.as_str().to_owned()),
            details.metadata.clone(),
        )
    };
    let (kind, asset, amount, debit, credit, reverses, details, hold, parts_rule) = match operation
    {
        Operation::Credit {
            kind,
            user,
            asset,
            amount,
            details,
        } => {
            let asset = facts.asset(asset).ok_or(Rejection::AssetNotFound)?;
            let part = match kind {
                CreditKind::Topup => Part::paid(amount.as_i64()),
                CreditKind::Bonus => Part::free(amount.as_i64()),
            };
            (
                kind.entry_kind(),
                asset.clone(),
                amount.as_i64(),
                AccountKey::treasury(&asset.id),
                AccountKey::user(user.as_str(), &asset.id),
                None,
                details_of(details),
                None,
                PartsRule::Give(vec![part]),
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
                None,
                PartsRule::Take(Vec::new()),
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
                None,
                PartsRule::Take(Vec::new()),
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
            // The original's parts come back last first; a user debited
            // gives them as far as it has them, then in spend order.
            let back = parts::given_back(&original.parts, reversed, amount);
            let parts_rule = match original.credit.owner {
                Owner::User(_) => PartsRule::Take(back),
                Owner::Treasury => PartsRule::Give(back),
            };
            (
                EntryKind::Reversal,
                AssetFact {
                    id: original.asset_id.clone(),
                    symbol: original.asset_symbol.clone(),
                    // Unused: `Working` knows each asset's spend order.
                    spend_order: SpendOrder::default(),
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
                None,
                parts_rule,
            )
        }
        Operation::Hold {
            user,
            asset,
            amount,
            expires_in_seconds,
            details,
        } => {
            let asset = facts.asset(asset).ok_or(Rejection::AssetNotFound)?;
            let key = AccountKey::user(user.as_str(), &asset.id);
            let parts = working.hold(&key, user.as_str(), amount.as_i64())?;
            let (reference_id, note, metadata) = details_of(details);
            working.new_hold = Some(PlannedHold {
                account: key,
                user: user.as_str().to_owned(),
                asset_symbol: asset.symbol.clone(),
                amount: amount.as_i64(),
                expires_at_ms: working
                    .now_ms
                    .saturating_add(i64::from(*expires_in_seconds) * 1000),
                reference_id,
                note,
                metadata,
                parts,
            });
            return Ok(None);
        }
        Operation::Capture {
            hold,
            amount,
            to,
            details,
        } => {
            let hold = active_hold(facts, hold, working.now_ms)?;
            let amount = amount.map_or(hold.amount, Amount::as_i64);
            if amount > hold.amount {
                return Err(Rejection::CaptureExceedsHold { held: hold.amount });
            }
            if to.as_ref().is_some_and(|to| to.as_str() == hold.user) {
                return Err(Rejection::TransferToSelf);
            }
            let key = AccountKey::user(&hold.user, &hold.asset_id);
            // The whole hold is released in the same step as the capture,
            // which takes the parts the hold set aside, in spend order.
            working.release(&key, hold.amount, &hold.parts);
            let captured = PartBalances::of(&hold.parts)
                .take(amount, working.spend_order(&key), &[])
                .ok_or(Rejection::PartsInconsistent)?;
            working.close_hold = Some(HoldFact {
                status: HoldStatus::Captured,
                captured_amount: amount,
                closed_at_ms: Some(working.now_ms),
                ..hold.clone()
            });
            let (kind, credit) = match to {
                Some(to) => (
                    EntryKind::Transfer,
                    AccountKey::user(to.as_str(), &hold.asset_id),
                ),
                None => (EntryKind::Spend, AccountKey::treasury(&hold.asset_id)),
            };
            (
                kind,
                AssetFact {
                    id: hold.asset_id.clone(),
                    symbol: hold.asset_symbol.clone(),
                    spend_order: SpendOrder::default(),
                },
                amount,
                key,
                credit,
                None,
                (
                    hold.reference_id.clone(),
                    details.note.as_ref().map(|n| n.as_str().to_owned()),
                    details.metadata.clone(),
                ),
                Some((hold.seq, hold.id.clone())),
                PartsRule::TakeExactly(captured),
            )
        }
        Operation::Void { hold } => {
            let hold = active_hold(facts, hold, working.now_ms)?;
            let key = AccountKey::user(&hold.user, &hold.asset_id);
            working.release(&key, hold.amount, &hold.parts);
            working.close_hold = Some(HoldFact {
                status: HoldStatus::Voided,
                closed_at_ms: Some(working.now_ms),
                ..hold.clone()
            });
            return Ok(None);
        }
    };
    let take = match &parts_rule {
        PartsRule::Give(_) | PartsRule::Take(_) => Take::Preferring(match &parts_rule {
            PartsRule::Take(first) => first,
            _ => &[],
        }),
        PartsRule::TakeExactly(parts) => Take::Exactly(parts),
    };
    let (debit_balance_after, taken) = working.debit(&debit, amount, take)?;
    let parts = match (taken, parts_rule) {
        (Some(taken), _) => taken,
        (None, PartsRule::Give(parts)) => parts,
        // A user debit always says what it took.
        (None, _) => return Err(Rejection::PartsInconsistent),
    };
    // API.md, Limits: what the user sent (SPEND, TRANSFER) or was given
    // (TOPUP, BONUS) counts; a reversal neither counts nor gives back.
    if let Some(limited) = LimitedKind::of(kind) {
        let counted = if limited.counts_the_credited_user() {
            &credit
        } else {
            &debit
        };
        working.count(counted, limited, amount)?;
    }
    let credit_balance_after = working.credit(&credit, amount, &parts)?;
    let (reference_id, note, metadata) = details;
    Ok(Some(PlannedEntry {
        kind,
        asset_id: asset.id,
        asset_symbol: asset.symbol,
        amount,
        debit,
        credit,
        debit_balance_after,
        credit_balance_after,
        reverses,
        hold,
        reference_id,
        note,
        metadata,
        parts,
    }))
}

/// Where an entry's parts come from.
enum PartsRule {
    /// The debit is the Treasury's: the user is given these.
    Give(Vec<Part>),
    /// The debit is a user's: these first, then in spend order.
    Take(Vec<Part>),
    /// The debit is a user's, of exactly these.
    TakeExactly(Vec<Part>),
}

/// The hold `id` names, if it exists and is still HELD at `now_ms`.
fn active_hold<'a>(facts: &'a Facts, id: &Uuid, now_ms: i64) -> Result<&'a HoldFact, Rejection> {
    let hold = facts
        .holds
        .iter()
        .find(|fact| Uuid::parse_str(&fact.id).is_ok_and(|fact_id| fact_id == *id))
        .ok_or(Rejection::HoldNotFound)?;
    match hold.status_at(now_ms) {
        HoldStatus::Held => Ok(hold),
        status => Err(Rejection::HoldNotActive { status }),
    }
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
            hold_id: self.hold.as_ref().map(|(_, id)| id.clone()),
            idempotency_key: idempotency_key.as_str().to_owned(),
            reference_id: self.reference_id.clone(),
            note: self.note.clone(),
            metadata: self.metadata.clone(),
            created_at_ms,
            parts: self.parts.clone(),
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
    pub rules: AssetRules,
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
