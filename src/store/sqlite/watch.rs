//! What the ledger tells those who watch it: the event feed, an asset's
//! supply, and the figures a metrics scrape reads. Each is read from rows
//! the schema's triggers keep (`migrations/005_watch.sql`), so each costs a
//! few index descents however long the ledger.

use rusqlite::{params, Connection, OptionalExtension};

use super::{parse_stored_kind, read_metadata};
use crate::domain::{AssetRef, Direction};
use crate::ledger::engine::{HoldFact, HoldStatus, UserEntry};
use crate::ledger::Rejection;
use crate::metrics::{AssetFigures, LedgerFigures};
use crate::store::{EventData, EventKind, EventRow, LedgerError, StorageError, SupplyRow};

/// Events after `after` (a cursor: an event's seq, 0 before the first), oldest
/// first, at most `limit`.
pub fn events_after(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<EventRow>, StorageError> {
    let mut page = conn.prepare_cached(
        "SELECT seq, type, entry_seq, account_id, hold_seq FROM events
          WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = page.query_map(params![after, limit as i64], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<i64>>(2)?,
            row.get::<_, Option<i64>>(3)?,
            row.get::<_, Option<i64>>(4)?,
        ))
    })?;
    let mut events = Vec::with_capacity(limit.min(1024));
    for row in rows {
        let (seq, kind, entry_seq, account_id, hold_seq) = row?;
        let kind =
            EventKind::parse(&kind).ok_or_else(|| corrupt(format!("event type {kind:?}")))?;
        let event = match (kind, entry_seq, account_id, hold_seq) {
            (EventKind::TransactionCreated, Some(entry_seq), Some(account_id), None) => {
                let (user, entry) = entry_as_seen_by(conn, account_id, entry_seq)?
                    .ok_or_else(|| corrupt(format!("event {seq} names a missing posting")))?;
                EventRow {
                    seq,
                    kind,
                    created_at_ms: entry.created_at_ms,
                    data: EventData::Transaction { user, entry },
                }
            }
            (_, None, None, Some(hold_seq)) => {
                let stored = super::holds::by_seq(conn, hold_seq)?
                    .ok_or_else(|| corrupt(format!("event {seq} names a missing hold")))?;
                let hold = hold_after(kind, stored)
                    .ok_or_else(|| corrupt(format!("event {seq} does not match its hold")))?;
                EventRow {
                    seq,
                    kind,
                    created_at_ms: hold.closed_at_ms.unwrap_or(hold.created_at_ms),
                    data: EventData::Hold(hold),
                }
            }
            _ => return Err(corrupt(format!("event {seq} is malformed"))),
        };
        events.push(event);
    }
    Ok(events)
}

/// The newest event's cursor (0 when there is none).
pub fn last_event(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
        .query_row([], |row| row.get(0))?)
}

/// The hold as the change of `kind` left it. A hold changes once, so its
/// closing events show it as stored; its opening shows it as it was made.
fn hold_after(kind: EventKind, stored: HoldFact) -> Option<HoldFact> {
    let status = match kind {
        EventKind::HoldCreated => {
            return Some(HoldFact {
                status: HoldStatus::Held,
                captured_amount: 0,
                captured_by: None,
                closed_at_ms: None,
                ..stored
            })
        }
        EventKind::HoldCaptured => HoldStatus::Captured,
        EventKind::HoldVoided => HoldStatus::Voided,
        EventKind::HoldExpired => HoldStatus::Expired,
        EventKind::TransactionCreated => return None,
    };
    (stored.status == status).then_some(stored)
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
                t.symbol, u.owner_id
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
        let delta: i64 = row.get(4)?;
        Ok((
            row.get::<_, String>(15)?,
            UserEntry {
                seq: row.get(0)?,
                id: row.get(1)?,
                kind: parse_stored_kind(&row.get::<_, String>(2)?)?,
                asset_symbol: row.get(14)?,
                amount: row.get(3)?,
                direction: if delta < 0 {
                    Direction::Debit
                } else {
                    Direction::Credit
                },
                balance_after: row.get(5)?,
                idempotency_key: row.get(6)?,
                reference_id: row.get(7)?,
                note: row.get(8)?,
                metadata: read_metadata(row.get(9)?)?,
                created_at_ms: row.get(10)?,
                counterparty: row.get(11)?,
                reverses: row.get(12)?,
                hold_id: row.get(13)?,
            },
        ))
    })
    .optional()
}

/// What the database holds that the schema says it cannot: a defect, never
/// shown to a caller (500).
fn corrupt(what: String) -> StorageError {
    StorageError::Backend(what.into())
}

/// A total kept as `high * 2^53 + low`.
fn total(high: i64, low: i64) -> u128 {
    (high.max(0) as u128) * (1u128 << 53) + low.max(0) as u128
}

/// `GET /assets/{asset}/supply`: one row of totals and one descent of the
/// Treasury's postings.
pub fn supply(conn: &Connection, asset: &AssetRef) -> Result<SupplyRow, LedgerError> {
    let (by, key) = match asset {
        AssetRef::Symbol(symbol) => ("t.symbol = ?1", symbol.to_string()),
        AssetRef::Id(id) => ("t.id = ?1", id.to_string()),
    };
    let row = conn
        .prepare_cached(&format!(
            "SELECT t.symbol, s.topup_high, s.topup_low, s.bonus_high, s.bonus_low,
                    s.spent_high, s.spent_low, s.reversed_high, s.reversed_low,
                    s.held, s.holders, s.last_entry_at,
                    coalesce((SELECT p.balance_after FROM postings p WHERE p.account_id = a.id
                               ORDER BY p.entry_seq DESC LIMIT 1), 0)
               FROM asset_types t
               JOIN asset_supply s ON s.asset_type_id = t.id
               LEFT JOIN accounts a ON a.asset_type_id = t.id AND a.owner_type = 'SYSTEM'
              WHERE {by}"
        ))?
        .query_row([key], |row| {
            let treasury: i64 = row.get(12)?;
            Ok(SupplyRow {
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
