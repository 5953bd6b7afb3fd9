//! Goal: the real store (driven through `Store`, as the handlers drive it,
//! on a fresh database: a temporary SQLite file) and a plain in-memory model
//! of API.md's rules answer every command alike.
//!
//! Random sequences of topups, bonuses, spends, transfers between the
//! model's users (now and then to oneself), reversals of earlier entries
//! (whole, partial, too much, of a reversal, of an entry that does not
//! exist) and batches of one to five operations that may fail at any
//! index; from users with and without wallets, in known and unknown assets
//! named by symbol or by id; with idempotency keys drawn from a small pool
//! (so keys come back identically, with only the amount altered, and by
//! another route) by two callers (anonymous and one API key, whose keys are
//! distinct even when spelled alike), and exact retries of earlier requests.
//!
//! After every step the two agree on the answer (a replay is the original
//! answer, whole), on every balance (held 0, available = balance) and its
//! paid and free parts (API.md: a top-up paid, a bonus free, a debit free
//! first, a transfer keeping kinds, a reversal giving back the parts it
//! undoes last first; paid and free never below zero, and each asset's
//! supply of each kind the sum over its users), on every
//! entry of every user's history and every entry read by id (with how much
//! of it is reversed), on the number of entries, on each asset summing to
//! zero, and the audit that `wallet verify` runs passes. On a failure
//! proptest shrinks the sequence to a minimal one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use proptest::prelude::*;
use proptest::sample::Index;
use uuid::Uuid;

use wallet::domain::{
    self, Amount, AssetDecimals, AssetRef, AssetSymbol, Caller, Direction, EntryKind,
    IdempotencyKey, KeyName, Metadata, Note, PageLimit, ReferenceId, Scopes, UserId,
};
use wallet::ledger::engine::{
    Answer, BalanceAfter, Command, CreditKind, EntryDetails, NewAsset, Operation, Outcome, Route,
    UserEntry,
};
use wallet::ledger::parts::{Part, PartKind};
use wallet::ledger::Rejection;
use wallet::limits::{AMOUNT_MAX, WRITE_BATCH_MAX};
use wallet::store::{
    commands, AssetOutcome, DatabaseLocation, HistoryQuery, LedgerError, NewKey, OpenedStore,
    PartyRow, Store, TransactionDetail,
};

/// The catalogue's assets in symbol order, as `GET /assets` lists them.
const SYMBOLS: [&str; 3] = ["DIAMOND", "GOLD", "LOYALTY"];
/// A well-formed symbol and id that name no asset.
const UNKNOWN_SYMBOL: &str = "SILVER";
const UNKNOWN_ID: &str = "00000000-0000-4000-8000-000000000000";
/// An entry id no entry has: what a reversal names before any entry exists.
const NO_ENTRY: u128 = 0x0000_0000_0000_4000_8000_0000_0000_0001;
/// Nobody has a wallet at the start; a user's first credit opens one.
const USERS: [&str; 3] = ["ann", "ben", "cid"];
/// Keys come from a pool this small so they are often used again.
const KEY_POOL: usize = 16;
/// Callers: the anonymous one and one API key. A request's key `slot` is
/// `caller * KEY_POOL + n`, spelled `key-n` whoever the caller is, so the two
/// callers use the same spellings and the model keeps them apart.
const CALLERS: usize = 2;
/// The id of the one API key the real ledger holds: the first key made.
const API_KEY_ID: i64 = 1;
/// History is read in pages of this many after every step, and in pages
/// of `SMALL_PAGE` at the end of each case, so the cursor is followed.
const PAGE: &str = "200";
const SMALL_PAGE: &str = "3";

// ---------------------------------------------------------------------------
// Requests

/// How a request names its asset: index into `SYMBOLS`, or the unknown one
/// at `SYMBOLS.len()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AssetName {
    Symbol(usize),
    Id(usize),
}

impl AssetName {
    /// Index into `SYMBOLS`, or `None` for an asset that does not exist.
    fn known(self) -> Option<usize> {
        match self {
            AssetName::Symbol(index) | AssetName::Id(index) => {
                (index < SYMBOLS.len()).then_some(index)
            }
        }
    }

    fn asset_ref(self, asset_ids: &[String]) -> AssetRef {
        let raw = match self {
            AssetName::Symbol(index) => SYMBOLS.get(index).copied().unwrap_or(UNKNOWN_SYMBOL),
            AssetName::Id(index) => asset_ids.get(index).map_or(UNKNOWN_ID, String::as_str),
        };
        AssetRef::parse(raw).unwrap()
    }

    /// What the asset is, for comparing requests: named by symbol or by id,
    /// a known asset is itself; an unknown one is as it was spelled.
    fn identity(self) -> String {
        match (self, self.known()) {
            (_, Some(index)) => format!("asset {index}"),
            (AssetName::Symbol(_), None) => format!("unknown {UNKNOWN_SYMBOL}"),
            (AssetName::Id(_), None) => format!("unknown {UNKNOWN_ID}"),
        }
    }
}

/// The optional fields every write carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Details {
    reference: Option<u8>,
    note: Option<u8>,
    metadata: Option<u8>,
}

impl Details {
    fn reference(&self) -> Option<String> {
        self.reference.map(|n| format!("ref-{n}"))
    }

    fn note(&self) -> Option<String> {
        self.note.map(|n| format!("note {n}"))
    }

    fn metadata(&self) -> Option<Metadata> {
        self.metadata.map(|n| {
            let value = match n {
                0 => serde_json::json!({"tag": "a"}),
                _ => serde_json::json!({"z": "1", "tag": "b"}),
            };
            Metadata::parse(&value).unwrap()
        })
    }

    fn entry_details(&self) -> EntryDetails {
        EntryDetails {
            reference_id: self.reference().map(|r| ReferenceId::parse(&r).unwrap()),
            note: self.note().map(|n| Note::parse(&n).unwrap()),
            metadata: self.metadata(),
        }
    }

    fn fields(&self, fields: &mut BTreeMap<String, Option<String>>) {
        fields.insert("referenceId".into(), self.reference());
        fields.insert("note".into(), self.note());
        fields.insert("metadata".into(), self.metadata().map(|m| m.to_json()));
    }
}

