//! The JSON shapes of API.md's payloads: what handlers send, and, through
//! their `ToSchema`, what the OpenAPI document says they send.

use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::ToSchema;

use crate::domain::{AssetRules, Direction, EntryKind, LimitedKind, Limits, Scope, SpendOrder};
use crate::ledger::engine::{Answer, AssetRow, BalanceAfter, HoldFact, HoldStatus, UserEntry};
use crate::ledger::parts::{Part, PartKind};
use crate::limits::{
    AMOUNT_MAX, API_KEY_NAME_CHARS_MAX, ASSET_DECIMALS_MAX, ASSET_NAME_CHARS_MAX,
    ASSET_SYMBOL_CHARS_MAX, IDEMPOTENCY_KEY_CHARS_MAX, LIMIT_WINDOW_SECONDS, METADATA_BYTES_MAX,
    METADATA_KEYS_MAX, METADATA_KEY_CHARS_MAX, NOTE_CHARS_MAX, REFERENCE_ID_CHARS_MAX,
    USER_ID_CHARS_MAX,
};
use crate::store::{
    BalanceRow, EventData, EventRow, KeyListing, PartyRow, SupplyRow, TransactionDetail,
    UserRulesListing,
};

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
    /// The other user of a TRANSFER (or of the transfer a REVERSAL
    /// reverses); null where the other side is the Treasury.
    #[schema(required = true)]
    counterparty: Option<String>,
    /// The id a REVERSAL undoes; null otherwise.
    #[schema(required = true)]
    reverses: Option<String>,
    /// The hold a SPEND or TRANSFER captured; null otherwise.
    #[schema(required = true)]
    hold_id: Option<String>,
    idempotency_key: String,
    // Always sent, as null when absent (API.md).
    #[schema(required = true)]
    reference_id: Option<String>,
    #[schema(required = true)]
    note: Option<String>,
    #[schema(required = true, schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
    /// RFC 3339, UTC, millisecond precision.
    created_at: String,
    /// Which parts of the balance it took or gave, in the order taken; the
    /// amounts add up to `amount`.
    parts: Vec<PartJson>,
}

/// One part an entry moved (API.md, Paid, free and expiring currency).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Part)]
pub struct PartJson {
    #[schema(schema_with = part_kind_schema)]
    kind: &'static str,
    amount: i64,
    /// The lot's expiry; only for EXPIRING.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

fn part_kind_schema() -> Object {
    one_of(["PAID", "FREE", "EXPIRING"])
}

fn parts_json(parts: Vec<Part>) -> Vec<PartJson> {
    parts
        .into_iter()
        .map(|part| PartJson {
            kind: part.kind.as_str(),
            amount: part.amount,
            expires_at: match part.kind {
                PartKind::Expiring { expires_at_ms } => Some(format_timestamp(expires_at_ms)),
                PartKind::Paid | PartKind::Free => None,
            },
        })
        .collect()
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
            counterparty: entry.counterparty,
            reverses: entry.reverses,
            hold_id: entry.hold_id,
            idempotency_key: entry.idempotency_key,
            reference_id: entry.reference_id,
            note: entry.note,
            metadata: entry.metadata.map(|metadata| metadata.to_value()),
            created_at: format_timestamp(entry.created_at_ms),
            parts: parts_json(entry.parts),
        }
    }
}

fn metadata_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .max_properties(Some(METADATA_KEYS_MAX))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(METADATA_KEY_CHARS_MAX))
                .pattern(Some("^[A-Za-z0-9_.-]+$")),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(crate::limits::METADATA_VALUE_CHARS_MAX))
                .pattern(Some(NO_NUL_PATTERN)),
        ))
        .description(Some(format!(
            "The caller's own labels: at most {METADATA_KEYS_MAX} keys of 1-64 of \
             `A-Z a-z 0-9 _ . -`, string values of at most 256 characters but NUL, at most \
             {METADATA_BYTES_MAX} bytes as compact JSON; null when none. Key order does not \
             matter."
        )))
        .build()
}

