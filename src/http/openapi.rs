//! The OpenAPI 3.1 document served at `GET /openapi.json`, generated from the
//! code: the paths from the handlers' `#[utoipa::path]`, the payloads from
//! `json.rs`, the error codes from `ErrorCode`, the bounds from `limits.rs`.
//! It describes; it never decides anything a request gets.
//!
//! Three modifiers finish the document, each in one place: `Envelopes` wraps
//! every success payload in the envelope, `ErrorResponses` adds each
//! operation's failures, and `ApiKeys` adds the bearer scheme, each guarded
//! operation's scope and the failures of the key check.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::json;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{
    example::ExampleBuilder, Content, OpenApi as Document, Ref, RefOr, Required, Response,
    ResponseBuilder,
};
use utoipa::{IntoParams, Modify, OpenApi};

use super::auth::RouteAccess;
use super::envelope::ErrorBody;
use super::handlers;
use super::holds;
use super::json::{
    Asset, AssetRequest, Balance, Balances, BatchBalance, BatchOperationRequest, BatchRequest,
    CaptureReceiptJson, CaptureRequest, EntryRequest, EventPageJson, Health, Hold, HoldPageJson,
    HoldReceiptJson, HoldRequest, IssuedJson, Party, ReverseRequest, SupplyJson, Transaction,
    TransactionDetailJson, TransactionPage, TransferRequest, VoidRequest,
};
use super::watch::{self, EventJson};
use crate::domain::EntryKind;
use crate::error::ErrorCode;
use crate::ledger::engine::HoldStatus;
use crate::limits::{
    ASSET_SYMBOL_CHARS_MAX, CURSOR_CHARS_MAX, EVENTS_PAGE_LIMIT_DEFAULT, EVENTS_PAGE_LIMIT_MAX,
    IDEMPOTENCY_KEY_CHARS_MAX, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX, REFERENCE_ID_CHARS_MAX,
    USER_ID_CHARS_MAX,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wallet",
        description = "A double-entry, append-only ledger of virtual currencies. Every response \
            but this document is the envelope `{\"success\", \"data\", \"error\"}` and carries \
            `X-Request-Id` (the caller's own when valid, 1-128 visible ASCII characters). \
            Amounts are integers in the asset's smallest unit."
    ),
    paths(
        handlers::get_health,
        handlers::get_assets,
        handlers::post_assets,
        handlers::get_balance,
        handlers::get_transactions,
        handlers::get_transaction,
        handlers::post_topup,
        handlers::post_bonus,
        handlers::post_spend,
        handlers::post_transfer,
        handlers::post_reverse,
        handlers::post_batch,
        holds::post_hold,
        holds::get_holds,
        holds::get_hold,
        holds::post_capture,
        holds::post_void,
        watch::get_supply,
        watch::get_events,
        watch::get_metrics,
        handlers::get_openapi,
    ),
    components(schemas(
        Asset, AssetRequest, Balance, Balances, Transaction, TransactionPage, TransactionDetailJson,
        Party, Health, EntryRequest, TransferRequest, ReverseRequest, BatchRequest,
        BatchOperationRequest, BatchBalance, ErrorBody, ErrorCode, Hold, HoldPageJson,
        HoldRequest, CaptureRequest, VoidRequest, HoldReceiptJson, CaptureReceiptJson, SupplyJson,
        IssuedJson, EventPageJson, EventJson
    )),
    modifiers(&Envelopes, &ErrorResponses, &ApiKeys),
    tags(
        (name = "ledger", description = "Assets, balances, history and the writes that move value."),
        (name = "holds", description = "Money set aside for a later capture, or let go."),
        (name = "events", description = "Every committed entry and hold change, as pages or a stream."),
        (name = "service", description = "Health and this document."),
    )
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The document as served.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        serde_json::to_string_pretty(document())
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
    })
}

/// Paths answered bare, outside the envelope.
const BARE_PATHS: [&str; 2] = ["/openapi.json", "/metrics"];

/// Failures any operation can answer with. An authentication layer adds its
/// codes here.
const ANY_OPERATION: &[ErrorCode] = &[ErrorCode::Internal];

/// Failures of a write beyond its own rules: the body, the queue, the file.
const WRITE: &[ErrorCode] = &[
    ErrorCode::Validation,
    ErrorCode::InvalidJson,
    ErrorCode::PayloadTooLarge,
    ErrorCode::RequestTimeout,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::AssetNotFound,
    ErrorCode::IdempotencyKeyReused,
    ErrorCode::ServiceOverloaded,
    ErrorCode::DatabaseUnavailable,
];