/// A movement between a user and the Treasury or between two users: a
/// request of its own, or an operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Move {
    Credit {
        kind: CreditKind,
        user: usize,
        asset: AssetName,
        amount: u64,
        details: Details,
    },
    Spend {
        user: usize,
        asset: AssetName,
        amount: u64,
        details: Details,
    },
    Transfer {
        from: usize,
        to: usize,
        asset: AssetName,
        amount: u64,
        details: Details,
    },
}

impl Move {
    fn route(&self) -> Route {
        match self {
            Move::Credit {
                kind: CreditKind::Topup,
                ..
            } => Route::Topup,
            Move::Credit {
                kind: CreditKind::Bonus,
                ..
            } => Route::Bonus,
            Move::Spend { .. } => Route::Spend,
            Move::Transfer { .. } => Route::Transfer,
        }
    }

    fn amount_mut(&mut self) -> &mut u64 {
        match self {
            Move::Credit { amount, .. }
            | Move::Spend { amount, .. }
            | Move::Transfer { amount, .. } => amount,
        }
    }

    fn operation(&self, asset_ids: &[String]) -> Operation {
        let user = |index: usize| UserId::parse(USERS[index]).unwrap();
        let amount = |raw: u64| Amount::parse(raw).unwrap();
        match *self {
            Move::Credit {
                kind,
                user: who,
                asset,
                amount: raw,
                details,
            } => Operation::Credit {
                kind,
                user: user(who),
                asset: asset.asset_ref(asset_ids),
                amount: amount(raw),
                details: details.entry_details(),
            },
            Move::Spend {
                user: who,
                asset,
                amount: raw,
                details,
            } => Operation::Spend {
                user: user(who),
                asset: asset.asset_ref(asset_ids),
                amount: amount(raw),
                details: details.entry_details(),
            },
            Move::Transfer {
                from,
                to,
                asset,
                amount: raw,
                details,
            } => Operation::Transfer {
                from: user(from),
                to: user(to),
                asset: asset.asset_ref(asset_ids),
                amount: amount(raw),
                details: details.entry_details(),
            },
        }
    }

    /// The fields API.md compares, by name.
    fn fields(&self) -> BTreeMap<String, Option<String>> {
        let mut fields = BTreeMap::new();
        let (user, asset, amount, details) = match self {
            Move::Credit {
                user,
                asset,
                amount,
                details,
                ..
            }
            | Move::Spend {
                user,
                asset,
                amount,
                details,
            } => (user, asset, amount, details),
            Move::Transfer {
                from,
                to,
                asset,
                amount,
                details,
            } => {
                fields.insert("to".into(), Some(USERS[*to].to_owned()));
                (from, asset, amount, details)
            }
        };
        fields.insert("userId".into(), Some(USERS[*user].to_owned()));
        fields.insert("asset".into(), Some(asset.identity()));
        fields.insert("amount".into(), Some(amount.to_string()));
        details.fields(&mut fields);
        fields
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Move(Move),
    Reverse {
        entry: Uuid,
        amount: Option<u64>,
        details: Details,
    },
    Batch(Vec<Move>),
}

/// A request as sent: everything resolved (a reversal names an entry id).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    slot: usize,
    body: Body,
}

impl Request {
    fn key(&self) -> String {
        format!("key-{}", self.slot % KEY_POOL)
    }

    fn caller(&self) -> Caller {
        match self.slot / KEY_POOL {
            0 => Caller::Anonymous,
            _ => Caller::Key(API_KEY_ID),
        }
    }

    fn route(&self) -> Route {
        match &self.body {
            Body::Move(movement) => movement.route(),
            Body::Reverse { .. } => Route::Reverse,
            Body::Batch(_) => Route::Batch,
        }
    }

    fn command(&self, asset_ids: &[String]) -> Command {
        let operations = match &self.body {
            Body::Move(movement) => vec![movement.operation(asset_ids)],
            Body::Reverse {
                entry,
                amount,
                details,
            } => vec![Operation::Reverse {
                entry: *entry,
                amount: amount.map(|raw| Amount::parse(raw).unwrap()),
                details: details.entry_details(),
            }],
            Body::Batch(moves) => moves.iter().map(|m| m.operation(asset_ids)).collect(),
        };
        Command {
            caller: self.caller(),
            key: IdempotencyKey::parse(&self.key()).unwrap(),
            route: self.route(),
            operations,
        }
    }

    /// What API.md compares to decide that a retry is the same request: the
    /// route, the user, the asset by what it is, the amount and every other
    /// field; a batch's operations one by one with their `type`.
    fn identity(&self) -> Identity {
        let mut identity = Identity::new();
        let route = Some(self.route().as_str().to_owned());
        identity.insert("route".into(), Field::Value(route));
        match &self.body {
            Body::Move(movement) => {
                for (name, value) in movement.fields() {
                    identity.insert(name, Field::Value(value));
                }
            }
            Body::Reverse {
                entry,
                amount,
                details,
            } => {
                let mut fields = BTreeMap::new();
                fields.insert("id".into(), Some(entry.to_string()));
                fields.insert("amount".into(), amount.map(|a| a.to_string()));
                details.fields(&mut fields);
                for (name, value) in fields {
                    identity.insert(name, Field::Value(value));
                }
            }
            Body::Batch(moves) => {
                let operations = moves
                    .iter()
                    .map(|movement| {
                        let mut fields = movement.fields();
                        let kind = movement.route().as_str().to_owned();
                        fields.insert("type".into(), Some(kind));
                        fields
                    })
                    .collect();
                identity.insert("operations".into(), Field::Operations(operations));
            }
        }
        identity
    }

    /// The same request with another amount (its first operation's, for a
    /// batch: the one at `operation`), and the field that then differs.
    fn with_other_amount(&self, operation: Index, amount: u64) -> (Request, String) {
        let other = |old: u64| {
            if amount == old {
                old % AMOUNT_MAX + 1
            } else {
                amount
            }
        };
        let mut altered = self.clone();
        let field = match &mut altered.body {
            Body::Move(movement) => {
                let slot = movement.amount_mut();
                *slot = other(*slot);
                "amount".to_owned()
            }
            Body::Reverse { amount: slot, .. } => {
                *slot = Some(slot.map_or(amount, other));
                "amount".to_owned()
            }
            Body::Batch(moves) => {
                let index = operation.index(moves.len());
                let slot = moves[index].amount_mut();
                *slot = other(*slot);
                format!("operations[{index}].amount")
            }
        };
        (altered, field)
    }
}

/// A field of a request's identity: a value (`None`: null or not given), or
/// a batch's operations.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Value(Option<String>),
    Operations(Vec<BTreeMap<String, Option<String>>>),
}

