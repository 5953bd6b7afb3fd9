//! The parts of a user's balance (API.md, "Paid, free and expiring
//! currency"): every unit a user holds is paid (bought), free (given) or in
//! an expiring lot (given, leaving at a set time). Pure: which parts a debit
//! takes, which a reversal gives back, which a hold sets aside.
//!
//! The parts are double-entry like the balance: an entry's parts are what it
//! moved, the same on both of its sides, and they add up to its amount.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use crate::domain::{EntryKind, SpendOrder};

/// Which part of a balance a unit sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartKind {
    Paid,
    Free,
    /// A lot of free currency that leaves the balance at `expires_at_ms`.
    Expiring {
        expires_at_ms: i64,
    },
}

impl PartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Paid => "PAID",
            PartKind::Free => "FREE",
            PartKind::Expiring { .. } => "EXPIRING",
        }
    }
}

/// An amount of one part: what an entry took or gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub kind: PartKind,
    pub amount: i64,
}

impl Part {
    pub fn paid(amount: i64) -> Part {
        Part {
            kind: PartKind::Paid,
            amount,
        }
    }

    pub fn free(amount: i64) -> Part {
        Part {
            kind: PartKind::Free,
            amount,
        }
    }
}

/// How parts are read back: compact JSON, as the API shows them without the
/// time's formatting (`expiresAt` in milliseconds).
#[derive(Deserialize)]
struct StoredPart {
    kind: String,
    amount: i64,
    #[serde(rename = "expiresAt", default)]
    expires_at_ms: Option<i64>,
}

/// `parts` as stored with an entry or a hold. Written by hand: every entry
/// stores its parts, and this is on the spend path (no allocation but the
/// text's own).
pub fn encode(parts: &[Part]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(2 + parts.len() * 64);
    text.push('[');
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        let _ = write!(
            text,
            r#"{{"kind":"{}","amount":{}"#,
            part.kind.as_str(),
            part.amount
        );
        if let PartKind::Expiring { expires_at_ms } = part.kind {
            let _ = write!(text, r#","expiresAt":{expires_at_ms}"#);
        }
        text.push('}');
    }
    text.push(']');
    text
}

/// Stored parts read back; None when the text is not what `encode` writes.
pub fn decode(text: &str) -> Option<Vec<Part>> {
    let stored: Vec<StoredPart> = serde_json::from_str(text).ok()?;
    stored
        .into_iter()
        .map(|part| {
            let kind = match (part.kind.as_str(), part.expires_at_ms) {
                ("PAID", None) => PartKind::Paid,
                ("FREE", None) => PartKind::Free,
                ("EXPIRING", Some(expires_at_ms)) => PartKind::Expiring { expires_at_ms },
                _ => return None,
            };
            (part.amount > 0).then_some(Part {
                kind,
                amount: part.amount,
            })
        })
        .collect()
}

/// The total of `parts` of kind PAID, signed as the posting moves it.
pub fn paid_of(parts: &[Part]) -> i64 {
    parts
        .iter()
        .filter(|part| part.kind == PartKind::Paid)
        .map(|part| part.amount)
        .sum()
}

/// Adds `part` to `parts`, merging it into a part of the same kind already
/// listed: an entry names each part once, where it first took from it.
fn push_merged(parts: &mut Vec<Part>, part: Part) {
    if part.amount <= 0 {
        return;
    }
    match parts.iter_mut().find(|known| known.kind == part.kind) {
        Some(known) => known.amount += part.amount,
        None => parts.push(part),
    }
}

/// A user account's balance by part: `paid + free + the lots` is the
/// balance. Also used for what holds set aside, and for a hold's own parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartBalances {
    pub paid: i64,
    /// Free currency outside any lot.
    pub free: i64,
    /// Each lot's amount by its `expiresAt`.
    pub lots: BTreeMap<i64, i64>,
}

impl PartBalances {
    /// The balance of the parts `parts` name, as a hold's own parts.
    pub fn of(parts: &[Part]) -> PartBalances {
        let mut balances = PartBalances::default();
        for part in parts {
            balances.add(part);
        }
        balances
    }

    pub fn total(&self) -> i64 {
        self.paid + self.free + self.lots.values().sum::<i64>()
    }

    pub fn get(&self, kind: PartKind) -> i64 {
        match kind {
            PartKind::Paid => self.paid,
            PartKind::Free => self.free,
            PartKind::Expiring { expires_at_ms } => {
                self.lots.get(&expires_at_ms).copied().unwrap_or(0)
            }
        }
    }