/// The answer to a topup, bonus, spend, transfer or reversal.
#[derive(Serialize, ToSchema)]
#[schema(as = Receipt)]
pub struct ReceiptJson {
    transaction: Transaction,
    /// The user's balance in that asset after the entry.
    balance: i64,
    /// What of it holds do not set aside.
    available: i64,
}

/// A user's balance in one asset after a batch.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchBalance {
    user_id: String,
    /// The asset's symbol.
    asset: String,
    balance: i64,
    available: i64,
}

impl From<BalanceAfter> for BatchBalance {
    fn from(row: BalanceAfter) -> Self {
        BatchBalance {
            user_id: row.user,
            asset: row.asset_symbol,
            balance: row.balance,
            available: row.available,
        }
    }
}

/// The answer to a batch.
#[derive(Serialize, ToSchema)]
#[schema(as = BatchReceipt)]
pub struct BatchReceiptJson {
    /// One per operation, in order, each seen from its `userId`.
    transactions: Vec<Transaction>,
    /// One per (user, asset) touched, in the order first touched.
    balances: Vec<BatchBalance>,
}

/// A write's answer, whichever shape it has.
#[derive(Serialize)]
#[serde(untagged)]
pub enum AnswerJson {
    Entry(Box<ReceiptJson>),
    Batch(BatchReceiptJson),
    Hold(Box<HoldReceiptJson>),
    Capture(Box<CaptureReceiptJson>),
}

/// A hold (API.md's Hold object).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    id: String,
    user_id: String,
    /// The asset's symbol.
    asset: String,
    amount: i64,
    #[schema(schema_with = hold_status_schema)]
    status: &'static str,
    captured_amount: i64,
    /// The id of the transaction its capture made; null otherwise.
    #[schema(required = true)]
    captured_by: Option<String>,
    /// RFC 3339, UTC, millisecond precision.
    expires_at: String,
    created_at: String,
    /// When it was captured or voided, or its `expiresAt` once EXPIRED;
    /// null while HELD.
    #[schema(required = true)]
    closed_at: Option<String>,
    idempotency_key: String,
    #[schema(required = true)]
    reference_id: Option<String>,
    #[schema(required = true)]
    note: Option<String>,
    #[schema(required = true, schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
}

fn hold_status_schema() -> Object {
    one_of(HoldStatus::ALL.map(HoldStatus::as_str))
}

impl From<HoldFact> for Hold {
    fn from(hold: HoldFact) -> Self {
        Hold {
            id: hold.id,
            user_id: hold.user,
            asset: hold.asset_symbol,
            amount: hold.amount,
            status: hold.status.as_str(),
            captured_amount: hold.captured_amount,
            captured_by: hold.captured_by,
            expires_at: format_timestamp(hold.expires_at_ms),
            created_at: format_timestamp(hold.created_at_ms),
            closed_at: hold.closed_at_ms.map(format_timestamp),
            idempotency_key: hold.idempotency_key,
            reference_id: hold.reference_id,
            note: hold.note,
            metadata: hold.metadata.map(|metadata| metadata.to_value()),
        }
    }
}

/// The answer to a hold or a void: the hold, and its user's balance.
#[derive(Serialize, ToSchema)]
#[schema(as = HoldReceipt)]
pub struct HoldReceiptJson {
    hold: Hold,
    balance: i64,
    held: i64,
    available: i64,
}

/// The answer to a capture: the hold, its transaction seen from the hold's
/// user, and that user's balance after it.
#[derive(Serialize, ToSchema)]
#[schema(as = CaptureReceipt)]
pub struct CaptureReceiptJson {
    hold: Hold,
    transaction: Transaction,
    balance: i64,
    held: i64,
    available: i64,
}