type Identity = BTreeMap<String, Field>;

/// The fields in which two requests differ, by name, in name order; inside
/// batches of the same length, `operations[i].field`. A field one request
/// has and the other lacks differs unless it is null.
fn differing(stored: &Identity, new: &Identity) -> Vec<String> {
    let null = Field::Value(None);
    let names: BTreeSet<&String> = stored.keys().chain(new.keys()).collect();
    let mut fields = Vec::new();
    for name in names {
        let (a, b) = (
            stored.get(name).unwrap_or(&null),
            new.get(name).unwrap_or(&null),
        );
        if a == b {
            continue;
        }
        match (a, b) {
            (Field::Operations(a), Field::Operations(b)) if a.len() == b.len() => {
                for (index, (a, b)) in a.iter().zip(b).enumerate() {
                    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                    for field in names {
                        let a = a.get(field).cloned().flatten();
                        let b = b.get(field).cloned().flatten();
                        if a != b {
                            fields.push(format!("operations[{index}].{field}"));
                        }
                    }
                }
            }
            _ => fields.push(name.clone()),
        }
    }
    fields
}

// ---------------------------------------------------------------------------
// Steps, as generated: reversals name their entry by position, resolved
// against the entries that exist when the step runs.

#[derive(Debug, Clone)]
enum ReverseAmount {
    /// All that is not reversed yet.
    Rest,
    /// 1 ..= what is left + 1: partial, exactly the rest, or one too many.
    Within(Index),
    Fixed(u64),
}

#[derive(Debug, Clone)]
enum Target {
    /// An entry the real ledger created, by position.
    Earlier(Index),
    /// An id no entry has.
    Unknown(u128),
}

/// A movement as generated: a spend's or a transfer's amount may instead
/// be drawn from 1 ..= the debited user's balance + 1 when it is sent, so
/// debits often pass, empty a balance exactly, or fall one short.
#[derive(Debug, Clone)]
struct DraftMove {
    movement: Move,
    within_balance: Option<Index>,
}

impl DraftMove {
    fn resolve(&self, books: &Books) -> Move {
        let mut movement = self.movement.clone();
        let debited = match movement {
            Move::Spend { user, asset, .. } => Some((user, asset)),
            Move::Transfer { from, asset, .. } => Some((from, asset)),
            Move::Credit { .. } => None,
        };
        if let (Some((user, asset)), Some(index)) = (debited, &self.within_balance) {
            let balance = asset
                .known()
                .and_then(|asset| books.balances.get(&(user, asset)))
                .map_or(0, |balance| usize::try_from(*balance).unwrap());
            let amount = u64::try_from(index.index(balance + 1) + 1).unwrap();
            *movement.amount_mut() = amount.min(AMOUNT_MAX);
        }
        movement
    }
}

#[derive(Debug, Clone)]
enum Draft {
    Move(DraftMove),
    Reverse {
        target: Target,
        amount: ReverseAmount,
        details: Details,
    },
    Batch(Vec<DraftMove>),
}

#[derive(Debug, Clone)]
enum Step {
    Send(usize, Draft),
    /// A new request under the key of a request sent at an earlier step.
    SameKey(Index, Draft),
    /// Sends again, unchanged, a request sent at an earlier step.
    Retry(Index),
    /// Sends again a request sent at an earlier step, only its amount changed.
    OtherAmount(Index, Index, u64),
}

fn amount() -> impl Strategy<Value = u64> {
    // Mostly tiny amounts, so spends, transfers and reversals pass, fall
    // short and empty a balance exactly; sometimes the largest there is.
    prop_oneof![
        6 => 1..=4_u64,
        3 => 1..=100_u64,
        1 => 1..=AMOUNT_MAX,
        1 => Just(AMOUNT_MAX),
    ]
}

/// Credits run larger, so there is something to spend, transfer and
/// reverse; and often enough the largest amount, so balances reach 2^53 - 1.
fn credit_amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => 1..=4_u64,
        6 => 1..=100_u64,
        1 => 1..=AMOUNT_MAX,
        2 => Just(AMOUNT_MAX),
    ]
}

fn asset() -> impl Strategy<Value = AssetName> {
    // GOLD most often, so one asset sees long histories.
    let known_or_unknown = 0..=SYMBOLS.len();
    prop_oneof![
        5 => Just(AssetName::Symbol(1)),
        4 => (0..SYMBOLS.len()).prop_map(AssetName::Symbol),
        1 => known_or_unknown.clone().prop_map(AssetName::Symbol),
        2 => known_or_unknown.prop_map(AssetName::Id),
    ]
}

fn details() -> impl Strategy<Value = Details> {
    (
        proptest::option::of(0..2_u8),
        proptest::option::of(0..2_u8),
        proptest::option::weighted(0.3, 0..2_u8),
    )
        .prop_map(|(reference, note, metadata)| Details {
            reference,
            note,
            metadata,
        })
}

fn movement() -> impl Strategy<Value = DraftMove> {
    let kind = prop_oneof![Just(CreditKind::Topup), Just(CreditKind::Bonus)];
    let credit = (kind, 0..USERS.len(), asset(), credit_amount(), details()).prop_map(
        |(kind, user, asset, amount, details)| Move::Credit {
            kind,
            user,
            asset,
            amount,
            details,
        },
    );
    let spend = (0..USERS.len(), asset(), amount(), details()).prop_map(
        |(user, asset, amount, details)| Move::Spend {
            user,
            asset,
            amount,
            details,
        },
    );
    // Another user, now and then oneself.
    let offset = prop_oneof![12 => 1..USERS.len(), 1 => Just(0)];
    let transfer = (0..USERS.len(), offset, asset(), amount(), details()).prop_map(
        |(from, offset, asset, amount, details)| Move::Transfer {
            from,
            to: (from + offset) % USERS.len(),
            asset,
            amount,
            details,
        },
    );
    let movement = prop_oneof![5 => credit, 2 => spend, 3 => transfer];
    (movement, proptest::option::of(any::<Index>())).prop_map(|(movement, within_balance)| {
        DraftMove {
            movement,
            within_balance,
        }
    })
}

