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
        "SELECT t.symbol, r.max_balance, r.limits, u.max_balance, u.limits
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
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(symbol, max, limits, user_max, user_limits)| {
            Ok(UserRulesRow {
                asset_symbol: symbol,
                in_force: in_force(max, limits, user_max, user_limits)?,
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
) -> Result<RulesInForce, StorageError> {
    let asset = AssetRules {
        max_balance,
        limits: stored_limits(limits.as_deref())?.unwrap_or_default(),
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
    let (max, limits, user_max, user_limits) = conn
        .prepare_cached(
            "SELECT r.max_balance, r.limits, u.max_balance, u.limits
               FROM (SELECT ?2 AS asset_type_id) x
               LEFT JOIN asset_rules r ON r.asset_type_id = x.asset_type_id
               LEFT JOIN user_rules u ON u.user_id = ?1 AND u.asset_type_id = x.asset_type_id",
        )?
        .query_row([user, asset_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
    in_force(max, limits, user_max, user_limits)
}

fn total(high: i64, low: i64) -> i128 {
    i128::from(high) * TOTAL_SPLIT + i128::from(low)
}

/// The newest running total of `kind` for the account, and the one as it
/// stood at `at_ms` (0 before the first).
fn totals(
    conn: &Connection,
    account_id: i64,
    kind: LimitedKind,
    at_ms: i64,
) -> Result<(i128, i128), StorageError> {
    let newest: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT total_high, total_low FROM window_totals
              WHERE account_id = ?1 AND kind = ?2
              ORDER BY total_high DESC, total_low DESC LIMIT 1",
        )?
        .query_row(params![account_id, kind.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((high, low)) = newest else {
        return Ok((0, 0));
    };
    let then: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT total_high, total_low FROM window_totals
              WHERE account_id = ?1 AND kind = ?2 AND created_at <= ?3
              ORDER BY created_at DESC, total_high DESC, total_low DESC LIMIT 1",
        )?
        .query_row(params![account_id, kind.as_str(), at_ms], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    Ok((
        total(high, low),
        then.map_or(0, |(high, low)| total(high, low)),
    ))
}

pub(super) fn window_used(
    conn: &Connection,
    account_id: i64,
    kind: LimitedKind,
    since_ms: i64,
) -> Result<i64, StorageError> {
    let (newest, then) = totals(conn, account_id, kind, since_ms)?;
    Ok(i64::try_from(newest - then).unwrap_or(i64::MAX))
}

pub(super) fn window_frees_at(
    conn: &Connection,
    account_id: i64,
    kind: LimitedKind,
    since_ms: i64,
    must_leave: i64,
) -> Result<Option<i64>, StorageError> {
    let (_, then) = totals(conn, account_id, kind, since_ms)?;
    let target = then + i128::from(must_leave);
    let (high, low) = (
        i64::try_from(target / TOTAL_SPLIT).unwrap_or(i64::MAX),
        (target % TOTAL_SPLIT) as i64,
    );
    Ok(conn
        .prepare_cached(
            "SELECT created_at FROM window_totals
              WHERE account_id = ?1 AND kind = ?2 AND (total_high, total_low) >= (?3, ?4)
              ORDER BY total_high, total_low LIMIT 1",
        )?
        .query_row(params![account_id, kind.as_str(), high, low], |row| {
            row.get(0)
        })
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
