//! The engine's decisions, for every operation and rejection, without a
//! database: facts are written out by hand, as a store would read them.

use super::engine::*;
use super::parts::{Part, PartBalances};
use super::Rejection;
use crate::domain::{
    Amount, AssetDecimals, AssetName, AssetRef, AssetSymbol, Caller, Direction, EntryKind,
    IdempotencyKey, Limit, LimitedKind, Metadata, Note, SpendOrder, UserId,
};

const GOLD: &str = "6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a01";
const GEMS: &str = "6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a02";
const ENTRY: &str = "0190f0a0-0000-7000-8000-000000000001";
const HOLD: &str = "0190f0a0-0000-7000-8000-0000000000a1";
/// The writer's clock in these tests.
const NOW: i64 = 1_800_000_000_000;

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn amount(raw: u64) -> Amount {
    Amount::parse(raw).unwrap()
}

fn gold() -> AssetRef {
    AssetRef::parse("GOLD").unwrap()
}

fn command(route: Route, operations: Vec<Operation>) -> Command {
    Command {
        caller: Caller::Anonymous,
        key: IdempotencyKey::parse("k").unwrap(),
        route,
        operations,
    }
}

fn spend(who: &str, raw: u64) -> Operation {
    Operation::Spend {
        user: user(who),
        asset: gold(),
        amount: amount(raw),
        details: EntryDetails::default(),
    }
}

fn topup(who: &str, raw: u64) -> Operation {
    Operation::Credit {
        kind: CreditKind::Topup,
        user: user(who),
        asset: gold(),
        amount: amount(raw),
        details: EntryDetails::default(),
    }
}

fn transfer(from: &str, to: &str, raw: u64) -> Operation {
    Operation::Transfer {
        from: user(from),
        to: user(to),
        asset: gold(),
        amount: amount(raw),
        details: EntryDetails::default(),
    }
}

fn reverse(raw: Option<u64>) -> Operation {
    Operation::Reverse {
        entry: ENTRY.parse().unwrap(),
        amount: raw.map(amount),
        details: EntryDetails::default(),
    }
}

/// GOLD and GEMS; alice holds `alice` GOLD (an account only if > 0), the
/// Treasury the negative of it.
fn facts(alice: i64) -> Facts {
    let mut accounts = vec![AccountFact::new(AccountKey::treasury(GOLD), -alice)];
    if alice > 0 {
        accounts.push(AccountFact::new(AccountKey::user("alice", GOLD), alice));
    }
    Facts {
        stored: None,
        assets: vec![
            AssetFact {
                id: GOLD.into(),
                symbol: "GOLD".into(),
                spend_order: SpendOrder::FreeFirst,
            },
            AssetFact {
                id: GEMS.into(),
                symbol: "GEMS".into(),
                spend_order: SpendOrder::FreeFirst,
            },
        ],
        accounts,
        users_with_wallet: if alice > 0 {
            vec!["alice".into()]
        } else {
            vec![]
        },
        entries: vec![],
        holds: vec![],
        rules: vec![],
        now_ms: NOW,
    }
}

fn plan(decision: Result<Decision, Rejection>) -> Plan {
    match decision {
        Ok(Decision::Apply(plan)) => *plan,
        other => panic!("expected a plan, got {other:?}"),
    }
}

/// `facts` with one entry to reverse: `kind` of `original` between `debit`
/// and `credit`, `reversed` of it reversed already.
fn with_entry(
    mut facts: Facts,
    kind: EntryKind,
    original: i64,
    reversed: i64,
    debit: AccountKey,
    credit: AccountKey,
) -> Facts {
    facts.entries.push(EntryFact {
        seq: 7,
        id: ENTRY.into(),
        kind,
        asset_id: GOLD.into(),
        asset_symbol: "GOLD".into(),
        amount: original,
        debit,
        credit,
        reversed,
        parts: vec![Part::paid(original)],
    });
    facts
}

#[test]
fn a_topup_opens_the_account_and_moves_value_from_the_treasury() {
    let plan = plan(decide(
        &command(Route::Topup, vec![topup("bob", 100)]),
        &facts(0),
    ));
    assert_eq!(plan.new_accounts, vec![AccountKey::user("bob", GOLD)]);
    let entry = &plan.entries[0];
    assert_eq!(entry.kind, EntryKind::Topup);
    assert_eq!(entry.debit, AccountKey::treasury(GOLD));
    assert_eq!(
        (entry.debit_balance_after, entry.credit_balance_after),
        (-100, 100)
    );
}