fn draft() -> impl Strategy<Value = Draft> {
    let target = prop_oneof![
        12 => any::<Index>().prop_map(Target::Earlier),
        1 => any::<u128>().prop_map(Target::Unknown),
    ];
    let reverse_amount = prop_oneof![
        2 => Just(ReverseAmount::Rest),
        3 => any::<Index>().prop_map(ReverseAmount::Within),
        1 => amount().prop_map(ReverseAmount::Fixed),
    ];
    let reverse =
        (target, reverse_amount, details()).prop_map(|(target, amount, details)| Draft::Reverse {
            target,
            amount,
            details,
        });
    prop_oneof![
        8 => movement().prop_map(Draft::Move),
        3 => reverse,
        2 => proptest::collection::vec(movement(), 1..=5).prop_map(Draft::Batch),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        10 => (0..KEY_POOL * CALLERS, draft()).prop_map(|(slot, draft)| Step::Send(slot, draft)),
        1 => (any::<Index>(), draft()).prop_map(|(index, draft)| Step::SameKey(index, draft)),
        3 => any::<Index>().prop_map(Step::Retry),
        1 => (any::<Index>(), any::<Index>(), amount())
            .prop_map(|(index, operation, amount)| Step::OtherAmount(index, operation, amount)),
    ];
    proptest::collection::vec(step, 1..40)
}

// ---------------------------------------------------------------------------
// The model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Party {
    User(usize),
    Treasury,
}

impl Party {
    fn row(self) -> PartyRow {
        match self {
            Party::User(user) => PartyRow::User(USERS[user].to_owned()),
            Party::Treasury => PartyRow::Treasury,
        }
    }
}

/// An entry as the model knows it.
#[derive(Debug, Clone)]
struct Entry {
    kind: EntryKind,
    asset: usize,
    amount: i64,
    debit: Party,
    credit: Party,
    debit_after: i64,
    credit_after: i64,
    /// The user whose request it answers: the credited user of a TOPUP or
    /// BONUS, the debited user of a SPEND, the sender of a TRANSFER; for a
    /// REVERSAL, the user of the entry it reverses.
    requester: usize,
    /// For a REVERSAL: the position and id of the entry it reverses.
    reverses: Option<(usize, String)>,
    /// How much of it later reversals undid.
    reversed: i64,
    /// The key slot of the request that made it.
    slot: usize,
    key: String,
    details: Details,
    /// Given by the real ledger when it is written.
    seq: i64,
    id: String,
    created_at_ms: i64,
    /// What it moved, in the order taken: (paid?, amount).
    parts: Vec<(Kind, i64)>,
}

/// The kinds of the model's parts (no expiring lots: the model gives none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Paid,
    Free,
}

fn as_parts(parts: &[(Kind, i64)]) -> Vec<Part> {
    parts
        .iter()
        .map(|(kind, amount)| Part {
            kind: match kind {
                Kind::Paid => PartKind::Paid,
                Kind::Free => PartKind::Free,
            },
            amount: *amount,
        })
        .collect()
}

/// Adds `amount` of `kind` to `parts`, into the part of that kind if one
/// is listed already.
fn merge(parts: &mut Vec<(Kind, i64)>, kind: Kind, amount: i64) {
    if amount == 0 {
        return;
    }
    match parts.iter_mut().find(|(known, _)| *known == kind) {
        Some((_, total)) => *total += amount,
        None => parts.push((kind, amount)),
    }
}

impl Entry {
    /// The entry as `user`'s history shows it.
    fn seen_from(&self, user: usize) -> UserEntry {
        let (direction, balance_after, other) = if self.debit == Party::User(user) {
            (Direction::Debit, self.debit_after, self.credit)
        } else {
            assert_eq!(self.credit, Party::User(user));
            (Direction::Credit, self.credit_after, self.debit)
        };
        UserEntry {
            seq: self.seq,
            id: self.id.clone(),
            kind: self.kind,
            asset_symbol: SYMBOLS[self.asset].to_owned(),
            amount: self.amount,
            direction,
            balance_after,
            counterparty: match other {
                Party::User(other) => Some(USERS[other].to_owned()),
                Party::Treasury => None,
            },
            reverses: self.reverses.as_ref().map(|(_, id)| id.clone()),
            hold_id: None,
            idempotency_key: self.key.clone(),
            reference_id: self.details.reference(),
            note: self.details.note(),
            metadata: self.details.metadata(),
            created_at_ms: self.created_at_ms,
            parts: as_parts(&self.parts),
        }
    }

    fn touches(&self, user: usize) -> bool {
        self.debit == Party::User(user) || self.credit == Party::User(user)
    }

    fn balance_of(&self, user: usize) -> i64 {
        if self.debit == Party::User(user) {
            self.debit_after
        } else {
            self.credit_after
        }
    }

    /// `GET /transactions/{id}`.
    fn detail(&self) -> TransactionDetail {
        TransactionDetail {
            id: self.id.clone(),
            kind: self.kind,
            asset_symbol: SYMBOLS[self.asset].to_owned(),
            amount: self.amount,
            debit: self.debit.row(),
            credit: self.credit.row(),
            reverses: self.reverses.as_ref().map(|(_, id)| id.clone()),
            reversed_amount: self.reversed,
            hold_id: None,
            idempotency_key: self.key.clone(),
            reference_id: self.details.reference(),
            note: self.details.note(),
            metadata: self.details.metadata(),
            created_at_ms: self.created_at_ms,
            parts: as_parts(&self.parts),
        }
    }
}

/// The answer API.md gives to a command of `route` that made `entries`: one
/// entry seen from its user, with that user's balance; or, for a batch,
/// every entry seen from its operation's user and one balance per (user,
/// asset) touched, recipients too, in the order first touched.
fn expected_answer(route: Route, entries: &[Entry]) -> Answer {
    if route != Route::Batch {
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];
        let balance = entry.balance_of(entry.requester);
        return Answer::Entry {
            transaction: Box::new(entry.seen_from(entry.requester)),
            balance,
            available: balance,
        };
    }
    let mut balances: Vec<BalanceAfter> = Vec::new();
    let mut touch = |user: usize, asset: usize, balance: i64| {
        let (user, asset_symbol) = (USERS[user].to_owned(), SYMBOLS[asset].to_owned());
        match balances
            .iter_mut()
            .find(|row| row.user == user && row.asset_symbol == asset_symbol)
        {
            Some(row) => {
                row.balance = balance;
                row.available = balance;
            }
            None => balances.push(BalanceAfter {
                user,
                asset_symbol,
                balance,
                available: balance,
            }),
        }
    };
    for entry in entries {
        touch(
            entry.requester,
            entry.asset,
            entry.balance_of(entry.requester),
        );
        for party in [entry.debit, entry.credit] {
            if let Party::User(user) = party {
                if user != entry.requester {
                    touch(user, entry.asset, entry.balance_of(user));
                }
            }
        }
    }
    Answer::Batch {
        transactions: entries.iter().map(|e| e.seen_from(e.requester)).collect(),
        balances,
    }
}

