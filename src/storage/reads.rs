//! Queries for the read endpoints, on read-only connections from the pool.
//! Each runs inside one read transaction, so it sees one committed state.

use rusqlite::{params, Connection, OptionalExtension};

use super::{parse_stored_kind, LedgerError, StorageError, UserEntry};
use crate::domain::{AssetRef, Cursor, EntryKind, PageLimit, UserId};
use crate::ledger::Rejection;
use crate::limits::HISTORY_ROWS_EXAMINED_MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    pub id: String,
    pub symbol: String,
    pub name: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    pub asset_symbol: String,
    pub asset_type_id: String,
    pub asset_name: String,
    pub balance: i64,
}

/// Filters and position of one history page.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub asset: Option<AssetRef>,
    pub kind: Option<EntryKind>,
    pub limit: PageLimit,
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub items: Vec<UserEntry>,
    pub next_cursor: Option<Cursor>,
}

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
        let mut statement = tx.prepare_cached(
            "SELECT id, symbol, name, created_at FROM asset_types ORDER BY symbol",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(AssetRow {
                id: row.get(0)?,
                symbol: row.get(1)?,
                name: row.get(2)?,
                created_at_ms: row.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.commit()?;
    Ok(rows)
}

/// Every asset's balance for `user`, 0 where the user has no account in it.
pub fn balances(conn: &mut Connection, user: &UserId) -> Result<Vec<BalanceRow>, LedgerError> {
    let tx = conn.transaction()?;
    let accounts = user_accounts(&tx, user)?;
    if accounts.iter().all(|account| account.account_id.is_none()) {
        return Err(Rejection::WalletNotFound.into());
    }
    let mut rows = Vec::with_capacity(accounts.len());
    for account in accounts {
        let balance = match account.account_id {
            Some(id) => super::latest_balance(&tx, id)?,
            None => 0,
        };
        rows.push(BalanceRow {
            asset_symbol: account.asset_symbol,
            asset_type_id: account.asset_type_id,
            asset_name: account.asset_name,
            balance,
        });
    }
    tx.commit()?;
    Ok(rows)
}

struct UserAccount {
    asset_type_id: String,
    asset_symbol: String,
    asset_name: String,
    account_id: Option<i64>,
}

/// One row per asset type, ordered by symbol, with the user's account in it if any.
fn user_accounts(conn: &Connection, user: &UserId) -> rusqlite::Result<Vec<UserAccount>> {
    let mut statement = conn.prepare_cached(
        "SELECT t.id, t.symbol, t.name, a.id
           FROM asset_types t
           LEFT JOIN accounts a
             ON a.asset_type_id = t.id AND a.owner_type = 'USER' AND a.owner_id = ?1
          ORDER BY t.symbol",
    )?;
    let rows = statement.query_map([user.as_str()], |row| {
        Ok(UserAccount {
            asset_type_id: row.get(0)?,
            asset_symbol: row.get(1)?,
            asset_name: row.get(2)?,
            account_id: row.get(3)?,
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
    let kind = query.kind.map(EntryKind::as_str);
    let window = if kind.is_some() {
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
        let mut statement = tx.prepare_cached(if kind.is_some() {
            "SELECT p.entry_seq, e.id, e.kind, e.amount, p.balance_after, e.idempotency_key,
                    e.reference_id, e.note, e.created_at
               FROM (SELECT entry_seq, balance_after FROM postings
                      WHERE account_id = ?1 AND entry_seq < ?2
                      ORDER BY entry_seq DESC LIMIT ?3) p
               JOIN ledger_entries e ON e.seq = p.entry_seq
              WHERE e.kind = ?4
              ORDER BY p.entry_seq DESC"
        } else {
            "SELECT p.entry_seq, e.id, e.kind, e.amount, p.balance_after, e.idempotency_key,
                    e.reference_id, e.note, e.created_at
               FROM postings p
               JOIN ledger_entries e ON e.seq = p.entry_seq
              WHERE p.account_id = ?1 AND p.entry_seq < ?2 AND ?4 IS NULL
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
            if kind.is_some() {
                let (scanned, lowest): (i64, Option<i64>) = window_floor
                    .query_row(params![account_id, before_seq, window as i64], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?;
                if scanned as usize == window {
                    examined_down_to = examined_down_to.max(lowest.unwrap_or(0));
                }
            }
            let rows = statement.query_map(
                params![account_id, before_seq, window as i64, kind],
                |row| {
                    let kind = parse_stored_kind(&row.get::<_, String>(2)?)?;
                    Ok(UserEntry {
                        seq: row.get(0)?,
                        id: row.get(1)?,
                        kind,
                        asset_symbol: account.asset_symbol.clone(),
                        amount: row.get(3)?,
                        direction: kind.user_direction(),
                        balance_after: row.get(4)?,
                        idempotency_key: row.get(5)?,
                        reference_id: row.get(6)?,
                        note: row.get(7)?,
                        created_at_ms: row.get(8)?,
                    })
                },
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
