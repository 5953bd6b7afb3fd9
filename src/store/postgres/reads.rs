//! PostgreSQL's queries for the read endpoints, the event feed, supply and
//! metrics, and the reads the writer shares (replays, holds). Each read
//! endpoint runs in one transaction, so it sees one committed state.
//!
//! What differs from SQLite: a user's balance, what its holds set aside
//! and how many are active are columns of its account row; an asset's
//! figures are sums over its few `asset_totals` rows; the feed is numbered
//! by `feed_seq`, in commit order.

use postgres::types::ToSql;
use postgres::{GenericClient, Row};

use crate::domain::{AssetRef, Cursor, Direction, EntryKind, Metadata, Scopes, UserId};
use crate::ledger::engine::{
    has_expired, AssetRow, HoldFact, HoldStatus, Party, RecordedEntry, UserEntry,
};
use crate::ledger::Rejection;
use crate::limits::{API_KEYS_ACTIVE_MAX, API_KEYS_TOTAL_MAX, HISTORY_ROWS_EXAMINED_MAX};
use crate::metrics::{AssetFigures, LedgerFigures};
use crate::store::{
    ActiveKeyRow, BalanceRow, EventData, EventKind, EventRow, HistoryPage, HistoryQuery, HoldPage,
    HoldQuery, KeyListing, KeySnapshot, LedgerError, PartyRow, StorageError, SupplyRow,
    TransactionDetail,
};

/// What the database holds that the schema says it cannot: a defect.
fn corrupt(what: String) -> StorageError {
    StorageError::Backend(what.into())
}

pub(super) fn stored_kind(raw: &str) -> Result<EntryKind, StorageError> {
    EntryKind::parse(raw).map_err(|_| corrupt(format!("an entry of unknown kind {raw:?}")))
}

fn stored_status(raw: &str) -> Result<HoldStatus, StorageError> {
    HoldStatus::parse(raw).ok_or_else(|| corrupt(format!("a hold of unknown status {raw:?}")))
}

fn stored_metadata(raw: Option<String>) -> Result<Option<Metadata>, StorageError> {
    let Some(text) = raw else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| corrupt(format!("unreadable metadata: {error}")))?;
    Metadata::parse(&value)
        .map(Some)
        .map_err(|error| corrupt(format!("unreadable metadata: {error}")))
}

/// A numeric sum, read as text (the driver has no numeric type).
fn numeric(row: &Row, index: usize) -> Result<i128, StorageError> {
    let text: String = row.get(index);
    text.parse()
        .map_err(|_| corrupt(format!("a total that is not a whole number: {text:?}")))
}

fn unsigned(value: i128) -> u128 {
    u128::try_from(value).unwrap_or(0)
}

/// Proves the database answers: `GET /health`.
pub fn health(client: &mut impl GenericClient) -> Result<(), StorageError> {
    client.query_typed_one("SELECT count(*) FROM wallet_schema_version", &[])?;
    Ok(())
}

