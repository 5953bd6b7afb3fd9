//! Goal: with holds, captures, voids and the passing of time (a clock the
//! test moves), the real store (driven through `Store` on a fresh database,
//! a temporary SQLite file) and a plain model of API.md's holds rules agree after every step:
//! on each answer (or refusal), every balance, held and available amount,
//! every balance's paid and free parts (API.md: a hold sets its parts aside
//! free first, a capture takes exactly those, a spend takes what no hold set
//! aside), every hold's status, and the audit `wallet verify` runs (which
//! checks each account's paid part held against its holds).
//!
//! Steps: top-ups, bonuses, spends and transfers (checked against available), holds
//! of 1-4 seconds, captures (whole or partial, of too much, to the Treasury,
//! to another user or to the hold's own user), voids, moving the clock on
//! by up to 2.5 s, and exact retries of the step before.

use std::sync::atomic::Ordering;

use proptest::prelude::*;
use proptest::sample::Index;
use uuid::Uuid;

use wallet::domain::{Amount, AssetRef, Caller, IdempotencyKey, UserId};
use wallet::ledger::engine::{
    Answer, Command, CreditKind, EntryDetails, HoldStatus, Operation, Outcome, Route,
};
use wallet::ledger::Rejection;
use wallet::store::{commands, LedgerError};

use crate::real_store::Real;

const USERS: [&str; 3] = ["ann", "ben", "cid"];
/// A hold id no hold has.
const NO_HOLD: u128 = 0x0190_f0a0_0000_7000_8000_0000_0000_0bad;

#[derive(Debug, Clone)]
enum Step {
    Topup(usize, u64),
    Bonus(usize, u64),
    Spend(usize, u64),
    Transfer(usize, usize, u64),
    Hold(usize, u64, u32),
    Capture(Index, Option<u64>, Option<usize>),
    Void(Index),
    Advance(i64),
    RetryLast,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let user = 0..USERS.len();
    let step = prop_oneof![
        3 => (user.clone(), 1..400_u64).prop_map(|(u, a)| Step::Topup(u, a)),
        2 => (user.clone(), 1..200_u64).prop_map(|(u, a)| Step::Bonus(u, a)),
        2 => (user.clone(), 1..300_u64).prop_map(|(u, a)| Step::Spend(u, a)),
        2 => (user.clone(), 1..USERS.len(), 1..300_u64)
            .prop_map(|(u, offset, a)| Step::Transfer(u, (u + offset) % USERS.len(), a)),
        4 => (user.clone(), 1..300_u64, 1..=4_u32).prop_map(|(u, a, s)| Step::Hold(u, a, s)),
        3 => (any::<Index>(), proptest::option::of(1..300_u64), proptest::option::of(user.clone()))
            .prop_map(|(h, a, to)| Step::Capture(h, a, to)),
        2 => any::<Index>().prop_map(Step::Void),
        2 => (0..2_500_i64).prop_map(Step::Advance),
        1 => Just(Step::RetryLast),
    ];
    proptest::collection::vec(step, 1..40)
}

#[derive(Debug, Clone)]
struct ModelHold {
    id: String,
    user: usize,
    amount: i64,
    expires_at: i64,
    /// As closed by a capture or void; HELD until then.
    status: HoldStatus,
    captured: i64,
    closed_at: Option<i64>,
    /// The (paid, free) it set aside when it was made.
    parts: (i64, i64),
}

impl ModelHold {
    fn status_at(&self, now: i64) -> HoldStatus {
        match self.status {
            HoldStatus::Held if now >= self.expires_at => HoldStatus::Expired,
            status => status,
        }
    }
}

/// API.md's rules for one asset, GOLD.
#[derive(Debug, Default)]
struct Model {
    now: i64,
    balances: [i64; 3],
    wallets: [bool; 3],
    holds: Vec<ModelHold>,
    /// Each user's (paid, free): they add up to the balance.
    parts: [(i64, i64); 3],
}

/// Takes `amount` from (paid, free), free first: (paid taken, free taken).
fn free_first(from: (i64, i64), amount: i64) -> (i64, i64) {
    let free = from.1.min(amount);
    (amount - free, free)
}

