//! The audit behind `wallet verify`: it replays every entry in order, recomputes
//! every balance from the amounts alone, and compares it with the figures the
//! writer stored. Storage feeds it entries in batches, so memory is bounded by
//! the number of accounts, not the length of the ledger.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::ledger::parts;
use crate::limits::{AMOUNT_MAX, AUDIT_PROBLEMS_SHOWN_MAX};

/// An account as the audit needs to know it.
#[derive(Debug, Clone)]
pub struct AuditAccount {
    pub id: i64,
    pub is_user: bool,
    pub asset_type_id: String,
}

/// One stored posting: an account's signed change and the balance after it.
/// A Treasury's posting may store no balance (the PostgreSQL backend keeps
/// no running balance for it); a user's always does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPosting {
    pub delta: i64,
    pub balance_after: Option<i64>,
    /// The account's running paid total once it counts; like the balance,
    /// a Treasury's may be absent.
    pub paid_after: Option<i64>,
}

/// One entry as stored, with the two postings stored for it (if any: a file
/// changed behind the service's back may lack them).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub seq: i64,
    pub kind: String,
    pub asset_type_id: String,
    pub amount: i64,
    pub debit_account: i64,
    pub credit_account: i64,
    pub debit_posting: Option<AuditPosting>,
    pub credit_posting: Option<AuditPosting>,
    /// Its parts as stored (`ledger::parts::encode`).
    pub parts: Option<String>,
    /// The PAID part stored beside them, where a backend keeps one
    /// (PostgreSQL's triggers move the paid figures by it).
    pub stored_paid: Option<i64>,
}

/// A REVERSAL as stored, beside the entry it names.
#[derive(Debug, Clone)]
pub struct AuditReversal {
    pub seq: i64,
    /// The kind of the entry it reverses; None when that entry is missing.
    pub original_kind: Option<String>,
    /// Whether it moves between the original's two accounts, the other way
    /// round, in the original's asset.
    pub same_accounts_reversed: bool,
    /// The running total it stored.
    pub reversed_after: Option<i64>,
    /// The original's reversals summed up to and including this one.
    pub reversed_so_far: i64,
    pub original_amount: Option<i64>,
}

/// An idempotency record beside the entries that name it. `entry_count` is
/// None for entries that name a record that does not exist.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    pub id: i64,
    pub entry_count: Option<i64>,
    pub entries_found: i64,
}

/// One account's hold totals: as stored, as the holds give them, and as a
/// balance read computes them now.
#[derive(Debug, Clone)]
pub struct AuditHeld {
    pub account: i64,
    /// `account_holds` as stored (0, 0 when it has no row).
    pub stored_held: i64,
    pub stored_active: i64,
    /// The holds of the account stored as HELD, summed and counted.
    pub held_by_holds: i64,
    pub active_by_holds: i64,
    /// The holds still HELD and not yet expired at the audit's instant.
    pub held_unexpired: i64,
    /// What a balance read answers as `held` at that instant.
    pub held_as_read: i64,
    /// Of `stored_held`, the paid part as stored, and the paid parts of
    /// the HELD holds, summed.
    pub stored_held_paid: i64,
    pub held_paid_by_holds: i64,
}

/// A hold that is CAPTURED, or that some entry names, beside those entries.
#[derive(Debug, Clone)]
pub struct AuditCapture {
    pub hold: i64,
    pub status: String,
    pub captured_amount: i64,
    /// How many entries name it, and (when one does) its amount and whether
    /// it debits the hold's account.
    pub entries: i64,
    pub entry_amount: Option<i64>,
    pub from_hold_account: bool,
}

/// An asset's supply totals as stored (`asset_supply`), to be checked
/// against the entries, the balances and the holds.
#[derive(Debug, Clone)]
pub struct AuditSupply {
    pub asset_type_id: String,
    pub topup: u128,
    pub bonus: u128,
    pub spent: u128,
    pub reversed: u128,
    pub held: i64,
    pub holders: i64,
    /// What users hold of paid currency, as stored.
    pub paid: i128,
}

