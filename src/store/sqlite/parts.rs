//! The SQLite side of paid and free parts: the version 7 pass that splits
//! an existing ledger (`ledger::parts::Replay` decides; this reads and
//! writes), and the reads of an account's parts.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::anyhow;
use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::{EntryKind, SpendOrder};
use crate::ledger::parts::{self, PartBalances, PastEntry, Replay};
pub(super) use crate::ledger::parts::{encode, paid_of};

/// Fills the parts of every entry, posting and HELD hold, replaying the
/// history in order (API.md: TOPUP paid, BONUS free, a transfer or a
/// reversal by what it moved). Debits take parts in the spend order each
/// asset has now: before parts existed it changed nothing. HELD holds then
/// set aside, oldest first, what is available in spend order.
pub(super) fn backfill(conn: &Connection) -> anyhow::Result<()> {
    let orders: HashMap<String, SpendOrder> = conn
        .prepare("SELECT asset_type_id, spend_order FROM asset_rules")?
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .map(|row| {
            let (asset, order) = row?;
            let order =
                SpendOrder::parse(&order).map_err(|_| anyhow!("bad spend order {order}"))?;
            Ok((asset, order))
        })
        .collect::<anyhow::Result<_>>()?;
    let users: HashSet<i64> = conn
        .prepare("SELECT id FROM accounts WHERE owner_type = 'USER'")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let reversed: HashSet<i64> = conn
        .prepare("SELECT DISTINCT reverses_seq FROM ledger_entries WHERE reverses_seq IS NOT NULL")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut replay = Replay::new(users, reversed);
    let mut entries = conn.prepare(
        "SELECT seq, kind, asset_type_id, amount, debit_account_id, credit_account_id,
                reverses_seq, reversed_after
           FROM ledger_entries ORDER BY seq",
    )?;
    let mut set_parts = conn.prepare("UPDATE ledger_entries SET parts = ?2 WHERE seq = ?1")?;
    let mut set_paid = conn
        .prepare("UPDATE postings SET paid_after = ?3 WHERE account_id = ?1 AND entry_seq = ?2")?;
    let mut rows = entries.query([])?;
    while let Some(row) = rows.next()? {
        let kind: String = row.get(1)?;
        let asset: String = row.get(2)?;
        let reverses: Option<i64> = row.get(6)?;
        let reversed_after: Option<i64> = row.get(7)?;
        let entry = PastEntry {
            seq: row.get(0)?,
            kind: EntryKind::parse(&kind).map_err(|_| anyhow!("unknown entry kind {kind}"))?,
            amount: row.get(3)?,
            debit: row.get(4)?,
            credit: row.get(5)?,
            reverses: reverses.zip(reversed_after),
        };
        let order = orders.get(&asset).copied().unwrap_or_default();
        let replayed = replay.entry(&entry, order).map_err(|why| anyhow!(why))?;
        set_parts.execute(params![entry.seq, parts::encode(&replayed.parts)])?;
        set_paid.execute(params![entry.debit, entry.seq, replayed.debit_paid_after])?;
        set_paid.execute(params![entry.credit, entry.seq, replayed.credit_paid_after])?;
    }
    // Holds: HELD ones set aside their parts; closed ones keep none.
    let mut held: BTreeMap<i64, PartBalances> = BTreeMap::new();
    let mut holds = conn.prepare(
        "SELECT h.seq, h.account_id, h.amount, h.status, h.asset_type_id FROM holds h ORDER BY h.seq",
    )?;
    let mut set_hold = conn.prepare("UPDATE holds SET parts = ?2 WHERE seq = ?1")?;
    let mut rows = holds.query([])?;
    while let Some(row) = rows.next()? {
        let (seq, account, amount): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let status: String = row.get(3)?;
        let asset: String = row.get(4)?;
        if status != "HELD" {
            set_hold.execute(params![seq, "[]"])?;
            continue;
        }
        let set_aside = held.entry(account).or_default();
        let available = replay.parts_of(account).less(set_aside);
        let order = orders.get(&asset).copied().unwrap_or_default();
        let taken = available
            .take(amount, order, &[])
            .ok_or_else(|| anyhow!("hold {seq} sets aside more than its account holds"))?;
        for part in &taken {
            set_aside.add(part);
        }
        set_hold.execute(params![seq, parts::encode(&taken)])?;
    }
    let mut set_held =
        conn.prepare("UPDATE account_holds SET held_paid = ?2 WHERE account_id = ?1")?;
    for (account, set_aside) in &held {
        set_held.execute(params![account, set_aside.paid])?;
    }
    Ok(())
}

/// An account's balance and its paid part now, from its newest posting:
/// one descent of the postings' key, as the balance alone is.
pub(super) fn latest_balance_and_paid(
    conn: &Connection,
    account: i64,
) -> rusqlite::Result<(i64, i64)> {
    Ok(conn
        .prepare_cached(
            "SELECT balance_after, coalesce(paid_after, 0) FROM postings WHERE account_id = ?1
              ORDER BY entry_seq DESC LIMIT 1",
        )?
        .query_row([account], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .unwrap_or((0, 0)))
}

/// Stored parts, read back; a text that is not parts is a file changed
/// behind the service's back.
pub(super) fn read_parts(text: Option<String>) -> rusqlite::Result<Vec<parts::Part>> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => parts::decode(&text).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("stored parts are unreadable: {text}").into(),
            )
        }),
    }
}