/// A page of a user's holds, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldPageJson {
    pub items: Vec<Hold>,
    /// Pass back as `cursor` for the next page; null on the last one.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The body of `POST /wallets/{userId}/holds`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct HoldRequest {
    /// An asset symbol such as `GOLD`, or an asset id.
    #[schema(schema_with = asset_ref_schema)]
    asset: String,
    #[schema(schema_with = amount_schema)]
    amount: u64,
    #[schema(schema_with = idempotency_key_schema)]
    idempotency_key: Option<String>,
    /// 1 to 604800 (7 days); default 900.
    #[schema(minimum = 1, maximum = 604800)]
    expires_in_seconds: Option<u32>,
    #[schema(schema_with = reference_id_schema)]
    reference_id: Option<String>,
    #[schema(schema_with = note_schema)]
    note: Option<String>,
    #[schema(schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
}

/// The body of `POST /holds/{holdId}/capture`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct CaptureRequest {
    #[schema(schema_with = idempotency_key_schema)]
    idempotency_key: Option<String>,
    /// Default: the whole hold; at most the hold's amount.
    #[schema(schema_with = amount_schema)]
    amount: Option<u64>,
    /// A user to pay (a TRANSFER); absent: the Treasury (a SPEND).
    #[schema(schema_with = user_id_schema)]
    to: Option<String>,
    #[schema(schema_with = note_schema)]
    note: Option<String>,
    #[schema(schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
}

/// The body of `POST /holds/{holdId}/void`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct VoidRequest {
    #[schema(schema_with = idempotency_key_schema)]
    idempotency_key: Option<String>,
}

impl From<Answer> for AnswerJson {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Entry {
                transaction,
                balance,
                available,
            } => AnswerJson::Entry(Box::new(ReceiptJson {
                transaction: (*transaction).into(),
                balance,
                available,
            })),
            Answer::Batch {
                transactions,
                balances,
            } => AnswerJson::Batch(BatchReceiptJson {
                transactions: transactions.into_iter().map(Transaction::from).collect(),
                balances: balances.into_iter().map(BatchBalance::from).collect(),
            }),
            Answer::Hold {
                hold,
                balance,
                held,
                available,
            } => AnswerJson::Hold(Box::new(HoldReceiptJson {
                hold: (*hold).into(),
                balance,
                held,
                available,
            })),
            Answer::Capture {
                hold,
                transaction,
                balance,
                held,
                available,
            } => AnswerJson::Capture(Box::new(CaptureReceiptJson {
                hold: (*hold).into(),
                transaction: (*transaction).into(),
                balance,
                held,
                available,
            })),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    id: String,
    symbol: String,
    name: String,
    /// How to display amounts: `1050` with 2 decimals reads `10.50`.
    decimals: u8,
    created_at: String,
    rules: AssetRulesJson,
}

impl From<AssetRow> for Asset {
    fn from(row: AssetRow) -> Self {
        Asset {
            id: row.id,
            symbol: row.symbol,
            name: row.name,
            decimals: row.decimals,
            created_at: format_timestamp(row.created_at_ms),
            rules: AssetRulesJson::from(row.rules),
        }
    }
}

/// An asset's rules on value (API.md, Limits).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetRulesJson {
    /// Which part of a balance a debit takes first: free currency or paid.
    #[schema(schema_with = spend_order_schema)]
    spend_order: &'static str,
    /// The most a user's balance may reach by a credit; null: no maximum.
    #[schema(schema_with = max_balance_schema)]
    max_balance: Option<i64>,
    /// Caps on what one user's entries of a type add up to in a trailing
    /// window.
    limits: Vec<LimitJson>,
    /// When the rules were last changed; null until first set.
    updated_at: Option<String>,
}

impl From<AssetRules> for AssetRulesJson {
    fn from(rules: AssetRules) -> Self {
        AssetRulesJson {
            spend_order: rules.spend_order.as_str(),
            max_balance: rules.max_balance,
            limits: limits_json(&rules.limits),
            updated_at: rules.updated_at_ms.map(format_timestamp),
        }
    }
}

/// One cap: the amounts of one user's entries of `type` in the asset made
/// in the trailing `windowSeconds`, the new one included, may not pass `max`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitJson {
    /// TRANSFER counts what the user sent.
    #[serde(rename = "type")]
    #[schema(schema_with = limited_kind_schema)]
    kind: &'static str,
    #[schema(schema_with = window_seconds_schema)]
    window_seconds: u32,
    #[schema(schema_with = limit_max_schema)]
    max: i64,
}