#[test]
fn a_spend_of_the_whole_balance_leaves_zero_and_one_more_is_refused() {
    let plan = plan(decide(
        &command(Route::Spend, vec![spend("alice", 100)]),
        &facts(100),
    ));
    assert_eq!(plan.entries[0].debit_balance_after, 0);
    assert!(plan.new_accounts.is_empty());
    assert_eq!(
        decide(
            &command(Route::Spend, vec![spend("alice", 101)]),
            &facts(100)
        ),
        Err(Rejection::InsufficientFunds {
            balance: 100,
            available: 100,
            requested: 101
        })
    );
}

#[test]
fn a_spend_without_a_wallet_is_wallet_not_found_and_without_the_asset_is_insufficient() {
    assert_eq!(
        decide(&command(Route::Spend, vec![spend("nobody", 1)]), &facts(0)),
        Err(Rejection::WalletNotFound)
    );
    let mut facts = facts(0);
    facts.users_with_wallet.push("nobody".into());
    assert_eq!(
        decide(&command(Route::Spend, vec![spend("nobody", 1)]), &facts),
        Err(Rejection::InsufficientFunds {
            balance: 0,
            available: 0,
            requested: 1
        })
    );
}

#[test]
fn an_unknown_asset_is_refused() {
    let operation = Operation::Spend {
        user: user("alice"),
        asset: AssetRef::parse("SILVER").unwrap(),
        amount: amount(1),
        details: EntryDetails::default(),
    };
    assert_eq!(
        decide(&command(Route::Spend, vec![operation]), &facts(10)),
        Err(Rejection::AssetNotFound)
    );
}

#[test]
fn a_user_balance_stops_at_two_to_the_53_minus_one() {
    let max = crate::limits::AMOUNT_MAX;
    let at_max = facts(max as i64 - 1);
    assert!(matches!(
        decide(&command(Route::Topup, vec![topup("alice", 1)]), &at_max),
        Ok(Decision::Apply(_))
    ));
    assert_eq!(
        decide(&command(Route::Topup, vec![topup("alice", 2)]), &at_max),
        Err(Rejection::BalanceOverflow)
    );
}

#[test]
fn a_treasury_stays_within_i64() {
    let mut facts = facts(0);
    facts.accounts[0].balance = i64::MIN + 5;
    assert_eq!(
        decide(&command(Route::Topup, vec![topup("bob", 6)]), &facts),
        Err(Rejection::BalanceOverflow)
    );
}

#[test]
fn a_transfer_moves_value_between_users_and_opens_the_recipient() {
    let plan = plan(decide(
        &command(Route::Transfer, vec![transfer("alice", "bob", 30)]),
        &facts(100),
    ));
    let entry = &plan.entries[0];
    assert_eq!(entry.kind, EntryKind::Transfer);
    assert_eq!(entry.debit, AccountKey::user("alice", GOLD));
    assert_eq!(entry.credit, AccountKey::user("bob", GOLD));
    assert_eq!(
        (entry.debit_balance_after, entry.credit_balance_after),
        (70, 30)
    );
    assert_eq!(plan.new_accounts, vec![AccountKey::user("bob", GOLD)]);
}

#[test]
fn a_transfer_is_checked_like_a_spend_and_never_to_oneself() {
    assert!(matches!(
        decide(
            &command(Route::Transfer, vec![transfer("alice", "bob", 101)]),
            &facts(100)
        ),
        Err(Rejection::InsufficientFunds { .. })
    ));
    assert_eq!(
        decide(
            &command(Route::Transfer, vec![transfer("carl", "bob", 1)]),
            &facts(100)
        ),
        Err(Rejection::WalletNotFound)
    );
    assert_eq!(
        decide(
            &command(Route::Transfer, vec![transfer("alice", "alice", 1)]),
            &facts(100)
        ),
        Err(Rejection::TransferToSelf)
    );
}

#[test]
fn a_reversal_of_a_spend_refunds_the_user_and_defaults_to_what_is_left() {
    let facts = with_entry(
        facts(50),
        EntryKind::Spend,
        40,
        15,
        AccountKey::user("alice", GOLD),
        AccountKey::treasury(GOLD),
    );
    let plan = plan(decide(
        &command(Route::Reverse, vec![reverse(None)]),
        &facts,
    ));
    let entry = &plan.entries[0];
    assert_eq!(entry.kind, EntryKind::Reversal);
    assert_eq!(entry.amount, 25);
    assert_eq!(entry.credit, AccountKey::user("alice", GOLD));
    assert_eq!(entry.credit_balance_after, 75);
    assert_eq!(entry.reverses.as_ref().unwrap().reversed_after, 40);
}

