//! Queries for the read endpoints, on read-only connections from the pool.
//! Each runs inside one read transaction, so it sees one committed state.

use rusqlite::{params, Connection, OptionalExtension};

use super::rules::{asset_row, ASSET_WITH_RULES};
use super::{parse_stored_kind, read_metadata};
use crate::domain::{AssetRef, Cursor, Direction, UserId};
use crate::ledger::engine::{AssetRow, Party, RecordedEntry, UserEntry};
use crate::ledger::Rejection;
use crate::limits::HISTORY_ROWS_EXAMINED_MAX;
use crate::store::{
    BalanceRow, HistoryPage, HistoryQuery, LedgerError, PartyRow, StorageError, TransactionDetail,
};

/// Runs `read` with SQLite told to give up after `READ_TIME_MAX`: past it
/// the statement fails as interrupted, which answers 503.
pub fn within_time_limit<T>(conn: &mut Connection, read: impl FnOnce(&mut Connection) -> T) -> T {
    let deadline = std::time::Instant::now() + crate::limits::READ_TIME_MAX;
    // Every 1000 virtual-machine steps, a few microseconds apart.
    let _ = conn.progress_handler(1000, Some(move || std::time::Instant::now() > deadline));
    let result = read(conn);
    let _ = conn.progress_handler(1000, None::<fn() -> bool>);
    result
}

/// Proves the database answers: `GET /health`.
pub fn health(conn: &Connection) -> Result<(), StorageError> {
    conn.prepare_cached("SELECT count(*) FROM asset_types")?
        .query_row([], |_| Ok(()))?;
    Ok(())
}