fn limits_json(limits: &Limits) -> Vec<LimitJson> {
    limits
        .as_slice()
        .iter()
        .map(|limit| LimitJson {
            kind: limit.kind.as_str(),
            window_seconds: limit.window_seconds,
            max: limit.max,
        })
        .collect()
}

fn spend_order_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(SpendOrder::ALL.map(SpendOrder::as_str)))
        .build()
}

fn max_balance_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(0))
        .maximum(Some(AMOUNT_MAX as f64))
        .build()
}

fn limited_kind_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(LimitedKind::ALL.map(LimitedKind::as_str)))
        .build()
}

fn window_seconds_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(LIMIT_WINDOW_SECONDS.0))
        .maximum(Some(LIMIT_WINDOW_SECONDS.1))
        .build()
}

fn limit_max_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(AMOUNT_MAX as f64))
        .build()
}

/// `PUT /assets/{asset}/rules`: every field optional; an absent one keeps
/// its value, `null` (or `[]` for `limits`) clears it.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct AssetRulesRequest {
    #[schema(schema_with = spend_order_schema)]
    spend_order: Option<String>,
    #[schema(schema_with = max_balance_schema)]
    max_balance: Option<i64>,
    /// At most 8, no two with one type and window (a repeat is a
    /// `400 VALIDATION_ERROR` naming it); `null` or `[]` clears them.
    #[schema(max_items = 8, nullable)]
    limits: Option<Vec<LimitJson>>,
}

/// `PUT /wallets/{userId}/rules`: this user's own values in `asset`. An
/// absent field keeps the user's value; `null` removes it, so the asset's
/// applies again.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct UserRulesRequest {
    /// The asset's symbol or id.
    #[schema(schema_with = asset_ref_schema)]
    asset: String,
    #[schema(schema_with = max_balance_schema)]
    max_balance: Option<i64>,
    /// At most 8, no two with one type and window (a repeat is a
    /// `400 VALIDATION_ERROR` naming it); `[]` means no limits for this
    /// user, `null` the asset's.
    #[schema(max_items = 8, nullable)]
    limits: Option<Vec<LimitJson>>,
}

/// `GET /wallets/{userId}/rules`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRulesJson {
    user_id: String,
    /// One row per asset, by symbol.
    rules: Vec<UserRulesRowJson>,
}

/// The rules in force for the user in one asset.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRulesRowJson {
    asset: String,
    #[schema(schema_with = max_balance_schema)]
    max_balance: Option<i64>,
    limits: Vec<LimitJson>,
    /// Whether the user has values of its own in this asset.
    #[serde(rename = "override")]
    overridden: bool,
}

impl From<UserRulesListing> for UserRulesJson {
    fn from(listing: UserRulesListing) -> Self {
        UserRulesJson {
            user_id: listing.user,
            rules: listing
                .rows
                .into_iter()
                .map(|row| UserRulesRowJson {
                    asset: row.asset_symbol,
                    max_balance: row.in_force.max_balance,
                    limits: limits_json(&row.in_force.limits),
                    overridden: row.in_force.overridden,
                })
                .collect(),
        }
    }
}

/// `wallet.rules_changed`: a user's own values after the change (null
/// where the asset's apply).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserRulesChangedJson {
    user_id: String,
    asset: String,
    max_balance: Option<i64>,
    limits: Option<Vec<LimitJson>>,
}

/// A party to a transaction: a user, or the asset's Treasury.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    #[serde(rename = "type")]
    #[schema(schema_with = party_type_schema)]
    kind: &'static str,
    /// Present for a USER.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

fn party_type_schema() -> Object {
    one_of(["USER", "TREASURY"])
}

impl From<PartyRow> for Party {
    fn from(row: PartyRow) -> Self {
        match row {
            PartyRow::User(user) => Party {
                kind: "USER",
                user_id: Some(user),
            },
            PartyRow::Treasury => Party {
                kind: "TREASURY",
                user_id: None,
            },
        }
    }
}

