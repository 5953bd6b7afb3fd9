//! Reading holds: one hold by id or seq, the holds a request made, a user's
//! holds a page at a time, and what an account has held now. Shared by the
//! writer (facts, replays) and the read endpoints.

use rusqlite::{params, Connection, OptionalExtension};

use super::read_metadata;
use crate::domain::{AssetRef, Cursor, UserId};
use crate::ledger::engine::{has_expired, DueHold, HoldFact, HoldStatus};
use crate::ledger::Rejection;
use crate::store::{HoldPage, HoldQuery, LedgerError};

/// Every column of a hold, and the entry its capture made.
const HOLD_COLUMNS: &str = "SELECT h.seq, h.id, h.user_id, h.asset_type_id, t.symbol, h.amount,
        h.status, h.captured_amount, ce.id, h.expires_at, h.created_at, h.closed_at, r.key,
        h.reference_id, h.note, h.metadata, h.account_id, h.parts
   FROM holds h
   JOIN asset_types t ON t.id = h.asset_type_id
   JOIN idempotency_records r ON r.id = h.request_id
   LEFT JOIN ledger_entries ce ON ce.hold_seq = h.seq";

fn parse_status(raw: &str) -> rusqlite::Result<HoldStatus> {
    HoldStatus::parse(raw).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Text,
            format!("unknown hold status {raw:?}").into(),
        )
    })
}

/// A hold as stored (status as stored: see `HoldFact::status_at`), and the
/// id of its account.
fn hold_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(HoldFact, i64)> {
    Ok((
        HoldFact {
            seq: row.get(0)?,
            id: row.get(1)?,
            user: row.get(2)?,
            asset_id: row.get(3)?,
            asset_symbol: row.get(4)?,
            amount: row.get(5)?,
            status: parse_status(&row.get::<_, String>(6)?)?,
            captured_amount: row.get(7)?,
            captured_by: row.get(8)?,
            expires_at_ms: row.get(9)?,
            created_at_ms: row.get(10)?,
            closed_at_ms: row.get(11)?,
            idempotency_key: row.get(12)?,
            reference_id: row.get(13)?,
            note: row.get(14)?,
            metadata: read_metadata(row.get(15)?)?,
            parts: super::parts::read_parts(row.get(17)?)?,
        },
        row.get(16)?,
    ))
}

pub fn by_id(conn: &Connection, id: &str) -> rusqlite::Result<Option<(HoldFact, i64)>> {
    conn.prepare_cached(&format!("{HOLD_COLUMNS} WHERE h.id = ?1"))?
        .query_row([id], hold_row)
        .optional()
}

pub fn by_seq(conn: &Connection, seq: i64) -> rusqlite::Result<Option<HoldFact>> {
    conn.prepare_cached(&format!("{HOLD_COLUMNS} WHERE h.seq = ?1"))?
        .query_row([seq], |row| hold_row(row).map(|(hold, _)| hold))
        .optional()
}

/// The hold an idempotency record's request made, if it made one.
pub fn made_by_request(conn: &Connection, request_id: i64) -> rusqlite::Result<Option<HoldFact>> {
    conn.prepare_cached(&format!("{HOLD_COLUMNS} WHERE h.request_id = ?1"))?
        .query_row([request_id], |row| hold_row(row).map(|(hold, _)| hold))
        .optional()
}

