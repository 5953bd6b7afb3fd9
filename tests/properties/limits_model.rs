//! Goal: the real store (driven through `Store`, at a clock the test moves)
//! and a plain model of API.md's Limits answer every write alike.
//!
//! Random sequences of top-ups, bonuses, spends, transfers and batches of
//! them between three users, changes of the asset's rules and of users' own
//! values (a maximum balance, caps of every type over windows of one minute
//! to an hour), and the clock moving on by up to half an hour. The model
//! keeps every counted entry with its time and sums the trailing windows
//! itself; the store reads two running totals per window.
//!
//! After every step the two agree on the answer, refusals included with
//! their details (`used`, and `retryAfterSeconds`: when enough of the
//! window will have left it), and on every balance; no committed entry ever
//! takes a window past its cap or a balance past its maximum when it was
//! made, and `wallet verify` (which recomputes every running total from the
//! entries) passes at the end.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use proptest::prelude::*;

use wallet::domain::{
    Amount, AssetRef, AssetRulesChange, Caller, FieldChange, IdempotencyKey, Limit, LimitedKind,
    Limits, UserId, UserRulesChange,
};
use wallet::ledger::engine::{Command, CreditKind, EntryDetails, Operation, RetryAfter, Route};
use wallet::ledger::Rejection;
use wallet::store::{commands, RulesChange};

use crate::real_store::Real;

const USERS: [&str; 3] = ["ann", "ben", "cid"];
/// What each user is topped up with before any rule exists.
const FUNDING: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Topup(usize, i64),
    Bonus(usize, i64),
    Spend(usize, i64),
    Transfer(usize, usize, i64),
}

#[derive(Debug, Clone)]
enum Step {
    One(Move),
    Batch(Vec<Move>),
    AssetRules {
        max_balance: Option<Option<i64>>,
        limits: Option<Vec<Limit>>,
    },
    UserRules {
        user: usize,
        max_balance: Option<Option<i64>>,
        limits: Option<Option<Vec<Limit>>>,
    },
    Advance(i64),
}

fn a_move() -> impl Strategy<Value = Move> {
    let amount = 1..=300i64;
    prop_oneof![
        1 => (0..3usize, amount.clone()).prop_map(|(u, a)| Move::Topup(u, a)),
        1 => (0..3usize, amount.clone()).prop_map(|(u, a)| Move::Bonus(u, a)),
        3 => (0..3usize, amount.clone()).prop_map(|(u, a)| Move::Spend(u, a)),
        2 => (0..3usize, 1..3usize, amount).prop_map(|(u, d, a)| Move::Transfer(u, (u + d) % 3, a)),
    ]
}

fn limits() -> impl Strategy<Value = Vec<Limit>> {
    let limit = (
        0..4usize,
        prop_oneof![Just(60u64), Just(600), Just(3600)],
        1..=900u64,
    )
        .prop_map(|(kind, window, max)| Limit::new(LimitedKind::ALL[kind], window, max).unwrap());
    proptest::collection::vec(limit, 0..4).prop_map(|limits| {
        // No two of one type and window (the API refuses those).
        let mut kept: Vec<Limit> = Vec::new();
        for limit in limits {
            if !kept
                .iter()
                .any(|k| k.kind == limit.kind && k.window_seconds == limit.window_seconds)
            {
                kept.push(limit);
            }
        }
        kept
    })
}

fn max_balance() -> impl Strategy<Value = Option<Option<i64>>> {
    proptest::option::of(proptest::option::of(500..=3000i64))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => a_move().prop_map(Step::One),
        2 => proptest::collection::vec(a_move(), 1..5).prop_map(Step::Batch),
        2 => (max_balance(), proptest::option::of(limits()))
            .prop_map(|(max_balance, limits)| Step::AssetRules { max_balance, limits }),
        1 => (0..3usize, max_balance(), proptest::option::of(proptest::option::of(limits())))
            .prop_map(|(user, max_balance, limits)| Step::UserRules { user, max_balance, limits }),
        3 => (1..1_800_000i64).prop_map(Step::Advance),
    ]
}

/// Rules as the model keeps them: the asset's, and each user's own.
#[derive(Debug, Clone, Default)]
struct Rules {
    max_balance: Option<i64>,
    limits: Vec<Limit>,
    own_max_balance: BTreeMap<usize, i64>,
    own_limits: BTreeMap<usize, Vec<Limit>>,
}

impl Rules {
    fn max_balance(&self, user: usize) -> Option<i64> {
        self.own_max_balance
            .get(&user)
            .copied()
            .or(self.max_balance)
    }

    fn limits(&self, user: usize) -> &[Limit] {
        self.own_limits.get(&user).unwrap_or(&self.limits)
    }
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    balances: [i64; 3],
    /// Every counted entry: (user, kind, amount, made at), in order.
    counted: Vec<(usize, LimitedKind, i64, i64)>,
    rules: Rules,
}