/// `GET /transactions/{id}`: one entry, both sides.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TransactionDetail)]
pub struct TransactionDetailJson {
    id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = entry_kind_schema)]
    kind: &'static str,
    asset: String,
    amount: i64,
    debit: Party,
    credit: Party,
    #[schema(required = true)]
    reverses: Option<String>,
    /// How much of it later reversals have undone.
    reversed_amount: i64,
    #[schema(required = true)]
    hold_id: Option<String>,
    idempotency_key: String,
    #[schema(required = true)]
    reference_id: Option<String>,
    #[schema(required = true)]
    note: Option<String>,
    #[schema(required = true, schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
    created_at: String,
    /// Which parts of the user's balance it moved, in the order taken.
    parts: Vec<PartJson>,
}

impl From<TransactionDetail> for TransactionDetailJson {
    fn from(detail: TransactionDetail) -> Self {
        TransactionDetailJson {
            id: detail.id,
            kind: detail.kind.as_str(),
            asset: detail.asset_symbol,
            amount: detail.amount,
            debit: detail.debit.into(),
            credit: detail.credit.into(),
            reverses: detail.reverses,
            reversed_amount: detail.reversed_amount,
            hold_id: detail.hold_id,
            idempotency_key: detail.idempotency_key,
            reference_id: detail.reference_id,
            note: detail.note,
            metadata: detail.metadata.map(|metadata| metadata.to_value()),
            created_at: format_timestamp(detail.created_at_ms),
            parts: parts_json(detail.parts),
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
    /// Set aside by active holds; omitted from a balance `?at=` a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<i64>,
    /// `balance - held`: what spends, transfers and holds are checked
    /// against; omitted from a balance `?at=` a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<i64>,
    /// The part of `balance` bought (TOPUP); never expires.
    paid: i64,
    /// The part given (BONUS), the expiring lots included: `balance = paid + free`.
    free: i64,
    /// The expiring lots, soonest first (at most 100 shown); omitted from a
    /// balance `?at=` a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    expiring: Option<Vec<LotJson>>,
}

/// One expiring lot of a balance.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Lot)]
pub struct LotJson {
    amount: i64,
    expires_at: String,
}

impl From<BalanceRow> for Balance {
    fn from(row: BalanceRow) -> Self {
        Balance {
            asset: row.asset_symbol,
            asset_type_id: row.asset_type_id,
            name: row.asset_name,
            balance: row.balance,
            held: Some(row.held),
            available: Some(row.available),
            paid: row.paid,
            free: row.free,
            expiring: Some(
                row.expiring
                    .into_iter()
                    .map(|(amount, expires_at_ms)| LotJson {
                        amount,
                        expires_at: format_timestamp(expires_at_ms),
                    })
                    .collect(),
            ),
        }
    }
}

impl Balance {
    /// A balance as it stood at some instant: no holds or lots are told.
    pub fn as_it_stood(row: BalanceRow) -> Balance {
        Balance {
            held: None,
            available: None,
            expiring: None,
            ..Balance::from(row)
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
    #[schema(schema_with = asset_ref_schema)]
    asset: String,
    #[schema(schema_with = amount_schema)]
    amount: u64,
    #[schema(schema_with = idempotency_key_schema)]
    idempotency_key: Option<String>,
    #[schema(schema_with = reference_id_schema)]
    reference_id: Option<String>,
    #[schema(schema_with = note_schema)]
    note: Option<String>,
    #[schema(schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
}

/// The body of a transfer.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct TransferRequest {
    /// The recipient, another user than the path's; opened by the credit.
    #[schema(schema_with = user_id_schema)]
    to: String,
    /// An asset symbol such as `GOLD`, or an asset id.
    #[schema(schema_with = asset_ref_schema)]
    asset: String,
    #[schema(schema_with = amount_schema)]
    amount: u64,
    #[schema(schema_with = idempotency_key_schema)]
    idempotency_key: Option<String>,
    #[schema(schema_with = reference_id_schema)]
    reference_id: Option<String>,
    #[schema(schema_with = note_schema)]
    note: Option<String>,
    #[schema(schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
}

/// The body of a reversal.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct ReverseRequest {
    /// Default: all that is not reversed yet.
    #[schema(schema_with = amount_schema)]
    amount: Option<u64>,
    #[schema(schema_with = idempotency_key_schema)]
    idempotency_key: Option<String>,
    #[schema(schema_with = reference_id_schema)]
    reference_id: Option<String>,
    #[schema(schema_with = note_schema)]
    note: Option<String>,
    #[schema(schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
}

/// One operation of a batch: a transfer, which names its recipient, or a
/// topup, bonus or spend, which may not.
#[derive(ToSchema)]
#[serde(untagged)]
#[schema(as = BatchOperation)]
#[allow(dead_code)]
pub enum BatchOperationRequest {
    Transfer(BatchTransferRequest),
    Entry(BatchEntryRequest),
}

/// A transfer in a batch.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = BatchTransfer)]
#[allow(dead_code)]
pub struct BatchTransferRequest {
    #[serde(rename = "type")]
    #[schema(schema_with = transfer_type_schema)]
    kind: String,
    /// The sender.
    #[schema(schema_with = user_id_schema)]
    user_id: String,
    /// The recipient: another user than `userId` (400 otherwise).
    #[schema(schema_with = user_id_schema)]
    to: String,
    #[schema(schema_with = asset_ref_schema)]
    asset: String,
    #[schema(schema_with = amount_schema)]
    amount: u64,
    #[schema(schema_with = reference_id_schema)]
    reference_id: Option<String>,
    #[schema(schema_with = note_schema)]
    note: Option<String>,
    #[schema(schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
}

/// A topup, bonus or spend in a batch.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = BatchEntry)]
#[allow(dead_code)]
pub struct BatchEntryRequest {
    #[serde(rename = "type")]
    #[schema(schema_with = entry_type_schema)]
    kind: String,
    /// The user the operation credits or debits.
    #[schema(schema_with = user_id_schema)]
    user_id: String,
    #[schema(schema_with = asset_ref_schema)]
    asset: String,
    #[schema(schema_with = amount_schema)]
    amount: u64,
    /// For transfers only: here absent or null.
    #[schema(schema_with = null_schema)]
    to: Option<String>,
    #[schema(schema_with = reference_id_schema)]
    reference_id: Option<String>,
    #[schema(schema_with = note_schema)]
    note: Option<String>,
    #[schema(schema_with = metadata_schema)]
    metadata: Option<serde_json::Value>,
}

fn transfer_type_schema() -> Object {
    one_of(["transfer"])
}

fn entry_type_schema() -> Object {
    one_of(["topup", "bonus", "spend"])
}

fn null_schema() -> Object {
    ObjectBuilder::new().schema_type(Type::Null).build()
}

/// The body of a batch: at most 64 KiB.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct BatchRequest {
    #[schema(schema_with = idempotency_key_schema)]
    idempotency_key: Option<String>,
    #[schema(max_items = 100, min_items = 1)]
    operations: Vec<BatchOperationRequest>,
}

/// The body of `POST /assets`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct AssetRequest {
    #[schema(schema_with = symbol_schema)]
    symbol: String,
    #[schema(schema_with = asset_name_schema)]
    name: String,
    #[schema(schema_with = decimals_schema)]
    decimals: Option<u8>,
}

