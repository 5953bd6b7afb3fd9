//! Rules on value on PostgreSQL (`migrations/postgres/002_limits.sql`): the
//! rules in force, their changes, and the sums of a cap's window. The
//! writer's hot reads (`RULES_IN_FORCE`, `NEWEST_TOTAL`, `TOTAL_AT`) are
//! prepared once on its connection; the rest run on any client.

use postgres::{GenericClient, Row, Transaction};

use super::migrate::check_current;
use super::{connect, PostgresUrl};
use crate::clock::now_ms;
use crate::domain::Caller;
use crate::ledger::Rejection;
use crate::store::write::{self, RulesTransaction};
use crate::store::{RulesChange, RulesOutcome};

use crate::domain::{AssetRef, AssetRules, Limits, RulesInForce, SpendOrder, UserOverride};
use crate::ledger::engine::AssetRow;
use crate::store::write::RulesChangeRow;
use crate::store::{stored_limits, StorageError, UserRulesRow};

/// Totals are kept as high * 2^53 + low (see the migration).
pub(super) const TOTAL_SPLIT: i128 = 1 << 53;

const ASSET_WITH_RULES: &str = "SELECT t.id::text, t.symbol, t.name, t.decimals, t.created_at,
            r.spend_order, r.max_balance, r.limits::text, r.updated_at
       FROM asset_types t LEFT JOIN asset_rules r ON r.asset_type_id = t.id";

/// The rules in force for a user ($1) in an asset ($2): two primary-key
/// look-ups in one statement.
pub(super) const RULES_IN_FORCE: &str =
    "SELECT r.max_balance, r.limits::text, u.max_balance, u.limits::text, r.spend_order
       FROM (SELECT $2::text::uuid AS asset_type_id) x
       LEFT JOIN asset_rules r ON r.asset_type_id = x.asset_type_id
       LEFT JOIN user_rules u ON u.user_id = $1 AND u.asset_type_id = x.asset_type_id";

/// The newest running total of a kind ($2) for an account ($1) with its
/// time, and the total as it stood at an instant ($3): two descents of the
/// key, one round trip.
pub(super) const TOTALS: &str =
    "SELECT (SELECT ARRAY[total_high, total_low, created_at] FROM window_totals
              WHERE account_id = $1 AND kind = $2
              ORDER BY created_at DESC, total_high DESC, total_low DESC LIMIT 1),
            (SELECT ARRAY[total_high, total_low] FROM window_totals
              WHERE account_id = $1 AND kind = $2 AND created_at <= $3
              ORDER BY created_at DESC, total_high DESC, total_low DESC LIMIT 1)";

/// An asset row read with `ASSET_WITH_RULES`.
pub(super) fn asset_row(row: &Row) -> Result<AssetRow, StorageError> {
    change_asset_row(row, 0)
}

/// An asset and its rules from nine columns from `first`, in the order of
/// `ASSET_WITH_RULES`.
pub(super) fn change_asset_row(row: &Row, first: usize) -> Result<AssetRow, StorageError> {
    let spend_order: Option<String> = row.get(first + 5);
    let limits: Option<String> = row.get(first + 7);
    let rules = match spend_order {
        None => AssetRules::default(),
        Some(order) => AssetRules {
            spend_order: SpendOrder::parse(&order)
                .map_err(|error| StorageError::Backend(error.0.into()))?,
            max_balance: row.get(first + 6),
            limits: stored_limits(limits.as_deref())?.unwrap_or_default(),
            updated_at_ms: row.get(first + 8),
        },
    };
    let decimals: i16 = row.get(first + 3);
    Ok(AssetRow {
        id: row.get(first),
        symbol: row.get(first + 1),
        name: row.get(first + 2),
        decimals: u8::try_from(decimals)
            .map_err(|_| StorageError::Backend("an asset's decimals out of range".into()))?,
        created_at_ms: row.get(first + 4),
        rules,
    })
}

/// Every asset with its rules, by symbol.
pub(super) fn assets(client: &mut impl GenericClient) -> Result<Vec<AssetRow>, StorageError> {
    client
        .query(&format!("{ASSET_WITH_RULES} ORDER BY t.symbol"), &[])?
        .iter()
        .map(asset_row)
        .collect()
}

/// The asset with this symbol, with its rules.
pub(super) fn asset_by_symbol(
    client: &mut impl GenericClient,
    symbol: &str,
) -> Result<Option<AssetRow>, StorageError> {
    client
        .query_opt(
            &format!("{ASSET_WITH_RULES} WHERE t.symbol = $1"),
            &[&symbol],
        )?
        .as_ref()
        .map(asset_row)
        .transpose()
}

pub(super) fn asset_with_rules(
    client: &mut impl GenericClient,
    asset: &AssetRef,
) -> Result<Option<AssetRow>, StorageError> {
    match asset {
        AssetRef::Symbol(symbol) => asset_by_symbol(client, symbol),
        AssetRef::Id(id) => client
            .query_opt(
                &format!("{ASSET_WITH_RULES} WHERE t.id = $1::text::uuid"),
                &[&id.to_string()],
            )?
            .as_ref()
            .map(asset_row)
            .transpose(),
    }
}