pub fn entry_count(client: &mut impl GenericClient) -> Result<u64, StorageError> {
    let count: i64 = client
        .query_one("SELECT count(*) FROM ledger_entries", &[])?
        .get(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

pub fn assets(client: &mut impl GenericClient) -> Result<Vec<AssetRow>, StorageError> {
    super::rules::assets(client)
}

struct UserAccount {
    asset_type_id: String,
    asset_symbol: String,
    asset_name: String,
    account_id: Option<i64>,
    balance: i64,
    held: i64,
    active_holds: i64,
    /// The paid part of `balance`.
    paid: i64,
}

/// One row per asset type, by symbol, with the user's account in it if any.
fn user_accounts(
    client: &mut impl GenericClient,
    user: &UserId,
) -> Result<Vec<UserAccount>, StorageError> {
    // Typed: sent with its parameter's type in one round trip, where a
    // query by text is prepared first (a second round trip): this is the
    // balance read's one statement.
    Ok(client
        .query_typed(
            "SELECT t.id::text, t.symbol, t.name, a.id, coalesce(a.balance, 0),
                    coalesce(a.held, 0), coalesce(a.active_holds, 0), coalesce(a.paid, 0)
               FROM asset_types t
               LEFT JOIN accounts a
                 ON a.asset_type_id = t.id AND a.owner_type = 'USER' AND a.owner_id = $1
              ORDER BY t.symbol",
            &[(&user.as_str(), postgres::types::Type::TEXT)],
        )?
        .iter()
        .map(|row| UserAccount {
            asset_type_id: row.get(0),
            asset_symbol: row.get(1),
            asset_name: row.get(2),
            account_id: row.get(3),
            balance: row.get(4),
            held: row.get(5),
            active_holds: i64::from(row.get::<_, i32>(6)),
            paid: row.get(7),
        })
        .collect())
}

/// What an account's holds set aside at `now_ms`: as stored, less the few
/// holds due but not yet recorded expired.
fn held_now(
    client: &mut impl GenericClient,
    account_id: i64,
    stored_held: i64,
    active_holds: i64,
    now_ms: i64,
) -> Result<i64, StorageError> {
    if active_holds == 0 {
        return Ok(stored_held);
    }
    let due: i64 = client
        .query(
            "SELECT amount, expires_at FROM holds
              WHERE account_id = $1 AND status = 'HELD' AND expires_at <= $2",
            &[&account_id, &now_ms],
        )?
        .iter()
        .filter(|row| has_expired(row.get(1), now_ms))
        .map(|row| row.get::<_, i64>(0))
        .sum();
    Ok(stored_held - due)
}

pub fn balances_at(
    client: &mut impl GenericClient,
    user: &UserId,
    now_ms: i64,
) -> Result<Vec<BalanceRow>, LedgerError> {
    // One statement reads every balance and hold total together (they are
    // one row per account), so no transaction is needed around it; only
    // the holds due but not yet recorded are read after, for accounts that
    // have active holds.
    let accounts = user_accounts(client, user)?;
    if accounts.iter().all(|account| account.account_id.is_none()) {
        return Err(Rejection::WalletNotFound.into());
    }
    let mut rows = Vec::with_capacity(accounts.len());
    for account in accounts {
        let held = match account.account_id {
            Some(id) => held_now(client, id, account.held, account.active_holds, now_ms)?,
            None => 0,
        };
        rows.push(BalanceRow {
            paid: account.paid,
            free: account.balance - account.paid,
            expiring: Vec::new(),
            asset_symbol: account.asset_symbol,
            asset_type_id: account.asset_type_id,
            asset_name: account.asset_name,
            balance: account.balance,
            held,
            available: account.balance - held,
        });
    }
    Ok(rows)
}

/// Every asset's balance for `user` as it stood at `at_ms`: each account's
/// newest posting of an entry made at or before it. A user's postings are
/// numbered in commit order (its writes hold its lock), and the writers'
/// clocks never go back, so the walk from the newest posting down stops at
/// the first one old enough.
pub fn balances_as_of(
    client: &mut impl GenericClient,
    user: &UserId,
    at_ms: i64,
) -> Result<Vec<BalanceRow>, LedgerError> {
    let mut tx = client.transaction()?;
    let accounts = user_accounts(&mut tx, user)?;
    if accounts.iter().all(|account| account.account_id.is_none()) {
        return Err(Rejection::WalletNotFound.into());
    }
    let mut rows = Vec::with_capacity(accounts.len());
    for account in accounts {
        let (balance, paid) = match account.account_id {
            Some(id) => tx
                .query_opt(
                    "SELECT p.balance_after, p.paid_after FROM postings p
                       JOIN ledger_entries e ON e.seq = p.entry_seq
                      WHERE p.account_id = $1 AND e.created_at <= $2
                      ORDER BY p.entry_seq DESC LIMIT 1",
                    &[&id, &at_ms],
                )?
                .map_or((0, 0), |row| {
                    (
                        row.get::<_, Option<i64>>(0).unwrap_or(0),
                        row.get::<_, Option<i64>>(1).unwrap_or(0),
                    )
                }),
            None => (0, 0),
        };
        rows.push(BalanceRow {
            paid,
            free: balance - paid,
            expiring: Vec::new(),
            asset_symbol: account.asset_symbol,
            asset_type_id: account.asset_type_id,
            asset_name: account.asset_name,
            balance,
            held: 0,
            available: balance,
        });
    }
    tx.commit()?;
    Ok(rows)
}

/// The columns of an entry seen from one posting's account (see
/// `user_entry`), from `postings p`, `ledger_entries e`.
const USER_ENTRY_COLUMNS: &str = "p.entry_seq, e.id::text, e.kind, e.amount, p.delta,
        p.balance_after, r.key, e.reference_id, e.note, e.metadata::text, e.created_at, o.owner_id,
        rv.id::text, hh.id::text, e.parts";

/// The joins `USER_ENTRY_COLUMNS` reads through.
const USER_ENTRY_JOINS: &str = "JOIN ledger_entries e ON e.seq = p.entry_seq
   JOIN idempotency_records r ON r.id = e.request_id
   JOIN accounts o ON o.id = CASE WHEN e.debit_account_id = p.account_id
                                  THEN e.credit_account_id ELSE e.debit_account_id END
   LEFT JOIN ledger_entries rv ON rv.seq = e.reverses_seq
   LEFT JOIN holds hh ON hh.seq = e.hold_seq";

fn user_entry(row: &Row, asset_symbol: String) -> Result<UserEntry, StorageError> {
    user_entry_at(row, 0, asset_symbol)
}

fn names_asset(asset: &AssetRef, account: &UserAccount) -> bool {
    match asset {
        AssetRef::Symbol(symbol) => *symbol == account.asset_symbol,
        AssetRef::Id(id) => id.to_string() == account.asset_type_id,
    }
}

/// One page of `user`'s history, newest first: each account read newest
/// first through the postings' primary key, merged by entry number, as on
/// SQLite (see its `reads::history` for how filtered pages are bounded).
pub fn history(
    client: &mut impl GenericClient,
    user: &UserId,
    query: &HistoryQuery,
) -> Result<HistoryPage, LedgerError> {
    let mut tx = client.transaction()?;
    let accounts = user_accounts(&mut tx, user)?;
    if accounts.iter().all(|account| account.account_id.is_none()) {
        return Err(Rejection::WalletNotFound.into());
    }
    if let Some(asset) = &query.asset {
        if !accounts.iter().any(|account| names_asset(asset, account)) {
            return Err(Rejection::AssetNotFound.into());
        }
    }
    let limit = query.limit.get();
    let before_seq = query.cursor.map_or(i64::MAX, Cursor::entry_seq);
    let kind = query.kind.map(|kind| kind.as_str().to_owned());
    let reference_id = query.reference_id.as_ref().map(|r| r.as_str().to_owned());
    let filtered = kind.is_some() || reference_id.is_some();
    let window = if filtered {
        HISTORY_ROWS_EXAMINED_MAX.max(limit + 1)
    } else {
        limit + 1
    } as i64;
    let page = if filtered {
        format!(
            "SELECT {USER_ENTRY_COLUMNS}
               FROM (SELECT account_id, entry_seq, delta, balance_after FROM postings
                      WHERE account_id = $1 AND entry_seq < $2
                      ORDER BY entry_seq DESC LIMIT $3) p
               {USER_ENTRY_JOINS}
              WHERE ($4::text IS NULL OR e.kind = $4) AND ($5::text IS NULL OR e.reference_id = $5)
              ORDER BY p.entry_seq DESC"
        )
    } else {
        format!(
            "SELECT {USER_ENTRY_COLUMNS}
               FROM postings p
               {USER_ENTRY_JOINS}
              WHERE p.account_id = $1 AND p.entry_seq < $2
                AND $4::text IS NULL AND $5::text IS NULL
              ORDER BY p.entry_seq DESC
              LIMIT $3"
        )
    };
    let page = tx.prepare(&page)?;
    let mut items: Vec<UserEntry> = Vec::new();
    // Every entry at or above this number was examined in every account;
    // below it some account's scan stopped early.
    let mut examined_down_to: i64 = 0;
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
            let floor = tx.query_one(
                "SELECT count(*), min(entry_seq) FROM
                   (SELECT entry_seq FROM postings WHERE account_id = $1 AND entry_seq < $2
                     ORDER BY entry_seq DESC LIMIT $3) AS w",
                &[&account_id, &before_seq, &window],
            )?;
            let (scanned, lowest): (i64, Option<i64>) = (floor.get(0), floor.get(1));
            if scanned == window {
                examined_down_to = examined_down_to.max(lowest.unwrap_or(0));
            }
        }
        let parameters: [&(dyn ToSql + Sync); 5] =
            [&account_id, &before_seq, &window, &kind, &reference_id];
        for row in tx.query(&page, &parameters)? {
            items.push(user_entry(&row, account.asset_symbol.clone())?);
        }
    }
    tx.commit()?;
    items.retain(|entry| entry.seq >= examined_down_to);
    items.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.seq));
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| Cursor::after_entry(last.seq))
    } else if examined_down_to > 1 {
        Some(Cursor::after_entry(examined_down_to))
    } else {
        None
    };
    Ok(HistoryPage { items, next_cursor })
}