/// Every balance: an account exists once its key is here.
#[derive(Debug, Clone, Default)]
struct Books {
    balances: BTreeMap<(usize, usize), i64>,
    treasuries: [i64; SYMBOLS.len()],
    /// Each user account's (paid, free): they add up to its balance.
    parts: BTreeMap<(usize, usize), (i64, i64)>,
}

impl Books {
    fn has_wallet(&self, user: usize) -> bool {
        self.balances.keys().any(|(owner, _)| *owner == user)
    }

    /// What users hold of paid currency in `asset`.
    fn paid_in(&self, asset: usize) -> i64 {
        self.parts
            .iter()
            .filter(|((_, held_in), _)| *held_in == asset)
            .map(|(_, (paid, _))| paid)
            .sum()
    }

    /// Takes `amount` from a user's parts: first as much of each of
    /// `first` as there is, then free before paid (no asset here has a
    /// spend order of its own). The balance check has passed already.
    fn take_parts(
        &mut self,
        user: usize,
        asset: usize,
        amount: i64,
        first: &[(Kind, i64)],
    ) -> Vec<(Kind, i64)> {
        let (mut paid, mut free) = self.parts.get(&(user, asset)).copied().unwrap_or((0, 0));
        let mut left = amount;
        let mut taken = Vec::new();
        let order = [(Kind::Free, left), (Kind::Paid, left)];
        for (kind, wanted) in first.iter().copied().chain(order) {
            let there = match kind {
                Kind::Paid => &mut paid,
                Kind::Free => &mut free,
            };
            let amount = wanted.min(*there).min(left);
            *there -= amount;
            left -= amount;
            merge(&mut taken, kind, amount);
        }
        assert_eq!(left, 0, "the model's parts do not cover its balance");
        self.parts.insert((user, asset), (paid, free));
        taken
    }

    fn give_parts(&mut self, user: usize, asset: usize, parts: &[(Kind, i64)]) {
        let (paid, free) = self.parts.entry((user, asset)).or_insert((0, 0));
        for (kind, amount) in parts {
            match kind {
                Kind::Paid => *paid += amount,
                Kind::Free => *free += amount,
            }
        }
    }

    /// Moves `parts` (or, from a user, what it takes preferring `first`)
    /// from `debit` to `credit`; the moved parts.
    fn move_parts(
        &mut self,
        debit: Party,
        credit: Party,
        asset: usize,
        amount: i64,
        given: Vec<(Kind, i64)>,
        first: &[(Kind, i64)],
    ) -> Vec<(Kind, i64)> {
        let parts = match debit {
            Party::User(user) => self.take_parts(user, asset, amount, first),
            Party::Treasury => given,
        };
        if let Party::User(user) = credit {
            self.give_parts(user, asset, &parts);
        }
        parts
    }

    fn held_in(&self, asset: usize) -> i64 {
        self.balances
            .iter()
            .filter(|((_, held_in), _)| *held_in == asset)
            .map(|(_, balance)| balance)
            .sum()
    }

    /// Takes `amount`: a user must have an account in the asset (without
    /// any account at all: WALLET_NOT_FOUND) and the funds; a Treasury only
    /// stays within i64.
    fn debit(&mut self, party: Party, asset: usize, amount: i64) -> Result<i64, Rejection> {
        match party {
            Party::User(user) => {
                let balance = match self.balances.get(&(user, asset)) {
                    Some(balance) => *balance,
                    None if self.has_wallet(user) => 0,
                    None => return Err(Rejection::WalletNotFound),
                };
                if balance < amount {
                    return Err(Rejection::InsufficientFunds {
                        balance,
                        available: balance,
                        requested: amount.unsigned_abs(),
                    });
                }
                self.balances.insert((user, asset), balance - amount);
                Ok(balance - amount)
            }
            Party::Treasury => {
                let after = self.treasuries[asset]
                    .checked_sub(amount)
                    .ok_or(Rejection::BalanceOverflow)?;
                self.treasuries[asset] = after;
                Ok(after)
            }
        }
    }

    /// Gives `amount`, opening a user's account: a user's balance stays
    /// within 2^53 - 1, a Treasury's within i64.
    fn credit(&mut self, party: Party, asset: usize, amount: i64) -> Result<i64, Rejection> {
        match party {
            Party::User(user) => {
                let before = self.balances.get(&(user, asset)).copied().unwrap_or(0);
                let after = before + amount;
                if after.unsigned_abs() > AMOUNT_MAX {
                    return Err(Rejection::BalanceOverflow);
                }
                self.balances.insert((user, asset), after);
                Ok(after)
            }
            Party::Treasury => {
                let after = self.treasuries[asset]
                    .checked_add(amount)
                    .ok_or(Rejection::BalanceOverflow)?;
                self.treasuries[asset] = after;
                Ok(after)
            }
        }
    }
}

/// What a new request does, once the real ledger agrees it does it.
#[derive(Debug)]
struct Plan {
    books: Books,
    entries: Vec<Entry>,
    /// A reversal's original and how much of it is reversed after it.
    reversed: Option<(usize, i64)>,
}

/// What the model says a request gets.
#[derive(Debug)]
enum Expected {
    Created(Plan),
    /// The original answer given to this key, whole.
    Replayed,
    Rejected(Rejection),
}

/// A used key: the route and the identity of the request that used it.
#[derive(Debug)]
struct Stored {
    route: Route,
    identity: Identity,
}

/// The ledger as API.md describes it, in memory.
#[derive(Debug, Default)]
struct Model {
    books: Books,
    keys: HashMap<usize, Stored>,
    entries: Vec<Entry>,
}