fn symbol_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(ASSET_SYMBOL_CHARS_MAX))
        .pattern(Some("^[A-Z0-9_]+$"))
        .build()
}

fn asset_name_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(ASSET_NAME_CHARS_MAX))
        // One or more characters, none of them NUL (`NO_NUL_PATTERN`).
        .pattern(Some("^[^\\u0000]+$"))
        .description(Some("Any characters but NUL."))
        .build()
}

fn decimals_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(0))
        .maximum(Some(u64::from(ASSET_DECIMALS_MAX)))
        .description(Some("Default 0."))
        .build()
}

fn user_id_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(USER_ID_CHARS_MAX))
        .pattern(Some(super::params::USER_ID_PATTERN))
        .build()
}

fn asset_ref_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(super::params::UUID_CHARS))
        .pattern(Some(super::params::asset_ref_pattern()))
        .description(Some(
            "An asset symbol such as `GOLD`, or an asset id (a UUID).",
        ))
        .build()
}

fn amount_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(AMOUNT_MAX))
        .description(Some(
            "In the asset's smallest unit; at most 2^53 - 1. A JSON integer as written: \
             `5.0` and `1e3` are refused (400), though JSON Schema counts them integers.",
        ))
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

/// Free text a caller gives holds any character but NUL
/// (`domain::refuse_nul`).
pub(super) const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";