/// One entry whole, by id: `GET /transactions/{id}`.
pub fn transaction(
    client: &mut impl GenericClient,
    id: &str,
) -> Result<TransactionDetail, LedgerError> {
    let party = |owner: Option<String>| owner.map_or(PartyRow::Treasury, PartyRow::User);
    let row = client
        .query_opt(
            "SELECT e.id::text, e.kind, t.symbol, e.amount, d.owner_id, c.owner_id, rv.id::text,
                    coalesce((SELECT max(x.reversed_after) FROM ledger_entries x
                               WHERE x.reverses_seq = e.seq), 0),
                    r.key, e.reference_id, e.note, e.metadata::text, e.created_at, hh.id::text,
                    e.parts
               FROM ledger_entries e
               JOIN asset_types t ON t.id = e.asset_type_id
               JOIN accounts d ON d.id = e.debit_account_id
               JOIN accounts c ON c.id = e.credit_account_id
               JOIN idempotency_records r ON r.id = e.request_id
               LEFT JOIN ledger_entries rv ON rv.seq = e.reverses_seq
               LEFT JOIN holds hh ON hh.seq = e.hold_seq
              WHERE e.id = $1::text::uuid",
            &[&id],
        )?
        .ok_or(Rejection::TransactionNotFound)?;
    Ok(TransactionDetail {
        parts: super::parts::read(row.get(14))?,
        id: row.get(0),
        kind: stored_kind(&row.get::<_, String>(1))?,
        asset_symbol: row.get(2),
        amount: row.get(3),
        debit: party(row.get(4)),
        credit: party(row.get(5)),
        reverses: row.get(6),
        reversed_amount: row.get(7),
        idempotency_key: row.get(8),
        reference_id: row.get(9),
        note: row.get(10),
        metadata: stored_metadata(row.get(11))?,
        created_at_ms: row.get(12),
        hold_id: row.get(13),
    })
}

