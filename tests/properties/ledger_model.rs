//! Goal: the real storage layer (the writer thread on a temporary SQLite
//! file) and a plain in-memory model of API.md's rules answer every request
//! alike. Random sequences of topups, bonuses and spends, from users with and
//! without wallets, in known and unknown assets named by symbol or by id, with
//! idempotency keys drawn from a small pool (so keys are retried, identically
//! and altered) by two callers (anonymous and one API key, whose keys are
//! distinct even when spelled alike), and exact retries of earlier requests. After every step the
//! two agree on the answer and on every balance, each asset sums to zero, no
//! user is below zero, and the audit that `wallet verify` runs passes. On a
//! failure proptest shrinks the sequence to a minimal one.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use proptest::sample::Index;
use rusqlite::Connection;

use wallet::domain::{
    Amount, AssetRef, Caller, Direction, EntryKind, IdempotencyKey, KeyName, Note, ReferenceId,
    Scopes, UserId,
};
use wallet::ledger::Rejection;
use wallet::limits::{AMOUNT_MAX, WRITE_BATCH_MAX};
use wallet::storage::writer::{Writer, WriterHandle};
use wallet::storage::{
    keys, migrate, open, reads, seed, verify, LedgerError, PostCommand, Receipt, WriteOutcome,
};

/// The catalogue's assets in symbol order, as `GET /assets` lists them.
const SYMBOLS: [&str; 3] = ["DIAMOND", "GOLD", "LOYALTY"];
/// A well-formed symbol and id that name no asset.
const UNKNOWN_SYMBOL: &str = "SILVER";
const UNKNOWN_ID: &str = "00000000-0000-4000-8000-000000000000";
/// Nobody has a wallet at the start; a user's first credit opens one.
const USERS: [&str; 3] = ["ann", "ben", "cid"];
/// Keys come from a pool this small so they are often used again.
const KEY_POOL: usize = 10;
/// Callers: the anonymous one and one API key. A request's `key` slot is
/// `caller * KEY_POOL + n`, spelled `key-n` whoever the caller is, so the two
/// callers use the same spellings and the model keeps them apart.
const CALLERS: usize = 2;
/// The id of the one API key the real ledger holds: the first key made.
const API_KEY_ID: i64 = 1;

/// How a request names its asset: index into `SYMBOLS`, or the unknown one
/// at `SYMBOLS.len()`.
#[derive(Debug, Clone, Copy)]
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
}

#[derive(Debug, Clone)]
struct Request {
    kind: EntryKind,
    user: usize,
    asset: AssetName,
    amount: u64,
    key: usize,
    reference: Option<u8>,
    note: Option<u8>,
}

impl Request {
    fn key(&self) -> String {
        format!("key-{}", self.key % KEY_POOL)
    }

    fn caller(&self) -> Caller {
        match self.key / KEY_POOL {
            0 => Caller::Anonymous,
            _ => Caller::Key(API_KEY_ID),
        }
    }

    fn reference(&self) -> Option<String> {
        self.reference.map(|n| format!("ref-{n}"))
    }

    fn note(&self) -> Option<String> {
        self.note.map(|n| format!("note {n}"))
    }

    /// What API.md compares to decide that a retry is the same request; the
    /// asset by what it is, not by how it was named.
    fn identity(&self) -> (EntryKind, usize, Option<usize>, u64, Option<u8>, Option<u8>) {
        (
            self.kind,
            self.user,
            self.asset.known(),
            self.amount,
            self.reference,
            self.note,
        )
    }