fn reference_id_schema() -> Object {
    optional_text_schema(REFERENCE_ID_CHARS_MAX)
        .pattern(Some(NO_NUL_PATTERN))
        .description(Some(
            "The caller's own reference, such as an order id; any characters but NUL.",
        ))
        .build()
}

fn note_schema() -> Object {
    optional_text_schema(NOTE_CHARS_MAX)
        .pattern(Some(NO_NUL_PATTERN))
        .description(Some("Free text; any characters but NUL."))
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

/// An API key as listed (API.md: `GET /keys`): never its secret or digest.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ApiKey)]
pub struct ApiKeyJson {
    #[schema(schema_with = key_name_schema)]
    name: String,
    /// What the key may do, in the order read, spend, grant, admin.
    #[schema(schema_with = scopes_schema)]
    scopes: Vec<String>,
    /// RFC 3339, UTC, millisecond precision.
    created_at: String,
    /// When it was last used, written at most once a minute; null if never.
    #[schema(required = true)]
    last_used_at: Option<String>,
    /// When it was revoked (final); null while it is active.
    #[schema(required = true)]
    revoked_at: Option<String>,
}

impl From<KeyListing> for ApiKeyJson {
    fn from(key: KeyListing) -> Self {
        ApiKeyJson {
            scopes: key.scope_names().map(str::to_owned).collect(),
            name: key.name,
            created_at: format_timestamp(key.created_at_ms),
            last_used_at: key.last_used_at_ms.map(format_timestamp),
            revoked_at: key.revoked_at_ms.map(format_timestamp),
        }
    }
}

/// The answer to `POST /keys`: the key as listed, and its secret, which
/// is shown this once.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedKey)]
pub struct CreatedKeyJson {
    pub key: ApiKeyJson,
    /// `wk_` and 48 lower-case hex digits: send it as `Authorization:
    /// Bearer <secret>`. Only its digest is kept; it cannot be shown again.
    #[schema(pattern = "^wk_[0-9a-f]{48}$")]
    pub secret: String,
}

/// The body of `POST /keys`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct KeyRequest {
    /// Never used before, by any key, revoked ones included.
    #[schema(schema_with = key_name_schema)]
    name: String,
    #[schema(schema_with = scopes_schema)]
    scopes: Vec<String>,
}

fn key_name_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(API_KEY_NAME_CHARS_MAX))
        .pattern(Some("^[A-Za-z0-9_.-]+$"))
        .build()
}

fn scopes_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(one_of(Scope::ALL.map(Scope::as_str)))
        .min_items(Some(1))
        .max_items(Some(Scope::ALL.len()))
        .unique_items(true)
        .description(Some(
            "`read`, `spend`, `grant` and `admin` (every route), each at most once.",
        ))
        .build()
}