/// The entries one idempotency record made, in order, both sides: what a
/// replay's answer is built from. A Treasury's side shows no balance.
pub fn entries_of_request(
    client: &mut impl GenericClient,
    request_id: i64,
    key: &str,
) -> Result<Vec<RecordedEntry>, StorageError> {
    let party = |owner: Option<String>| owner.map_or(Party::Treasury, Party::User);
    client
        .query(
            "SELECT e.seq, e.id::text, e.kind, t.symbol, e.amount, d.owner_id, c.owner_id,
                    pd.balance_after, pc.balance_after, rv.id::text, rv.kind,
                    e.reference_id, e.note, e.metadata::text, e.created_at, hh.id::text, e.parts
               FROM ledger_entries e
               JOIN asset_types t ON t.id = e.asset_type_id
               JOIN accounts d ON d.id = e.debit_account_id
               JOIN accounts c ON c.id = e.credit_account_id
               JOIN postings pd ON pd.account_id = e.debit_account_id AND pd.entry_seq = e.seq
               JOIN postings pc ON pc.account_id = e.credit_account_id AND pc.entry_seq = e.seq
               LEFT JOIN ledger_entries rv ON rv.seq = e.reverses_seq
               LEFT JOIN holds hh ON hh.seq = e.hold_seq
              WHERE e.request_id = $1
              ORDER BY e.seq",
            &[&request_id],
        )?
        .iter()
        .map(|row| {
            let reverses = match (
                row.get::<_, Option<String>>(9),
                row.get::<_, Option<String>>(10),
            ) {
                (Some(id), Some(kind)) => Some((id, stored_kind(&kind)?)),
                _ => None,
            };
            Ok(RecordedEntry {
                parts: super::parts::read(row.get(16))?,
                seq: row.get(0),
                id: row.get(1),
                kind: stored_kind(&row.get::<_, String>(2))?,
                asset_symbol: row.get(3),
                amount: row.get(4),
                debit: party(row.get(5)),
                credit: party(row.get(6)),
                debit_balance_after: row.get::<_, Option<i64>>(7).unwrap_or(0),
                credit_balance_after: row.get::<_, Option<i64>>(8).unwrap_or(0),
                reverses,
                hold_id: row.get(15),
                idempotency_key: key.to_owned(),
                reference_id: row.get(11),
                note: row.get(12),
                metadata: stored_metadata(row.get(13))?,
                created_at_ms: row.get(14),
            })
        })
        .collect()
}