impl Model {
    /// The entries of `user` of `kind` still in a window of `window_ms`.
    fn in_window(&self, user: usize, kind: LimitedKind, window_ms: i64) -> Vec<(i64, i64)> {
        self.counted
            .iter()
            .filter(|(u, k, _, at)| *u == user && *k == kind && *at > self.now - window_ms)
            .map(|(_, _, amount, at)| (*amount, *at))
            .collect()
    }

    /// `user`'s caps on `amount` of `kind`, with what this command counted
    /// already (`pending`): the first refused, in the rules' order.
    fn check(
        &self,
        user: usize,
        kind: LimitedKind,
        amount: i64,
        pending: &BTreeMap<(usize, LimitedKind), i64>,
    ) -> Result<(), Rejection> {
        let counted = pending.get(&(user, kind)).copied().unwrap_or(0);
        for limit in self.rules.limits(user).iter().filter(|l| l.kind == kind) {
            let stored = self.in_window(user, kind, limit.window_ms());
            let used = stored.iter().map(|(a, _)| a).sum::<i64>() + counted;
            if used + amount <= limit.max {
                continue;
            }
            let retry_after = if amount > limit.max {
                RetryAfter::Never
            } else if counted + amount > limit.max {
                RetryAfter::Seconds(u64::from(limit.window_seconds))
            } else {
                // The oldest entries leave first; once enough have left...
                let must_leave = used + amount - limit.max;
                let mut left = 0;
                let mut when = None;
                for (a, at) in &stored {
                    left += a;
                    if left >= must_leave {
                        when = Some(*at);
                        break;
                    }
                }
                let at = when.expect("the window holds what must leave it");
                let wait = at + limit.window_ms() - self.now;
                RetryAfter::Seconds(u64::try_from((wait + 999) / 1000).unwrap().max(1))
            };
            return Err(Rejection::LimitExceeded {
                kind,
                window_seconds: limit.window_seconds,
                max: limit.max,
                used,
                requested: amount as u64,
                retry_after,
            });
        }
        Ok(())
    }

    /// Applies `moves` all together or not at all, as the engine does.
    fn apply(&mut self, moves: &[Move], batch: bool) -> Result<(), Rejection> {
        let mut balances = self.balances;
        let mut pending: BTreeMap<(usize, LimitedKind), i64> = BTreeMap::new();
        let mut made = Vec::new();
        for (index, &one) in moves.iter().enumerate() {
            let result = (|| {
                let (debit, credit, kind, amount) = match one {
                    Move::Topup(u, a) => (None, Some(u), LimitedKind::Topup, a),
                    Move::Bonus(u, a) => (None, Some(u), LimitedKind::Bonus, a),
                    Move::Spend(u, a) => (Some(u), None, LimitedKind::Spend, a),
                    Move::Transfer(u, v, a) => (Some(u), Some(v), LimitedKind::Transfer, a),
                };
                if let Some(u) = debit {
                    if balances[u] < amount {
                        return Err(Rejection::InsufficientFunds {
                            balance: balances[u],
                            available: balances[u],
                            requested: amount as u64,
                        });
                    }
                }
                let counted_user = debit.or(credit).unwrap();
                let counted_user = if kind.counts_the_credited_user() {
                    credit.unwrap()
                } else {
                    counted_user
                };
                self.check(counted_user, kind, amount, &pending)?;
                if let Some(v) = credit {
                    if let Some(max) = self.rules.max_balance(v) {
                        let before = balances[v] - debit.filter(|u| *u == v).map_or(0, |_| amount);
                        if before + amount > max {
                            return Err(Rejection::BalanceLimit {
                                max_balance: max,
                                balance: before,
                                requested: amount as u64,
                            });
                        }
                    }
                }
                if let Some(u) = debit {
                    balances[u] -= amount;
                }
                if let Some(v) = credit {
                    balances[v] += amount;
                }
                *pending.entry((counted_user, kind)).or_insert(0) += amount;
                Ok((counted_user, kind, amount))
            })();
            match result {
                Ok(entry) => made.push(entry),
                Err(cause) if batch => {
                    return Err(Rejection::InBatch {
                        operation: index,
                        cause: Box::new(cause),
                    })
                }
                Err(cause) => return Err(cause),
            }
        }
        self.balances = balances;
        for (user, kind, amount) in made {
            self.counted.push((user, kind, amount, self.now));
        }
        Ok(())
    }
}

impl Real {
    fn change(&self, change: RulesChange) {
        self.runtime
            .block_on(self.store.change_rules(change, Caller::Anonymous))
            .expect("a valid change of rules is taken");
    }

    fn balance(&self, user: usize) -> i64 {
        let rows = self.store.balances(&UserId::parse(USERS[user]).unwrap());
        match rows {
            Ok(rows) => rows
                .iter()
                .find(|row| row.asset_symbol == "GOLD")
                .map_or(0, |row| row.balance),
            Err(error) => panic!("balance of {}: {error:?}", USERS[user]),
        }
    }
}

