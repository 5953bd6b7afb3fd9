//! The JSON shapes of API.md's payloads.

use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::storage::reads::{AssetRow, BalanceRow};
use crate::storage::{Receipt, UserEntry};

/// RFC 3339, UTC, millisecond precision: `2026-11-23T10:15:30.123Z`.
pub fn format_timestamp(ms_since_epoch: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms_since_epoch) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&format).ok())
        // Only a stored time beyond the year 9999 could get here.
        .unwrap_or_else(|| "invalid".to_owned())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    asset: String,
    amount: i64,
    direction: &'static str,
    balance_after: i64,
    idempotency_key: String,
    reference_id: Option<String>,
    note: Option<String>,
    created_at: String,
}

impl From<UserEntry> for Transaction {
    fn from(entry: UserEntry) -> Self {
        Transaction {
            id: entry.id,
            kind: entry.kind.as_str(),
            asset: entry.asset_symbol,
            amount: entry.amount,
            direction: entry.direction.as_str(),
            balance_after: entry.balance_after,
            idempotency_key: entry.idempotency_key,
            reference_id: entry.reference_id,
            note: entry.note,
            created_at: format_timestamp(entry.created_at_ms),
        }
    }
}

#[derive(Serialize)]
pub struct ReceiptJson {
    transaction: Transaction,
    balance: i64,
}

impl From<Receipt> for ReceiptJson {
    fn from(receipt: Receipt) -> Self {
        ReceiptJson {
            transaction: receipt.transaction.into(),
            balance: receipt.balance,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    id: String,
    symbol: String,
    name: String,
    created_at: String,
}

impl From<AssetRow> for Asset {
    fn from(row: AssetRow) -> Self {
        Asset {
            id: row.id,
            symbol: row.symbol,
            name: row.name,
            created_at: format_timestamp(row.created_at_ms),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    asset: String,
    asset_type_id: String,
    name: String,
    balance: i64,
}

impl From<BalanceRow> for Balance {
    fn from(row: BalanceRow) -> Self {
        Balance {
            asset: row.asset_symbol,
            asset_type_id: row.asset_type_id,
            name: row.asset_name,
            balance: row.balance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_795_429_530_123),
            "2026-11-23T10:25:30.123Z"
        );
        assert_eq!(
            format_timestamp(1_000_000_000_007),
            "2001-09-09T01:46:40.007Z"
        );
    }
}