/// Every column of a hold, the entry its capture made, and its account,
/// from `holds h` through `HOLD_JOINS`.
const HOLD_FIELDS: &str = "h.seq, h.id::text, h.user_id, h.asset_type_id::text, t.symbol,
        h.amount, h.status, h.captured_amount, ce.id::text, h.expires_at, h.created_at,
        h.closed_at, r.key, h.reference_id, h.note, h.metadata::text, h.account_id, h.parts";

/// The joins `HOLD_FIELDS` reads through, from `holds h`.
const HOLD_JOINS: &str = "JOIN asset_types t ON t.id = h.asset_type_id
   JOIN idempotency_records r ON r.id = h.request_id
   LEFT JOIN ledger_entries ce ON ce.hold_seq = h.seq";

/// A hold as stored, and its account's id.
fn hold_row(row: &Row) -> Result<(HoldFact, i64), StorageError> {
    Ok((
        HoldFact {
            parts: super::parts::read(row.get(17))?,
            seq: row.get(0),
            id: row.get(1),
            user: row.get(2),
            asset_id: row.get(3),
            asset_symbol: row.get(4),
            amount: row.get(5),
            status: stored_status(&row.get::<_, String>(6))?,
            captured_amount: row.get(7),
            captured_by: row.get(8),
            expires_at_ms: row.get(9),
            created_at_ms: row.get(10),
            closed_at_ms: row.get(11),
            idempotency_key: row.get(12),
            reference_id: row.get(13),
            note: row.get(14),
            metadata: stored_metadata(row.get(15))?,
        },
        row.get(16),
    ))
}

/// The one hold `condition` (on `h`, with `$1`) names, if any.
pub(super) fn hold_where(
    client: &mut impl GenericClient,
    condition: &str,
    value: &(dyn ToSql + Sync),
) -> Result<Option<(HoldFact, i64)>, StorageError> {
    client
        .query_opt(
            &format!("SELECT {HOLD_FIELDS} FROM holds h {HOLD_JOINS} WHERE {condition}"),
            &[value],
        )?
        .as_ref()
        .map(hold_row)
        .transpose()
}

/// One hold by id, as it stands at `now_ms`.
pub fn hold(
    client: &mut impl GenericClient,
    id: &str,
    now_ms: i64,
) -> Result<HoldFact, LedgerError> {
    hold_where(client, "h.id = $1::text::uuid", &id)?
        .map(|(hold, _)| hold.seen_at(now_ms))
        .ok_or_else(|| Rejection::HoldNotFound.into())
}

/// A page of `user`'s holds, newest first, as they stand at `now_ms`
/// (see SQLite's `holds::user_holds` for how a filtered page is bounded).
pub fn user_holds(
    client: &mut impl GenericClient,
    user: &UserId,
    query: &HoldQuery,
    now_ms: i64,
) -> Result<HoldPage, LedgerError> {
    let mut tx = client.transaction()?;
    let has_wallet: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE owner_type = 'USER' AND owner_id = $1)",
            &[&user.as_str()],
        )?
        .get(0);
    if !has_wallet {
        return Err(Rejection::WalletNotFound.into());
    }
    let asset_id: Option<String> = match &query.asset {
        None => None,
        Some(asset) => {
            let (by, value) = match asset {
                AssetRef::Symbol(symbol) => ("symbol = $1", symbol.clone()),
                AssetRef::Id(id) => ("id = $1::text::uuid", id.to_string()),
            };
            let found = tx.query_opt(
                &format!("SELECT id::text FROM asset_types WHERE {by}"),
                &[&value],
            )?;
            Some(found.ok_or(Rejection::AssetNotFound)?.get(0))
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
    let rows = tx.query(
        &format!(
            "SELECT {HOLD_FIELDS} FROM holds h {HOLD_JOINS}
              WHERE h.user_id = $1 AND h.seq < $2 ORDER BY h.seq DESC LIMIT $3"
        ),
        &[&user.as_str(), &before_seq, &(window as i64)],
    )?;
    tx.commit()?;
    let mut items = Vec::new();
    let mut examined = 0usize;
    let mut last_examined: Option<i64> = None;
    for row in &rows {
        let (hold, _) = hold_row(row)?;
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
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| Cursor::after_entry(last.seq))
    } else if examined == window {
        last_examined.map(Cursor::after_entry)
    } else {
        None
    };
    Ok(HoldPage { items, next_cursor })
}