/// `GET /assets/{asset}/supply` (API.md). Supply figures are sums of many
/// balances and may pass 2^53 - 1; they are exact JSON integers still.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Supply)]
pub struct SupplyJson {
    pub asset: String,
    /// What users hold: the negative of the Treasury's balance.
    #[schema(value_type = i64)]
    pub outstanding: i128,
    /// What active holds set aside; omitted from a supply `?at=` a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<i64>,
    /// User accounts with a non-zero balance; omitted from a supply `?at=`
    /// a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holders: Option<i64>,
    /// Totals ever issued, by entry type.
    pub issued: IssuedJson,
    /// Total of SPEND entries ever.
    #[schema(value_type = u64)]
    pub spent: u128,
    /// Total of REVERSAL entries ever.
    #[schema(value_type = u64)]
    pub reversed: u128,
    /// What users hold of each kind: `outstanding = paid + free`. Paid is
    /// bought and not yet spent (owed to players).
    #[schema(value_type = i64)]
    pub paid: i128,
    #[schema(value_type = i64)]
    pub free: i128,
    /// Total of EXPIRY entries ever.
    #[schema(value_type = u64)]
    pub expired: u128,
    /// The time of the newest entry counted; null before the asset's first.
    #[schema(required = true)]
    pub as_of: Option<String>,
}

impl From<SupplyRow> for SupplyJson {
    fn from(row: SupplyRow) -> Self {
        SupplyJson {
            asset: row.asset_symbol,
            outstanding: row.outstanding,
            held: Some(row.held),
            holders: Some(row.holders),
            issued: IssuedJson {
                topup: row.topup,
                bonus: row.bonus,
            },
            spent: row.spent,
            reversed: row.reversed,
            paid: row.paid,
            free: row.free,
            expired: row.expired,
            as_of: row.as_of_ms.map(format_timestamp),
        }
    }
}

impl SupplyJson {
    /// The figures as they stood at some instant: holds and holders are
    /// not kept back in time, so they are not told.
    pub fn as_it_stood(row: SupplyRow) -> SupplyJson {
        SupplyJson {
            held: None,
            holders: None,
            ..SupplyJson::from(row)
        }
    }
}

/// What TOPUP and BONUS entries ever issued.
#[derive(Serialize, ToSchema)]
#[schema(as = Issued)]
pub struct IssuedJson {
    #[serde(rename = "TOPUP")]
    #[schema(value_type = u64)]
    pub topup: u128,
    #[serde(rename = "BONUS")]
    #[schema(value_type = u64)]
    pub bonus: u128,
}

/// A page of events, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EventPage)]
pub struct EventPageJson {
    pub items: Vec<EventJson>,
    /// Pass back as `after`: never null; at the end, the last event's id (or
    /// the `after` asked with), so a poller keeps asking with it.
    pub next_cursor: String,
}

/// One event (API.md's Event).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Event)]
pub struct EventJson {
    /// The event's cursor.
    id: String,
    #[serde(rename = "type")]
    #[schema(schema_with = event_type_schema)]
    kind: &'static str,
    /// When the change was committed. RFC 3339, UTC, millisecond precision.
    created_at: String,
    /// The transaction as its user's history shows it, or the hold after the
    /// change; each with `userId`.
    #[schema(value_type = Object)]
    data: EventDataJson,
}

fn event_type_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(crate::store::EventKind::ALL.map(|kind| kind.as_str())))
        .build()
}

#[derive(Serialize)]
#[serde(untagged)]
enum EventDataJson {
    Transaction {
        #[serde(rename = "userId")]
        user_id: String,
        #[serde(flatten)]
        transaction: Transaction,
    },
    Hold(Hold),
    Asset(Box<Asset>),
    UserRules(UserRulesChangedJson),
}

impl From<EventRow> for EventJson {
    fn from(event: EventRow) -> Self {
        EventJson {
            id: event.seq.to_string(),
            kind: event.kind.as_str(),
            created_at: format_timestamp(event.created_at_ms),
            data: match event.data {
                EventData::Transaction { user, entry } => EventDataJson::Transaction {
                    user_id: user,
                    transaction: Transaction::from(entry),
                },
                EventData::Hold(hold) => EventDataJson::Hold(Hold::from(hold)),
                EventData::AssetRules(asset) => EventDataJson::Asset(Box::new(Asset::from(asset))),
                EventData::UserRules {
                    user,
                    asset_symbol,
                    rules,
                } => EventDataJson::UserRules(UserRulesChangedJson {
                    user_id: user,
                    asset: asset_symbol,
                    max_balance: rules.max_balance,
                    limits: rules.limits.as_ref().map(limits_json),
                }),
            },
        }
    }
}
