//! What the ledger tells those who watch it: the event feed, an asset's
//! supply, and the figures a metrics scrape reads. Each is read from rows
//! the schema's triggers keep (`migrations/005_watch.sql`), so each costs a
//! few index descents however long the ledger.

use rusqlite::{params, Connection, OptionalExtension};

use super::reads::user_entry;
use crate::domain::AssetRef;
use crate::ledger::engine::UserEntry;
use crate::ledger::Rejection;
use crate::metrics::{AssetFigures, LedgerFigures};
use crate::store::{EventData, EventKind, EventRow, LedgerError, StorageError, SupplyRow};

/// Events after `after` (a cursor: an event's id, 0 before the first),
/// oldest first, at most `limit`. An entry's row gives an event for each
/// user account it touches, numbered `2 * seq` (debit) and `2 * seq + 1`
/// (credit); a hold's change is `2 * seq`. Every row gives at least one
/// event, so `limit + 1` rows from the cursor's own always suffice.
pub fn events_after(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<EventRow>, StorageError> {
    let mut page = conn.prepare_cached(
        "SELECT seq, entry_seq, hold_seq, type, rule_change_seq FROM events
          WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = page
        .query_map(params![after / 2, limit as i64 + 1], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, Option<i64>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut events = Vec::with_capacity(limit.min(1024));
    for (seq, entry_seq, hold_seq, kind, rule_change_seq) in rows {
        match (entry_seq, hold_seq, kind) {
            (None, None, Some(_)) if rule_change_seq.is_some() => {
                let id = seq * 2;
                if id <= after {
                    continue;
                }
                let change = rule_change_seq.unwrap_or_default();
                let (kind, created_at_ms, data) = super::rules::change_event(conn, change)?
                    .ok_or_else(|| {
                        corrupt(format!("event {id} names a missing change of rules"))
                    })?;
                events.push(EventRow {
                    seq: id,
                    kind,
                    created_at_ms,
                    data,
                });
            }
            (Some(entry_seq), None, None) => {
                for (side, account_id) in user_sides_of(conn, entry_seq)? {
                    let id = seq * 2 + side;
                    if id <= after {
                        continue;
                    }
                    let (user, entry) = entry_as_seen_by(conn, account_id, entry_seq)?
                        .ok_or_else(|| corrupt(format!("event {id} names a missing posting")))?;
                    events.push(EventRow {
                        seq: id,
                        kind: EventKind::TransactionCreated,
                        created_at_ms: entry.created_at_ms,
                        data: EventData::Transaction { user, entry },
                    });
                }
            }
            (None, Some(hold_seq), Some(kind)) => {
                let id = seq * 2;
                if id <= after {
                    continue;
                }
                let kind = EventKind::parse(&kind)
                    .filter(|kind| *kind != EventKind::TransactionCreated)
                    .ok_or_else(|| corrupt(format!("event {id} has type {kind:?}")))?;
                let stored = super::holds::by_seq(conn, hold_seq)?
                    .ok_or_else(|| corrupt(format!("event {id} names a missing hold")))?;
                let hold = kind
                    .hold_after(stored)
                    .ok_or_else(|| corrupt(format!("event {id} does not match its hold")))?;
                events.push(EventRow {
                    seq: id,
                    kind,
                    created_at_ms: hold.closed_at_ms.unwrap_or(hold.created_at_ms),
                    data: EventData::Hold(hold),
                });
            }
            _ => return Err(corrupt(format!("event row {seq} is malformed"))),
        }
    }
    events.truncate(limit);
    Ok(events)
}

/// The largest cursor the feed has given out: the credit side of its
/// newest row, or 0 while it is empty. A cursor past it was never given
/// out (another ledger's, or one from before a restore), and following it
/// would skip the events until the feed caught up to it.
pub fn events_end(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(seq) * 2 + 1, 0) FROM events")?
        .query_row([], |row| row.get(0))?)
}

/// The user accounts an entry touches, as (side, account): 0 for its debit
/// account, 1 for its credit account.
fn user_sides_of(conn: &Connection, entry_seq: i64) -> Result<Vec<(i64, i64)>, StorageError> {
    let sides: Option<(i64, bool, i64, bool)> = conn
        .prepare_cached(
            "SELECT e.debit_account_id, d.owner_type = 'USER',
                    e.credit_account_id, c.owner_type = 'USER'
               FROM ledger_entries e
               JOIN accounts d ON d.id = e.debit_account_id
               JOIN accounts c ON c.id = e.credit_account_id
              WHERE e.seq = ?1",
        )?
        .query_row([entry_seq], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let (debit, debit_is_user, credit, credit_is_user) =
        sides.ok_or_else(|| corrupt(format!("the feed names a missing entry {entry_seq}")))?;
    Ok([(0, debit, debit_is_user), (1, credit, credit_is_user)]
        .into_iter()
        .filter(|(_, _, is_user)| *is_user)
        .map(|(side, account, _)| (side, account))
        .collect())
}

/// One entry as the history of the account's user shows it, with the user.
fn entry_as_seen_by(
    conn: &Connection,
    account_id: i64,
    entry_seq: i64,
) -> rusqlite::Result<Option<(String, UserEntry)>> {
    conn.prepare_cached(
        "SELECT p.entry_seq, e.id, e.kind, e.amount, p.delta, p.balance_after, r.key,
                e.reference_id, e.note, e.metadata, e.created_at, o.owner_id, rv.id, hh.id,
                e.parts, t.symbol, u.owner_id
           FROM postings p
           JOIN accounts u ON u.id = p.account_id
           JOIN ledger_entries e ON e.seq = p.entry_seq
           JOIN asset_types t ON t.id = e.asset_type_id
           JOIN idempotency_records r ON r.id = e.request_id
           JOIN accounts o ON o.id = CASE WHEN e.debit_account_id = p.account_id
                                          THEN e.credit_account_id ELSE e.debit_account_id END
           LEFT JOIN ledger_entries rv ON rv.seq = e.reverses_seq
           LEFT JOIN holds hh ON hh.seq = e.hold_seq
          WHERE p.account_id = ?1 AND p.entry_seq = ?2",
    )?
    .query_row(params![account_id, entry_seq], |row| {
        Ok((row.get::<_, String>(16)?, user_entry(row, row.get(15)?)?))
    })
    .optional()
}

/// What the database holds that the schema says it cannot: a defect, never
/// shown to a caller (500).
fn corrupt(what: String) -> StorageError {
    StorageError::Backend(what.into())
}

/// A total kept as `high * 2^53 + low` (see `005_watch.sql`).
pub(super) fn total(high: i64, low: i64) -> u128 {
    (high.max(0) as u128) * (1u128 << 53) + low.max(0) as u128
}

/// `GET /assets/{asset}/supply`: one row of totals and one descent of the
/// Treasury's postings.
pub fn supply(conn: &Connection, asset: &AssetRef) -> Result<SupplyRow, LedgerError> {
    let (by, key) = asset_condition(asset);
    let row = conn
        .prepare_cached(&format!(
            "SELECT t.symbol, s.topup_high, s.topup_low, s.bonus_high, s.bonus_low,
                    s.spent_high, s.spent_low, s.reversed_high, s.reversed_low,
                    s.held, s.holders, s.last_entry_at,
                    coalesce((SELECT p.balance_after FROM postings p WHERE p.account_id = a.id
                               ORDER BY p.entry_seq DESC LIMIT 1), 0),
                    coalesce((SELECT p.paid_after FROM postings p WHERE p.account_id = a.id
                               ORDER BY p.entry_seq DESC LIMIT 1), 0)
               FROM asset_types t
               JOIN asset_supply s ON s.asset_type_id = t.id
               LEFT JOIN accounts a ON a.asset_type_id = t.id AND a.owner_type = 'SYSTEM'
              WHERE {by}"
        ))?
        .query_row([key], |row| {
            let treasury: i64 = row.get(12)?;
            let treasury_paid: i64 = row.get(13)?;
            Ok(SupplyRow {
                // The Treasury's running paid total is the negative of the
                // paid currency users hold; the rest of what they hold is
                // free.
                paid: -(i128::from(treasury_paid)),
                free: i128::from(treasury_paid) - i128::from(treasury),
                expired: 0,
                asset_symbol: row.get(0)?,
                topup: total(row.get(1)?, row.get(2)?),
                bonus: total(row.get(3)?, row.get(4)?),
                spent: total(row.get(5)?, row.get(6)?),
                reversed: total(row.get(7)?, row.get(8)?),
                held: row.get(9)?,
                holders: row.get(10)?,
                as_of_ms: row.get(11)?,
                // The Treasury is bounded by a signed 64-bit integer, so its
                // negation always fits in 128 bits.
                outstanding: -(i128::from(treasury)),
            })
        })
        .optional()?;
    row.ok_or_else(|| Rejection::AssetNotFound.into())
}

/// The condition naming `asset` on `asset_types t` (`?1`), and its value.
fn asset_condition(asset: &AssetRef) -> (&'static str, String) {
    match asset {
        AssetRef::Symbol(symbol) => ("t.symbol = ?1", symbol.to_string()),
        AssetRef::Id(id) => ("t.id = ?1", id.to_string()),
    }
}

/// `GET /assets/{asset}/supply?at=`: the figures as they stood at `at_ms`,
/// counting the entries made at or before it. O(log n) of the ledger's
/// length: the last entry by then is one descent of the entries' time
/// index; the Treasury's last posting by then (its running balance, paid
/// part and TOPUP, BONUS and SPEND totals) one descent of its postings; the
/// REVERSAL total one descent of `supply_reversals`. `held` and `holders`
/// are not kept back in time (the answer leaves them out), and `asOf` is
/// the time of the newest of those entries: a transfer by then changed no
/// figure.
pub fn supply_as_of(
    conn: &mut Connection,
    asset: &AssetRef,
    at_ms: i64,
) -> Result<SupplyRow, LedgerError> {
    let tx = conn.transaction()?;
    let (by, key) = asset_condition(asset);
    let found: Option<(String, String)> = tx
        .prepare_cached(&format!(
            "SELECT t.id, t.symbol FROM asset_types t WHERE {by}"
        ))?
        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (asset_id, symbol) = found.ok_or(Rejection::AssetNotFound)?;
    let last_seq = super::reads::last_entry_at(&tx, at_ms)?;
    type TreasuryRow = (i64, i64, [i64; 6], i64);
    let treasury: Option<TreasuryRow> = tx
        .prepare_cached(
            "SELECT p.balance_after, coalesce(p.paid_after, 0),
                    coalesce(p.topup_high, 0), coalesce(p.topup_low, 0),
                    coalesce(p.bonus_high, 0), coalesce(p.bonus_low, 0),
                    coalesce(p.spend_high, 0), coalesce(p.spend_low, 0), e.created_at
               FROM accounts a
               JOIN postings p ON p.account_id = a.id
               JOIN ledger_entries e ON e.seq = p.entry_seq
              WHERE a.asset_type_id = ?1 AND a.owner_type = 'SYSTEM' AND p.entry_seq <= ?2
              ORDER BY p.entry_seq DESC LIMIT 1",
        )?
        .query_row(params![asset_id, last_seq], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                [
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                ],
                row.get(8)?,
            ))
        })
        .optional()?;
    let reversed: Option<(i64, i64, i64)> = tx
        .prepare_cached(
            "SELECT reversed_high, reversed_low, created_at FROM supply_reversals
              WHERE asset_type_id = ?1 AND entry_seq <= ?2
              ORDER BY entry_seq DESC LIMIT 1",
        )?
        .query_row(params![asset_id, last_seq], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    tx.commit()?;
    let (balance, paid, [th, tl, bh, bl, sh, sl], treasury_at) =
        treasury.unwrap_or((0, 0, [0; 6], i64::MIN));
    let (rh, rl, reversed_at) = reversed.unwrap_or((0, 0, i64::MIN));
    let as_of = treasury_at.max(reversed_at);
    Ok(SupplyRow {
        asset_symbol: symbol,
        outstanding: -i128::from(balance),
        paid: -i128::from(paid),
        free: i128::from(paid) - i128::from(balance),
        expired: 0,
        topup: total(th, tl),
        bonus: total(bh, bl),
        spent: total(sh, sl),
        reversed: total(rh, rl),
        held: 0,
        holders: 0,
        as_of_ms: (as_of != i64::MIN).then_some(as_of),
    })
}