/// What an account's holds set aside, as stored (`held`, `active`, and of
/// `held` the paid part), and the holds among them that are due at `now_ms`. One primary-key read
/// for an account that never held anything; the due ones through their
/// partial index, so the cost is that of the few not yet recorded expired,
/// never of the account's hold history.
pub fn account_held(
    conn: &Connection,
    account_id: i64,
    now_ms: i64,
) -> rusqlite::Result<(i64, i64, i64, Vec<DueHold>)> {
    let stored: Option<(i64, i64, i64)> = conn
        .prepare_cached("SELECT held, active, held_paid FROM account_holds WHERE account_id = ?1")?
        .query_row([account_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((held, active, held_paid)) = stored else {
        return Ok((0, 0, 0, Vec::new()));
    };
    if active == 0 {
        return Ok((held, active, held_paid, Vec::new()));
    }
    let due = due_in_account(conn, account_id, now_ms)?;
    Ok((held, active, held_paid, due))
}

/// An account's holds stored HELD whose expiry has come at `now_ms`
/// (`expires_at <= now`, as `has_expired` says).
pub fn due_in_account(
    conn: &Connection,
    account_id: i64,
    now_ms: i64,
) -> rusqlite::Result<Vec<DueHold>> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, amount, expires_at, parts FROM holds
          WHERE account_id = ?1 AND status = 'HELD' AND expires_at <= ?2",
    )?;
    let rows = statement.query_map(params![account_id, now_ms], |row| {
        Ok((
            DueHold {
                seq: row.get(0)?,
                amount: row.get(1)?,
                parts: super::parts::read_parts(row.get(3)?)?,
            },
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut due = Vec::new();
    for row in rows {
        let (hold, expires_at) = row?;
        if has_expired(expires_at, now_ms) {
            due.push(hold);
        }
    }
    Ok(due)
}

/// What is held in an account at `now_ms`, expired holds not counted.
pub fn held_now(conn: &Connection, account_id: i64, now_ms: i64) -> rusqlite::Result<i64> {
    let (held, active) = conn
        .prepare_cached("SELECT held, active FROM account_holds WHERE account_id = ?1")?
        .query_row([account_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .unwrap_or((0, 0));
    unexpired(conn, account_id, held, active, now_ms)
}

/// The stored totals of an account, `held` in `active` holds, less the
/// holds among them due at `now_ms`: what a balance read answers as held.
pub fn unexpired(
    conn: &Connection,
    account_id: i64,
    held: i64,
    active: i64,
    now_ms: i64,
) -> rusqlite::Result<i64> {
    if active == 0 {
        return Ok(held);
    }
    let due: i64 = due_in_account(conn, account_id, now_ms)?
        .iter()
        .map(|hold| hold.amount)
        .sum();
    Ok(held - due)
}

/// Records as EXPIRED up to `max` holds whose expiry has come at `now_ms`,
/// oldest due first; returns how many. Each closes at its own `expiresAt`.
pub fn expire_due(conn: &Connection, now_ms: i64, max: usize) -> rusqlite::Result<usize> {
    let due: Vec<(i64, i64)> = conn
        .prepare_cached(
            "SELECT seq, expires_at FROM holds WHERE status = 'HELD' AND expires_at <= ?1
              ORDER BY expires_at LIMIT ?2",
        )?
        .query_map(params![now_ms, max as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut expired = 0;
    for (seq, expires_at) in due {
        if has_expired(expires_at, now_ms) {
            expire(conn, seq)?;
            expired += 1;
        }
    }
    Ok(expired)
}

/// Records one hold as EXPIRED, closed at its `expiresAt`.
pub fn expire(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE holds SET status = 'EXPIRED', closed_at = expires_at
          WHERE seq = ?1 AND status = 'HELD'",
    )?
    .execute([seq])?;
    Ok(())
}

/// One hold by id, as it stands at `now_ms`: `GET /holds/{holdId}`.
pub fn hold(conn: &mut Connection, id: &str, now_ms: i64) -> Result<HoldFact, LedgerError> {
    let tx = conn.transaction()?;
    let found = by_id(&tx, id)?;
    tx.commit()?;
    found
        .map(|(hold, _)| hold.seen_at(now_ms))
        .ok_or_else(|| Rejection::HoldNotFound.into())
}

/// A page of `user`'s holds, newest first, as they stand at `now_ms`.
///
/// A status filter compares the status at `now_ms`: a HELD hold past its
/// expiry is EXPIRED. Like history pages, a filtered page examines at most
/// `HISTORY_ROWS_EXAMINED_MAX` holds and then resumes from where it stopped.
pub fn user_holds(
    conn: &mut Connection,
    user: &UserId,
    query: &HoldQuery,
    now_ms: i64,
) -> Result<HoldPage, LedgerError> {
    use crate::limits::HISTORY_ROWS_EXAMINED_MAX;
    let tx = conn.transaction()?;
    let has_wallet: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE owner_type = 'USER' AND owner_id = ?1)",
        )?
        .query_row([user.as_str()], |row| row.get(0))?;
    if !has_wallet {
        return Err(Rejection::WalletNotFound.into());
    }
    let asset_id: Option<String> = match &query.asset {
        None => None,
        Some(asset) => {
            let (sql, value) = match asset {
                AssetRef::Symbol(symbol) => (
                    "SELECT id FROM asset_types WHERE symbol = ?1",
                    symbol.clone(),
                ),
                AssetRef::Id(id) => ("SELECT id FROM asset_types WHERE id = ?1", id.to_string()),
            };
            let found: Option<String> = tx
                .prepare_cached(sql)?
                .query_row([value], |row| row.get(0))
                .optional()?;
            Some(found.ok_or(Rejection::AssetNotFound)?)
        }
    };
    let limit = query.limit.get();
    let before_seq = query.cursor.map_or(i64::MAX, Cursor::entry_seq);
    let filtered = query.status.is_some() || asset_id.is_some();
    let window = if filtered {
        HISTORY_ROWS_EXAMINED_MAX.max(limit + 1)
    } else {
        limit + 1
    };
    let mut items = Vec::new();
    let mut examined = 0usize;
    let mut last_examined: Option<i64> = None;
    {
        let mut statement = tx.prepare_cached(&format!(
            "{HOLD_COLUMNS} WHERE h.user_id = ?1 AND h.seq < ?2 ORDER BY h.seq DESC LIMIT ?3"
        ))?;
        let rows =
            statement.query_map(params![user.as_str(), before_seq, window as i64], hold_row)?;
        for row in rows {
            let (hold, _) = row?;
            examined += 1;
            last_examined = Some(hold.seq);
            let hold = hold.seen_at(now_ms);
            let matches = query.status.is_none_or(|status| hold.status == status)
                && asset_id.as_ref().is_none_or(|id| *id == hold.asset_id);
            if matches {
                items.push(hold);
                if items.len() > limit {
                    break;
                }
            }
        }
    }
    tx.commit()?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| Cursor::after_entry(last.seq))
    } else if examined == window {
        // The scan stopped before the user's first hold: resume below.
        last_examined.map(Cursor::after_entry)
    } else {
        None
    };
    Ok(HoldPage { items, next_cursor })
}