/// `GET /assets/{asset}/supply`: the sums of the asset's totals rows.
pub fn supply(client: &mut impl GenericClient, asset: &AssetRef) -> Result<SupplyRow, LedgerError> {
    let (by, key) = asset_condition(asset);
    let row = client
        .query_opt(
            &format!(
                "SELECT t.symbol, sum(s.treasury)::text, sum(s.topup)::text, sum(s.bonus)::text,
                        sum(s.spent)::text, sum(s.reversed)::text, sum(s.held)::text,
                        sum(s.holders)::bigint, max(s.last_entry_at), sum(s.paid)::text
                   FROM asset_types t
                   JOIN asset_totals s ON s.asset_type_id = t.id
                  WHERE {by}
                  GROUP BY t.symbol"
            ),
            &[&key],
        )?
        .ok_or(Rejection::AssetNotFound)?;
    // What users hold, of which the paid part; the rest is free.
    let outstanding = -numeric(&row, 1)?;
    let paid = numeric(&row, 9)?;
    Ok(SupplyRow {
        paid,
        free: outstanding - paid,
        expired: 0,
        asset_symbol: row.get(0),
        outstanding,
        topup: unsigned(numeric(&row, 2)?),
        bonus: unsigned(numeric(&row, 3)?),
        spent: unsigned(numeric(&row, 4)?),
        reversed: unsigned(numeric(&row, 5)?),
        held: i64::try_from(numeric(&row, 6)?).unwrap_or(i64::MAX),
        holders: row.get(7),
        as_of_ms: row.get(8),
    })
}

/// The condition naming `asset` on `asset_types t` (`$1`), and its value.
fn asset_condition(asset: &AssetRef) -> (&'static str, String) {
    match asset {
        AssetRef::Symbol(symbol) => ("t.symbol = $1", symbol.clone()),
        AssetRef::Id(id) => ("t.id = $1::text::uuid", id.to_string()),
    }
}

/// `GET /assets/{asset}/supply?at=`: the supply as it stood at `at_ms`,
/// counting the entries made at or before it. Each of the asset's shards
/// gives its newest history row at or before then (one index descent
/// each, see `004_supply_history.sql`), and the rows are summed; `held`
/// and `holders` are not kept back in time (0 here, left out of the
/// answer). `as_of_ms` is the newest such row's time: the last entry by
/// then that moved a figure of the supply.
pub fn supply_as_of(
    client: &mut impl GenericClient,
    asset: &AssetRef,
    at_ms: i64,
) -> Result<SupplyRow, LedgerError> {
    let (by, key) = asset_condition(asset);
    let row = client
        .query_opt(
            &format!(
                "SELECT t.symbol, coalesce(sum(h.treasury), 0)::text,
                        coalesce(sum(h.paid), 0)::text, coalesce(sum(h.topup), 0)::text,
                        coalesce(sum(h.bonus), 0)::text, coalesce(sum(h.spent), 0)::text,
                        coalesce(sum(h.reversed), 0)::text, max(h.created_at)
                   FROM asset_types t
                   JOIN asset_totals s ON s.asset_type_id = t.id
                   LEFT JOIN LATERAL (
                        SELECT * FROM supply_history h
                         WHERE h.asset_type_id = s.asset_type_id AND h.shard = s.shard
                           AND h.created_at <= $2
                         ORDER BY h.created_at DESC, h.n DESC
                         LIMIT 1) h ON true
                  WHERE {by}
                  GROUP BY t.symbol"
            ),
            &[&key, &at_ms],
        )?
        .ok_or(Rejection::AssetNotFound)?;
    let outstanding = -numeric(&row, 1)?;
    let paid = numeric(&row, 2)?;
    Ok(SupplyRow {
        paid,
        free: outstanding - paid,
        expired: 0,
        asset_symbol: row.get(0),
        outstanding,
        topup: unsigned(numeric(&row, 3)?),
        bonus: unsigned(numeric(&row, 4)?),
        spent: unsigned(numeric(&row, 5)?),
        reversed: unsigned(numeric(&row, 6)?),
        held: 0,
        holders: 0,
        as_of_ms: row.get(7),
    })
}

