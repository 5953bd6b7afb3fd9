//! The JSON shapes of API.md's payloads: what handlers send, and, through
//! their `ToSchema`, what the OpenAPI document says they send.

use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::ToSchema;

use crate::domain::{Direction, EntryKind};
use crate::limits::{
    AMOUNT_MAX, IDEMPOTENCY_KEY_CHARS_MAX, NOTE_CHARS_MAX, REFERENCE_ID_CHARS_MAX,
};
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

/// One ledger entry seen from the user's side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = entry_kind_schema)]
    kind: &'static str,
    /// The asset's symbol.
    asset: String,
    amount: i64,
    /// The user's side of the entry.
    #[schema(schema_with = direction_schema)]
    direction: &'static str,
    /// The user's balance in this asset right after this entry.
    balance_after: i64,
    idempotency_key: String,
    // Always sent, as null when absent (API.md).
    #[schema(required = true)]
    reference_id: Option<String>,
    #[schema(required = true)]
    note: Option<String>,
    /// RFC 3339, UTC, millisecond precision.
    created_at: String,
}

/// Strings drawn from a fixed set, listed from the code's own names.
fn one_of(names: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .build()
}

fn entry_kind_schema() -> Object {
    one_of(EntryKind::ALL.map(EntryKind::as_str))
}

fn direction_schema() -> Object {
    one_of(Direction::ALL.map(Direction::as_str))
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

/// The answer to a topup, bonus or spend.
#[derive(Serialize, ToSchema)]
#[schema(as = Receipt)]
pub struct ReceiptJson {
    transaction: Transaction,
    /// The user's balance in that asset after the entry.
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

#[derive(Serialize, ToSchema)]
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

/// One asset's row of a user's balances.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    /// The asset's symbol.
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

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(schema_with = ok_schema)]
    pub status: &'static str,
    #[schema(schema_with = ok_schema)]
    pub database: &'static str,
    /// The version of the running binary.
    pub version: &'static str,
}

fn ok_schema() -> Object {
    one_of(["ok"])
}

/// `GET /wallets/{userId}/balance`: one row per asset type.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balances {
    pub user_id: String,
    pub balances: Vec<Balance>,
}

/// A page of history, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionPage {
    pub items: Vec<Transaction>,
    /// Pass back as `cursor` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The body of a topup, bonus or spend.
// Handlers read the body field by field, to report every problem at once, so
// this type only describes it; an API test posts a body of each of its fields.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct EntryRequest {
    /// An asset symbol such as `GOLD`, or an asset id.
    asset: String,
    #[schema(schema_with = amount_schema)]
    amount: u64,
    #[schema(schema_with = idempotency_key_schema)]
    idempotency_key: Option<String>,
    #[schema(schema_with = reference_id_schema)]
    reference_id: Option<String>,
    #[schema(schema_with = note_schema)]
    note: Option<String>,
}

fn amount_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(AMOUNT_MAX as f64))
        .description(Some("In the asset's smallest unit; at most 2^53 - 1."))
        .build()
}

/// An optional string: absent and null mean "not given".
fn optional_text_schema(chars_max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(chars_max))
}

fn idempotency_key_schema() -> Object {
    optional_text_schema(IDEMPOTENCY_KEY_CHARS_MAX)
        .min_length(Some(1))
        .pattern(Some("^[!-~]+$"))
        .description(Some(
            "Visible ASCII. Required here or as the `Idempotency-Key` header; \
             the same in both when both are given.",
        ))
        .build()
}

fn reference_id_schema() -> Object {
    optional_text_schema(REFERENCE_ID_CHARS_MAX)
        .description(Some("The caller's own reference, such as an order id."))
        .build()
}

fn note_schema() -> Object {
    optional_text_schema(NOTE_CHARS_MAX)
        .description(Some("Free text."))
        .build()
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