/// Entries in the ledger: what `wallet bench` checks its 201s against.
pub fn entry_count(conn: &Connection) -> Result<u64, StorageError> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM ledger_entries")?
        .query_row([], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub fn assets(conn: &mut Connection) -> Result<Vec<AssetRow>, StorageError> {
    let tx = conn.transaction()?;
    let rows = {
        let mut statement = tx.prepare_cached(&format!("{ASSET_WITH_RULES} ORDER BY t.symbol"))?;
        let rows = statement.query_map([], asset_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.commit()?;
    Ok(rows)
}

/// The asset with this symbol, if any.
pub fn asset_by_symbol(conn: &Connection, symbol: &str) -> rusqlite::Result<Option<AssetRow>> {
    conn.prepare_cached(&format!("{ASSET_WITH_RULES} WHERE t.symbol = ?1"))?
        .query_row([symbol], asset_row)
        .optional()
}

/// Every asset's balance for `user`, 0 where the user has no account in
/// it, with holds counted as they stand at `now_ms`.
pub fn balances_at(
    conn: &mut Connection,
    user: &UserId,
    now_ms: i64,
) -> Result<Vec<BalanceRow>, LedgerError> {
    let tx = conn.transaction()?;
    let accounts = user_accounts(&tx, user)?;
    if accounts.iter().all(|account| account.account_id.is_none()) {
        return Err(Rejection::WalletNotFound.into());
    }
    let mut rows = Vec::with_capacity(accounts.len());
    for account in accounts {
        let ((balance, paid), held) = match account.account_id {
            // `held` from the account's one row of totals (read with the
            // account), less the few holds due but not yet recorded
            // expired: never a sum over the account's holds.
            Some(id) => (
                super::parts::latest_balance_and_paid(&tx, id)?,
                super::holds::unexpired(
                    &tx,
                    id,
                    account.stored_held,
                    account.active_holds,
                    now_ms,
                )?,
            ),
            None => ((0, 0), 0),
        };
        rows.push(BalanceRow {
            asset_symbol: account.asset_symbol,
            asset_type_id: account.asset_type_id,
            asset_name: account.asset_name,
            balance,
            held,
            available: balance - held,
            paid,
            free: balance - paid,
            expiring: Vec::new(),
        });
    }
    tx.commit()?;
    Ok(rows)
}

/// Every asset's balance for `user` as it stood at `at_ms`: counting the
/// entries made at or before it. O(log n) of the ledger's length: the last
/// entry by then is one descent of the entries' time index, then each
/// account's balance one descent of its postings.
pub fn balances_as_of(
    conn: &mut Connection,
    user: &UserId,
    at_ms: i64,
) -> Result<Vec<BalanceRow>, LedgerError> {
    let tx = conn.transaction()?;
    let accounts = user_accounts(&tx, user)?;
    if accounts.iter().all(|account| account.account_id.is_none()) {
        return Err(Rejection::WalletNotFound.into());
    }
    let last_seq = last_entry_at(&tx, at_ms)?;
    let mut rows = Vec::with_capacity(accounts.len());
    for account in accounts {
        let (balance, paid) = match account.account_id {
            Some(id) => tx
                .prepare_cached(
                    "SELECT balance_after, paid_after FROM postings
                      WHERE account_id = ?1 AND entry_seq <= ?2
                      ORDER BY entry_seq DESC LIMIT 1",
                )?
                .query_row(params![id, last_seq], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?
                .unwrap_or((0, 0)),
            None => (0, 0),
        };
        rows.push(BalanceRow {
            asset_symbol: account.asset_symbol,
            asset_type_id: account.asset_type_id,
            asset_name: account.asset_name,
            balance,
            held: 0,
            available: balance,
            paid,
            free: balance - paid,
            expiring: Vec::new(),
        });
    }
    tx.commit()?;
    Ok(rows)
}

/// The sequence number of the last entry made at or before `at_ms`, or 0:
/// one descent of the entries' time index. Entries are numbered in the
/// order of the writer's clock, which never goes back, so among entries of
/// one millisecond the highest number is the last.
pub(super) fn last_entry_at(conn: &Connection, at_ms: i64) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT seq FROM ledger_entries INDEXED BY ledger_entries_by_time
              WHERE created_at <= ?1 ORDER BY created_at DESC, seq DESC LIMIT 1",
        )?
        .query_row([at_ms], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

struct UserAccount {
    asset_type_id: String,
    asset_symbol: String,
    asset_name: String,
    account_id: Option<i64>,
    /// The account's hold totals as stored, expired holds not yet recorded
    /// included.
    stored_held: i64,
    active_holds: i64,
}

/// One row per asset type, ordered by symbol, with the user's account in it if any.
fn user_accounts(conn: &Connection, user: &UserId) -> rusqlite::Result<Vec<UserAccount>> {
    let mut statement = conn.prepare_cached(
        "SELECT t.id, t.symbol, t.name, a.id, coalesce(h.held, 0), coalesce(h.active, 0)
           FROM asset_types t
           LEFT JOIN accounts a
             ON a.asset_type_id = t.id AND a.owner_type = 'USER' AND a.owner_id = ?1
           LEFT JOIN account_holds h ON h.account_id = a.id
          ORDER BY t.symbol",
    )?;
    let rows = statement.query_map([user.as_str()], |row| {
        Ok(UserAccount {
            asset_type_id: row.get(0)?,
            asset_symbol: row.get(1)?,
            asset_name: row.get(2)?,
            account_id: row.get(3)?,
            stored_held: row.get(4)?,
            active_holds: row.get(5)?,
        })
    })?;
    rows.collect()
}

/// One page of `user`'s history, newest first.
///
/// Each of the user's accounts (one per asset) is read newest first through
/// the postings primary key and the streams are merged by sequence number.
/// Unfiltered, that is at most `limit + 1` rows an account. With a `type`
/// filter the matching entries may be rare, so each account's scan stops
/// after `HISTORY_ROWS_EXAMINED_MAX` rows: the page then holds the matches
/// found down to where the scans stopped, and `nextCursor` resumes from
/// there (a page may hold fewer than `limit` items, even none, and still
/// have a next one). Either way a page costs the same however long the
/// history is. The extra row tells whether another page follows.
pub fn history(
    conn: &mut Connection,
    user: &UserId,
    query: &HistoryQuery,
) -> Result<HistoryPage, LedgerError> {
    let tx = conn.transaction()?;
    let accounts = user_accounts(&tx, user)?;
    if accounts.iter().all(|account| account.account_id.is_none()) {
        return Err(Rejection::WalletNotFound.into());
    }
    if let Some(asset) = &query.asset {
        let known = accounts.iter().any(|account| names_asset(asset, account));
        if !known {
            return Err(Rejection::AssetNotFound.into());
        }
    }
    let limit = query.limit.get();
    let before_seq = query.cursor.map_or(i64::MAX, Cursor::entry_seq);
    let kind = query.kind.map(|kind| kind.as_str());
    let reference_id = query.reference_id.as_ref().map(|r| r.as_str());
    let filtered = kind.is_some() || reference_id.is_some();
    let window = if filtered {
        HISTORY_ROWS_EXAMINED_MAX.max(limit + 1)
    } else {
        limit + 1
    };
    let mut items: Vec<UserEntry> = Vec::new();
    // Every entry at or above this sequence number was examined in every
    // account; below it some account's scan stopped early.
    let mut examined_down_to: i64 = 0;
    {
        let mut window_floor = tx.prepare_cached(
            "SELECT count(*), min(entry_seq) FROM
               (SELECT entry_seq FROM postings WHERE account_id = ?1 AND entry_seq < ?2
                 ORDER BY entry_seq DESC LIMIT ?3)",
        )?;
        // Unfiltered: the newest `window` postings. Filtered: the matches
        // among the newest `window` postings, never more rows examined.
        let mut statement = tx.prepare_cached(if filtered {
            "SELECT p.entry_seq, e.id, e.kind, e.amount, p.delta, p.balance_after, r.key,
                    e.reference_id, e.note, e.metadata, e.created_at, o.owner_id, rv.id, hh.id,
                    e.parts
               FROM (SELECT account_id, entry_seq, delta, balance_after FROM postings
                      WHERE account_id = ?1 AND entry_seq < ?2
                      ORDER BY entry_seq DESC LIMIT ?3) p
               JOIN ledger_entries e ON e.seq = p.entry_seq
               JOIN idempotency_records r ON r.id = e.request_id
               JOIN accounts o ON o.id = CASE WHEN e.debit_account_id = p.account_id
                                              THEN e.credit_account_id ELSE e.debit_account_id END
               LEFT JOIN ledger_entries rv ON rv.seq = e.reverses_seq
               LEFT JOIN holds hh ON hh.seq = e.hold_seq
              WHERE (?4 IS NULL OR e.kind = ?4) AND (?5 IS NULL OR e.reference_id = ?5)
              ORDER BY p.entry_seq DESC"
        } else {
            "SELECT p.entry_seq, e.id, e.kind, e.amount, p.delta, p.balance_after, r.key,
                    e.reference_id, e.note, e.metadata, e.created_at, o.owner_id, rv.id, hh.id,
                    e.parts
               FROM postings p
               JOIN ledger_entries e ON e.seq = p.entry_seq
               JOIN idempotency_records r ON r.id = e.request_id
               JOIN accounts o ON o.id = CASE WHEN e.debit_account_id = p.account_id
                                              THEN e.credit_account_id ELSE e.debit_account_id END
               LEFT JOIN ledger_entries rv ON rv.seq = e.reverses_seq
               LEFT JOIN holds hh ON hh.seq = e.hold_seq
              WHERE p.account_id = ?1 AND p.entry_seq < ?2 AND ?4 IS NULL AND ?5 IS NULL
              ORDER BY p.entry_seq DESC
              LIMIT ?3"
        })?;
        for account in &accounts {
            let Some(account_id) = account.account_id else {
                continue;
            };
            if query
                .asset
                .as_ref()
                .is_some_and(|asset| !names_asset(asset, account))
            {
                continue;
            }
            if filtered {
                let (scanned, lowest): (i64, Option<i64>) = window_floor
                    .query_row(params![account_id, before_seq, window as i64], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                if scanned as usize == window {
                    examined_down_to = examined_down_to.max(lowest.unwrap_or(0));
                }
            }
            let rows = statement.query_map(
                params![account_id, before_seq, window as i64, kind, reference_id],
                |row| user_entry(row, account.asset_symbol.clone()),
            )?;
            for row in rows {
                items.push(row?);
            }
        }
    }
    tx.commit()?;
    items.retain(|entry| entry.seq >= examined_down_to);
    items.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.seq));
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| Cursor::after_entry(last.seq))
    } else if examined_down_to > 1 {
        // The scans stopped before the history's start: resume below.
        Some(Cursor::after_entry(examined_down_to))
    } else {
        None
    };
    Ok(HistoryPage { items, next_cursor })
}

/// One history row, as the history query and the event feed select it
/// (columns 0-14: seq, id, kind, amount, delta, balance after, key,
/// reference, note, metadata, time, counterparty, reversed entry, hold,
/// parts), in `asset_symbol`.
pub(super) fn user_entry(
    row: &rusqlite::Row<'_>,
    asset_symbol: String,
) -> rusqlite::Result<UserEntry> {
    let delta: i64 = row.get(4)?;
    Ok(UserEntry {
        seq: row.get(0)?,
        id: row.get(1)?,
        kind: parse_stored_kind(&row.get::<_, String>(2)?)?,
        asset_symbol,
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
        parts: super::parts::read_parts(row.get(14)?)?,
    })
}

fn names_asset(asset: &AssetRef, account: &UserAccount) -> bool {
    match asset {
        AssetRef::Symbol(symbol) => *symbol == account.asset_symbol,
        AssetRef::Id(id) => id.to_string() == account.asset_type_id,
    }
}

/// Whether the file holds no asset types: a new database, to be seeded.
pub fn is_unseeded(conn: &Connection) -> Result<bool, StorageError> {
    let any: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM asset_types LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(any.is_none())
}

/// One entry whole, by id: `GET /transactions/{id}`.
pub fn transaction(conn: &mut Connection, id: &str) -> Result<TransactionDetail, LedgerError> {
    let party = |owner: Option<String>| owner.map_or(PartyRow::Treasury, PartyRow::User);
    conn.prepare_cached(
        "SELECT e.id, e.kind, t.symbol, e.amount, d.owner_id, c.owner_id, rv.id,
                coalesce((SELECT x.reversed_after FROM ledger_entries x
                           WHERE x.reverses_seq = e.seq ORDER BY x.seq DESC LIMIT 1), 0),
                r.key, e.reference_id, e.note, e.metadata, e.created_at, hh.id, e.parts
           FROM ledger_entries e
           JOIN asset_types t ON t.id = e.asset_type_id
           JOIN accounts d ON d.id = e.debit_account_id
           JOIN accounts c ON c.id = e.credit_account_id
           JOIN idempotency_records r ON r.id = e.request_id
           LEFT JOIN ledger_entries rv ON rv.seq = e.reverses_seq
           LEFT JOIN holds hh ON hh.seq = e.hold_seq
          WHERE e.id = ?1",
    )?
    .query_row([id], |row| {
        Ok(TransactionDetail {
            id: row.get(0)?,
            kind: parse_stored_kind(&row.get::<_, String>(1)?)?,
            asset_symbol: row.get(2)?,
            amount: row.get(3)?,
            debit: party(row.get(4)?),
            credit: party(row.get(5)?),
            reverses: row.get(6)?,
            reversed_amount: row.get(7)?,
            hold_id: row.get(13)?,
            idempotency_key: row.get(8)?,
            reference_id: row.get(9)?,
            note: row.get(10)?,
            metadata: read_metadata(row.get(11)?)?,
            created_at_ms: row.get(12)?,
            parts: super::parts::read_parts(row.get(14)?)?,
        })
    })
    .optional()?
    .ok_or_else(|| Rejection::TransactionNotFound.into())
}

/// The entries one idempotency record made, in order, both sides: what a
/// replay's answer is built from.
pub fn entries_of_request(
    conn: &Connection,
    request_id: i64,
    key: &str,
) -> rusqlite::Result<Vec<RecordedEntry>> {
    let mut statement = conn.prepare_cached(
        "SELECT e.seq, e.id, e.kind, t.symbol, e.amount, d.owner_id, c.owner_id,
                pd.balance_after, pc.balance_after, rv.id, rv.kind,
                e.reference_id, e.note, e.metadata, e.created_at, hh.id, e.parts
           FROM ledger_entries e
           JOIN asset_types t ON t.id = e.asset_type_id
           JOIN accounts d ON d.id = e.debit_account_id
           JOIN accounts c ON c.id = e.credit_account_id
           JOIN postings pd ON pd.account_id = e.debit_account_id AND pd.entry_seq = e.seq
           JOIN postings pc ON pc.account_id = e.credit_account_id AND pc.entry_seq = e.seq
           LEFT JOIN ledger_entries rv ON rv.seq = e.reverses_seq
           LEFT JOIN holds hh ON hh.seq = e.hold_seq
          WHERE e.request_id = ?1
          ORDER BY e.seq",
    )?;
    let rows = statement.query_map([request_id], |row| {
        let reverses = match (
            row.get::<_, Option<String>>(9)?,
            row.get::<_, Option<String>>(10)?,
        ) {
            (Some(id), Some(kind)) => Some((id, parse_stored_kind(&kind)?)),
            _ => None,
        };
        Ok(RecordedEntry {
            seq: row.get(0)?,
            id: row.get(1)?,
            kind: parse_stored_kind(&row.get::<_, String>(2)?)?,
            asset_symbol: row.get(3)?,
            amount: row.get(4)?,
            debit: party_of(row.get(5)?),
            credit: party_of(row.get(6)?),
            debit_balance_after: row.get(7)?,
            credit_balance_after: row.get(8)?,
            reverses,
            hold_id: row.get(15)?,
            idempotency_key: key.to_owned(),
            reference_id: row.get(11)?,
            note: row.get(12)?,
            metadata: read_metadata(row.get(13)?)?,
            created_at_ms: row.get(14)?,
            parts: super::parts::read_parts(row.get(16)?)?,
        })
    })?;
    rows.collect()
}

/// An account's party as callers see it, from its `owner_id`.
pub(super) fn party_of(owner_id: Option<String>) -> Party {
    owner_id.map_or(Party::Treasury, Party::User)
}