    fn command(&self, asset_ids: &[String]) -> PostCommand {
        let asset = match self.asset {
            AssetName::Symbol(index) => SYMBOLS.get(index).copied().unwrap_or(UNKNOWN_SYMBOL),
            AssetName::Id(index) => asset_ids.get(index).map_or(UNKNOWN_ID, String::as_str),
        };
        PostCommand {
            user: UserId::parse(USERS[self.user]).unwrap(),
            kind: self.kind,
            asset: AssetRef::parse(asset).unwrap(),
            amount: Amount::parse(self.amount).unwrap(),
            idempotency_key: IdempotencyKey::parse(&self.key()).unwrap(),
            reference_id: self.reference().map(|r| ReferenceId::parse(&r).unwrap()),
            note: self.note().map(|n| Note::parse(&n).unwrap()),
            caller: self.caller(),
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Send(Request),
    /// Sends again, unchanged, a request sent at an earlier step.
    Retry(Index),
}

fn request() -> impl Strategy<Value = Request> {
    let kind = prop_oneof![
        Just(EntryKind::Topup),
        Just(EntryKind::Bonus),
        Just(EntryKind::Spend),
    ];
    let known_or_unknown = 0..=SYMBOLS.len();
    let asset = prop_oneof![
        4 => known_or_unknown.clone().prop_map(AssetName::Symbol),
        1 => known_or_unknown.prop_map(AssetName::Id),
    ];
    // Mostly tiny amounts, so spends pass, fall short and empty a balance
    // exactly; sometimes the largest amount there is.
    let amount = prop_oneof![
        6 => 1..=4_u64,
        3 => 1..=100_u64,
        1 => 1..=AMOUNT_MAX,
        1 => Just(AMOUNT_MAX),
    ];
    (
        kind,
        0..USERS.len(),
        asset,
        amount,
        0..KEY_POOL * CALLERS,
        proptest::option::of(0..2_u8),
        proptest::option::of(0..2_u8),
    )
        .prop_map(
            |(kind, user, asset, amount, key, reference, note)| Request {
                kind,
                user,
                asset,
                amount,
                key,
                reference,
                note,
            },
        )
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => request().prop_map(Step::Send),
        1 => any::<Index>().prop_map(Step::Retry),
    ];
    proptest::collection::vec(step, 1..40)
}

/// What the model says a request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Created {
        balance_after: i64,
    },
    /// The original answer given to this key, whole.
    Replayed {
        key: usize,
    },
    Rejected(Rejection),
}

/// The ledger as API.md describes it, in memory.
#[derive(Debug, Default)]
struct Model {
    /// (user, asset) -> balance; an account exists once its key is here.
    balances: BTreeMap<(usize, usize), i64>,
    treasuries: [i64; SYMBOLS.len()],
    /// Used keys and the request that used each.
    keys: HashMap<usize, Request>,
    entries: i64,
}

impl Model {
    fn has_wallet(&self, user: usize) -> bool {
        self.balances.keys().any(|(owner, _)| *owner == user)
    }

    /// The rules in the order the service applies them: the key first, then
    /// the asset, the wallet, the funds and the range of a balance.
    fn apply(&mut self, request: &Request) -> Expected {
        if let Some(original) = self.keys.get(&request.key) {
            return if original.identity() == request.identity() {
                Expected::Replayed { key: request.key }
            } else {
                Expected::Rejected(Rejection::IdempotencyKeyReused)
            };
        }
        let Some(asset) = request.asset.known() else {
            return Expected::Rejected(Rejection::AssetNotFound);
        };
        let account = self.balances.get(&(request.user, asset)).copied();
        let amount = i64::try_from(request.amount).unwrap();
        let (user_after, treasury_after) = match request.kind.user_direction() {
            Direction::Credit => {
                let user = account.unwrap_or(0).checked_add(amount);
                let treasury = self.treasuries[asset].checked_sub(amount);
                match user.zip(treasury) {
                    Some(after) => after,
                    None => return Expected::Rejected(Rejection::BalanceOverflow),
                }
            }
            Direction::Debit => {
                let Some(balance) = account else {
                    return Expected::Rejected(if self.has_wallet(request.user) {
                        Rejection::InsufficientFunds {
                            balance: 0,
                            requested: request.amount,
                        }
                    } else {
                        Rejection::WalletNotFound
                    });
                };
                if balance < amount {
                    return Expected::Rejected(Rejection::InsufficientFunds {
                        balance,
                        requested: request.amount,
                    });
                }
                match self.treasuries[asset].checked_add(amount) {
                    Some(treasury) => (balance - amount, treasury),
                    None => return Expected::Rejected(Rejection::BalanceOverflow),
                }
            }
        };
        self.balances.insert((request.user, asset), user_after);
        self.treasuries[asset] = treasury_after;
        self.keys.insert(request.key, request.clone());
        self.entries += 1;
        Expected::Created {
            balance_after: user_after,
        }
    }
}

/// The real thing: a migrated file with the asset catalogue and no entries,
/// its writer, and a read-only connection beside it.
struct Real {
    _dir: tempfile::TempDir,
    writer: Writer,
    handle: WriterHandle,
    reader: Connection,
    asset_ids: Vec<String>,
    /// The answer each key got when its entry was created.
    receipts: HashMap<usize, Receipt>,
}