fn operation(one: Move) -> Operation {
    let user = |u: usize| UserId::parse(USERS[u]).unwrap();
    let gold = AssetRef::parse("GOLD").unwrap();
    let amount = |a: i64| Amount::parse(a as u64).unwrap();
    let details = EntryDetails::default();
    match one {
        Move::Topup(u, a) => Operation::Credit {
            kind: CreditKind::Topup,
            user: user(u),
            asset: gold,
            amount: amount(a),
            details,
        },
        Move::Bonus(u, a) => Operation::Credit {
            kind: CreditKind::Bonus,
            user: user(u),
            asset: gold,
            amount: amount(a),
            details,
        },
        Move::Spend(u, a) => Operation::Spend {
            user: user(u),
            asset: gold,
            amount: amount(a),
            details,
        },
        Move::Transfer(u, v, a) => Operation::Transfer {
            from: user(u),
            to: user(v),
            asset: gold,
            amount: amount(a),
            details,
        },
    }
}

fn route(one: Move) -> Route {
    match one {
        Move::Topup(..) => Route::Topup,
        Move::Bonus(..) => Route::Bonus,
        Move::Spend(..) => Route::Spend,
        Move::Transfer(..) => Route::Transfer,
    }
}

fn command(key: usize, route: Route, operations: Vec<Operation>) -> Command {
    Command {
        caller: Caller::Anonymous,
        key: IdempotencyKey::parse(&format!("k-{key}")).unwrap(),
        route,
        operations,
    }
}

fn limits_change(limits: &[Limit]) -> Limits {
    Limits::parse(limits.to_vec()).unwrap()
}

fn max_change(change: Option<Option<i64>>) -> FieldChange<i64> {
    match change {
        None => FieldChange::Keep,
        Some(None) => FieldChange::Clear,
        Some(Some(max)) => FieldChange::Set(max),
    }
}

proptest! {
    #![proptest_config(crate::config(24))]

    #[test]
    fn store_and_model_agree_on_maximum_balances_and_caps_as_windows_slide(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        let start = 1_900_000_000_000_i64;
        let real = Real::open(start);
        let mut model = Model { now: start, ..Model::default() };
        for user in 0..3 {
            let funding = Move::Topup(user, FUNDING);
            prop_assert!(real.apply(command(100 + user, Route::Topup, vec![operation(funding)])).is_ok());
            model.apply(&[funding], false).unwrap();
        }
        for (index, step) in steps.iter().enumerate() {
            let key = 1000 + index;
            match step {
                Step::Advance(ms) => {
                    model.now += ms;
                    real.clock.fetch_add(*ms, Ordering::SeqCst);
                }
                Step::AssetRules { max_balance, limits } => {
                    if let Some(max) = max_balance {
                        model.rules.max_balance = *max;
                    }
                    if let Some(limits) = limits {
                        model.rules.limits = limits.clone();
                    }
                    real.change(RulesChange::Asset {
                        asset: AssetRef::parse("GOLD").unwrap(),
                        change: AssetRulesChange {
                            spend_order: None,
                            max_balance: max_change(*max_balance),
                            limits: match limits {
                                None => FieldChange::Keep,
                                Some(limits) => FieldChange::Set(limits_change(limits)),
                            },
                        },
                    });
                }
                Step::UserRules { user, max_balance, limits } => {
                    match max_balance {
                        None => {}
                        Some(None) => { model.rules.own_max_balance.remove(user); }
                        Some(Some(max)) => { model.rules.own_max_balance.insert(*user, *max); }
                    }
                    match limits {
                        None => {}
                        Some(None) => { model.rules.own_limits.remove(user); }
                        Some(Some(limits)) => { model.rules.own_limits.insert(*user, limits.clone()); }
                    }
                    real.change(RulesChange::User {
                        user: UserId::parse(USERS[*user]).unwrap(),
                        asset: AssetRef::parse("GOLD").unwrap(),
                        change: UserRulesChange {
                            max_balance: max_change(*max_balance),
                            limits: match limits {
                                None => FieldChange::Keep,
                                Some(None) => FieldChange::Clear,
                                Some(Some(limits)) => FieldChange::Set(limits_change(limits)),
                            },
                        },
                    });
                }
                Step::One(one) => {
                    let expected = model.apply(&[*one], false);
                    let got = real.apply(command(key, route(*one), vec![operation(*one)]));
                    prop_assert_eq!(got.map(|_| ()), expected, "step {}: {:?}", index, step);
                }
                Step::Batch(moves) => {
                    let expected = model.apply(moves, true);
                    let got = real.apply(command(
                        key,
                        Route::Batch,
                        moves.iter().copied().map(operation).collect(),
                    ));
                    prop_assert_eq!(got.map(|_| ()), expected, "step {}: {:?}", index, step);
                }
            }
            for (user, expected) in model.balances.iter().enumerate() {
                prop_assert_eq!(real.balance(user), *expected, "{} after step {}", USERS[user], index);
            }
        }
        let report = commands::verify(&real.location).unwrap();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
    }
}