/// Counts that say whether the event feed holds exactly one row per entry
/// and per change of every hold, in commit order.
#[derive(Debug, Clone, Default)]
pub struct AuditEvents {
    /// Rows naming an entry, and entries.
    pub entry_rows: i64,
    pub entries: i64,
    /// Entry rows that name no entry, or name a hold too.
    pub unmatched_entry_rows: i64,
    /// `hold.created` events, and holds.
    pub hold_created_events: i64,
    pub holds: i64,
    /// Closing events, and holds no longer HELD.
    pub closing_events: i64,
    pub closed_holds: i64,
    /// Hold events whose type does not match their hold.
    pub unmatched_hold_events: i64,
    /// Entry rows that do not follow the entry before them.
    pub out_of_order: i64,
    /// Rows naming a change of rules, and changes of rules.
    pub rule_change_rows: i64,
    pub rule_changes: i64,
    /// Rule rows that name no change, or whose type does not match it.
    pub unmatched_rule_rows: i64,
}

/// Counts that say whether the running totals the caps read (one row per
/// entry a cap may count) match the entries.
#[derive(Debug, Clone, Default)]
pub struct AuditWindows {
    pub rows: i64,
    /// TOPUP, BONUS, SPEND and TRANSFER entries.
    pub counted_entries: i64,
    /// Rows whose account, type, time or running total is not what the
    /// entries before it, in its account and type, add up to.
    pub mismatched: i64,
}

/// Running totals of one asset's entries, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KindTotals {
    topup: u128,
    bonus: u128,
    spent: u128,
    reversed: u128,
}

/// What `verify` prints, and whether the ledger holds.
#[derive(Debug, Clone)]
pub struct AuditReport {
    pub entries: u64,
    pub accounts: usize,
    /// Per asset: (asset_type_id, symbol, total held by users, sum of all balances).
    pub assets: Vec<AssetTotals>,
    pub problems: Vec<String>,
    pub problem_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetTotals {
    pub symbol: String,
    pub held_by_users: i128,
    pub sum_of_balances: i128,
    /// Of `held_by_users`, the paid part (the rest is free).
    pub paid_by_users: i128,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "entries checked: {}; accounts: {}",
            self.entries, self.accounts
        )?;
        for asset in &self.assets {
            writeln!(
                f,
                "asset {}: held by users {} (paid {}, free {}), sum of all balances {}",
                asset.symbol,
                asset.held_by_users,
                asset.paid_by_users,
                asset.held_by_users - asset.paid_by_users,
                asset.sum_of_balances
            )?;
        }
        for problem in &self.problems {
            writeln!(f, "PROBLEM: {problem}")?;
        }
        let unshown = self.problem_count - self.problems.len() as u64;
        if unshown > 0 {
            writeln!(f, "... and {unshown} more problems")?;
        }
        if self.is_clean() {
            write!(f, "verify: OK: every balance matches the ledger")
        } else {
            write!(f, "verify: FAILED: {} problems", self.problem_count)
        }
    }
}

/// Replays entries in sequence order; see the module comment.
pub struct Auditor {
    accounts: HashMap<i64, AuditAccount>,
    /// Asset id to symbol, for the report.
    asset_symbols: BTreeMap<String, String>,
    recomputed: HashMap<i64, i64>,
    /// Per account: its paid part, recomputed from the entries' parts.
    recomputed_paid: HashMap<i64, i64>,
    /// Per asset id: the entries' amounts by kind.
    kind_totals: HashMap<String, KindTotals>,
    /// Per account: what its HELD holds sum to.
    held_by_holds: HashMap<i64, i64>,
    entries: u64,
    last_seq: i64,
    problems: Vec<String>,
    problem_count: u64,
}