#[test]
fn a_reversal_never_exceeds_what_is_left_and_nothing_left_is_zero() {
    let base = || {
        with_entry(
            facts(100),
            EntryKind::Topup,
            40,
            30,
            AccountKey::treasury(GOLD),
            AccountKey::user("alice", GOLD),
        )
    };
    assert_eq!(
        decide(&command(Route::Reverse, vec![reverse(Some(11))]), &base()),
        Err(Rejection::ReversalExceedsOriginal { reversible: 10 })
    );
    let spent = with_entry(
        facts(100),
        EntryKind::Topup,
        40,
        40,
        AccountKey::treasury(GOLD),
        AccountKey::user("alice", GOLD),
    );
    assert_eq!(
        decide(&command(Route::Reverse, vec![reverse(None)]), &spent),
        Err(Rejection::ReversalExceedsOriginal { reversible: 0 })
    );
}

#[test]
fn a_chargeback_debits_the_user_and_needs_the_funds() {
    let facts = with_entry(
        facts(5),
        EntryKind::Topup,
        40,
        0,
        AccountKey::treasury(GOLD),
        AccountKey::user("alice", GOLD),
    );
    assert_eq!(
        decide(&command(Route::Reverse, vec![reverse(Some(6))]), &facts),
        Err(Rejection::InsufficientFunds {
            balance: 5,
            available: 5,
            requested: 6
        })
    );
    let plan = plan(decide(
        &command(Route::Reverse, vec![reverse(Some(5))]),
        &facts,
    ));
    assert_eq!(plan.entries[0].debit, AccountKey::user("alice", GOLD));
}

#[test]
fn a_reversal_is_not_reversible_and_an_unknown_entry_is_not_found() {
    let facts = with_entry(
        facts(5),
        EntryKind::Reversal,
        5,
        0,
        AccountKey::treasury(GOLD),
        AccountKey::user("alice", GOLD),
    );
    assert_eq!(
        decide(&command(Route::Reverse, vec![reverse(None)]), &facts),
        Err(Rejection::NotReversible)
    );
    assert_eq!(
        decide(
            &command(Route::Reverse, vec![reverse(None)]),
            &self::facts(5)
        ),
        Err(Rejection::TransactionNotFound)
    );
}

#[test]
fn a_batch_sees_its_earlier_operations_and_fails_whole_at_the_first_refusal() {
    let ok = plan(decide(
        &command(Route::Batch, vec![topup("bob", 10), spend("bob", 10)]),
        &facts(0),
    ));
    assert_eq!(ok.entries.len(), 2);
    assert_eq!(ok.entries[1].debit_balance_after, 0);
    assert_eq!(
        decide(
            &command(
                Route::Batch,
                vec![spend("alice", 5), spend("alice", 5), spend("alice", 1)]
            ),
            &facts(10),
        ),
        Err(Rejection::InBatch {
            operation: 2,
            cause: Box::new(Rejection::InsufficientFunds {
                balance: 0,
                available: 0,
                requested: 1
            })
        })
    );
}

fn recorded(plan: &Plan) -> Vec<RecordedEntry> {
    plan.entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            entry.recorded(index as i64 + 1, format!("id-{index}"), &plan.key, 1_000)
        })
        .collect()
}

#[test]
fn a_batch_answers_each_entry_from_its_user_and_every_balance_touched() {
    let plan = plan(decide(
        &command(
            Route::Batch,
            vec![transfer("alice", "bob", 4), spend("bob", 1)],
        ),
        &facts(10),
    ));
    let Some(Answer::Batch {
        transactions,
        balances,
    }) = answer(Route::Batch, &recorded(&plan), None, &plan.state)
    else {
        panic!("a batch answer")
    };
    assert_eq!(transactions[0].direction, Direction::Debit);
    assert_eq!(transactions[0].counterparty.as_deref(), Some("bob"));
    assert_eq!(transactions[1].balance_after, 3);
    let pairs: Vec<(String, i64)> = balances
        .iter()
        .map(|row| (row.user.clone(), row.balance))
        .collect();
    assert_eq!(pairs, vec![("alice".into(), 6), ("bob".into(), 3)]);
}

