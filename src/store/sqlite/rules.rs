//! Rules on value in SQLite (`migrations/006_limits.sql`): the rules in
//! force, their changes, and the sums of a cap's window, each a few index
//! descents.

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::{
    AssetRef, AssetRules, LimitedKind, Limits, RulesInForce, SpendOrder, UserOverride,
};
use crate::ledger::engine::AssetRow;
use crate::store::write::RulesChangeRow;
use crate::store::{stored_limits, EventData, EventKind, StorageError, UserRulesRow};

/// Totals are kept as high * 2^53 + low (see the migration).
const TOTAL_SPLIT: i128 = 1 << 53;

/// The columns of an asset with its rules, for `asset_row`.
pub(super) const ASSET_WITH_RULES: &str = "SELECT t.id, t.symbol, t.name, t.decimals, t.created_at,
            r.spend_order, r.max_balance, r.limits, r.updated_at
       FROM asset_types t LEFT JOIN asset_rules r ON r.asset_type_id = t.id";

/// An asset row read with `ASSET_WITH_RULES`; no rules row is the default
/// rules, never set.
pub(super) fn asset_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AssetRow> {
    let spend_order: Option<String> = row.get(5)?;
    let limits: Option<String> = row.get(7)?;
    let rules = match spend_order {
        None => AssetRules::default(),
        Some(order) => AssetRules {
            spend_order: SpendOrder::parse(&order).map_err(|error| invalid(5, error.0))?,
            max_balance: row.get(6)?,
            limits: stored_limits(limits.as_deref())
                .map_err(|error| invalid(7, error.to_string()))?
                .unwrap_or_default(),
            updated_at_ms: row.get(8)?,
        },
    };
    Ok(AssetRow {
        id: row.get(0)?,
        symbol: row.get(1)?,
        name: row.get(2)?,
        decimals: row.get(3)?,
        created_at_ms: row.get(4)?,
        rules,
    })
}