/// The failures of each operation beyond `ANY_OPERATION`, by operation id (the
/// handler's name). `None` for an operation this table does not know.
fn operation_errors(operation_id: &str) -> Option<Vec<ErrorCode>> {
    use ErrorCode::*;
    let read_of_a_wallet = [Validation, WalletNotFound, DatabaseUnavailable];
    Some(match operation_id {
        "get_health" | "get_assets" => vec![DatabaseUnavailable],
        "get_openapi" => vec![],
        "get_metrics" => vec![DatabaseUnavailable],
        "get_supply" => vec![Validation, AssetNotFound, DatabaseUnavailable],
        "get_events" => vec![Validation, ServiceOverloaded, DatabaseUnavailable],
        "get_balance" | "get_transactions" => read_of_a_wallet.to_vec(),
        "get_transaction" => vec![Validation, TransactionNotFound, DatabaseUnavailable],
        "post_assets" => vec![
            Validation,
            InvalidJson,
            PayloadTooLarge,
            RequestTimeout,
            UnsupportedMediaType,
            AssetExists,
            TooManyAssets,
            ServiceOverloaded,
            DatabaseUnavailable,
        ],
        "post_topup" | "post_bonus" => [WRITE, &[BalanceOverflow]].concat(),
        "post_spend" => [WRITE, &[WalletNotFound, InsufficientFunds]].concat(),
        "post_transfer" | "post_batch" => {
            [WRITE, &[WalletNotFound, InsufficientFunds, BalanceOverflow]].concat()
        }
        "post_reverse" => [
            WRITE,
            &[
                TransactionNotFound,
                NotReversible,
                ReversalExceedsOriginal,
                InsufficientFunds,
                BalanceOverflow,
            ],
        ]
        .concat(),
        "get_hold" => vec![Validation, HoldNotFound, DatabaseUnavailable],
        "get_holds" => read_of_a_wallet.to_vec(),
        "post_hold" => [WRITE, &[WalletNotFound, InsufficientFunds, TooManyHolds]].concat(),
        "post_capture" => [
            WRITE,
            &[
                HoldNotFound,
                HoldNotActive,
                CaptureExceedsHold,
                InsufficientFunds,
                BalanceOverflow,
            ],
        ]
        .concat(),
        "post_void" => [WRITE, &[HoldNotFound, HoldNotActive]].concat(),
        _ => return None,
    })
}

/// Failures of the key check, on every route that needs a key.
const KEY_CHECK: [ErrorCode; 3] = [
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::RateLimited,
];

/// The name of the bearer scheme in `components.securitySchemes`.
const BEARER_SCHEME: &str = "apiKey";

/// Failures no single operation answers with: they are about the route.
const ROUTE_ERRORS: [ErrorCode; 2] = [ErrorCode::NotFound, ErrorCode::MethodNotAllowed];

/// Every operation of the document with its path.
fn operations_mut(document: &mut Document) -> Vec<(String, &mut Operation)> {
    let mut operations = Vec::new();
    for (path, item) in document.paths.paths.iter_mut() {
        let methods = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in methods.into_iter().flatten() {
            operations.push((path.clone(), operation));
        }
    }
    operations
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// `success`, which is always `value` in its kind of envelope.
fn success_is(value: bool) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([value]))
        .build()
}

/// Wraps each success payload in `{"success": true, "data": ..., "error": null}`,
/// as `envelope::success` does.
struct Envelopes;

impl Modify for Envelopes {
    fn modify(&self, document: &mut Document) {
        for (path, operation) in operations_mut(document) {
            if BARE_PATHS.contains(&path.as_str()) {
                continue;
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if !status.starts_with('2') {
                    continue;
                }
                for content in response.content.values_mut() {
                    let RefOr::T(content) = content else { continue };
                    let data = content.schema.take();
                    let mut envelope = ObjectBuilder::new()
                        .property("success", success_is(true))
                        .property("error", ObjectBuilder::new().schema_type(Type::Null))
                        .required("success")
                        .required("data")
                        .required("error");
                    if let Some(data) = data {
                        envelope = envelope.property("data", data);
                    }
                    content.schema = Some(RefOr::T(Schema::Object(envelope.build())));
                }
            }
        }
    }
}

/// Adds each operation's failures, grouped by status, with one example per
/// code, and the route failures as shared responses.
struct ErrorResponses;

impl ErrorResponses {
    fn envelope_schema() -> Object {
        ObjectBuilder::new()
            .property("success", success_is(false))
            .property("data", ObjectBuilder::new().schema_type(Type::Null))
            .property("error", schema_ref("Error"))
            .required("success")
            .required("data")
            .required("error")
            .build()
    }

    /// One response for every code of one status.
    fn response(codes: &[ErrorCode]) -> Response {
        let description = codes
            .iter()
            .map(|code| format!("`{}`: {}", code.as_str(), code.meaning()))
            .collect::<Vec<_>>()
            .join(" ");
        let examples = codes.iter().map(|code| {
            let example = ExampleBuilder::new().value(Some(json!({
                "success": false,
                "data": null,
                "error": {"code": code.as_str(), "message": code.meaning()},
            })));
            (code.as_str(), example)
        });
        let content = Content::builder()
            .schema(Some(schema_ref("ErrorEnvelope")))
            .examples_from_iter(examples)
            .build();
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build()
    }

    fn by_status(codes: &[ErrorCode]) -> BTreeMap<u16, Vec<ErrorCode>> {
        let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
        for &code in codes {
            let same_status = by_status.entry(code.status().as_u16()).or_default();
            if !same_status.contains(&code) {
                same_status.push(code);
            }
        }
        by_status
    }
}