impl Model {
    /// The rules in the order the service applies them: the key first
    /// (replay or reuse), then each operation in order against a working
    /// copy of the balances: the asset, the wallet, the funds, the range of
    /// a balance. A batch fails whole at its first refused operation.
    fn decide(&self, request: &Request) -> Expected {
        if let Some(stored) = self.keys.get(&request.slot) {
            let differing = differing(&stored.identity, &request.identity());
            return if differing.is_empty() {
                Expected::Replayed
            } else {
                Expected::Rejected(Rejection::IdempotencyKeyReused { differing })
            };
        }
        let mut plan = Plan {
            books: self.books.clone(),
            entries: Vec::new(),
            reversed: None,
        };
        let result = match &request.body {
            Body::Move(movement) => self.apply_move(request, movement, &mut plan),
            Body::Reverse {
                entry,
                amount,
                details,
            } => self.reverse(request, *entry, *amount, *details, &mut plan),
            Body::Batch(moves) => moves.iter().enumerate().try_for_each(|(index, movement)| {
                self.apply_move(request, movement, &mut plan)
                    .map_err(|cause| Rejection::InBatch {
                        operation: index,
                        cause: Box::new(cause),
                    })
            }),
        };
        match result {
            Ok(()) => Expected::Created(plan),
            Err(rejection) => Expected::Rejected(rejection),
        }
    }

    fn entry(request: &Request, kind: EntryKind, asset: usize, amount: i64) -> Entry {
        Entry {
            kind,
            asset,
            amount,
            debit: Party::Treasury,
            credit: Party::Treasury,
            debit_after: 0,
            credit_after: 0,
            requester: 0,
            reverses: None,
            reversed: 0,
            slot: request.slot,
            key: request.key(),
            details: Details::default(),
            seq: 0,
            id: String::new(),
            created_at_ms: 0,
            parts: Vec::new(),
        }
    }

    fn apply_move(
        &self,
        request: &Request,
        movement: &Move,
        plan: &mut Plan,
    ) -> Result<(), Rejection> {
        let (kind, debit, credit, requester, asset, amount, details) = match *movement {
            Move::Credit {
                kind,
                user,
                asset,
                amount,
                details,
            } => (
                match kind {
                    CreditKind::Topup => EntryKind::Topup,
                    CreditKind::Bonus => EntryKind::Bonus,
                },
                Party::Treasury,
                Party::User(user),
                user,
                asset,
                amount,
                details,
            ),
            Move::Spend {
                user,
                asset,
                amount,
                details,
            } => (
                EntryKind::Spend,
                Party::User(user),
                Party::Treasury,
                user,
                asset,
                amount,
                details,
            ),
            Move::Transfer {
                from,
                to,
                asset,
                amount,
                details,
            } => {
                if from == to {
                    return Err(Rejection::TransferToSelf);
                }
                (
                    EntryKind::Transfer,
                    Party::User(from),
                    Party::User(to),
                    from,
                    asset,
                    amount,
                    details,
                )
            }
        };
        let asset = asset.known().ok_or(Rejection::AssetNotFound)?;
        let amount = i64::try_from(amount).unwrap();
        let debit_after = plan.books.debit(debit, asset, amount)?;
        let credit_after = plan.books.credit(credit, asset, amount)?;
        let given = match kind {
            EntryKind::Topup => vec![(Kind::Paid, amount)],
            _ => vec![(Kind::Free, amount)],
        };
        let parts = plan
            .books
            .move_parts(debit, credit, asset, amount, given, &[]);
        plan.entries.push(Entry {
            debit,
            credit,
            debit_after,
            credit_after,
            requester,
            details,
            parts,
            ..Model::entry(request, kind, asset, amount)
        });
        Ok(())
    }

    fn reverse(
        &self,
        request: &Request,
        id: Uuid,
        amount: Option<u64>,
        details: Details,
        plan: &mut Plan,
    ) -> Result<(), Rejection> {
        let id = id.to_string();
        let position = self
            .entries
            .iter()
            .position(|entry| entry.id == id)
            .ok_or(Rejection::TransactionNotFound)?;
        let original = &self.entries[position];
        if original.kind == EntryKind::Reversal {
            return Err(Rejection::NotReversible);
        }
        let reversible = original.amount - original.reversed;
        let amount = amount.map_or(reversible, |raw| i64::try_from(raw).unwrap());
        if amount <= 0 || amount > reversible {
            return Err(Rejection::ReversalExceedsOriginal { reversible });
        }
        let (debit, credit) = (original.credit, original.debit);
        let debit_after = plan.books.debit(debit, original.asset, amount)?;
        let credit_after = plan.books.credit(credit, original.asset, amount)?;
        // The original's parts, the one taken last first, past what earlier
        // reversals gave back.
        let mut skip = original.reversed;
        let mut wanted = amount;
        let mut back = Vec::new();
        for (kind, part) in original.parts.iter().rev() {
            let past = (*part).min(skip);
            skip -= past;
            let given = (part - past).min(wanted);
            wanted -= given;
            merge(&mut back, *kind, given);
        }
        let parts =
            plan.books
                .move_parts(debit, credit, original.asset, amount, back.clone(), &back);
        plan.entries.push(Entry {
            debit,
            credit,
            debit_after,
            credit_after,
            parts,
            requester: original.requester,
            reverses: Some((position, id)),
            details,
            ..Model::entry(request, EntryKind::Reversal, original.asset, amount)
        });
        plan.reversed = Some((position, original.reversed + amount));
        Ok(())
    }

    /// The real ledger made `plan`'s entries and answered `answer`: takes
    /// each entry's place, id and time from it, checks the answer against
    /// the model's, and records it all.
    fn commit(&mut self, request: &Request, mut plan: Plan, answer: &Answer) {
        let transactions: Vec<&UserEntry> = match answer {
            Answer::Entry { transaction, .. } => vec![&**transaction],
            Answer::Batch { transactions, .. } => transactions.iter().collect(),
            // This model makes no holds (see `holds_model.rs`).
            Answer::Hold { .. } | Answer::Capture { .. } => {
                panic!("{request:?}: a hold's answer to a request that holds nothing: {answer:?}")
            }
        };
        assert_eq!(
            transactions.len(),
            plan.entries.len(),
            "{request:?}: {answer:?}"
        );
        let mut last_seq = self.entries.last().map_or(0, |entry| entry.seq);
        let known: HashSet<&str> = self.entries.iter().map(|e| e.id.as_str()).collect();
        for (entry, seen) in plan.entries.iter_mut().zip(transactions) {
            assert!(seen.seq > last_seq, "entries are numbered in order");
            assert!(Uuid::parse_str(&seen.id).is_ok(), "{}", seen.id);
            assert!(!known.contains(seen.id.as_str()), "a new id: {}", seen.id);
            last_seq = seen.seq;
            entry.seq = seen.seq;
            entry.id = seen.id.clone();
            entry.created_at_ms = seen.created_at_ms;
        }
        let distinct: HashSet<&str> = plan.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(distinct.len(), plan.entries.len());
        assert_eq!(
            *answer,
            expected_answer(request.route(), &plan.entries),
            "{request:?}"
        );
        self.books = plan.books;
        if let Some((position, reversed)) = plan.reversed {
            self.entries[position].reversed = reversed;
        }
        self.entries.extend(plan.entries);
        self.keys.insert(
            request.slot,
            Stored {
                route: request.route(),
                identity: request.identity(),
            },
        );
    }