fn invalid(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

/// The asset `asset` names, with its rules.
pub(super) fn asset_with_rules(
    conn: &Connection,
    asset: &AssetRef,
) -> Result<Option<AssetRow>, StorageError> {
    let found = match asset {
        AssetRef::Symbol(symbol) => conn
            .prepare_cached(&format!("{ASSET_WITH_RULES} WHERE t.symbol = ?1"))?
            .query_row([symbol], asset_row)
            .optional()?,
        AssetRef::Id(id) => conn
            .prepare_cached(&format!("{ASSET_WITH_RULES} WHERE t.id = ?1"))?
            .query_row([id.to_string()], asset_row)
            .optional()?,
    };
    Ok(found)
}

pub(super) fn user_override(
    conn: &Connection,
    user: &str,
    asset_id: &str,
) -> Result<UserOverride, StorageError> {
    let row: Option<(Option<i64>, Option<String>)> = conn
        .prepare_cached(
            "SELECT max_balance, limits FROM user_rules WHERE user_id = ?1 AND asset_type_id = ?2",
        )?
        .query_row([user, asset_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(match row {
        None => UserOverride::default(),
        Some((max_balance, limits)) => UserOverride {
            max_balance,
            limits: stored_limits(limits.as_deref())?,
        },
    })
}

pub(super) fn write_change(
    conn: &Connection,
    change: &RulesChangeRow<'_>,
) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO rule_changes (asset_type_id, user_id, spend_order, max_balance, limits,
                                   changed_at, changed_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        change.asset_id,
        change.user,
        change.spend_order.map(SpendOrder::as_str),
        change.max_balance,
        change.limits.map(Limits::to_json),
        change.changed_at_ms,
        change.changed_by,
    ])?;
    Ok(())
}

/// The rules in force for `user` in every asset, by symbol.
pub(super) fn user_rules(conn: &Connection, user: &str) -> Result<Vec<UserRulesRow>, StorageError> {
    let mut statement = conn.prepare_cached(
        "SELECT t.symbol, r.max_balance, r.limits, u.max_balance, u.limits, r.spend_order
           FROM asset_types t
           LEFT JOIN asset_rules r ON r.asset_type_id = t.id
           LEFT JOIN user_rules u ON u.user_id = ?1 AND u.asset_type_id = t.id
          ORDER BY t.symbol",
    )?;
    let rows = statement
        .query_map([user], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<i64>>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(symbol, max, limits, user_max, user_limits, order)| {
            Ok(UserRulesRow {
                asset_symbol: symbol,
                in_force: in_force(max, limits, user_max, user_limits, order)?,
            })
        })
        .collect()
}

/// The rules in force from the stored columns of an asset's rules and a
/// user's override.
fn in_force(
    max_balance: Option<i64>,
    limits: Option<String>,
    user_max_balance: Option<i64>,
    user_limits: Option<String>,
    spend_order: Option<String>,
) -> Result<RulesInForce, StorageError> {
    let spend_order = match spend_order {
        Some(order) => SpendOrder::parse(&order).map_err(|_| {
            StorageError::Backend(format!("a stored spend order is unreadable: {order}").into())
        })?,
        None => SpendOrder::default(),
    };
    let asset = AssetRules {
        max_balance,
        limits: stored_limits(limits.as_deref())?.unwrap_or_default(),
        spend_order,
        ..AssetRules::default()
    };
    let user = UserOverride {
        max_balance: user_max_balance,
        limits: stored_limits(user_limits.as_deref())?,
    };
    Ok(RulesInForce::of(&asset, Some(&user)))
}

/// The rules in force for `user` in `asset_id`: one statement, two
/// primary-key look-ups.
pub(super) fn rules_in_force(
    conn: &Connection,
    user: &str,
    asset_id: &str,
) -> Result<RulesInForce, StorageError> {
    let (max, limits, user_max, user_limits, order) = conn
        .prepare_cached(
            "SELECT r.max_balance, r.limits, u.max_balance, u.limits, r.spend_order
               FROM (SELECT ?2 AS asset_type_id) x
               LEFT JOIN asset_rules r ON r.asset_type_id = x.asset_type_id
               LEFT JOIN user_rules u ON u.user_id = ?1 AND u.asset_type_id = x.asset_type_id",
        )?
        .query_row([user, asset_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?;
    in_force(max, limits, user_max, user_limits, order)
}

fn total(high: i64, low: i64) -> i128 {
    i128::from(high) * TOTAL_SPLIT + i128::from(low)
}

/// A posting, with its running totals computed from the account's posting
/// before it: ?5 names the type this posting counts (`counted_kind`), ?6
/// its amount, ?7 the paid part it moves. On a user's posting the totals
/// are what the caps read; on a Treasury's, every TOPUP, BONUS and SPEND of
/// the asset passes through it, so they are the asset's supply totals as
/// they stood (`GET /assets/{asset}/supply?at=`). One descent of the
/// postings' key, on the page the balance's check has just read.
pub(super) const INSERT_POSTING: &str =
    "INSERT INTO postings (account_id, entry_seq, delta, balance_after,
                           topup_high, topup_low, bonus_high, bonus_low,
                           spend_high, spend_low, transfer_high, transfer_low, paid_after)
     SELECT ?1, ?2, ?3, ?4,
            t.topup_high + (t.topup_low + t.topup) / 9007199254740992,
            (t.topup_low + t.topup) % 9007199254740992,
            t.bonus_high + (t.bonus_low + t.bonus) / 9007199254740992,
            (t.bonus_low + t.bonus) % 9007199254740992,
            t.spend_high + (t.spend_low + t.spend) / 9007199254740992,
            (t.spend_low + t.spend) % 9007199254740992,
            t.transfer_high + (t.transfer_low + t.transfer) / 9007199254740992,
            (t.transfer_low + t.transfer) % 9007199254740992,
            t.paid_after + ?7
       FROM (SELECT coalesce(p.paid_after, 0) AS paid_after, coalesce(p.topup_high, 0) AS topup_high, coalesce(p.topup_low, 0) AS topup_low,
                    coalesce(p.bonus_high, 0) AS bonus_high, coalesce(p.bonus_low, 0) AS bonus_low,
                    coalesce(p.spend_high, 0) AS spend_high, coalesce(p.spend_low, 0) AS spend_low,
                    coalesce(p.transfer_high, 0) AS transfer_high,
                    coalesce(p.transfer_low, 0) AS transfer_low,
                    CASE WHEN ?5 = 'TOPUP' THEN ?6 ELSE 0 END AS topup,
                    CASE WHEN ?5 = 'BONUS' THEN ?6 ELSE 0 END AS bonus,
                    CASE WHEN ?5 = 'SPEND' THEN ?6 ELSE 0 END AS spend,
                    CASE WHEN ?5 = 'TRANSFER' THEN ?6 ELSE 0 END AS transfer
               FROM (SELECT 1) one
               LEFT JOIN (SELECT * FROM postings WHERE account_id = ?1
                           ORDER BY entry_seq DESC LIMIT 1) p ON 1) t";

/// The type a posting of an entry of `kind` counts: on a user's account,
/// if it is the side that type counts (TOPUP and BONUS the credited user,
/// SPEND and TRANSFER the debited one); on a Treasury's, TOPUP, BONUS and
/// SPEND, whichever side (a Treasury is never in a TRANSFER).
pub(super) fn counted_kind(
    kind: crate::domain::EntryKind,
    credited_side: bool,
    user: bool,
) -> Option<&'static str> {
    LimitedKind::of(kind)
        .filter(|limited| !user || limited.counts_the_credited_user() == credited_side)
        .map(LimitedKind::as_str)
}

/// The running total of `kind` of the account's last posting, of all of
/// them (`before_seq` None) or of those of entries numbered at most
/// `before_seq`; 0 before the first.
fn total_through(
    conn: &Connection,
    account_id: i64,
    kind: LimitedKind,
    before_seq: Option<i64>,
) -> Result<i128, StorageError> {
    let sql = "SELECT topup_high, topup_low, bonus_high, bonus_low, spend_high, spend_low,
                      transfer_high, transfer_low
                 FROM postings WHERE account_id = ?1 AND entry_seq <= ?2
                ORDER BY entry_seq DESC LIMIT 1";
    let row: Option<[Option<i64>; 8]> = conn
        .prepare_cached(sql)?
        .query_row(params![account_id, before_seq.unwrap_or(i64::MAX)], |row| {
            let mut columns = [None; 8];
            for (index, column) in columns.iter_mut().enumerate() {
                *column = row.get(index)?;
            }
            Ok(columns)
        })
        .optional()?;
    let Some(columns) = row else {
        return Ok(0);
    };
    let at = match kind {
        LimitedKind::Topup => 0,
        LimitedKind::Bonus => 2,
        LimitedKind::Spend => 4,
        LimitedKind::Transfer => 6,
    };
    Ok(total(
        columns[at].unwrap_or(0),
        columns[at + 1].unwrap_or(0),
    ))
}

/// The last entry made at or before `at_ms`: entries are numbered in the
/// order of the writer's clock, which never goes back. One descent of the
/// entries' time index.
fn last_entry_at(conn: &Connection, at_ms: i64) -> Result<Option<i64>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT seq FROM ledger_entries WHERE created_at <= ?1
              ORDER BY created_at DESC, seq DESC LIMIT 1",
        )?
        .query_row([at_ms], |row| row.get(0))
        .optional()?)
}