impl Model {
    /// What the user's active holds set aside of (paid, free).
    fn held_parts(&self, user: usize) -> (i64, i64) {
        self.holds
            .iter()
            .filter(|hold| hold.user == user && hold.status_at(self.now) == HoldStatus::Held)
            .fold((0, 0), |(paid, free), hold| {
                (paid + hold.parts.0, free + hold.parts.1)
            })
    }

    /// The user's (paid, free) that no hold sets aside.
    fn available_parts(&self, user: usize) -> (i64, i64) {
        let (paid, free) = self.parts[user];
        let (held_paid, held_free) = self.held_parts(user);
        (paid - held_paid, free - held_free)
    }

    /// Moves `taken` (paid, free) from `from` to `to` (None: the Treasury).
    fn move_parts(&mut self, from: usize, to: Option<usize>, taken: (i64, i64)) {
        self.parts[from].0 -= taken.0;
        self.parts[from].1 -= taken.1;
        if let Some(to) = to {
            self.parts[to].0 += taken.0;
            self.parts[to].1 += taken.1;
        }
    }

    fn held(&self, user: usize) -> i64 {
        self.holds
            .iter()
            .filter(|hold| hold.user == user && hold.status_at(self.now) == HoldStatus::Held)
            .map(|hold| hold.amount)
            .sum()
    }

    fn available(&self, user: usize) -> i64 {
        self.balances[user] - self.held(user)
    }

    fn debit(&self, user: usize, amount: i64) -> Result<(), Rejection> {
        if !self.wallets[user] {
            return Err(Rejection::WalletNotFound);
        }
        if self.available(user) < amount {
            return Err(Rejection::InsufficientFunds {
                balance: self.balances[user],
                available: self.available(user),
                requested: amount as u64,
            });
        }
        Ok(())
    }

    fn active_hold(&self, index: Option<usize>) -> Result<usize, Rejection> {
        let index = index.ok_or(Rejection::HoldNotFound)?;
        match self.holds[index].status_at(self.now) {
            HoldStatus::Held => Ok(index),
            status => Err(Rejection::HoldNotActive { status }),
        }
    }
}

fn command(key: usize, route: Route, operation: Operation) -> Command {
    Command {
        caller: Caller::Anonymous,
        key: IdempotencyKey::parse(&format!("k-{key}")).unwrap(),
        route,
        operations: vec![operation],
    }
}

fn user(index: usize) -> UserId {
    UserId::parse(USERS[index]).unwrap()
}

fn gold() -> AssetRef {
    AssetRef::parse("GOLD").unwrap()
}

fn amount(raw: u64) -> Amount {
    Amount::parse(raw).unwrap()
}

/// The (balance, held, available) an answer reports for the requesting user.
fn answered_balances(answer: &Answer) -> (i64, Option<i64>, i64) {
    match answer {
        Answer::Entry {
            balance, available, ..
        } => (*balance, None, *available),
        Answer::Hold {
            balance,
            held,
            available,
            ..
        }
        | Answer::Capture {
            balance,
            held,
            available,
            ..
        } => (*balance, Some(*held), *available),
        Answer::Batch { .. } => panic!("no batches here"),
    }
}