    pub fn add(&mut self, part: &Part) {
        match part.kind {
            PartKind::Paid => self.paid += part.amount,
            PartKind::Free => self.free += part.amount,
            PartKind::Expiring { expires_at_ms } => {
                *self.lots.entry(expires_at_ms).or_insert(0) += part.amount
            }
        }
    }

    pub fn remove(&mut self, part: &Part) {
        match part.kind {
            PartKind::Paid => self.paid -= part.amount,
            PartKind::Free => self.free -= part.amount,
            PartKind::Expiring { expires_at_ms } => {
                if let Some(lot) = self.lots.get_mut(&expires_at_ms) {
                    *lot -= part.amount;
                    if *lot == 0 {
                        self.lots.remove(&expires_at_ms);
                    }
                }
            }
        }
    }

    /// `self` less `other`, part by part: what is available once holds'
    /// parts are set aside.
    pub fn less(&self, other: &PartBalances) -> PartBalances {
        let mut left = self.clone();
        left.paid -= other.paid;
        left.free -= other.free;
        for (at, amount) in &other.lots {
            left.remove(&Part {
                kind: PartKind::Expiring { expires_at_ms: *at },
                amount: *amount,
            });
        }
        left
    }

    /// The parts in the order a debit takes them: expiring lots first,
    /// soonest first, then free and paid as `order` says.
    fn in_spend_order(&self, order: SpendOrder) -> Vec<Part> {
        let mut parts: Vec<Part> = self
            .lots
            .iter()
            .map(|(at, amount)| Part {
                kind: PartKind::Expiring { expires_at_ms: *at },
                amount: *amount,
            })
            .collect();
        let (free, paid) = (Part::free(self.free), Part::paid(self.paid));
        match order {
            SpendOrder::FreeFirst => parts.extend([free, paid]),
            SpendOrder::PaidFirst => parts.extend([paid, free]),
        }
        parts
    }

    /// The parts a debit of `amount` takes from `self` (what is available):
    /// first as much of each of `first` as it names and `self` has, then the
    /// rest in spend order. None when `self` holds less than `amount`.
    pub fn take(&self, amount: i64, order: SpendOrder, first: &[Part]) -> Option<Vec<Part>> {
        let mut left = self.clone();
        let mut wanted = amount;
        let mut taken = Vec::new();
        let preferred = first.iter().copied();
        let in_order = self.in_spend_order(order).into_iter();
        for part in preferred.chain(in_order) {
            if wanted == 0 {
                break;
            }
            let amount = part.amount.min(left.get(part.kind)).min(wanted);
            if amount <= 0 {
                continue;
            }
            let part = Part {
                kind: part.kind,
                amount,
            };
            left.remove(&part);
            push_merged(&mut taken, part);
            wanted -= amount;
        }
        (wanted == 0).then_some(taken)
    }
}

/// What a reversal of `amount` gives back of an entry whose parts were
/// `original`, after earlier reversals gave back `reversed_before`: the
/// parts taken last first (API.md), continuing where the last reversal
/// stopped.
pub fn given_back(original: &[Part], reversed_before: i64, amount: i64) -> Vec<Part> {
    let mut skip = reversed_before;
    let mut wanted = amount;
    let mut parts = Vec::new();
    for part in original.iter().rev() {
        let past = part.amount.min(skip);
        skip -= past;
        let amount = (part.amount - past).min(wanted);
        if amount > 0 {
            push_merged(
                &mut parts,
                Part {
                    kind: part.kind,
                    amount,
                },
            );
            wanted -= amount;
        }
    }
    parts
}

/// An entry written before parts were kept, as a migration reads it.
#[derive(Debug, Clone)]
pub struct PastEntry {
    pub seq: i64,
    pub kind: EntryKind,
    pub amount: i64,
    pub debit: i64,
    pub credit: i64,
    /// For a REVERSAL: the entry it reverses and the total reversed of it
    /// once this one counts.
    pub reverses: Option<(i64, i64)>,
}

/// What an entry's replay gives: its parts, and each side's running paid
/// total once it counts (users' are at least 0; a Treasury's is the
/// negative of the paid currency users hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub parts: Vec<Part>,
    pub debit_paid_after: i64,
    pub credit_paid_after: i64,
}

/// Splits an existing ledger into parts once (API.md: every balance
/// becomes paid or free by the entries that made it): entries replayed in
/// their order, TOPUP paid, BONUS free, a debit in its asset's spend order
/// (no hold set anything aside then), a transfer or a reversal by what it
/// moved, exactly as `engine::decide` now chooses. The same for both
/// backends.
pub struct Replay {
    /// Users' parts by account id; a Treasury's running paid total.
    users: HashMap<i64, PartBalances>,
    treasuries: HashMap<i64, i64>,
    /// The parts of entries some reversal names, by seq.
    reversed: HashMap<i64, Vec<Part>>,
    will_be_reversed: HashSet<i64>,
}