impl Auditor {
    pub fn new(accounts: Vec<AuditAccount>, asset_symbols: BTreeMap<String, String>) -> Auditor {
        Auditor {
            accounts: accounts.into_iter().map(|a| (a.id, a)).collect(),
            asset_symbols,
            recomputed: HashMap::new(),
            recomputed_paid: HashMap::new(),
            kind_totals: HashMap::new(),
            held_by_holds: HashMap::new(),
            entries: 0,
            last_seq: 0,
            problems: Vec::new(),
            problem_count: 0,
        }
    }

    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < AUDIT_PROBLEMS_SHOWN_MAX {
            self.problems.push(text);
        }
    }

    /// Checks one entry; entries must come in increasing `seq`.
    pub fn check(&mut self, entry: &AuditEntry) {
        self.entries += 1;
        let seq = entry.seq;
        if seq <= self.last_seq {
            self.problem(format!(
                "entry {seq}: out of order after entry {}",
                self.last_seq
            ));
        }
        self.last_seq = seq;
        let totals = self
            .kind_totals
            .entry(entry.asset_type_id.clone())
            .or_default();
        let amount = u128::try_from(entry.amount).unwrap_or(0);
        match entry.kind.as_str() {
            "TOPUP" => totals.topup += amount,
            "BONUS" => totals.bonus += amount,
            "SPEND" => totals.spent += amount,
            "REVERSAL" => totals.reversed += amount,
            _ => {}
        }
        if entry.amount <= 0 || entry.amount as u64 > AMOUNT_MAX {
            self.problem(format!("entry {seq}: amount {} out of range", entry.amount));
        }
        if entry.debit_account == entry.credit_account {
            self.problem(format!("entry {seq}: debits and credits the same account"));
        }
        let (debit_is_user, credit_is_user) = match (
            self.accounts.get(&entry.debit_account).cloned(),
            self.accounts.get(&entry.credit_account).cloned(),
        ) {
            (Some(debit), Some(credit)) => {
                for account in [&debit, &credit] {
                    if account.asset_type_id != entry.asset_type_id {
                        self.problem(format!(
                            "entry {seq}: account {} holds another asset",
                            account.id
                        ));
                    }
                }
                (debit.is_user, credit.is_user)
            }
            _ => {
                self.problem(format!("entry {seq}: names an account that does not exist"));
                return;
            }
        };
        let expected_sides = match entry.kind.as_str() {
            "TOPUP" | "BONUS" => Some((false, true)),
            "SPEND" => Some((true, false)),
            "TRANSFER" => Some((true, true)),
            // Checked against the entry it reverses (`check_reversal`).
            "REVERSAL" => Some((debit_is_user, credit_is_user)),
            _ => None,
        };
        match expected_sides {
            None => self.problem(format!("entry {seq}: unknown type {:?}", entry.kind)),
            Some(sides) if sides != (debit_is_user, credit_is_user) => self.problem(format!(
                "entry {seq}: a {} must move value between the Treasury and a user, the right way round",
                entry.kind
            )),
            Some(_) => {}
        }
        // The parts are double-entry too: both sides move the same ones,
        // and they add up to the amount.
        let parts = entry.parts.as_deref().and_then(parts::decode);
        let paid = match &parts {
            None => {
                self.problem(format!("entry {seq}: its parts are missing or unreadable"));
                0
            }
            Some(parts) => {
                // A top-up gives paid currency and a bonus free: nothing else.
                let wrong_kind = match entry.kind.as_str() {
                    "TOPUP" => parts.iter().any(|part| part.kind != parts::PartKind::Paid),
                    "BONUS" => parts.iter().any(|part| part.kind == parts::PartKind::Paid),
                    _ => false,
                };
                if wrong_kind {
                    self.problem(format!(
                        "entry {seq}: a {} cannot move these parts",
                        entry.kind
                    ));
                }
                let sum = parts
                    .iter()
                    .try_fold(0_i64, |sum, part| sum.checked_add(part.amount));
                if sum != Some(entry.amount) {
                    self.problem(format!(
                        "entry {seq}: its parts add up to {sum:?}, not its amount {}",
                        entry.amount
                    ));
                }
                parts::paid_of(parts)
            }
        };
        if entry.stored_paid.is_some_and(|stored| stored != paid) {
            self.problem(format!(
                "entry {seq}: stores a paid part of {:?} but its parts move {paid}",
                entry.stored_paid
            ));
        }
        self.replay_posting(
            seq,
            entry.debit_account,
            entry.amount.checked_neg(),
            entry.debit_posting,
            debit_is_user,
        );
        self.replay_paid(
            seq,
            entry.debit_account,
            -paid,
            entry.debit_posting,
            debit_is_user,
        );
        self.replay_posting(
            seq,
            entry.credit_account,
            Some(entry.amount),
            entry.credit_posting,
            credit_is_user,
        );
        self.replay_paid(
            seq,
            entry.credit_account,
            paid,
            entry.credit_posting,
            credit_is_user,
        );
    }

    /// Moves `account`'s paid part by `delta` and checks the posting's
    /// stored running total, and that a user's paid part stays within its
    /// balance (free, the rest, at least zero).
    fn replay_paid(
        &mut self,
        seq: i64,
        account: i64,
        delta: i64,
        stored: Option<AuditPosting>,
        is_user: bool,
    ) {
        let after = self.recomputed_paid.get(&account).copied().unwrap_or(0) + delta;
        self.recomputed_paid.insert(account, after);
        let balance = self.recomputed.get(&account).copied().unwrap_or(0);
        if is_user && !(0..=balance).contains(&after) {
            self.problem(format!(
                "entry {seq}: user account {account} holds {after} paid of a balance of {balance} (a part below zero)"
            ));
        }
        match stored.map(|posting| posting.paid_after) {
            Some(Some(stored)) if stored != after => self.problem(format!(
                "entry {seq}: account {account} stored a paid part of {stored} but the entries give {after}"
            )),
            Some(None) if is_user => self.problem(format!(
                "entry {seq}: user account {account} stored no paid part"
            )),
            _ => {}
        }
    }

    fn replay_posting(
        &mut self,
        seq: i64,
        account: i64,
        expected_delta: Option<i64>,
        stored: Option<AuditPosting>,
        is_user: bool,
    ) {
        let before = self.recomputed.get(&account).copied().unwrap_or(0);
        let Some(delta) = expected_delta else {
            self.problem(format!("entry {seq}: amount cannot be negated"));
            return;
        };
        let Some(after) = before.checked_add(delta) else {
            self.problem(format!(
                "entry {seq}: account {account} leaves the i64 range"
            ));
            return;
        };
        self.recomputed.insert(account, after);
        if is_user && after < 0 {
            self.problem(format!(
                "entry {seq}: user account {account} goes negative ({after})"
            ));
        }
        match stored {
            None => self.problem(format!(
                "entry {seq}: no posting stored for account {account}"
            )),
            Some(posting) => {
                if posting.delta != delta {
                    self.problem(format!(
                        "entry {seq}: account {account} posting moves {} but the entry says {delta}",
                        posting.delta
                    ));
                }
                match posting.balance_after {
                    Some(stored) if stored != after => self.problem(format!(
                        "entry {seq}: account {account} stored balance {stored} but the entries give {after}"
                    )),
                    None if is_user => self.problem(format!(
                        "entry {seq}: user account {account} stored no balance"
                    )),
                    _ => {}
                }
            }
        }
    }

    /// Checks a reversal against the entry it reverses: that entry exists
    /// and is not itself a reversal, the reversal moves between its two
    /// accounts the other way round, and the reversals of it never exceed
    /// it (the stored running total agrees with the amounts).
    pub fn check_reversal(&mut self, reversal: &AuditReversal) {
        let seq = reversal.seq;
        let Some(kind) = &reversal.original_kind else {
            return self.problem(format!(
                "entry {seq}: a REVERSAL that names no existing entry"
            ));
        };
        if kind == "REVERSAL" {
            self.problem(format!("entry {seq}: reverses a REVERSAL"));
        }
        if !reversal.same_accounts_reversed {
            self.problem(format!(
                "entry {seq}: a REVERSAL must move between its original's accounts, the other way round"
            ));
        }
        if reversal.reversed_after != Some(reversal.reversed_so_far) {
            self.problem(format!(
                "entry {seq}: stored reversed total {:?} but the reversals sum to {}",
                reversal.reversed_after, reversal.reversed_so_far
            ));
        }
        if reversal
            .original_amount
            .is_some_and(|amount| reversal.reversed_so_far > amount)
        {
            self.problem(format!(
                "entry {seq}: reversals of the original add up to {}, more than its amount",
                reversal.reversed_so_far
            ));
        }
    }

    /// Checks that an idempotency record names exactly the entries it says
    /// it made, and that no entry names a record that does not exist.
    pub fn check_request(&mut self, request: &AuditRequest) {
        match request.entry_count {
            None => self.problem(format!(
                "{} entries name idempotency record {}, which does not exist",
                request.entries_found, request.id
            )),
            Some(count) if count != request.entries_found => self.problem(format!(
                "idempotency record {} says it made {count} entries; {} exist",
                request.id, request.entries_found
            )),
            Some(_) => {}
        }
    }

    /// Checks one account's hold totals: the stored total is the sum of its
    /// HELD holds, a read counts only the unexpired ones, and the balance
    /// covers what is held, so no available balance is below zero.
    pub fn check_held(&mut self, held: &AuditHeld) {
        let account = held.account;
        self.held_by_holds.insert(account, held.held_by_holds);
        if (held.stored_held, held.stored_active) != (held.held_by_holds, held.active_by_holds) {
            self.problem(format!(
                "account {account}: stored held {} in {} holds, but its HELD holds sum to {} in {}",
                held.stored_held, held.stored_active, held.held_by_holds, held.active_by_holds
            ));
        }
        if held.held_as_read != held.held_unexpired {
            self.problem(format!(
                "account {account}: a balance read says {} held, but its unexpired holds sum to {}",
                held.held_as_read, held.held_unexpired
            ));
        }
        if held.stored_held_paid != held.held_paid_by_holds {
            self.problem(format!(
                "account {account}: stored {} of paid held, but its HELD holds set aside {} paid",
                held.stored_held_paid, held.held_paid_by_holds
            ));
        }
        let paid = self.recomputed_paid.get(&account).copied().unwrap_or(0);
        if paid < held.stored_held_paid {
            self.problem(format!(
                "account {account}: its holds set aside {} paid of the {paid} it holds",
                held.stored_held_paid
            ));
        }
        let balance = self.recomputed.get(&account).copied().unwrap_or(0);
        if balance < held.stored_held {
            self.problem(format!(
                "account {account}: balance {balance} is below the {} its holds set aside (available below zero)",
                held.stored_held
            ));
        }
    }

    /// Checks that a captured hold has exactly one entry carrying its id,
    /// for exactly its captured amount, from its account; and that no
    /// entry names a hold that was not captured.
    pub fn check_capture(&mut self, capture: &AuditCapture) {
        let hold = capture.hold;
        if capture.status != "CAPTURED" {
            if capture.entries > 0 {
                self.problem(format!(
                    "hold {hold}: {} entries name it, but it is {}",
                    capture.entries, capture.status
                ));
            }
            return;
        }
        if capture.entries != 1 {
            return self.problem(format!(
                "hold {hold}: captured, but {} entries name it (exactly one expected)",
                capture.entries
            ));
        }
        if capture.entry_amount != Some(capture.captured_amount) {
            self.problem(format!(
                "hold {hold}: captured {} but its entry moves {:?}",
                capture.captured_amount, capture.entry_amount
            ));
        }
        if !capture.from_hold_account {
            self.problem(format!(
                "hold {hold}: its capture does not debit the hold's account"
            ));
        }
    }

    /// Checks each asset's stored supply totals against the entries seen,
    /// the recomputed balances (holders) and the holds (held). Call it after
    /// every entry and every account's holds have been checked.
    pub fn check_supply(&mut self, supplies: &[AuditSupply]) {
        for supply in supplies {
            let asset = &supply.asset_type_id;
            let symbol = self
                .asset_symbols
                .get(asset)
                .cloned()
                .unwrap_or_else(|| asset.clone());
            let entries = self.kind_totals.get(asset).cloned().unwrap_or_default();
            let stored = KindTotals {
                topup: supply.topup,
                bonus: supply.bonus,
                spent: supply.spent,
                reversed: supply.reversed,
            };
            let in_asset = |account: &i64| {
                self.accounts
                    .get(account)
                    .is_some_and(|info| info.is_user && info.asset_type_id == *asset)
            };
            let holders = self
                .recomputed
                .iter()
                .filter(|(account, balance)| in_asset(account) && **balance != 0)
                .count() as i64;
            let held: i64 = self
                .held_by_holds
                .iter()
                .filter(|(account, _)| in_asset(account))
                .map(|(_, held)| *held)
                .sum();
            let paid: i128 = self
                .recomputed_paid
                .iter()
                .filter(|(account, _)| in_asset(account))
                .map(|(_, paid)| i128::from(*paid))
                .sum();
            if stored != entries {
                self.problem(format!(
                    "asset {symbol}: supply totals {stored:?} but its entries sum to {entries:?}"
                ));
            }
            if holders != supply.holders {
                self.problem(format!(
                    "asset {symbol}: supply counts {} holders, but {holders} users hold a balance",
                    supply.holders
                ));
            }
            if held != supply.held {
                self.problem(format!(
                    "asset {symbol}: supply says {} held, but its HELD holds sum to {held}",
                    supply.held
                ));
            }
            if paid != supply.paid {
                self.problem(format!(
                    "asset {symbol}: supply says users hold {} paid, but their paid parts sum to {paid}",
                    supply.paid
                ));
            }
        }
        let missing = self
            .asset_symbols
            .keys()
            .filter(|asset| {
                !supplies
                    .iter()
                    .any(|supply| &supply.asset_type_id == *asset)
            })
            .count();
        if missing > 0 {
            self.problem(format!("{missing} assets have no supply totals"));
        }
    }

    /// Checks the event feed: one row per entry and per change of every
    /// hold, each matching what it names, in commit order.
    pub fn check_events(&mut self, events: &AuditEvents) {
        if events.entry_rows != events.entries {
            self.problem(format!(
                "the feed has {} entry rows for {} entries",
                events.entry_rows, events.entries
            ));
        }
        if events.hold_created_events != events.holds {
            self.problem(format!(
                "the feed has {} hold.created events for {} holds",
                events.hold_created_events, events.holds
            ));
        }
        if events.closing_events != events.closed_holds {
            self.problem(format!(
                "the feed has {} closing events for {} closed holds",
                events.closing_events, events.closed_holds
            ));
        }
        if events.unmatched_entry_rows + events.unmatched_hold_events > 0 {
            self.problem(format!(
                "{} feed rows name no such entry and {} do not match their hold",
                events.unmatched_entry_rows, events.unmatched_hold_events
            ));
        }
        if events.out_of_order > 0 {
            self.problem(format!(
                "{} entry rows come after a newer entry's (or twice)",
                events.out_of_order
            ));
        }
        if events.rule_change_rows != events.rule_changes || events.unmatched_rule_rows > 0 {
            self.problem(format!(
                "the feed has {} rows for {} changes of rules, {} not matching their change",
                events.rule_change_rows, events.rule_changes, events.unmatched_rule_rows
            ));
        }
    }

    /// Checks the caps' running totals: one row per counted entry, each
    /// the sum of its account's entries of its type up to it.
    pub fn check_windows(&mut self, windows: &AuditWindows) {
        if windows.rows != windows.counted_entries || windows.mismatched > 0 {
            self.problem(format!(
                "the running totals (the caps', the supply's back in time) have {} rows for {} entries they count, {} not matching the entries",
                windows.rows, windows.counted_entries, windows.mismatched
            ));
        }
    }

    /// Checks a paid part kept beside the postings (PostgreSQL keeps a
    /// user's on its account row; a Treasury keeps none there) against the
    /// entries' parts replayed so far.
    pub fn check_stored_paid(&mut self, account: i64, stored: i64) {
        let is_user = self.accounts.get(&account).is_some_and(|info| info.is_user);
        let recomputed = if is_user {
            self.recomputed_paid.get(&account).copied().unwrap_or(0)
        } else {
            0
        };
        if recomputed != stored {
            self.problem(format!(
                "account {account}: stores a paid part of {stored} but the entries give {recomputed}"
            ));
        }
    }

    /// Checks a balance kept beside the postings (PostgreSQL keeps a user's
    /// on its account row, and a Treasury's as a sum of its asset's totals)
    /// against the entries replayed so far.
    pub fn check_stored_balance(&mut self, account: i64, stored: i128) {
        let recomputed = i128::from(self.recomputed.get(&account).copied().unwrap_or(0));
        if recomputed != stored {
            self.problem(format!(
                "account {account}: stores a balance of {stored} but the entries give {recomputed}"
            ));
        }
    }

    /// Ends the audit. `postings_stored` is the count of stored postings, which
    /// must be exactly two per entry.
    pub fn finish(mut self, postings_stored: u64) -> AuditReport {
        if postings_stored != self.entries * 2 {
            self.problem(format!(
                "{postings_stored} postings stored for {} entries (two per entry expected)",
                self.entries
            ));
        }
        let mut totals: BTreeMap<String, (i128, i128, i128)> = self
            .asset_symbols
            .keys()
            .map(|id| (id.clone(), (0, 0, 0)))
            .collect();
        for (account, balance) in &self.recomputed {
            if let Some(info) = self.accounts.get(account) {
                let entry = totals.entry(info.asset_type_id.clone()).or_default();
                entry.1 += i128::from(*balance);
                if info.is_user {
                    entry.0 += i128::from(*balance);
                    entry.2 += i128::from(self.recomputed_paid.get(account).copied().unwrap_or(0));
                }
            }
        }
        let mut assets = Vec::new();
        for (asset_id, (held_by_users, sum_of_balances, paid_by_users)) in totals {
            let symbol = self
                .asset_symbols
                .get(&asset_id)
                .cloned()
                .unwrap_or_else(|| asset_id.clone());
            if sum_of_balances != 0 {
                self.problem(format!(
                    "asset {symbol}: balances sum to {sum_of_balances}, not zero"
                ));
            }
            assets.push(AssetTotals {
                symbol,
                held_by_users,
                sum_of_balances,
                paid_by_users,
            });
        }
        assets.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        AuditReport {
            entries: self.entries,
            accounts: self.accounts.len(),
            assets,
            problems: self.problems,
            problem_count: self.problem_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREASURY: i64 = 1;
    const ALICE: i64 = 2;

    fn auditor() -> Auditor {
        let accounts = vec![
            AuditAccount {
                id: TREASURY,
                is_user: false,
                asset_type_id: "gold".into(),
            },
            AuditAccount {
                id: ALICE,
                is_user: true,
                asset_type_id: "gold".into(),
            },
        ];
        Auditor::new(
            accounts,
            BTreeMap::from([("gold".to_owned(), "GOLD".to_owned())]),
        )
    }

    fn entry(
        seq: i64,
        kind: &str,
        amount: i64,
        debit: (i64, i64),
        credit: (i64, i64),
    ) -> AuditEntry {
        AuditEntry {
            seq,
            kind: kind.into(),
            asset_type_id: "gold".into(),
            amount,
            debit_account: debit.0,
            credit_account: credit.0,
            // All of it paid: the running paid totals are the balances.
            debit_posting: Some(AuditPosting {
                delta: -amount,
                balance_after: Some(debit.1),
                paid_after: Some(debit.1),
            }),
            credit_posting: Some(AuditPosting {
                delta: amount,
                balance_after: Some(credit.1),
                paid_after: Some(credit.1),
            }),
            parts: Some(format!(r#"[{{"kind":"PAID","amount":{amount}}}]"#)),
            stored_paid: None,
        }
    }

    #[test]
    fn parts_that_do_not_add_up_or_a_paid_part_past_the_balance_are_found() {
        let mut audit = auditor();
        let mut topup = entry(1, "TOPUP", 100, (TREASURY, -100), (ALICE, 100));
        topup.parts = Some(r#"[{"kind":"PAID","amount":60},{"kind":"FREE","amount":30}]"#.into());
        audit.check(&topup);
        assert!(
            audit
                .problems
                .iter()
                .any(|p| p.contains("add up to Some(90)")),
            "{:?}",
            audit.problems
        );
        let mut unreadable = entry(2, "BONUS", 1, (TREASURY, -101), (ALICE, 101));
        unreadable.parts = Some("[{}]".into());
        audit.check(&unreadable);
        assert!(audit.problems.iter().any(|p| p.contains("unreadable")));
        // A stored running paid total that the parts do not give.
        let mut spend = entry(3, "SPEND", 10, (ALICE, 91), (TREASURY, -91));
        spend.parts = Some(r#"[{"kind":"FREE","amount":10}]"#.into());
        audit.check(&spend);
        assert!(
            audit
                .problems
                .iter()
                .any(|p| p.contains("a paid part of 91 but the entries give 60")),
            "{:?}",
            audit.problems
        );
        // Free (the balance less paid) below zero: 60 paid of 91 is fine,
        // then spending 40 free of the 31 there is not.
        let mut overdrawn = entry(4, "SPEND", 40, (ALICE, 51), (TREASURY, -51));
        overdrawn.parts = Some(r#"[{"kind":"FREE","amount":40}]"#.into());
        audit.check(&overdrawn);
        assert!(
            audit
                .problems
                .iter()
                .any(|p| p.contains("a part below zero")),
            "{:?}",
            audit.problems
        );
    }

    #[test]
    fn a_consistent_ledger_passes_and_sums_to_zero() {
        let mut audit = auditor();
        audit.check(&entry(1, "TOPUP", 100, (TREASURY, -100), (ALICE, 100)));
        audit.check(&entry(2, "SPEND", 30, (ALICE, 70), (TREASURY, -70)));
        let report = audit.finish(4);
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            report.assets,
            vec![AssetTotals {
                symbol: "GOLD".into(),
                held_by_users: 70,
                sum_of_balances: 0,
                paid_by_users: 70,
            }]
        );
    }

    #[test]
    fn a_stored_balance_that_disagrees_with_the_amounts_is_found() {
        let mut audit = auditor();
        audit.check(&entry(1, "TOPUP", 100, (TREASURY, -100), (ALICE, 1000)));
        let report = audit.finish(2);
        assert!(!report.is_clean());
        assert!(
            report.problems[0].contains("stored balance 1000"),
            "{report}"
        );
    }

    #[test]
    fn a_user_going_negative_is_found() {
        let mut audit = auditor();
        audit.check(&entry(1, "SPEND", 5, (ALICE, -5), (TREASURY, 5)));
        let report = audit.finish(2);
        assert!(
            report.problems.iter().any(|p| p.contains("goes negative")),
            "{report}"
        );
    }

    #[test]
    fn a_missing_posting_and_a_wrong_posting_count_are_found() {
        let mut audit = auditor();
        let mut bare = entry(1, "TOPUP", 10, (TREASURY, -10), (ALICE, 10));
        bare.credit_posting = None;
        audit.check(&bare);
        let report = audit.finish(1);
        assert_eq!(report.problem_count, 2, "{report}");
    }

    #[test]
    fn a_spend_the_wrong_way_round_is_found() {
        let mut audit = auditor();
        audit.check(&entry(1, "SPEND", 10, (TREASURY, -10), (ALICE, 10)));
        assert!(!audit.finish(2).is_clean());
    }

    fn reversal(reversed_after: i64, so_far: i64, original: i64) -> AuditReversal {
        AuditReversal {
            seq: 3,
            original_kind: Some("TOPUP".into()),
            same_accounts_reversed: true,
            reversed_after: Some(reversed_after),
            reversed_so_far: so_far,
            original_amount: Some(original),
        }
    }

    #[test]
    fn reversals_that_exceed_their_original_or_lose_count_are_found() {
        let mut audit = auditor();
        audit.check_reversal(&reversal(10, 10, 10));
        assert_eq!(audit.problem_count, 0);
        audit.check_reversal(&reversal(11, 11, 10));
        assert_eq!(audit.problem_count, 1);
        audit.check_reversal(&reversal(5, 6, 10));
        assert_eq!(audit.problem_count, 2);
        let mut wrong_way = reversal(1, 1, 10);
        wrong_way.same_accounts_reversed = false;
        audit.check_reversal(&wrong_way);
        let mut of_a_reversal = reversal(1, 1, 10);
        of_a_reversal.original_kind = Some("REVERSAL".into());
        audit.check_reversal(&of_a_reversal);
        let mut orphan = reversal(1, 1, 10);
        orphan.original_kind = None;
        audit.check_reversal(&orphan);
        assert_eq!(audit.problem_count, 5);
    }

    #[test]
    fn a_record_must_name_exactly_its_entries() {
        let mut audit = auditor();
        audit.check_request(&AuditRequest {
            id: 1,
            entry_count: Some(2),
            entries_found: 2,
        });
        assert_eq!(audit.problem_count, 0);
        audit.check_request(&AuditRequest {
            id: 2,
            entry_count: Some(2),
            entries_found: 1,
        });
        audit.check_request(&AuditRequest {
            id: 3,
            entry_count: None,
            entries_found: 1,
        });
        assert_eq!(audit.problem_count, 2);
    }

    #[test]
    fn problems_past_the_shown_maximum_are_counted() {
        let mut audit = auditor();
        for seq in 1..=(AUDIT_PROBLEMS_SHOWN_MAX as i64 + 5) {
            audit.check(&entry(seq, "REFUND", 1, (TREASURY, -seq), (ALICE, seq)));
        }
        let report = audit.finish(2 * (AUDIT_PROBLEMS_SHOWN_MAX as u64 + 5));
        assert_eq!(report.problems.len(), AUDIT_PROBLEMS_SHOWN_MAX);
        assert_eq!(report.problem_count, AUDIT_PROBLEMS_SHOWN_MAX as u64 + 5);
        assert!(report.to_string().contains("and 5 more problems"));
    }
}