impl Real {
    fn open() -> Real {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.db");
        let mut conn = open::open_read_write(&path).unwrap();
        migrate::migrate(&mut conn).unwrap();
        // The catalogue only: the seed's grants are not posted, so the model
        // starts from an empty ledger.
        seed::apply_catalogue(&mut conn).unwrap();
        keys::create(
            &mut conn,
            &KeyName::parse("game-server").unwrap(),
            Scopes::parse("admin").unwrap(),
            &[7; 32],
            0,
        )
        .unwrap();
        let key_id: i64 = conn
            .query_row("SELECT id FROM api_keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(key_id, API_KEY_ID);
        let writer = Writer::start(conn, WRITE_BATCH_MAX).unwrap();
        let handle = writer.handle();
        let mut reader = open::open_read_only(&path).unwrap();
        let asset_ids = reads::assets(&mut reader)
            .unwrap()
            .into_iter()
            .map(|row| {
                assert_eq!(row.symbol, SYMBOLS[asset_index(&row.symbol)]);
                row.id
            })
            .collect();
        Real {
            _dir: dir,
            writer,
            handle,
            reader,
            asset_ids,
            receipts: HashMap::new(),
        }
    }

    fn post(&mut self, request: &Request, expected: &Expected) {
        let outcome = self.handle.post_blocking(request.command(&self.asset_ids));
        match (outcome, expected) {
            (Ok(WriteOutcome::Created(receipt)), Expected::Created { balance_after }) => {
                let entry = &receipt.transaction;
                let asset = request.asset.known().unwrap();
                assert_eq!(receipt.balance, *balance_after, "{request:?}");
                assert_eq!(entry.balance_after, *balance_after, "{request:?}");
                assert_eq!(entry.kind, request.kind);
                assert_eq!(entry.direction, request.kind.user_direction());
                assert_eq!(entry.asset_symbol, SYMBOLS[asset]);
                assert_eq!(entry.amount, i64::try_from(request.amount).unwrap());
                assert_eq!(entry.idempotency_key, request.key());
                assert_eq!(entry.reference_id, request.reference());
                assert_eq!(entry.note, request.note());
                self.receipts.insert(request.key, receipt);
            }
            (Ok(WriteOutcome::Replayed(receipt)), Expected::Replayed { key }) => {
                assert_eq!(
                    Some(&receipt),
                    self.receipts.get(key),
                    "a replay is the original answer, whole"
                );
            }
            (Err(LedgerError::Rejected(rejection)), Expected::Rejected(expected)) => {
                assert_eq!(&rejection, expected, "{request:?}");
            }
            (outcome, expected) => {
                panic!("{request:?}: storage answered {outcome:?}, the model {expected:?}")
            }
        }
    }

    /// Every balance, the sums, the entry count and the audit, against the model.
    fn assert_agrees_with(&mut self, model: &Model) {
        for (user, name) in USERS.iter().enumerate() {
            let balances = reads::balances(&mut self.reader, &UserId::parse(name).unwrap());
            if !model.has_wallet(user) {
                assert!(
                    matches!(
                        balances,
                        Err(LedgerError::Rejected(Rejection::WalletNotFound))
                    ),
                    "{name} has no wallet in the model: {balances:?}"
                );
                continue;
            }
            let rows = balances.unwrap();
            let symbols: Vec<&str> = rows.iter().map(|row| row.asset_symbol.as_str()).collect();
            assert_eq!(symbols, SYMBOLS);
            for (asset, row) in rows.iter().enumerate() {
                let expected = model.balances.get(&(user, asset)).copied().unwrap_or(0);
                assert_eq!(row.balance, expected, "{name}'s {}", row.asset_symbol);
                assert!(row.balance >= 0);
            }
        }
        let entries: i64 = self
            .reader
            .query_row("SELECT count(*) FROM ledger_entries", [], |row| row.get(0))
            .unwrap();
        assert_eq!(entries, model.entries);
        let report = verify::audit(&mut self.reader).unwrap();
        assert!(report.is_clean(), "{report}");
        for totals in &report.assets {
            let asset = asset_index(&totals.symbol);
            let held: i64 = model
                .balances
                .iter()
                .filter(|((_, held_in), _)| *held_in == asset)
                .map(|(_, balance)| balance)
                .sum();
            assert_eq!(totals.sum_of_balances, 0, "{}", totals.symbol);
            assert_eq!(totals.held_by_users, i128::from(held), "{}", totals.symbol);
            assert_eq!(i128::from(model.treasuries[asset]), -i128::from(held));
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
    fn storage_and_model_agree_on_every_answer_and_every_balance(steps in steps()) {
        let mut real = Real::open();
        let mut model = Model::default();
        let mut sent: Vec<Request> = Vec::new();
        for step in &steps {
            let request = match step {
                Step::Send(request) => request.clone(),
                Step::Retry(index) if !sent.is_empty() => sent[index.index(sent.len())].clone(),
                Step::Retry(_) => continue,
            };
            let expected = model.apply(&request);
            real.post(&request, &expected);
            real.assert_agrees_with(&model);
            sent.push(request);
        }
        real.writer.stop();
    }
}