impl Replay {
    /// `user_accounts` are the ids of user accounts (the rest are
    /// treasuries); `reversed_seqs` the entries that some reversal names.
    pub fn new(user_accounts: HashSet<i64>, reversed_seqs: HashSet<i64>) -> Replay {
        Replay {
            users: user_accounts
                .into_iter()
                .map(|id| (id, PartBalances::default()))
                .collect(),
            treasuries: HashMap::new(),
            reversed: HashMap::new(),
            will_be_reversed: reversed_seqs,
        }
    }

    /// The next entry, in seq order. Err names what does not add up: a
    /// ledger that `wallet verify` would already refuse.
    pub fn entry(&mut self, entry: &PastEntry, order: SpendOrder) -> Result<Replayed, String> {
        let debit_is_user = self.users.contains_key(&entry.debit);
        let parts = match entry.reverses {
            Some((original, reversed_after)) => {
                let original_parts = self.reversed.get(&original).ok_or_else(|| {
                    format!("entry {} reverses {original}, not before it", entry.seq)
                })?;
                let back = given_back(original_parts, reversed_after - entry.amount, entry.amount);
                if debit_is_user {
                    self.take(entry, order, &back)?
                } else {
                    back
                }
            }
            None => match entry.kind {
                EntryKind::Topup => vec![Part::paid(entry.amount)],
                EntryKind::Bonus => vec![Part::free(entry.amount)],
                _ => self.take(entry, order, &[])?,
            },
        };
        if parts.iter().map(|part| part.amount).sum::<i64>() != entry.amount {
            return Err(format!("entry {}: its parts do not add up", entry.seq));
        }
        if let Some(credited) = self.users.get_mut(&entry.credit) {
            for part in &parts {
                credited.add(part);
            }
        }
        let paid = paid_of(&parts);
        let debit_paid_after = self.paid_after(entry.debit, -paid);
        let credit_paid_after = self.paid_after(entry.credit, paid);
        if self.will_be_reversed.contains(&entry.seq) {
            self.reversed.insert(entry.seq, parts.clone());
        }
        Ok(Replayed {
            parts,
            debit_paid_after,
            credit_paid_after,
        })
    }

    fn take(
        &mut self,
        entry: &PastEntry,
        order: SpendOrder,
        first: &[Part],
    ) -> Result<Vec<Part>, String> {
        let debited = self
            .users
            .get_mut(&entry.debit)
            .ok_or_else(|| format!("entry {}: a user debit of no user account", entry.seq))?;
        let parts = debited
            .take(entry.amount, order, first)
            .ok_or_else(|| format!("entry {} debits more than its account held", entry.seq))?;
        for part in &parts {
            debited.remove(part);
        }
        Ok(parts)
    }

    /// Moves `account`'s running paid total by `paid` (a user's is read
    /// from its parts, already moved) and gives it.
    fn paid_after(&mut self, account: i64, paid: i64) -> i64 {
        match self.users.get(&account) {
            Some(user) => user.paid,
            None => {
                let total = self.treasuries.entry(account).or_insert(0);
                *total += paid;
                *total
            }
        }
    }