    /// The answer a replay of `slot` gets: the original's, built again from
    /// the entries it made and the balances as they were then.
    fn replay(&self, slot: usize) -> Answer {
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .filter(|entry| entry.slot == slot)
            .cloned()
            .collect();
        expected_answer(self.keys[&slot].route, &entries)
    }

    /// Resolves a generated request against what exists now.
    fn resolve(&self, slot: usize, draft: &Draft) -> Request {
        let body = match draft {
            Draft::Move(movement) => Body::Move(movement.resolve(&self.books)),
            Draft::Batch(moves) => {
                Body::Batch(moves.iter().map(|m| m.resolve(&self.books)).collect())
            }
            Draft::Reverse {
                target,
                amount,
                details,
            } => {
                let original = match target {
                    Target::Earlier(index) if !self.entries.is_empty() => {
                        Some(&self.entries[index.index(self.entries.len())])
                    }
                    _ => None,
                };
                let entry = match (target, original) {
                    (_, Some(original)) => Uuid::parse_str(&original.id).unwrap(),
                    (Target::Unknown(raw), None) => Uuid::from_u128(*raw),
                    (Target::Earlier(_), None) => Uuid::from_u128(NO_ENTRY),
                };
                let amount = match amount {
                    ReverseAmount::Rest => None,
                    ReverseAmount::Fixed(amount) => Some(*amount),
                    ReverseAmount::Within(index) => {
                        let left = original.map_or(0, |o| o.amount - o.reversed);
                        let left = usize::try_from(left).unwrap();
                        let amount = u64::try_from(index.index(left + 1) + 1).unwrap();
                        Some(amount.min(AMOUNT_MAX))
                    }
                };
                Body::Reverse {
                    entry,
                    amount,
                    details: *details,
                }
            }
        };
        Request { slot, body }
    }
}

// ---------------------------------------------------------------------------
// The real thing

/// A ledger with the asset catalogue, one API key and no entries, served by
/// the store as `wallet serve` holds it (its writer and its read pools),
/// and driven only through `Store`, as the HTTP handlers drive it.
struct Real {
    _dir: tempfile::TempDir,
    location: DatabaseLocation,
    opened: Option<OpenedStore>,
    store: Store,
    runtime: tokio::runtime::Runtime,
    asset_ids: Vec<String>,
    /// The answer each key slot got when its command was created.
    answers: HashMap<usize, Answer>,
}