#[test]
fn a_reversal_of_a_transfer_is_answered_from_the_original_sender() {
    let facts = with_entry(
        facts(0),
        EntryKind::Transfer,
        10,
        0,
        AccountKey::user("alice", GOLD),
        AccountKey::user("bob", GOLD),
    );
    let mut facts = facts;
    facts
        .accounts
        .push(AccountFact::new(AccountKey::user("bob", GOLD), 10));
    let plan = plan(decide(
        &command(Route::Reverse, vec![reverse(None)]),
        &facts,
    ));
    let Some(Answer::Entry {
        transaction,
        balance,
        ..
    }) = answer(Route::Reverse, &recorded(&plan), None, &plan.state)
    else {
        panic!("an entry answer")
    };
    assert_eq!(transaction.direction, Direction::Credit);
    assert_eq!(transaction.counterparty.as_deref(), Some("bob"));
    assert_eq!(transaction.reverses.as_deref(), Some(ENTRY));
    assert_eq!(balance, 10);
}

#[test]
fn the_same_request_replays_and_a_different_one_names_the_fields_that_differ() {
    let original = command(Route::Spend, vec![spend("alice", 10)]);
    let first = plan(decide(&original, &facts(100)));
    let mut stored = facts(90);
    stored.stored = Some(StoredRequest {
        request: first.request.clone(),
        entries: recorded(&first),
        hold: None,
        state: first.state.clone(),
    });
    match decide(&original, &stored) {
        Ok(Decision::Replay(Answer::Entry { balance, .. })) => assert_eq!(balance, 90),
        other => panic!("expected a replay, got {other:?}"),
    }
    // The asset named by id is the same request.
    let mut by_id = original.clone();
    if let Operation::Spend { asset, .. } = &mut by_id.operations[0] {
        *asset = AssetRef::parse(GOLD).unwrap();
    }
    assert!(matches!(decide(&by_id, &stored), Ok(Decision::Replay(_))));
    let mut changed = original.clone();
    if let Operation::Spend {
        amount, details, ..
    } = &mut changed.operations[0]
    {
        *amount = self::amount(11);
        details.note = Some(Note::parse("n").unwrap());
    }
    assert_eq!(
        decide(&changed, &stored),
        Err(Rejection::IdempotencyKeyReused {
            differing: vec!["amount".into(), "note".into()]
        })
    );
    // The same key by another route is another request.
    let as_transfer = command(Route::Transfer, vec![transfer("alice", "bob", 10)]);
    match decide(&as_transfer, &stored) {
        Err(Rejection::IdempotencyKeyReused { differing }) => {
            assert!(differing.contains(&"route".to_owned()), "{differing:?}");
            assert!(differing.contains(&"to".to_owned()), "{differing:?}");
        }
        other => panic!("expected a reuse, got {other:?}"),
    }
}