/// What a metrics scrape reads: the entries, and each asset's outstanding
/// and held totals.
pub fn ledger_figures(client: &mut impl GenericClient) -> Result<LedgerFigures, StorageError> {
    let entries: i64 = client
        .query_one("SELECT coalesce(max(seq), 0) FROM ledger_entries", &[])?
        .get(0);
    let assets = client
        .query(
            "SELECT t.symbol, (-sum(s.treasury))::text, sum(s.held)::text
               FROM asset_types t JOIN asset_totals s ON s.asset_type_id = t.id
              GROUP BY t.symbol ORDER BY t.symbol",
            &[],
        )?
        .iter()
        .map(|row| {
            Ok(AssetFigures {
                symbol: row.get(0),
                outstanding: i64::try_from(numeric(row, 1)?).unwrap_or(i64::MAX),
                held: i64::try_from(numeric(row, 2)?).unwrap_or(i64::MAX),
            })
        })
        .collect::<Result<_, StorageError>>()?;
    Ok(LedgerFigures {
        entries: u64::try_from(entries).unwrap_or(0),
        // PostgreSQL's write-ahead log is the server's own to watch.
        wal_bytes: 0,
        assets,
    })
}

/// Events after the cursor `after`, oldest first, at most `limit`. An
/// event row numbered `feed_seq` (in commit order) gives, for an entry,
/// one event per user account it touches, `2 * feed_seq` (debit) and
/// `2 * feed_seq + 1` (credit); for a hold's change, `2 * feed_seq`.
pub fn events_after(
    client: &mut impl GenericClient,
    after: i64,
    limit: usize,
) -> Result<Vec<EventRow>, StorageError> {
    let mut tx = client.transaction()?;
    let first = after / 2;
    let rows = limit as i64 + 1;
    let mut events: Vec<EventRow> = Vec::with_capacity(limit.min(1024));
    // The entries' events: each user posting of the window's entries.
    for row in tx.query(
        &format!(
            "SELECT v.feed_seq, {USER_ENTRY_COLUMNS}, t.symbol, u.owner_id
               FROM (SELECT feed_seq, entry_seq FROM events
                      WHERE feed_seq >= $1 ORDER BY feed_seq LIMIT $2) v
               JOIN postings p ON p.entry_seq = v.entry_seq
               JOIN accounts u ON u.id = p.account_id AND u.owner_type = 'USER'
               JOIN asset_types t ON t.id = u.asset_type_id
               {USER_ENTRY_JOINS}"
        ),
        &[&first, &rows],
    )? {
        let feed_seq: i64 = row.get(0);
        let delta: i64 = row.get(5);
        let id = feed_seq * 2 + i64::from(delta > 0);
        if id <= after {
            continue;
        }
        // The columns of `user_entry` start after the feed number.
        let entry = user_entry_at(&row, 1, row.get(16))?;
        events.push(EventRow {
            seq: id,
            kind: EventKind::TransactionCreated,
            created_at_ms: entry.created_at_ms,
            data: EventData::Transaction {
                user: row.get(17),
                entry,
            },
        });
    }
    // The holds' events.
    for row in tx.query(
        &format!(
            "SELECT {HOLD_FIELDS}, v.feed_seq, v.type
               FROM (SELECT feed_seq, hold_seq, type FROM events
                      WHERE feed_seq >= $1 ORDER BY feed_seq LIMIT $2) v
               JOIN holds h ON h.seq = v.hold_seq
               {HOLD_JOINS}"
        ),
        &[&first, &rows],
    )? {
        let feed_seq: i64 = row.get(18);
        let id = feed_seq * 2;
        if id <= after {
            continue;
        }
        let kind_text: String = row.get(19);
        let kind = EventKind::parse(&kind_text)
            .filter(|kind| *kind != EventKind::TransactionCreated)
            .ok_or_else(|| corrupt(format!("event {id} has type {kind_text:?}")))?;
        let (stored, _) = hold_row(&row)?;
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
    // The changes of rules.
    for row in tx.query(
        "SELECT v.feed_seq, t.id::text, t.symbol, t.name, t.decimals, t.created_at,
                c.spend_order, c.max_balance, c.limits::text, c.changed_at, c.user_id
           FROM (SELECT feed_seq, rule_change_seq FROM events
                  WHERE feed_seq >= $1 ORDER BY feed_seq LIMIT $2) v
           JOIN rule_changes c ON c.seq = v.rule_change_seq
           JOIN asset_types t ON t.id = c.asset_type_id",
        &[&first, &rows],
    )? {
        let id = row.get::<_, i64>(0) * 2;
        if id <= after {
            continue;
        }
        let changed_at: i64 = row.get(9);
        let user: Option<String> = row.get(10);
        let (kind, data) = match user {
            None => (
                EventKind::AssetRulesChanged,
                EventData::AssetRules(super::rules::change_asset_row(&row, 1)?),
            ),
            Some(user) => (
                EventKind::WalletRulesChanged,
                EventData::UserRules {
                    user,
                    asset_symbol: row.get(2),
                    rules: crate::domain::UserOverride {
                        max_balance: row.get(7),
                        limits: crate::store::stored_limits(
                            row.get::<_, Option<String>>(8).as_deref(),
                        )?,
                    },
                },
            ),
        };
        events.push(EventRow {
            seq: id,
            kind,
            created_at_ms: changed_at,
            data,
        });
    }
    tx.commit()?;
    events.sort_unstable_by_key(|event| event.seq);
    events.truncate(limit);
    Ok(events)
}

/// `user_entry` for a row whose entry columns start at `offset`.
fn user_entry_at(
    row: &Row,
    offset: usize,
    asset_symbol: String,
) -> Result<UserEntry, StorageError> {
    let delta: i64 = row.get(offset + 4);
    Ok(UserEntry {
        parts: super::parts::read(row.get(offset + 14))?,
        seq: row.get(offset),
        id: row.get(offset + 1),
        kind: stored_kind(&row.get::<_, String>(offset + 2))?,
        asset_symbol,
        amount: row.get(offset + 3),
        direction: if delta < 0 {
            Direction::Debit
        } else {
            Direction::Credit
        },
        balance_after: row.get::<_, Option<i64>>(offset + 5).unwrap_or(0),
        idempotency_key: row.get(offset + 6),
        reference_id: row.get(offset + 7),
        note: row.get(offset + 8),
        metadata: stored_metadata(row.get(offset + 9))?,
        created_at_ms: row.get(offset + 10),
        counterparty: row.get(offset + 11),
        reverses: row.get(offset + 12),
        hold_id: row.get(offset + 13),
    })
}

/// The largest cursor the feed has given out: the credit side of its
/// newest row, or 0 while it is empty.
pub fn events_end(client: &mut impl GenericClient) -> Result<i64, StorageError> {
    Ok(client
        .query_one("SELECT coalesce(max(feed_seq) * 2 + 1, 0) FROM events", &[])?
        .get(0))
}

/// The keys' generation: it changes whenever a key is added or revoked.
pub fn key_generation(client: &mut impl GenericClient) -> Result<i64, StorageError> {
    Ok(client
        .query_typed_one("SELECT generation FROM api_keys_generation", &[])?
        .get(0))
}

/// The active keys and the generation they belong to, read together.
pub fn load_keys(client: &mut impl GenericClient) -> Result<KeySnapshot, StorageError> {
    let mut tx = client.transaction()?;
    let generation = key_generation(&mut tx)?;
    let any_key_exists = tx
        .query_opt("SELECT 1 FROM api_keys LIMIT 1", &[])?
        .is_some();
    let rows = tx.query(
        "SELECT id, name, scopes, secret_sha256 FROM api_keys
          WHERE revoked_at IS NULL ORDER BY id LIMIT $1",
        &[&(API_KEYS_ACTIVE_MAX as i64)],
    )?;
    tx.commit()?;
    let mut active = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(1);
        let scopes: String = row.get(2);
        let digest: Vec<u8> = row.get(3);
        // A key the schema admits but `create` never writes fails closed.
        match (
            Scopes::parse(&scopes),
            <[u8; 32]>::try_from(digest.as_slice()),
        ) {
            (Ok(scopes), Ok(secret_sha256)) => active.push(ActiveKeyRow {
                id: row.get(0),
                name,
                scopes,
                secret_sha256,
            }),
            _ => {
                log::error!("api key {name:?} has unreadable scopes {scopes:?}; it is not accepted")
            }
        }
    }
    Ok(KeySnapshot {
        generation,
        any_key_exists,
        active,
    })
}

/// Every key, revoked ones included, by name.
pub fn keys(client: &mut impl GenericClient) -> Result<Vec<KeyListing>, StorageError> {
    Ok(client
        .query(
            "SELECT name, scopes, created_at, last_used_at, revoked_at FROM api_keys
              ORDER BY name LIMIT $1",
            &[&(API_KEYS_TOTAL_MAX as i64)],
        )?
        .iter()
        .map(|row| KeyListing {
            name: row.get(0),
            scopes: row.get(1),
            created_at_ms: row.get(2),
            last_used_at_ms: row.get(3),
            revoked_at_ms: row.get(4),
        })
        .collect())
}