impl Real {
    fn open() -> Real {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::fresh_location(dir.path());
        commands::migrate(&location).unwrap();
        // The catalogue's symbols only: no demo grants, so the model starts
        // from an empty ledger.
        for symbol in SYMBOLS {
            let asset = NewAsset {
                symbol: AssetSymbol::parse(symbol).unwrap(),
                name: domain::AssetName::parse(symbol).unwrap(),
                decimals: AssetDecimals::default(),
            };
            assert!(matches!(
                commands::create_asset(&location, asset).unwrap(),
                Ok(AssetOutcome::Created(_))
            ));
        }
        commands::create_key(
            &location,
            NewKey {
                name: KeyName::parse("game-server").unwrap(),
                scopes: Scopes::parse("admin").unwrap(),
                secret_sha256: [7; 32],
            },
        )
        .unwrap()
        .unwrap();
        let opened = OpenedStore::open(&location, WRITE_BATCH_MAX, false).unwrap();
        let store = opened.store();
        let keys = store.load_keys().unwrap();
        assert_eq!(
            keys.active.iter().map(|key| key.id).collect::<Vec<_>>(),
            vec![API_KEY_ID]
        );
        let asset_ids = store
            .assets()
            .unwrap()
            .into_iter()
            .map(|row| {
                assert_eq!(row.symbol, SYMBOLS[asset_index(&row.symbol)]);
                row.id
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        Real {
            _dir: dir,
            location,
            opened: Some(opened),
            store,
            runtime,
            asset_ids,
            answers: HashMap::new(),
        }
    }

    /// Sends `request`, checks the outcome against the model's, and lets
    /// the model record what was created. `altered`: the field in which the
    /// request differs from an earlier one with the same key, if it was
    /// built that way.
    fn send(&mut self, model: &mut Model, request: &Request, altered: Option<&(Request, String)>) {
        let expected = model.decide(request);
        let outcome = self
            .runtime
            .block_on(self.store.apply(request.command(&self.asset_ids)));
        match (outcome, expected) {
            (Ok(Outcome::Created(answer)), Expected::Created(plan)) => {
                model.commit(request, plan, &answer);
                self.answers.insert(request.slot, answer);
            }
            (Ok(Outcome::Replayed(answer)), Expected::Replayed) => {
                assert_eq!(
                    Some(&answer),
                    self.answers.get(&request.slot),
                    "a replay is the original answer, whole: {request:?}"
                );
                assert_eq!(answer, model.replay(request.slot), "{request:?}");
            }
            (Err(LedgerError::Rejected(rejection)), Expected::Rejected(expected)) => {
                assert_eq!(rejection, expected, "{request:?}");
                if let Rejection::IdempotencyKeyReused { differing } = &rejection {
                    let stored = &model.keys[&request.slot];
                    assert!(!differing.is_empty(), "{request:?}");
                    if stored.route != request.route() {
                        assert!(
                            differing.iter().any(|field| field == "route"),
                            "{request:?}: {differing:?}"
                        );
                    }
                    if let Some((original, field)) = altered {
                        if stored.identity == original.identity() {
                            assert_eq!(differing, &vec![field.clone()], "{request:?}");
                        }
                    }
                }
            }
            (outcome, expected) => {
                panic!("{request:?}: the store answered {outcome:?}, the model {expected:?}")
            }
        }
    }

    /// Every balance, every entry (in every user's history and by id), the
    /// entry count, the sums and the audit, against the model.
    fn assert_agrees_with(&mut self, model: &Model, page: &str) {
        for (user, name) in USERS.iter().enumerate() {
            let id = UserId::parse(name).unwrap();
            let balances = self.store.balances(&id);
            let history = self.history(&id, page);
            if !model.books.has_wallet(user) {
                for answer in [balances.map(|_| ()), history.map(|_| ())] {
                    assert!(
                        matches!(
                            answer,
                            Err(LedgerError::Rejected(Rejection::WalletNotFound))
                        ),
                        "{name} has no wallet in the model: {answer:?}"
                    );
                }
                continue;
            }
            let rows = balances.unwrap();
            let symbols: Vec<&str> = rows.iter().map(|row| row.asset_symbol.as_str()).collect();
            assert_eq!(symbols, SYMBOLS);
            for (asset, row) in rows.iter().enumerate() {
                let expected = model.books.balances.get(&(user, asset)).copied();
                let expected = expected.unwrap_or(0);
                assert_eq!(row.balance, expected, "{name}'s {}", row.asset_symbol);
                assert!(row.balance >= 0);
                assert_eq!(row.held, 0);
                assert_eq!(row.available, row.balance);
                assert_eq!(row.asset_type_id, self.asset_ids[asset]);
                let (paid, free) = model
                    .books
                    .parts
                    .get(&(user, asset))
                    .copied()
                    .unwrap_or((0, 0));
                assert_eq!(
                    (row.paid, row.free),
                    (paid, free),
                    "{name}'s {} parts",
                    row.asset_symbol
                );
                assert!(paid >= 0 && free >= 0);
            }
            // Newest first: every entry that touches the user, from the
            // user's side, so each balance_after is the model's.
            let expected: Vec<UserEntry> = model
                .entries
                .iter()
                .rev()
                .filter(|entry| entry.touches(user))
                .map(|entry| entry.seen_from(user))
                .collect();
            let history = history.unwrap();
            assert_eq!(history.len(), expected.len(), "{name}'s entries");
            assert_eq!(history, expected, "{name}'s history");
            for (asset, symbol) in SYMBOLS.iter().enumerate() {
                if let Some(newest) = history.iter().find(|e| e.asset_symbol == *symbol) {
                    let balance = model.books.balances.get(&(user, asset)).copied();
                    assert_eq!(Some(newest.balance_after), balance, "{name}'s {symbol}");
                }
            }
        }
        for entry in &model.entries {
            let detail = self
                .store
                .transaction(Uuid::parse_str(&entry.id).unwrap())
                .unwrap();
            assert_eq!(detail.reversed_amount, entry.reversed, "{}", entry.id);
            assert_eq!(detail, entry.detail());
        }
        assert_eq!(
            self.store.entry_count().unwrap(),
            model.entries.len() as u64
        );
        let report = commands::verify(&self.location).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.entries, model.entries.len() as u64);
        for totals in &report.assets {
            let asset = asset_index(&totals.symbol);
            let held = model.books.held_in(asset);
            assert_eq!(totals.sum_of_balances, 0, "{}", totals.symbol);
            assert_eq!(totals.held_by_users, i128::from(held), "{}", totals.symbol);
            let paid = model.books.paid_in(asset);
            assert_eq!(totals.paid_by_users, i128::from(paid), "{}", totals.symbol);
            let supply = self
                .store
                .supply(&AssetRef::parse(&totals.symbol).unwrap())
                .unwrap();
            assert_eq!(supply.paid, i128::from(paid), "{}", totals.symbol);
            assert_eq!(supply.free, i128::from(held - paid), "{}", totals.symbol);
            assert_eq!(i128::from(model.books.treasuries[asset]), -i128::from(held));
        }
    }

    /// A user's whole history, newest first, page by page.
    fn history(&mut self, user: &UserId, page: &str) -> Result<Vec<UserEntry>, LedgerError> {
        let mut query = HistoryQuery {
            asset: None,
            kind: None,
            reference_id: None,
            limit: PageLimit::parse(page).unwrap(),
            cursor: None,
        };
        let mut items = Vec::new();
        loop {
            let page = self
                .runtime
                .block_on(self.store.history(user.clone(), query.clone()))?;
            assert!(page.items.len() <= query.limit.get());
            items.extend(page.items);
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(items),
            }
        }
    }
}

impl Real {
    /// Applies what is queued and closes the database, as a server stops.
    fn close(mut self) {
        if let Some(opened) = self.opened.take() {
            opened.close();
        }
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        if let Some(opened) = self.opened.take() {
            opened.close();
        }
    }
}

fn asset_index(symbol: &str) -> usize {
    SYMBOLS
        .iter()
        .position(|known| *known == symbol)
        .unwrap_or_else(|| panic!("an asset outside the catalogue: {symbol}"))
}

proptest! {
    #![proptest_config(crate::config(24))]

    #[test]
    fn store_and_model_agree_on_every_answer_every_balance_and_every_entry(
        steps in steps()
    ) {
        let mut real = Real::open();
        let mut model = Model::default();
        let mut sent: Vec<Request> = Vec::new();
        for step in &steps {
            let earlier = |index: &Index| (!sent.is_empty()).then(|| &sent[index.index(sent.len())]);
            let (request, altered) = match step {
                Step::Send(slot, draft) => (model.resolve(*slot, draft), None),
                Step::SameKey(index, draft) => match earlier(index) {
                    Some(earlier) => (model.resolve(earlier.slot, draft), None),
                    None => continue,
                },
                Step::Retry(index) => match earlier(index) {
                    Some(earlier) => (earlier.clone(), None),
                    None => continue,
                },
                Step::OtherAmount(index, operation, amount) => match earlier(index) {
                    Some(earlier) => {
                        let (request, field) = earlier.with_other_amount(*operation, *amount);
                        (request, Some((earlier.clone(), field)))
                    }
                    None => continue,
                },
            };
            real.send(&mut model, &request, altered.as_ref());
            real.assert_agrees_with(&model, PAGE);
            sent.push(request);
        }
        // Once more, through many small pages; and an id no entry has.
        real.assert_agrees_with(&model, SMALL_PAGE);
        let missing = real.store.transaction(Uuid::from_u128(NO_ENTRY));
        prop_assert!(
            matches!(missing, Err(LedgerError::Rejected(Rejection::TransactionNotFound))),
            "{:?}",
            missing
        );
        real.close();
    }
}
