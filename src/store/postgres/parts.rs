//! The PostgreSQL side of paid and free parts: the version 3 pass that
//! splits an existing ledger (`ledger::parts::Replay` decides, as on
//! SQLite; this reads and writes), and the reading of stored parts.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::anyhow;
use postgres::Transaction;

use crate::domain::{EntryKind, SpendOrder};
use crate::ledger::parts::{self, Part, PartBalances, PastEntry, Replay};
use crate::store::StorageError;

/// How many entries the pass reads, and writes back, at a time: a few
/// statements per batch, never one per row.
const BACKFILL_BATCH: i64 = 10_000;

/// Fills the parts of every entry, user posting and hold, the paid figures
/// of every user account and each asset's paid total, replaying the
/// history in entry order (API.md: TOPUP paid, BONUS free, a transfer or a
/// reversal by what it moved). Debits take parts in the spend order each
/// asset has now: before parts existed it changed nothing. HELD holds then
/// set aside, oldest first, what is available in spend order; closed ones
/// keep none. A user's entries were numbered in the order they committed
/// (its writes hold its lock), so seq order is each account's own order.
pub(super) fn backfill(tx: &mut Transaction<'_>) -> anyhow::Result<()> {
    let orders: HashMap<String, SpendOrder> = tx
        .query(
            "SELECT asset_type_id::text, spend_order FROM asset_rules",
            &[],
        )?
        .iter()
        .map(|row| {
            let order: String = row.get(1);
            let order =
                SpendOrder::parse(&order).map_err(|_| anyhow!("bad spend order {order}"))?;
            Ok((row.get::<_, String>(0), order))
        })
        .collect::<anyhow::Result<_>>()?;
    let users: HashSet<i64> = tx
        .query("SELECT id FROM accounts WHERE owner_type = 'USER'", &[])?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let reversed: HashSet<i64> = tx
        .query(
            "SELECT DISTINCT reverses_seq FROM ledger_entries WHERE reverses_seq IS NOT NULL",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut replay = Replay::new(users.clone(), reversed);
    let read = tx.prepare(
        "SELECT seq, kind, asset_type_id::text, amount, debit_account_id, credit_account_id,
                reverses_seq, reversed_after
           FROM ledger_entries WHERE seq > $1 ORDER BY seq LIMIT $2",
    )?;
    let set_parts = tx.prepare(
        "UPDATE ledger_entries e SET parts = v.parts, paid = v.paid
           FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS v (seq, parts, paid)
          WHERE e.seq = v.seq",
    )?;
    let set_paid = tx.prepare(
        "UPDATE postings p SET paid_after = v.paid_after
           FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v (account_id, entry_seq,
                                                                     paid_after)
          WHERE p.account_id = v.account_id AND p.entry_seq = v.entry_seq",
    )?;
    let mut after = 0_i64;
    loop {
        let rows = tx.query(&read, &[&after, &BACKFILL_BATCH])?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        let mut seqs = Vec::with_capacity(rows.len());
        let mut texts = Vec::with_capacity(rows.len());
        let mut paids = Vec::with_capacity(rows.len());
        let (mut accounts, mut entry_seqs, mut paid_after) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let kind: String = row.get(1);
            let asset: String = row.get(2);
            let reverses: Option<i64> = row.get(6);
            let reversed_after: Option<i64> = row.get(7);
            let entry = PastEntry {
                seq: row.get(0),
                kind: EntryKind::parse(&kind).map_err(|_| anyhow!("unknown entry kind {kind}"))?,
                amount: row.get(3),
                debit: row.get(4),
                credit: row.get(5),
                reverses: reverses.zip(reversed_after),
            };
            let order = orders.get(&asset).copied().unwrap_or_default();
            let replayed = replay.entry(&entry, order).map_err(|why| anyhow!(why))?;
            seqs.push(entry.seq);
            texts.push(parts::encode(&replayed.parts));
            paids.push(parts::paid_of(&replayed.parts));
            // A Treasury's posting keeps no running figure here.
            for (account, after) in [
                (entry.debit, replayed.debit_paid_after),
                (entry.credit, replayed.credit_paid_after),
            ] {
                if users.contains(&account) {
                    accounts.push(account);
                    entry_seqs.push(entry.seq);
                    paid_after.push(after);
                }
            }
        }
        tx.execute(&set_parts, &[&seqs, &texts, &paids])?;
        tx.execute(&set_paid, &[&accounts, &entry_seqs, &paid_after])?;
    }
    // Holds: HELD ones set aside their parts; closed ones keep none.
    let mut held: BTreeMap<i64, PartBalances> = BTreeMap::new();
    let (mut hold_seqs, mut hold_parts) = (Vec::new(), Vec::new());
    for row in tx.query(
        "SELECT seq, account_id, amount, asset_type_id::text FROM holds
          WHERE status = 'HELD' ORDER BY seq",
        &[],
    )? {
        let (seq, account, amount): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let asset: String = row.get(3);
        let set_aside = held.entry(account).or_default();
        let available = replay.parts_of(account).less(set_aside);
        let order = orders.get(&asset).copied().unwrap_or_default();
        let taken = available
            .take(amount, order, &[])
            .ok_or_else(|| anyhow!("hold {seq} sets aside more than its account holds"))?;
        for part in &taken {
            set_aside.add(part);
        }
        hold_seqs.push(seq);
        hold_parts.push(parts::encode(&taken));
    }
    tx.execute(
        "UPDATE holds h SET parts = v.parts
           FROM unnest($1::bigint[], $2::text[]) AS v (seq, parts)
          WHERE h.seq = v.seq",
        &[&hold_seqs, &hold_parts],
    )?;
    tx.execute("UPDATE holds SET parts = '[]' WHERE parts IS NULL", &[])?;
    // Each user's paid part, and of it what its holds set aside, in one
    // statement per account row (the checks that follow hold both).
    let (mut ids, mut paid, mut held_paid) = (Vec::new(), Vec::new(), Vec::new());
    for account in &users {
        let parts = replay.parts_of(*account);
        let set_aside = held.get(account).map_or(0, |held| held.paid);
        if parts.paid != 0 || set_aside != 0 {
            ids.push(*account);
            paid.push(parts.paid);
            held_paid.push(set_aside);
        }
    }
    tx.execute(
        "UPDATE accounts a SET paid = v.paid, held_paid = v.held_paid
           FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v (id, paid, held_paid)
          WHERE a.id = v.id",
        &[&ids, &paid, &held_paid],
    )?;
    // Each asset's paid total, on one of its rows of totals.
    tx.execute(
        "UPDATE asset_totals s
            SET paid = (SELECT coalesce(sum(a.paid), 0) FROM accounts a
                         WHERE a.asset_type_id = s.asset_type_id AND a.owner_type = 'USER')
          WHERE s.shard = 0",
        &[],
    )?;
    Ok(())
}

/// A user posting's insert, with its running paid total: the account's
/// paid part before it, moved by `$5` (the paid part the entry moves,
/// signed as the posting moves the account). A Treasury's posting keeps
/// neither figure. The trigger moves the row and checks both.
pub(super) const INSERT_POSTING: &str =
    "INSERT INTO postings (account_id, entry_seq, delta, balance_after, paid_after)
     SELECT $1::bigint, $2::bigint, $3::bigint, $4::bigint,
            CASE WHEN a.owner_type = 'USER' THEN a.paid + $5::bigint END
       FROM accounts a WHERE a.id = $1::bigint";

/// The paid part `parts` move on a posting of `delta` (credit positive).
pub(super) fn paid_delta(parts: &[Part], delta: i64) -> i64 {
    let paid = parts::paid_of(parts);
    if delta < 0 {
        -paid
    } else {
        paid
    }
}

/// Stored parts, read back; a text that is not parts is a database changed
/// behind the service's back.
pub(super) fn read(text: Option<String>) -> Result<Vec<Part>, StorageError> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => parts::decode(&text).ok_or_else(|| {
            StorageError::Backend(format!("stored parts are unreadable: {text}").into())
        }),
    }
}