/// What a metrics scrape reads: the entries, the WAL's size, and each
/// asset's outstanding and held totals (one row and one descent an asset).
pub fn ledger_figures(
    conn: &Connection,
    wal_path: &std::path::Path,
) -> Result<LedgerFigures, StorageError> {
    let entries: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM ledger_entries")?
        .query_row([], |row| row.get(0))?;
    let mut statement = conn.prepare_cached(
        "SELECT t.symbol, s.held,
                coalesce((SELECT p.balance_after FROM postings p WHERE p.account_id = a.id
                           ORDER BY p.entry_seq DESC LIMIT 1), 0)
           FROM asset_types t
           JOIN asset_supply s ON s.asset_type_id = t.id
           LEFT JOIN accounts a ON a.asset_type_id = t.id AND a.owner_type = 'SYSTEM'
          ORDER BY t.symbol",
    )?;
    let assets = statement
        .query_map([], |row| {
            let treasury: i64 = row.get(2)?;
            Ok(AssetFigures {
                symbol: row.get(0)?,
                outstanding: treasury.saturating_neg(),
                held: row.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(LedgerFigures {
        entries: u64::try_from(entries).unwrap_or(0),
        // No WAL file (between a checkpoint's truncation and the next write)
        // is an empty one.
        wal_bytes: std::fs::metadata(wal_path).map_or(0, |metadata| metadata.len()),
        assets,
    })
}
