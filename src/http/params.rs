//! The parameters of the routes (path segments, query strings, headers) as
//! the OpenAPI document describes them: each resource's `#[utoipa::path]`
//! names these, with their bounds from `limits.rs`. They describe; the
//! parsers in the resource files and `input.rs` decide.

use serde_json::json;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use crate::domain::EntryKind;
use crate::ledger::engine::HoldStatus;
use crate::limits::{
    API_KEY_NAME_CHARS_MAX, ASSET_SYMBOL_CHARS_MAX, CURSOR_CHARS_MAX, EVENTS_PAGE_LIMIT_DEFAULT,
    EVENTS_PAGE_LIMIT_MAX, IDEMPOTENCY_KEY_CHARS_MAX, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX,
    REFERENCE_ID_CHARS_MAX, USER_ID_CHARS_MAX,
};

fn string_schema(chars_max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(chars_max))
}

/// `asset` of a list's query: a filter by symbol or id.
fn asset_filter() -> Parameter {
    parameter(
        "asset",
        ParameterIn::Query,
        "Only this asset: a symbol or an id.",
        string_schema(ASSET_SYMBOL_CHARS_MAX.max(UUID_CHARS)).build(),
    )
}

/// `limit` of a paged list.
fn page_limit(description: &str) -> Parameter {
    parameter(
        "limit",
        ParameterIn::Query,
        description,
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(PAGE_LIMIT_MAX as f64))
            .default(Some(json!(PAGE_LIMIT_DEFAULT)))
            .build(),
    )
}

/// `cursor` of a paged list.
fn page_cursor() -> Parameter {
    parameter(
        "cursor",
        ParameterIn::Query,
        "The `nextCursor` of the previous page.",
        string_schema(CURSOR_CHARS_MAX).build(),
    )
}

fn parameter(name: &str, place: ParameterIn, description: &str, schema: Object) -> Parameter {
    let required = match place {
        ParameterIn::Path => Required::True,
        _ => Required::False,
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(required)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An asset id is a hyphenated UUID: 36 characters.
const UUID_CHARS: usize = 36;

/// `{userId}` in a path.
pub struct UserIdParam;

impl IntoParams for UserIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "userId",
            ParameterIn::Path,
            "The user: characters of `A-Z a-z 0-9 _ . : @ -`.",
            string_schema(USER_ID_CHARS_MAX)
                .pattern(Some("^[A-Za-z0-9_.:@-]+$"))
                .build(),
        )]
    }
}

/// The `{id}` of a transaction in the path.
pub struct TransactionIdParam;

impl IntoParams for TransactionIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "id",
            ParameterIn::Path,
            "The transaction's id, as its `id` field gives it (a UUID).",
            string_schema(UUID_CHARS)
                .min_length(Some(UUID_CHARS))
                .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())))
                .build(),
        )]
    }
}

/// The query of `GET /wallets/{userId}/balance`.
pub struct BalanceParams;

impl IntoParams for BalanceParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "at",
            ParameterIn::Query,
            "An RFC 3339 time (any offset), not in the future: the balances as they stood \
             then, counting entries made at or before it; `held` and `available` are then \
             omitted, and before the user's first entry every balance is 0.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                )))
                .build(),
        )]
    }
}

/// The `{holdId}` of a hold in the path.
pub struct HoldIdParam;

impl IntoParams for HoldIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "holdId",
            ParameterIn::Path,
            "The hold's id, as its `id` field gives it (a UUID).",
            string_schema(UUID_CHARS)
                .min_length(Some(UUID_CHARS))
                .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())))
                .build(),
        )]
    }
}

/// The query of `GET /wallets/{userId}/holds`. An unknown parameter, or
/// one given empty, is refused.
pub struct HoldListParams;

impl IntoParams for HoldListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            parameter(
                "status",
                ParameterIn::Query,
                "Only holds with this status now (a HELD hold past its expiry is EXPIRED).",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(HoldStatus::ALL.map(HoldStatus::as_str)))
                    .build(),
            ),
            asset_filter(),
            page_limit("Holds per page."),
            page_cursor(),
        ]
    }
}

/// The query of `GET /wallets/{userId}/transactions`. An unknown parameter,
/// or one given empty, is refused.
pub struct HistoryParams;

impl IntoParams for HistoryParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let kinds = EntryKind::ALL.map(EntryKind::as_str);
        vec![
            asset_filter(),
            parameter(
                "type",
                ParameterIn::Query,
                "Only entries of this type.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(kinds))
                    .build(),
            ),
            parameter(
                "referenceId",
                ParameterIn::Query,
                "Only entries with exactly this `referenceId`.",
                string_schema(REFERENCE_ID_CHARS_MAX).build(),
            ),
            page_limit("Entries per page."),
            page_cursor(),
        ]
    }
}

/// The `{asset}` of a path: a symbol or an id.
pub struct AssetParam;

impl IntoParams for AssetParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "asset",
            ParameterIn::Path,
            "The asset: its symbol (such as `GOLD`) or its id (a UUID).",
            string_schema(ASSET_SYMBOL_CHARS_MAX.max(UUID_CHARS)).build(),
        )]
    }
}

/// The `{name}` of an API key in the path.
pub struct KeyNameParam;

impl IntoParams for KeyNameParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "name",
            ParameterIn::Path,
            "The key's name, as `GET /keys` lists it: characters of `A-Z a-z 0-9 _ . -`.",
            string_schema(API_KEY_NAME_CHARS_MAX)
                .pattern(Some("^[A-Za-z0-9_.-]+$"))
                .build(),
        )]
    }
}

/// The query of `GET /events`, and the header a reconnecting stream sends.
pub struct EventsParams;

impl IntoParams for EventsParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            parameter(
                "after",
                ParameterIn::Query,
                "Events after this cursor: the `id` of an event, or the `nextCursor` of a page. \
                 Absent: from the start of the ledger. A cursor past the newest event (one this \
                 ledger never gave out) is 400.",
                string_schema(CURSOR_CHARS_MAX)
                    .pattern(Some("^(0|[1-9][0-9]*)$"))
                    .build(),
            ),
            parameter(
                "limit",
                ParameterIn::Query,
                "Events per page (a stream ignores it).",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(EVENTS_PAGE_LIMIT_MAX as f64))
                    .default(Some(json!(EVENTS_PAGE_LIMIT_DEFAULT)))
                    .build(),
            ),
            parameter(
                "Last-Event-ID",
                ParameterIn::Header,
                "With `Accept: text/event-stream`: the `id` of the last event received; the \
                 stream resumes after it (over `after`).",
                string_schema(CURSOR_CHARS_MAX).build(),
            ),
        ]
    }
}

/// The `Idempotency-Key` header of a write.
pub struct IdempotencyKeyParam;

impl IntoParams for IdempotencyKeyParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "Idempotency-Key",
            ParameterIn::Header,
            "The idempotency key, when not given as the body's `idempotencyKey`: \
             1-255 visible ASCII characters.",
            string_schema(IDEMPOTENCY_KEY_CHARS_MAX)
                .pattern(Some("^[!-~]+$"))
                .build(),
        )]
    }
}