#[test]
fn metadata_key_order_is_the_same_request_and_a_batch_names_the_operation_that_differs() {
    let with_metadata = |value: serde_json::Value| {
        let mut operation = spend("alice", 1);
        if let Operation::Spend { details, .. } = &mut operation {
            details.metadata = Some(Metadata::parse(&value).unwrap());
        }
        operation
    };
    let facts = facts(10);
    let a = canonical_request(
        &command(
            Route::Spend,
            vec![with_metadata(serde_json::json!({"a": "1", "b": "2"}))],
        ),
        &facts,
    );
    let b = canonical_request(
        &command(
            Route::Spend,
            vec![with_metadata(serde_json::json!({"b": "2", "a": "1"}))],
        ),
        &facts,
    );
    assert!(a.is_same_as(&b));
    assert_eq!(a, b, "the same text, so no parse is needed");
    let batch = |second: u64| {
        canonical_request(
            &command(
                Route::Batch,
                vec![spend("alice", 1), spend("alice", second)],
            ),
            &facts,
        )
    };
    assert_eq!(batch(1).differing(&batch(2)), vec!["operations[1].amount"]);
    // Stored and read back, it is the same request.
    assert!(CanonicalRequest::from_json(a.to_json().to_owned()).is_same_as(&a));
    // Another spelling of the same request (keys in another order, as the
    // version 3 migration's json_object writes them) is the same request.
    let respelled: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(a.to_json()).unwrap();
    let mut reordered: Vec<(String, serde_json::Value)> = respelled.into_iter().collect();
    reordered.reverse();
    let text = format!(
        "{{{}}}",
        reordered
            .iter()
            .map(|(key, value)| format!("{:?}:{value}", key))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_ne!(text, a.to_json());
    assert!(CanonicalRequest::from_json(text).is_same_as(&a));
}

#[test]
fn an_asset_is_created_found_again_or_refused() {
    let new = NewAsset {
        symbol: AssetSymbol::parse("GEMS").unwrap(),
        name: AssetName::parse("Gems").unwrap(),
        decimals: AssetDecimals::parse(2).unwrap(),
    };
    let row = |name: &str, decimals: u8| AssetRow {
        id: GEMS.into(),
        symbol: "GEMS".into(),
        name: name.into(),
        decimals,
        created_at_ms: 0,
        rules: crate::domain::AssetRules::default(),
    };
    assert_eq!(decide_asset(&new, None, 3), Ok(AssetDecision::Create));
    assert!(matches!(
        decide_asset(&new, Some(row("Gems", 2)), 3),
        Ok(AssetDecision::AlreadyTheSame(_))
    ));
    assert_eq!(
        decide_asset(&new, Some(row("Gems", 0)), 3),
        Err(Rejection::AssetExists)
    );
    assert_eq!(
        decide_asset(&new, Some(row("Other", 2)), 3),
        Err(Rejection::AssetExists)
    );
    assert_eq!(
        decide_asset(&new, None, crate::limits::ASSET_TYPES_MAX),
        Err(Rejection::TooManyAssets)
    );
}

#[test]
fn needs_names_every_account_and_entry_a_command_reads() {
    let needs = needs(&command(
        Route::Batch,
        vec![transfer("alice", "bob", 1), reverse(None)],
    ));
    assert_eq!(needs.user_accounts.len(), 2);
    assert_eq!(needs.wallets, vec![user("alice")]);
    assert_eq!(needs.entries, vec![ENTRY.parse::<uuid::Uuid>().unwrap()]);
}

fn hold_op(who: &str, raw: u64, seconds: u32) -> Operation {
    Operation::Hold {
        user: user(who),
        asset: gold(),
        amount: amount(raw),
        expires_in_seconds: seconds,
        details: EntryDetails::default(),
    }
}

fn capture(raw: Option<u64>, to: Option<&str>) -> Operation {
    Operation::Capture {
        hold: HOLD.parse().unwrap(),
        amount: raw.map(amount),
        to: to.map(user),
        details: EntryDetails::default(),
    }
}

fn void() -> Operation {
    Operation::Void {
        hold: HOLD.parse().unwrap(),
    }
}

/// Alice holds `balance` GOLD with one hold of `held` on it, expiring at
/// `expires_at_ms`, stored with `status`.
fn with_hold(balance: i64, held: i64, status: HoldStatus, expires_at_ms: i64) -> Facts {
    let mut facts = facts(balance);
    let active = status == HoldStatus::Held;
    if let Some(alice) = facts
        .accounts
        .iter_mut()
        .find(|account| account.key == AccountKey::user("alice", GOLD))
    {
        alice.held = if active { held } else { 0 };
        alice.active_holds = i64::from(active);
        if active {
            alice.held_parts = PartBalances::of(&[Part::paid(held)]);
        }
        if active && has_expired(expires_at_ms, NOW) {
            alice.due = vec![DueHold {
                seq: 7,
                amount: held,
                parts: vec![Part::paid(held)],
            }];
        }
    }
    facts.holds.push(HoldFact {
        seq: 7,
        id: HOLD.into(),
        user: "alice".into(),
        asset_id: GOLD.into(),
        asset_symbol: "GOLD".into(),
        amount: held,
        status,
        captured_amount: if status == HoldStatus::Captured {
            held
        } else {
            0
        },
        captured_by: None,
        expires_at_ms,
        created_at_ms: NOW - 1_000,
        closed_at_ms: if active { None } else { Some(NOW - 500) },
        idempotency_key: "made-it".into(),
        reference_id: Some("order-1".into()),
        note: None,
        metadata: None,
        parts: vec![Part::paid(held)],
    });
    facts
}

#[test]
fn a_hold_sets_available_money_aside_until_its_expiry() {
    let plan = plan(decide(
        &command(Route::Hold, vec![hold_op("alice", 30, 60)]),
        &facts(100),
    ));
    assert!(plan.entries.is_empty(), "a hold writes no entry");
    let hold = plan.new_hold.clone().expect("a new hold");
    assert_eq!(hold.amount, 30);
    assert_eq!(hold.expires_at_ms, NOW + 60_000);
    let made = hold.recorded(1, HOLD.into(), &plan.key, NOW);
    match answer(Route::Hold, &[], Some(&made), &plan.state) {
        Some(Answer::Hold {
            hold,
            balance,
            held,
            available,
        }) => {
            assert_eq!(hold.status, HoldStatus::Held);
            assert_eq!((balance, held, available), (100, 30, 70));
        }
        other => panic!("a hold answer, not {other:?}"),
    }
}

#[test]
fn a_hold_is_checked_against_available_and_the_bound_on_active_holds() {
    assert_eq!(
        decide(
            &command(Route::Hold, vec![hold_op("alice", 50, 60)]),
            &with_hold(100, 60, HoldStatus::Held, NOW + 1)
        ),
        Err(Rejection::InsufficientFunds {
            balance: 100,
            available: 40,
            requested: 50
        })
    );
    let mut full = facts(100);
    full.accounts[1].held = 1000;
    full.accounts[1].balance = 2000;
    full.accounts[1].active_holds = crate::limits::HOLDS_PER_ACCOUNT_MAX;
    assert_eq!(
        decide(&command(Route::Hold, vec![hold_op("alice", 1, 60)]), &full),
        Err(Rejection::TooManyHolds)
    );
    assert_eq!(
        decide(
            &command(Route::Hold, vec![hold_op("nobody", 1, 60)]),
            &facts(0)
        ),
        Err(Rejection::WalletNotFound)
    );
}

#[test]
fn spends_transfers_and_debiting_reversals_cannot_touch_held_money() {
    let held = with_hold(100, 60, HoldStatus::Held, NOW + 1);
    let short = Err(Rejection::InsufficientFunds {
        balance: 100,
        available: 40,
        requested: 41,
    });
    assert_eq!(
        decide(&command(Route::Spend, vec![spend("alice", 41)]), &held),
        short
    );
    assert_eq!(
        decide(
            &command(Route::Transfer, vec![transfer("alice", "bob", 41)]),
            &held
        ),
        short
    );
    let plan = plan(decide(
        &command(Route::Spend, vec![spend("alice", 40)]),
        &held,
    ));
    match answer(Route::Spend, &recorded(&plan), None, &plan.state) {
        Some(Answer::Entry {
            balance, available, ..
        }) => assert_eq!((balance, available), (60, 0)),
        other => panic!("an entry answer, not {other:?}"),
    }
}

#[test]
fn an_expired_hold_counts_nowhere_and_a_write_records_its_expiry() {
    // Due at this very instant: expired from it on.
    let due = with_hold(100, 60, HoldStatus::Held, NOW);
    let plan = plan(decide(
        &command(Route::Spend, vec![spend("alice", 100)]),
        &due,
    ));
    assert_eq!(plan.expire, vec![7]);
    assert_eq!(
        decide(&command(Route::Capture, vec![capture(None, None)]), &due),
        Err(Rejection::HoldNotActive {
            status: HoldStatus::Expired
        })
    );
    assert_eq!(
        decide(&command(Route::Void, vec![void()]), &due),
        Err(Rejection::HoldNotActive {
            status: HoldStatus::Expired
        })
    );
    assert_eq!(due.holds[0].seen_at(NOW).closed_at_ms, Some(NOW));
}

#[test]
fn a_capture_spends_part_of_the_hold_and_releases_the_rest() {
    let held = with_hold(100, 60, HoldStatus::Held, NOW + 1);
    let plan = plan(decide(
        &command(Route::Capture, vec![capture(Some(25), None)]),
        &held,
    ));
    let closed = plan.close_hold.clone().expect("the hold closes");
    assert_eq!(closed.status, HoldStatus::Captured);
    assert_eq!(closed.captured_amount, 25);
    assert_eq!(closed.closed_at_ms, Some(NOW));
    let [entry] = plan.entries.as_slice() else {
        panic!("one entry")
    };
    assert_eq!(entry.kind, EntryKind::Spend);
    assert_eq!(entry.amount, 25);
    assert_eq!(entry.hold, Some((7, HOLD.to_owned())));
    assert_eq!(entry.reference_id.as_deref(), Some("order-1"));
    match answer(Route::Capture, &recorded(&plan), Some(&closed), &plan.state) {
        Some(Answer::Capture {
            balance,
            held,
            available,
            transaction,
            ..
        }) => {
            assert_eq!((balance, held, available), (75, 0, 75));
            assert_eq!(transaction.hold_id.as_deref(), Some(HOLD));
        }
        other => panic!("a capture answer, not {other:?}"),
    }
    // To another user: a TRANSFER, a DEBIT with them as counterparty.
    let plan = plan_of(
        &command(Route::Capture, vec![capture(None, Some("bob"))]),
        &held,
    );
    assert_eq!(plan.entries[0].kind, EntryKind::Transfer);
    assert_eq!(plan.entries[0].credit, AccountKey::user("bob", GOLD));
    assert_eq!(plan.new_accounts, vec![AccountKey::user("bob", GOLD)]);
}

fn plan_of(command: &Command, facts: &Facts) -> Plan {
    plan(decide(command, facts))
}

#[test]
fn a_capture_is_refused_when_the_hold_is_missing_closed_exceeded_or_to_its_own_user() {
    let held = with_hold(100, 60, HoldStatus::Held, NOW + 1);
    assert_eq!(
        decide(
            &command(Route::Capture, vec![capture(None, None)]),
            &facts(100)
        ),
        Err(Rejection::HoldNotFound)
    );
    assert_eq!(
        decide(
            &command(Route::Capture, vec![capture(Some(61), None)]),
            &held
        ),
        Err(Rejection::CaptureExceedsHold { held: 60 })
    );
    assert_eq!(
        decide(
            &command(Route::Capture, vec![capture(None, Some("alice"))]),
            &held
        ),
        Err(Rejection::TransferToSelf)
    );
    for status in [
        HoldStatus::Captured,
        HoldStatus::Voided,
        HoldStatus::Expired,
    ] {
        let closed = with_hold(100, 60, status, NOW + 1);
        assert_eq!(
            decide(&command(Route::Capture, vec![capture(None, None)]), &closed),
            Err(Rejection::HoldNotActive { status })
        );
        assert_eq!(
            decide(&command(Route::Void, vec![void()]), &closed),
            Err(Rejection::HoldNotActive { status })
        );
    }
}

#[test]
fn a_void_releases_the_hold_and_writes_no_entry() {
    let held = with_hold(100, 60, HoldStatus::Held, NOW + 1);
    let plan = plan_of(&command(Route::Void, vec![void()]), &held);
    assert!(plan.entries.is_empty());
    let closed = plan.close_hold.clone().expect("the hold closes");
    assert_eq!(closed.status, HoldStatus::Voided);
    assert_eq!(closed.captured_amount, 0);
    match answer(Route::Void, &[], Some(&closed), &plan.state) {
        Some(Answer::Hold {
            balance,
            held,
            available,
            ..
        }) => assert_eq!((balance, held, available), (100, 0, 100)),
        other => panic!("a hold answer, not {other:?}"),
    }
}

#[test]
fn a_replayed_hold_answers_as_it_was_made_even_once_captured() {
    let first = plan_of(
        &command(Route::Hold, vec![hold_op("alice", 30, 60)]),
        &facts(100),
    );
    let made = first
        .new_hold
        .as_ref()
        .unwrap()
        .recorded(7, HOLD.into(), &first.key, NOW);
    let captured = HoldFact {
        status: HoldStatus::Captured,
        captured_amount: 30,
        closed_at_ms: Some(NOW + 5),
        ..made.clone()
    };
    let mut later = facts(70);
    later.stored = Some(StoredRequest {
        request: first.request.clone(),
        entries: vec![],
        hold: Some(captured),
        state: first.state.clone(),
    });
    match decide(
        &command(Route::Hold, vec![hold_op("alice", 30, 60)]),
        &later,
    ) {
        Ok(Decision::Replay(Answer::Hold {
            hold,
            balance,
            held,
            ..
        })) => {
            assert_eq!(hold.status, HoldStatus::Held);
            assert_eq!(hold.closed_at_ms, None);
            assert_eq!((balance, held), (100, 30));
        }
        other => panic!("a replay, not {other:?}"),
    }
    // The same key for another expiry is another request.
    match decide(
        &command(Route::Hold, vec![hold_op("alice", 30, 61)]),
        &later,
    ) {
        Err(Rejection::IdempotencyKeyReused { differing }) => {
            assert_eq!(differing, vec!["expiresInSeconds".to_owned()])
        }
        other => panic!("a reuse, not {other:?}"),
    }
}

/// `facts(alice)` with rules on alice's GOLD account: a maximum balance
/// and caps, each with what its window holds already.
fn with_rules(alice: i64, max_balance: Option<i64>, windows: &[(LimitedKind, i64, i64)]) -> Facts {
    let mut facts = facts(alice);
    facts.rules.push(AccountRules {
        key: AccountKey::user("alice", GOLD),
        max_balance,
        windows: windows
            .iter()
            .map(|(kind, max, used)| WindowFact {
                limit: Limit::new(*kind, 3600, *max as u64).unwrap(),
                used: *used,
            })
            .collect(),
    });
    facts
}

fn limit_exceeded(used: i64, requested: u64, retry_after: RetryAfter) -> Rejection {
    Rejection::LimitExceeded {
        kind: LimitedKind::Spend,
        window_seconds: 3600,
        max: 100,
        used,
        requested,
        retry_after,
    }
}

#[test]
fn a_spend_that_would_pass_its_cap_is_refused_and_says_what_must_leave_the_window() {
    let facts = with_rules(1000, None, &[(LimitedKind::Spend, 100, 70)]);
    assert_eq!(
        plan(decide(
            &command(Route::Spend, vec![spend("alice", 30)]),
            &facts
        ))
        .entries
        .len(),
        1
    );
    assert_eq!(
        decide(&command(Route::Spend, vec![spend("alice", 31)]), &facts),
        Err(limit_exceeded(
            70,
            31,
            RetryAfter::WhenStoredLeave {
                account: AccountKey::user("alice", GOLD),
                must_leave: 1
            }
        ))
    );
    // More than the cap on its own never fits.
    assert_eq!(
        decide(&command(Route::Spend, vec![spend("alice", 101)]), &facts),
        Err(limit_exceeded(70, 101, RetryAfter::Never))
    );
}

#[test]
fn a_batch_counts_each_operation_against_the_ones_before_it_and_waits_for_its_own() {
    let facts = with_rules(1000, None, &[(LimitedKind::Spend, 100, 0)]);
    assert_eq!(
        decide(
            &command(Route::Batch, vec![spend("alice", 60), spend("alice", 41)]),
            &facts
        ),
        Err(Rejection::InBatch {
            operation: 1,
            cause: Box::new(limit_exceeded(60, 41, RetryAfter::Seconds(3600))),
        })
    );
    let ok = plan(decide(
        &command(Route::Batch, vec![spend("alice", 60), spend("alice", 40)]),
        &facts,
    ));
    assert_eq!(ok.entries.len(), 2);
}

#[test]
fn a_cap_counts_only_its_own_type_and_a_reversal_counts_in_none() {
    let facts = with_rules(1000, None, &[(LimitedKind::Topup, 100, 100)]);
    // A spend and a transfer are not TOPUPs.
    plan(decide(
        &command(Route::Spend, vec![spend("alice", 500)]),
        &facts,
    ));
    plan(decide(
        &command(Route::Transfer, vec![transfer("alice", "bob", 500)]),
        &facts,
    ));
    assert!(matches!(
        decide(&command(Route::Topup, vec![topup("alice", 1)]), &facts),
        Err(Rejection::LimitExceeded {
            kind: LimitedKind::Topup,
            used: 100,
            ..
        })
    ));
    // A refund credits alice but is no TOPUP.
    let refund = with_entry(
        facts.clone(),
        EntryKind::Spend,
        50,
        0,
        AccountKey::user("alice", GOLD),
        AccountKey::treasury(GOLD),
    );
    plan(decide(
        &command(Route::Reverse, vec![reverse(None)]),
        &refund,
    ));
}

#[test]
fn a_credit_past_the_maximum_balance_is_refused_whoever_credits_and_a_debit_is_not() {
    let facts = with_rules(900, Some(1000), &[]);
    plan(decide(
        &command(Route::Topup, vec![topup("alice", 100)]),
        &facts,
    ));
    let refused = Rejection::BalanceLimit {
        max_balance: 1000,
        balance: 900,
        requested: 101,
    };
    assert_eq!(
        decide(&command(Route::Topup, vec![topup("alice", 101)]), &facts),
        Err(refused.clone())
    );
    assert_eq!(
        decide(
            &command(Route::Transfer, vec![transfer("bob", "alice", 101)]),
            &{
                let mut facts = facts.clone();
                facts
                    .accounts
                    .push(AccountFact::new(AccountKey::user("bob", GOLD), 500));
                facts.users_with_wallet.push("bob".into());
                facts
            }
        ),
        Err(refused)
    );
    // Above its maximum (lowered since), a balance still pays.
    let over = with_rules(5000, Some(1000), &[]);
    plan(decide(
        &command(Route::Spend, vec![spend("alice", 10)]),
        &over,
    ));
}