proptest! {
    #![proptest_config(crate::config(24))]

    #[test]
    fn store_and_model_agree_on_holds_captures_voids_and_expiry(steps in steps()) {
        let start = 1_900_000_000_000_i64;
        let real = Real::open(start);
        let mut model = Model { now: start, ..Model::default() };
        let mut last: Option<(Command, Outcome)> = None;
        for (key, step) in steps.iter().enumerate() {
            let (command, expected, requester): (Command, Result<(), Rejection>, usize) = match step {
                Step::Advance(ms) => {
                    model.now += ms;
                    real.clock.fetch_add(*ms, Ordering::SeqCst);
                    continue;
                }
                Step::RetryLast => {
                    let Some((command, outcome)) = &last else { continue };
                    let again = real.apply(command.clone());
                    let original = match outcome {
                        Outcome::Created(answer) | Outcome::Replayed(answer) => answer,
                    };
                    prop_assert_eq!(again, Ok(Outcome::Replayed(original.clone())));
                    continue;
                }
                Step::Topup(u, a) => (
                    command(key, Route::Topup, Operation::Credit {
                        kind: CreditKind::Topup, user: user(*u), asset: gold(),
                        amount: amount(*a), details: EntryDetails::default(),
                    }),
                    Ok(()),
                    *u,
                ),
                Step::Bonus(u, a) => (
                    command(key, Route::Bonus, Operation::Credit {
                        kind: CreditKind::Bonus, user: user(*u), asset: gold(),
                        amount: amount(*a), details: EntryDetails::default(),
                    }),
                    Ok(()),
                    *u,
                ),
                Step::Spend(u, a) => (
                    command(key, Route::Spend, Operation::Spend {
                        user: user(*u), asset: gold(), amount: amount(*a),
                        details: EntryDetails::default(),
                    }),
                    model.debit(*u, *a as i64),
                    *u,
                ),
                Step::Transfer(from, to, a) => (
                    command(key, Route::Transfer, Operation::Transfer {
                        from: user(*from), to: user(*to), asset: gold(), amount: amount(*a),
                        details: EntryDetails::default(),
                    }),
                    model.debit(*from, *a as i64),
                    *from,
                ),
                Step::Hold(u, a, seconds) => (
                    command(key, Route::Hold, Operation::Hold {
                        user: user(*u), asset: gold(), amount: amount(*a),
                        expires_in_seconds: *seconds, details: EntryDetails::default(),
                    }),
                    model.debit(*u, *a as i64),
                    *u,
                ),
                Step::Capture(index, a, to) => {
                    let chosen = (!model.holds.is_empty()).then(|| index.index(model.holds.len()));
                    let id = chosen.map_or_else(|| Uuid::from_u128(NO_HOLD), |i| {
                        model.holds[i].id.parse().unwrap()
                    });
                    let expected = model.active_hold(chosen).and_then(|i| {
                        let hold = &model.holds[i];
                        if a.is_some_and(|a| a as i64 > hold.amount) {
                            Err(Rejection::CaptureExceedsHold { held: hold.amount })
                        } else if *to == Some(hold.user) {
                            Err(Rejection::TransferToSelf)
                        } else {
                            Ok(())
                        }
                    });
                    (
                        command(key, Route::Capture, Operation::Capture {
                            hold: id, amount: a.map(amount), to: to.map(user),
                            details: EntryDetails::default(),
                        }),
                        expected,
                        chosen.map_or(0, |i| model.holds[i].user),
                    )
                }
                Step::Void(index) => {
                    let chosen = (!model.holds.is_empty()).then(|| index.index(model.holds.len()));
                    let id = chosen.map_or_else(|| Uuid::from_u128(NO_HOLD), |i| {
                        model.holds[i].id.parse().unwrap()
                    });
                    (
                        command(key, Route::Void, Operation::Void { hold: id }),
                        model.active_hold(chosen).map(|_| ()),
                        chosen.map_or(0, |i| model.holds[i].user),
                    )
                }
            };
            let outcome = real.apply(command.clone());
            match (&expected, &outcome) {
                (Err(rejection), Err(got)) => prop_assert_eq!(rejection, got, "{:?}", step),
                (Ok(()), Ok(Outcome::Created(answer))) => {
                    // The model takes the step, as the real ledger did.
                    match (step, answer) {
                        (Step::Topup(u, a), _) => {
                            model.balances[*u] += *a as i64;
                            model.parts[*u].0 += *a as i64;
                            model.wallets[*u] = true;
                        }
                        (Step::Bonus(u, a), _) => {
                            model.balances[*u] += *a as i64;
                            model.parts[*u].1 += *a as i64;
                            model.wallets[*u] = true;
                        }
                        (Step::Spend(u, a), _) => {
                            model.balances[*u] -= *a as i64;
                            let taken = free_first(model.available_parts(*u), *a as i64);
                            model.move_parts(*u, None, taken);
                        }
                        (Step::Transfer(from, to, a), _) => {
                            model.balances[*from] -= *a as i64;
                            model.balances[*to] += *a as i64;
                            model.wallets[*to] = true;
                            let taken = free_first(model.available_parts(*from), *a as i64);
                            model.move_parts(*from, Some(*to), taken);
                        }
                        (Step::Hold(u, a, seconds), Answer::Hold { hold, .. }) => {
                            prop_assert_eq!(hold.created_at_ms, model.now);
                            prop_assert_eq!(hold.expires_at_ms, model.now + i64::from(*seconds) * 1000);
                            let parts = free_first(model.available_parts(*u), *a as i64);
                            model.holds.push(ModelHold {
                                id: hold.id.clone(), user: *u, amount: *a as i64,
                                expires_at: hold.expires_at_ms, status: HoldStatus::Held,
                                captured: 0, closed_at: None, parts,
                            });
                        }
                        (Step::Capture(index, a, to), Answer::Capture { hold, transaction, .. }) => {
                            let i = index.index(model.holds.len());
                            let captured = a.map_or(model.holds[i].amount, |a| a as i64);
                            let owner = model.holds[i].user;
                            model.balances[owner] -= captured;
                            if let Some(to) = to {
                                model.balances[*to] += captured;
                                model.wallets[*to] = true;
                            }
                            // Exactly the parts the hold set aside, free
                            // first among them.
                            let taken = free_first(model.holds[i].parts, captured);
                            model.move_parts(owner, *to, taken);
                            let now = model.now;
                            let held = &mut model.holds[i];
                            held.status = HoldStatus::Captured;
                            held.captured = captured;
                            held.closed_at = Some(now);
                            prop_assert_eq!(transaction.amount, captured);
                            prop_assert_eq!(hold.captured_by.as_deref(), Some(transaction.id.as_str()));
                            prop_assert_eq!(transaction.hold_id.as_deref(), Some(hold.id.as_str()));
                        }
                        (Step::Void(index), Answer::Hold { .. }) => {
                            let i = index.index(model.holds.len());
                            let now = model.now;
                            model.holds[i].status = HoldStatus::Voided;
                            model.holds[i].closed_at = Some(now);
                        }
                        (step, answer) => prop_assert!(false, "{step:?} answered {answer:?}"),
                    }
                    let (balance, held, available) = answered_balances(answer);
                    prop_assert_eq!(balance, model.balances[requester], "{:?}", step);
                    prop_assert_eq!(available, model.available(requester), "{:?}", step);
                    if let Some(held) = held {
                        prop_assert_eq!(held, model.held(requester), "{:?}", step);
                    }
                    last = Some((command, outcome.clone().unwrap()));
                }
                (expected, got) => prop_assert!(false, "{step:?}: the model says {expected:?}, the store {got:?}"),
            }
            // Every balance, held and available, at the clock's instant.
            for (index, name) in USERS.iter().enumerate() {
                let rows = real.store.balances(&user(index));
                if !model.wallets[index] {
                    prop_assert!(matches!(rows, Err(LedgerError::Rejected(Rejection::WalletNotFound))), "{name}");
                    continue;
                }
                let rows = rows.unwrap();
                let gold = rows.iter().find(|row| row.asset_symbol == "GOLD").unwrap();
                prop_assert_eq!(
                    (gold.balance, gold.held, gold.available),
                    (model.balances[index], model.held(index), model.available(index)),
                    "{} after {:?}", name, step
                );
                let (paid, free) = model.parts[index];
                prop_assert_eq!((gold.paid, gold.free), (paid, free), "{} after {:?}", name, step);
                prop_assert!(paid >= 0 && free >= 0 && paid + free == model.balances[index]);
            }
            // Every hold's status, as it stands now.
            for hold in &model.holds {
                let read = real.store.hold(Uuid::parse_str(&hold.id).unwrap()).unwrap();
                let status = hold.status_at(model.now);
                prop_assert_eq!(read.status, status, "{:?}", hold);
                prop_assert_eq!(read.captured_amount, hold.captured);
                let closed_at = match status {
                    HoldStatus::Expired => Some(hold.expires_at),
                    _ => hold.closed_at,
                };
                prop_assert_eq!(read.closed_at_ms, closed_at, "{:?}", hold);
            }
            let report = commands::verify(&real.location).unwrap();
            prop_assert!(report.is_clean(), "{}", report);
        }
    }
}