pub(super) fn user_override(
    client: &mut impl GenericClient,
    user: &str,
    asset_id: &str,
) -> Result<UserOverride, StorageError> {
    let row = client.query_opt(
        "SELECT max_balance, limits::text FROM user_rules
          WHERE user_id = $1 AND asset_type_id = $2::text::uuid",
        &[&user, &asset_id],
    )?;
    Ok(match row {
        None => UserOverride::default(),
        Some(row) => UserOverride {
            max_balance: row.get(0),
            limits: stored_limits(row.get::<_, Option<String>>(1).as_deref())?,
        },
    })
}

pub(super) fn write_change(
    client: &mut impl GenericClient,
    change: &RulesChangeRow<'_>,
) -> Result<(), StorageError> {
    client.execute(
        "INSERT INTO rule_changes (asset_type_id, user_id, spend_order, max_balance, limits,
                                   changed_at, changed_by)
         VALUES ($1::text::uuid, $2, $3, $4, $5::text::jsonb, $6, $7)",
        &[
            &change.asset_id,
            &change.user,
            &change.spend_order.map(SpendOrder::as_str),
            &change.max_balance,
            &change.limits.map(Limits::to_json),
            &change.changed_at_ms,
            &change.changed_by,
        ],
    )?;
    Ok(())
}

/// The rules in force for `user` in every asset, by symbol.
pub(super) fn user_rules(
    client: &mut impl GenericClient,
    user: &str,
) -> Result<Vec<UserRulesRow>, StorageError> {
    client
        .query(
            "SELECT t.symbol, r.max_balance, r.limits::text, u.max_balance, u.limits::text,
                    r.spend_order
               FROM asset_types t
               LEFT JOIN asset_rules r ON r.asset_type_id = t.id
               LEFT JOIN user_rules u ON u.user_id = $1 AND u.asset_type_id = t.id
              ORDER BY t.symbol",
            &[&user],
        )?
        .iter()
        .map(|row| {
            Ok(UserRulesRow {
                asset_symbol: row.get(0),
                in_force: in_force(row, 1)?,
            })
        })
        .collect()
}

/// The rules in force from five columns from `first`: the asset's maximum
/// and limits, the user's, then the asset's spend order.
pub(super) fn in_force(row: &Row, first: usize) -> Result<RulesInForce, StorageError> {
    // The asset's spend order decides which parts a debit takes.
    let spend_order = match row.get::<_, Option<String>>(first + 4) {
        Some(order) => SpendOrder::parse(&order)
            .map_err(|_| StorageError::Backend(format!("a stored spend order {order:?}").into()))?,
        None => SpendOrder::default(),
    };
    let asset = AssetRules {
        max_balance: row.get(first),
        limits: stored_limits(row.get::<_, Option<String>>(first + 1).as_deref())?
            .unwrap_or_default(),
        spend_order,
        ..AssetRules::default()
    };
    let user = UserOverride {
        max_balance: row.get(first + 2),
        limits: stored_limits(row.get::<_, Option<String>>(first + 3).as_deref())?,
    };
    Ok(RulesInForce::of(&asset, Some(&user)))
}

/// A running total from its two stored parts (and a time, ignored).
pub(super) fn total(parts: Option<Vec<i64>>) -> i128 {
    match parts.as_deref() {
        Some([high, low, ..]) => i128::from(*high) * TOTAL_SPLIT + i128::from(*low),
        _ => 0,
    }
}

/// The time of the newest row, from `TOTALS`' first column.
pub(super) fn made_at(parts: &Option<Vec<i64>>) -> Option<i64> {
    parts.as_deref().and_then(|parts| parts.get(2).copied())
}

/// The rules' side of one PostgreSQL write transaction, for the writer and
/// the command line alike.
pub(super) struct PgRules<'a, 't>(pub &'a mut Transaction<'t>);

impl RulesTransaction for PgRules<'_, '_> {
    fn asset_with_rules(&mut self, asset: &AssetRef) -> Result<Option<AssetRow>, StorageError> {
        // Changes of rules take turns across instances: each merges into
        // the rules as the one before left them.
        self.0.execute(
            "SELECT pg_advisory_xact_lock(hashtext('wallet.rules'))",
            &[],
        )?;
        asset_with_rules(self.0, asset)
    }

    fn user_override(&mut self, user: &str, asset_id: &str) -> Result<UserOverride, StorageError> {
        user_override(self.0, user, asset_id)
    }

    fn write_rules_change(&mut self, change: &RulesChangeRow<'_>) -> Result<(), StorageError> {
        write_change(self.0, change)
    }

    fn user_rules(&mut self, user: &str) -> Result<Vec<UserRulesRow>, StorageError> {
        user_rules(self.0, user)
    }
}

/// `wallet assets rules` on PostgreSQL: in force for every instance's
/// next write once committed.
pub fn change(
    url: &PostgresUrl,
    change: RulesChange,
) -> anyhow::Result<Result<RulesOutcome, Rejection>> {
    let mut client = connect(url)?;
    check_current(&mut client)?;
    let mut tx = client.transaction()?;
    let outcome = write::change_rules(&mut PgRules(&mut tx), &change, Caller::Anonymous, now_ms())?;
    tx.commit()?;
    Ok(outcome)
}