/// The bearer scheme, and on each operation whose route needs a key (the
/// routes table of `handlers` says which): the scope, and the key check's
/// failures.
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, document: &mut Document) {
        use utoipa::openapi::security::{
            Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        };
        for (path, item) in document.paths.paths.iter_mut() {
            for (method, operation) in [("get", &mut item.get), ("post", &mut item.post)] {
                let Some(operation) = operation else { continue };
                let access = handlers::ROUTE_ACCESS
                    .iter()
                    .find(|(m, p, _)| *m == method && p == path)
                    .map(|(_, _, access)| *access);
                let (scopes, needs): (Vec<&str>, String) = match access {
                    Some(RouteAccess::Needs(scope)) => (
                        vec![scope.as_str()],
                        format!(
                            "Needs an API key with the `{}` scope (or `admin`) once any key exists.",
                            scope.as_str()
                        ),
                    ),
                    Some(RouteAccess::NeedsPerOperation) => (
                        vec![],
                        "Needs an API key once any key exists, with every scope its operations \
                         would need one by one (`grant` for topup and bonus, `spend` for spend and \
                         transfer), checked once the body is parsed: 403 names the first missing."
                            .to_owned(),
                    ),
                    Some(RouteAccess::OpenOnLoopback(scope)) => (
                        vec![scope.as_str()],
                        format!(
                            "Open on a loopback bind; elsewhere needs an API key with the `{}` \
                             scope once any key exists.",
                            scope.as_str()
                        ),
                    ),
                    _ => continue,
                };
                operation.security = Some(vec![SecurityRequirement::new(BEARER_SCHEME, scopes)]);
                operation.description = Some(match operation.description.take() {
                    Some(text) => format!("{text}\n\n{needs}"),
                    None => needs,
                });
                for (status, codes) in ErrorResponses::by_status(&KEY_CHECK) {
                    operation.responses.responses.insert(
                        status.to_string(),
                        RefOr::T(ErrorResponses::response(&codes)),
                    );
                }
            }
        }
        let components = document.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "`Authorization: Bearer wk_...`, a key made by `wallet keys create`. A server with \
             no key yet, bound to loopback, serves without one."
                .to_owned(),
        );
        components.security_schemes.insert(
            BEARER_SCHEME.to_owned(),
            RefOr::T(SecurityScheme::Http(scheme)),
        );
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, document: &mut Document) {
        for (_, operation) in operations_mut(document) {
            let id = operation.operation_id.clone().unwrap_or_default();
            // An operation missing from the table documents only the common
            // failures; a unit test names it.
            let own = operation_errors(&id).unwrap_or_default();
            let codes = [own.as_slice(), ANY_OPERATION].concat();
            for (status, codes) in Self::by_status(&codes) {
                operation
                    .responses
                    .responses
                    .insert(status.to_string(), RefOr::T(Self::response(&codes)));
            }
        }
        let components = document.components.get_or_insert_with(Default::default);
        components.schemas.insert(
            "ErrorEnvelope".to_owned(),
            RefOr::T(Schema::Object(Self::envelope_schema())),
        );
        for code in ROUTE_ERRORS {
            components
                .responses
                .insert(code.as_str().to_owned(), RefOr::T(Self::response(&[code])));
        }
    }
}

fn string_schema(chars_max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(chars_max))
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
            parameter(
                "asset",
                ParameterIn::Query,
                "Only this asset: a symbol or an id.",
                string_schema(ASSET_SYMBOL_CHARS_MAX.max(UUID_CHARS)).build(),
            ),
            parameter(
                "limit",
                ParameterIn::Query,
                "Holds per page.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(PAGE_LIMIT_MAX as f64))
                    .default(Some(json!(PAGE_LIMIT_DEFAULT)))
                    .build(),
            ),
            parameter(
                "cursor",
                ParameterIn::Query,
                "The `nextCursor` of the previous page.",
                string_schema(CURSOR_CHARS_MAX).build(),
            ),
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
            parameter(
                "asset",
                ParameterIn::Query,
                "Only this asset: a symbol or an id.",
                string_schema(ASSET_SYMBOL_CHARS_MAX.max(UUID_CHARS)).build(),
            ),
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
            parameter(
                "limit",
                ParameterIn::Query,
                "Entries per page.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(PAGE_LIMIT_MAX as f64))
                    .default(Some(json!(PAGE_LIMIT_DEFAULT)))
                    .build(),
            ),
            parameter(
                "cursor",
                ParameterIn::Query,
                "The `nextCursor` of the previous page.",
                string_schema(CURSOR_CHARS_MAX).build(),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_failures_listed() {
        let mut document = ApiDoc::openapi();
        for (path, operation) in operations_mut(&mut document) {
            let id = operation.operation_id.clone().unwrap_or_default();
            assert!(
                operation_errors(&id).is_some(),
                "{path} ({id}) has no entry in operation_errors"
            );
        }
    }
}