    /// A user account's parts now, once every entry is replayed.
    pub fn parts_of(&self, account: i64) -> PartBalances {
        self.users.get(&account).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot(at: i64, amount: i64) -> Part {
        Part {
            kind: PartKind::Expiring { expires_at_ms: at },
            amount,
        }
    }

    fn balances(paid: i64, free: i64, lots: &[(i64, i64)]) -> PartBalances {
        PartBalances {
            paid,
            free,
            lots: lots.iter().copied().collect(),
        }
    }

    #[test]
    fn a_debit_takes_lots_soonest_first_then_free_before_paid_by_default() {
        let available = balances(50, 20, &[(2000, 5), (1000, 10)]);
        let taken = available.take(40, SpendOrder::FreeFirst, &[]).unwrap();
        assert_eq!(
            taken,
            vec![lot(1000, 10), lot(2000, 5), Part::free(20), Part::paid(5)]
        );
        let taken = available.take(40, SpendOrder::PaidFirst, &[]).unwrap();
        assert_eq!(taken, vec![lot(1000, 10), lot(2000, 5), Part::paid(25)]);
        assert_eq!(available.take(86, SpendOrder::FreeFirst, &[]), None);
        assert_eq!(
            available
                .take(85, SpendOrder::FreeFirst, &[])
                .unwrap()
                .len(),
            4
        );
    }

    #[test]
    fn a_preferred_part_is_taken_first_and_merged_with_the_rest_of_its_kind() {
        let available = balances(30, 10, &[]);
        let taken = available
            .take(35, SpendOrder::FreeFirst, &[Part::paid(20)])
            .unwrap();
        assert_eq!(taken, vec![Part::paid(25), Part::free(10)]);
        // Preferred beyond what is there: the rest comes in spend order.
        let taken = available
            .take(15, SpendOrder::PaidFirst, &[Part::free(40)])
            .unwrap();
        assert_eq!(taken, vec![Part::free(10), Part::paid(5)]);
    }

    #[test]
    fn reversals_give_back_the_last_part_taken_first_and_continue_where_the_last_stopped() {
        let original = [Part::free(30), Part::paid(20)];
        assert_eq!(
            given_back(&original, 0, 50),
            vec![Part::paid(20), Part::free(30)]
        );
        assert_eq!(given_back(&original, 0, 15), vec![Part::paid(15)]);
        assert_eq!(
            given_back(&original, 15, 10),
            vec![Part::paid(5), Part::free(5)]
        );
        assert_eq!(given_back(&original, 25, 25), vec![Part::free(25)]);
    }

    #[test]
    fn parts_are_stored_as_compact_json_and_read_back() {
        let parts = vec![lot(1767225600000, 5), Part::free(3), Part::paid(2)];
        let text = encode(&parts);
        assert_eq!(
            text,
            r#"[{"kind":"EXPIRING","amount":5,"expiresAt":1767225600000},{"kind":"FREE","amount":3},{"kind":"PAID","amount":2}]"#
        );
        assert_eq!(decode(&text), Some(parts));
        assert_eq!(decode(r#"[{"kind":"PAID","amount":0}]"#), None);
        assert_eq!(
            decode(r#"[{"kind":"FREE","amount":1,"expiresAt":5}]"#),
            None
        );
        assert_eq!(decode("not json"), None);
    }

    #[test]
    fn a_replayed_history_splits_balances_by_the_entries_that_made_them() {
        // Account 1 is the Treasury; 2 and 3 are users.
        let mut replay = Replay::new([2, 3].into(), [3, 4].into());
        let entry = |seq, kind, amount, debit, credit, reverses| PastEntry {
            seq,
            kind,
            amount,
            debit,
            credit,
            reverses,
        };
        let order = SpendOrder::FreeFirst;
        let topup = replay
            .entry(&entry(1, EntryKind::Topup, 100, 1, 2, None), order)
            .unwrap();
        assert_eq!(
            (topup.debit_paid_after, topup.credit_paid_after),
            (-100, 100)
        );
        replay
            .entry(&entry(2, EntryKind::Bonus, 30, 1, 2, None), order)
            .unwrap();
        let transfer = replay
            .entry(&entry(3, EntryKind::Transfer, 50, 2, 3, None), order)
            .unwrap();
        assert_eq!(transfer.parts, vec![Part::free(30), Part::paid(20)]);
        assert_eq!(
            (transfer.debit_paid_after, transfer.credit_paid_after),
            (80, 20)
        );
        let spend = replay
            .entry(&entry(4, EntryKind::Spend, 10, 3, 1, None), order)
            .unwrap();
        assert_eq!(spend.parts, vec![Part::free(10)]);
        // A partial reversal of the transfer: the part taken last first.
        let back = replay
            .entry(
                &entry(5, EntryKind::Reversal, 25, 3, 2, Some((3, 25))),
                order,
            )
            .unwrap();
        assert_eq!(back.parts, vec![Part::paid(20), Part::free(5)]);
        // The refund of the spend gives its free part back.
        let refund = replay
            .entry(
                &entry(6, EntryKind::Reversal, 10, 1, 3, Some((4, 10))),
                order,
            )
            .unwrap();
        assert_eq!(refund.parts, vec![Part::free(10)]);
        assert_eq!(
            replay.parts_of(2),
            PartBalances {
                paid: 100,
                free: 5,
                ..Default::default()
            }
        );
        assert_eq!(
            replay.parts_of(3),
            PartBalances {
                paid: 0,
                free: 25,
                ..Default::default()
            }
        );
        assert!(replay
            .entry(&entry(7, EntryKind::Spend, 1000, 3, 1, None), order)
            .is_err());
    }

    #[test]
    fn available_parts_are_the_balance_less_what_holds_set_aside() {
        let whole = balances(50, 20, &[(1000, 10)]);
        let held = balances(5, 20, &[(1000, 10)]);
        assert_eq!(whole.less(&held), balances(45, 0, &[]));
        assert_eq!(whole.total(), 80);
    }
}