pub(super) fn window_used(
    conn: &Connection,
    account_id: i64,
    kind: LimitedKind,
    since_ms: i64,
) -> Result<i64, StorageError> {
    let newest = total_through(conn, account_id, kind, None)?;
    let then = match last_entry_at(conn, since_ms)? {
        Some(seq) => total_through(conn, account_id, kind, Some(seq))?,
        None => 0,
    };
    Ok(i64::try_from(newest - then).unwrap_or(i64::MAX))
}

/// A binary search over the account's postings for the first whose total
/// reaches what the window held at its start plus `must_leave`: about 40
/// descents at most, and only for a refused write.
pub(super) fn window_frees_at(
    conn: &Connection,
    account_id: i64,
    kind: LimitedKind,
    since_ms: i64,
    must_leave: i64,
) -> Result<Option<i64>, StorageError> {
    let start = last_entry_at(conn, since_ms)?;
    let target = match start {
        Some(seq) => total_through(conn, account_id, kind, Some(seq))?,
        None => 0,
    } + i128::from(must_leave);
    let newest: Option<i64> = conn
        .prepare_cached("SELECT max(entry_seq) FROM postings WHERE account_id = ?1")?
        .query_row([account_id], |row| row.get(0))?;
    let (Some(mut high), mut low) = (newest, start.unwrap_or(0)) else {
        return Ok(None);
    };
    if total_through(conn, account_id, kind, Some(high))? < target {
        return Ok(None);
    }
    // Invariant: the total through `low` is short of the target, through
    // `high` it is not.
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if total_through(conn, account_id, kind, Some(middle))? >= target {
            high = middle;
        } else {
            low = middle;
        }
    }
    Ok(conn
        .prepare_cached("SELECT created_at FROM ledger_entries WHERE seq = ?1")?
        .query_row([high], |row| row.get(0))
        .optional()?)
}

/// The event of the change `seq`: the asset with the rules it left, or the
/// user's own values it left, and when it was made.
pub(super) fn change_event(
    conn: &Connection,
    seq: i64,
) -> Result<Option<(EventKind, i64, EventData)>, StorageError> {
    let row = conn
        .prepare_cached(
            "SELECT t.id, t.symbol, t.name, t.decimals, t.created_at,
                    c.spend_order, c.max_balance, c.limits, c.changed_at, c.user_id
               FROM rule_changes c JOIN asset_types t ON t.id = c.asset_type_id
              WHERE c.seq = ?1",
        )?
        .query_row([seq], |row| {
            Ok((asset_row(row)?, row.get::<_, Option<String>>(9)?))
        })
        .optional()?;
    let Some((asset, user)) = row else {
        return Ok(None);
    };
    let changed_at = asset.rules.updated_at_ms.unwrap_or(asset.created_at_ms);
    Ok(Some(match user {
        None => (
            EventKind::AssetRulesChanged,
            changed_at,
            EventData::AssetRules(asset),
        ),
        Some(user) => {
            // A user's row has no spend order, so `asset_row` read it as
            // never set: its columns are read again as the override's.
            let (max_balance, limits, changed_at): (Option<i64>, Option<String>, i64) = conn
                .prepare_cached(
                    "SELECT max_balance, limits, changed_at FROM rule_changes WHERE seq = ?1",
                )?
                .query_row([seq], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            (
                EventKind::WalletRulesChanged,
                changed_at,
                EventData::UserRules {
                    user,
                    asset_symbol: asset.symbol,
                    rules: UserOverride {
                        max_balance,
                        limits: stored_limits(limits.as_deref())?,
                    },
                },
            )
        }
    }))
}
