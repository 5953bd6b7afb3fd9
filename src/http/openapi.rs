//! The OpenAPI 3.1 document served at `GET /openapi.json`, and that route's
//! handler. The document is generated from the code: the paths from the
//! handlers' `#[utoipa::path]` in the resource files, their parameters from
//! `params.rs`, the payloads from `json.rs`, the error codes from
//! `ErrorCode`, the bounds from `limits.rs`. It describes; it never decides
//! anything a request gets.
//!
//! Three modifiers finish the document, each in one place: `Envelopes` wraps
//! every success payload in the envelope, `ErrorResponses` adds each
//! operation's failures, and `ApiKeys` adds the bearer scheme, each guarded
//! operation's scope and the failures of the key check. `ApiKeys` reads the
//! route table, which `routes.rs` hands over at run time as app data: that
//! module imports this one (for `get_openapi`), so this one cannot import it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{
    example::ExampleBuilder, Content, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::{Modify, OpenApi};

use super::auth::RouteAccess;
use super::envelope::ErrorBody;
use super::json::{
    ApiKeyJson, Asset, AssetRequest, AssetRulesJson, AssetRulesRequest, Balance, Balances,
    BatchBalance, BatchOperationRequest, BatchRequest, CaptureReceiptJson, CaptureRequest,
    CreatedKeyJson, EntryRequest, EventJson, EventPageJson, Health, Hold, HoldPageJson,
    HoldReceiptJson, HoldRequest, IssuedJson, KeyRequest, LimitJson, Party, ReverseRequest,
    SupplyJson, Transaction, TransactionDetailJson, TransactionPage, TransferRequest,
    UserRulesJson, UserRulesRequest, UserRulesRowJson, VoidRequest,
};
use super::{assets, batch, console, events, holds, keys, rules, service, transactions, wallets};
use crate::error::{ApiError, ErrorCode};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wallet",
        description = "A double-entry, append-only ledger of virtual currencies. Every response \
            but this document is the envelope `{\"success\", \"data\", \"error\"}` and carries \
            `X-Request-Id` (the caller's own when valid, 1-128 visible ASCII characters). \
            Amounts are integers in the asset's smallest unit.\n\n\
            Every path answers the methods listed for it, and `HEAD` on a `GET`; any other \
            method is `405 METHOD_NOT_ALLOWED` in the envelope, with `Allow` listing the \
            methods it answers, before any key is looked at. A path not listed is \
            `404 NOT_FOUND` in the envelope.\n\n\
            Some rules span two inputs and cannot be written as a schema: each is in the \
            description of what it governs, and each is a `400 VALIDATION_ERROR`. A write \
            needs an idempotency key, in the body or the `Idempotency-Key` header, the same \
            in both when both are given; a transfer's `to` is another user than the path's; \
            an amount is a JSON integer as written (`5.0` is refused); `metadata` is at most \
            2048 bytes as compact JSON; `at` is not in the future; a cursor is one this \
            service gave out."
    ),
    servers((url = "/", description = "The server that serves this document.")),
    paths(
        service::get_health,
        assets::get_assets,
        assets::post_assets,
        wallets::get_balance,
        wallets::get_transactions,
        transactions::get_transaction,
        wallets::post_topup,
        wallets::post_bonus,
        wallets::post_spend,
        wallets::post_transfer,
        transactions::post_reverse,
        batch::post_batch,
        holds::post_hold,
        holds::get_holds,
        holds::get_hold,
        holds::post_capture,
        holds::post_void,
        assets::get_supply,
        events::get_events,
        service::get_metrics,
        keys::get_keys,
        keys::post_keys,
        keys::post_revoke,
        rules::put_asset_rules,
        rules::get_user_rules,
        rules::put_user_rules,
        console::get_console,
        console::get_console_style,
        console::get_console_api_script,
        console::get_console_script,
        get_openapi,
    ),
    components(schemas(
        Asset, AssetRequest, Balance, Balances, Transaction, TransactionPage, TransactionDetailJson,
        Party, Health, EntryRequest, TransferRequest, ReverseRequest, BatchRequest,
        BatchOperationRequest, BatchBalance, ErrorBody, ErrorCode, Hold, HoldPageJson,
        HoldRequest, CaptureRequest, VoidRequest, HoldReceiptJson, CaptureReceiptJson, SupplyJson,
        IssuedJson, EventPageJson, EventJson, ApiKeyJson, CreatedKeyJson, KeyRequest,
        AssetRulesJson, LimitJson, AssetRulesRequest, UserRulesRequest, UserRulesJson,
        UserRulesRowJson
    )),
    // `ApiKeys` comes last, in `document`: it needs the route table.
    modifiers(&Envelopes, &ErrorResponses, &Links),
    tags(
        (name = "ledger", description = "Assets, balances, history and the writes that move value."),
        (name = "holds", description = "Money set aside for a later capture, or let go."),
        (name = "events", description = "Every committed entry and hold change, as pages or a stream."),
        (name = "keys", description = "API keys: who may call, with which scopes (admin only)."),
        (name = "rules", description = "Limits a studio sets on value: maximum balances and caps \
            per user and window, per asset and per user."),
        (name = "service", description = "Health and this document."),
        (name = "console", description = "The operator console: a web page and its files, \
            served bare, that call this API with an admin key."),
    )
)]
struct ApiDoc;

/// Every route with what it asks of its callers: `routes::ROUTE_ACCESS`,
/// which `routes.rs` registers as app data for `get_openapi`.
#[derive(Debug, Clone, Copy)]
pub struct RouteAccessTable(pub &'static [(&'static str, &'static str, RouteAccess)]);

/// The OpenAPI 3.1 document of this API, itself generated from the code.
/// Served as the document itself, not in the envelope, so that OpenAPI tools
/// can read it as it is.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    summary = "This API's OpenAPI 3.1 document",
    responses((status = 200, description = "The OpenAPI document, bare (no envelope).",
        content_type = "application/json", body = Object)))]
pub(super) async fn get_openapi(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let routes = request
        .app_data::<RouteAccessTable>()
        .copied()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no route table in the application")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json(routes)))
}

/// The document, built once, from the route table of the first call (there
/// is one table).
pub fn document(routes: RouteAccessTable) -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = ApiDoc::openapi();
        ApiKeys { routes }.modify(&mut document);
        document
    })
}

/// The document as served.
pub fn document_json(routes: RouteAccessTable) -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        serde_json::to_string_pretty(document(routes))
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
    })
}

/// Paths answered bare, outside the envelope.
const BARE_PATHS: [&str; 6] = [
    "/openapi.json",
    "/metrics",
    "/console",
    "/console/console.css",
    "/console/api.js",
    "/console/console.js",
];

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

/// Failures of a key's creation or revocation beyond its own rules.
const KEY_WRITE: &[ErrorCode] = &[
    ErrorCode::Validation,
    ErrorCode::InvalidJson,
    ErrorCode::PayloadTooLarge,
    ErrorCode::RequestTimeout,
    ErrorCode::UnsupportedMediaType,
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
        "get_console" | "get_console_style" | "get_console_api_script" | "get_console_script" => {
            vec![]
        }
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
        "post_topup" | "post_bonus" => {
            [WRITE, &[BalanceOverflow, BalanceLimit, LimitExceeded]].concat()
        }
        "post_spend" => [WRITE, &[WalletNotFound, InsufficientFunds, LimitExceeded]].concat(),
        "post_transfer" | "post_batch" => [
            WRITE,
            &[
                WalletNotFound,
                InsufficientFunds,
                BalanceOverflow,
                BalanceLimit,
                LimitExceeded,
            ],
        ]
        .concat(),
        "post_reverse" => [
            WRITE,
            &[
                TransactionNotFound,
                NotReversible,
                ReversalExceedsOriginal,
                InsufficientFunds,
                BalanceOverflow,
                BalanceLimit,
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
                BalanceLimit,
                LimitExceeded,
            ],
        ]
        .concat(),
        "post_void" => [WRITE, &[HoldNotFound, HoldNotActive]].concat(),
        "get_keys" => vec![DatabaseUnavailable],
        "put_asset_rules" => [KEY_WRITE, &[AssetNotFound]].concat(),
        "put_user_rules" => [KEY_WRITE, &[AssetNotFound]].concat(),
        "get_user_rules" => vec![Validation, DatabaseUnavailable],
        "post_keys" => [KEY_WRITE, &[KeyExists, TooManyKeys]].concat(),
        "post_revoke" => [KEY_WRITE, &[KeyNotFound, KeyRevokesItself]].concat(),
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

/// Failures no single operation answers with: they are about the route. The
/// document keeps them as shared responses, so that it names every code;
/// the description of the document says when they come.
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
/// route table says which): the scope, and the key check's failures.
struct ApiKeys {
    routes: RouteAccessTable,
}

impl Modify for ApiKeys {
    fn modify(&self, document: &mut Document) {
        use utoipa::openapi::security::{
            Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        };
        for (path, item) in document.paths.paths.iter_mut() {
            for (method, operation) in [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
            ] {
                let Some(operation) = operation else { continue };
                let access = self
                    .routes
                    .0
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
                    // Never needs a key: an empty list says so.
                    Some(RouteAccess::Open) => {
                        operation.security = Some(vec![]);
                        continue;
                    }
                    None => continue,
                };
                let mut security = vec![SecurityRequirement::new(BEARER_SCHEME, scopes)];
                if matches!(access, Some(RouteAccess::OpenOnLoopback(_))) {
                    // The empty requirement: on loopback, no key at all.
                    security.push(SecurityRequirement::default());
                }
                operation.security = Some(security);
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

/// The links of the document, by the operation and status whose answer
/// supplies them: (operation, status, link, target operation, [(target
/// parameter, runtime expression)]). Stateful tools follow them from one
/// answer to the next request; an answer's `data` is the envelope's.
type LinkRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const PATH_USER: (&str, &str) = ("userId", "$request.path.userId");
const RECEIPT_TRANSACTION: (&str, &str) = ("id", "$response.body#/data/transaction/id");

const LINKS: &[LinkRow] = &[
    // A single write: its transaction, and the user's wallet.
    (
        "post_topup",
        "201",
        "GetTransaction",
        "get_transaction",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_topup",
        "201",
        "ReverseTransaction",
        "post_reverse",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_topup",
        "201",
        "GetBalance",
        "get_balance",
        &[PATH_USER],
    ),
    (
        "post_topup",
        "201",
        "GetHistory",
        "get_transactions",
        &[PATH_USER],
    ),
    ("post_topup", "201", "PlaceHold", "post_hold", &[PATH_USER]),
    ("post_topup", "201", "Spend", "post_spend", &[PATH_USER]),
    (
        "post_topup",
        "201",
        "Transfer",
        "post_transfer",
        &[PATH_USER],
    ),
    (
        "post_bonus",
        "201",
        "GetTransaction",
        "get_transaction",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_bonus",
        "201",
        "ReverseTransaction",
        "post_reverse",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_bonus",
        "201",
        "GetBalance",
        "get_balance",
        &[PATH_USER],
    ),
    ("post_bonus", "201", "GetHolds", "get_holds", &[PATH_USER]),
    (
        "post_spend",
        "201",
        "GetTransaction",
        "get_transaction",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_spend",
        "201",
        "ReverseTransaction",
        "post_reverse",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_spend",
        "201",
        "GetBalance",
        "get_balance",
        &[PATH_USER],
    ),
    (
        "post_spend",
        "201",
        "GetHistory",
        "get_transactions",
        &[PATH_USER],
    ),
    (
        "post_transfer",
        "201",
        "GetTransaction",
        "get_transaction",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_transfer",
        "201",
        "ReverseTransaction",
        "post_reverse",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_transfer",
        "201",
        "GetBalance",
        "get_balance",
        &[PATH_USER],
    ),
    (
        "post_transfer",
        "201",
        "GetRecipientBalance",
        "get_balance",
        &[("userId", "$request.body#/to")],
    ),
    (
        "post_transfer",
        "201",
        "GetRecipientHistory",
        "get_transactions",
        &[("userId", "$request.body#/to")],
    ),
    // A reversal: itself, and what it reverses.
    (
        "post_reverse",
        "201",
        "GetReversal",
        "get_transaction",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_reverse",
        "201",
        "GetReversed",
        "get_transaction",
        &[("id", "$request.path.id")],
    ),
    // A batch: its first transaction and the first wallet it touched.
    (
        "post_batch",
        "201",
        "GetTransaction",
        "get_transaction",
        &[("id", "$response.body#/data/transactions/0/id")],
    ),
    (
        "post_batch",
        "201",
        "ReverseTransaction",
        "post_reverse",
        &[("id", "$response.body#/data/transactions/0/id")],
    ),
    (
        "post_batch",
        "201",
        "GetBalance",
        "get_balance",
        &[("userId", "$response.body#/data/balances/0/userId")],
    ),
    // Reads that name what the next request can act on.
    (
        "get_transactions",
        "200",
        "GetTransaction",
        "get_transaction",
        &[("id", "$response.body#/data/items/0/id")],
    ),
    (
        "get_transactions",
        "200",
        "ReverseTransaction",
        "post_reverse",
        &[("id", "$response.body#/data/items/0/id")],
    ),
    (
        "get_transaction",
        "200",
        "ReverseTransaction",
        "post_reverse",
        &[("id", "$request.path.id")],
    ),
    // A hold and what can follow it.
    (
        "post_hold",
        "201",
        "GetHold",
        "get_hold",
        &[("holdId", "$response.body#/data/hold/id")],
    ),
    (
        "post_hold",
        "201",
        "CaptureHold",
        "post_capture",
        &[("holdId", "$response.body#/data/hold/id")],
    ),
    (
        "post_hold",
        "201",
        "VoidHold",
        "post_void",
        &[("holdId", "$response.body#/data/hold/id")],
    ),
    ("post_hold", "201", "GetHolds", "get_holds", &[PATH_USER]),
    (
        "post_hold",
        "201",
        "GetBalance",
        "get_balance",
        &[PATH_USER],
    ),
    (
        "get_holds",
        "200",
        "GetHold",
        "get_hold",
        &[("holdId", "$response.body#/data/items/0/id")],
    ),
    (
        "get_hold",
        "200",
        "CaptureHold",
        "post_capture",
        &[("holdId", "$request.path.holdId")],
    ),
    (
        "get_hold",
        "200",
        "VoidHold",
        "post_void",
        &[("holdId", "$request.path.holdId")],
    ),
    (
        "get_hold",
        "200",
        "GetBalance",
        "get_balance",
        &[("userId", "$response.body#/data/userId")],
    ),
    (
        "post_capture",
        "201",
        "GetHold",
        "get_hold",
        &[("holdId", "$request.path.holdId")],
    ),
    (
        "post_capture",
        "201",
        "GetTransaction",
        "get_transaction",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_capture",
        "201",
        "ReverseTransaction",
        "post_reverse",
        &[RECEIPT_TRANSACTION],
    ),
    (
        "post_void",
        "200",
        "GetHold",
        "get_hold",
        &[("holdId", "$request.path.holdId")],
    ),
    // Assets, the feed, keys.
    (
        "post_assets",
        "201",
        "GetSupply",
        "get_supply",
        &[("asset", "$response.body#/data/symbol")],
    ),
    (
        "post_assets",
        "201",
        "GetSupplyById",
        "get_supply",
        &[("asset", "$response.body#/data/id")],
    ),
    (
        "post_assets",
        "200",
        "GetSupply",
        "get_supply",
        &[("asset", "$response.body#/data/symbol")],
    ),
    (
        "get_assets",
        "200",
        "GetSupply",
        "get_supply",
        &[("asset", "$response.body#/data/0/symbol")],
    ),
    (
        "get_events",
        "200",
        "NextPage",
        "get_events",
        &[("after", "$response.body#/data/nextCursor")],
    ),
    (
        "post_keys",
        "201",
        "RevokeKey",
        "post_revoke",
        &[("name", "$response.body#/data/key/name")],
    ),
];

/// Puts `LINKS` on the answers that supply them.
struct Links;

impl Modify for Links {
    fn modify(&self, document: &mut Document) {
        use utoipa::openapi::link::LinkBuilder;
        for (_, operation) in operations_mut(document) {
            let id = operation.operation_id.clone().unwrap_or_default();
            for (_, status, name, target, parameters) in
                LINKS.iter().filter(|(source, ..)| *source == id)
            {
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status)
                else {
                    continue;
                };
                let link = parameters.iter().fold(
                    LinkBuilder::new().operation_id(*target),
                    |link, (parameter, expression)| link.parameter(*parameter, *expression),
                );
                response
                    .links
                    .insert((*name).to_owned(), RefOr::T(link.build()));
            }
        }
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

    #[test]
    fn every_link_leaves_a_documented_answer_for_a_documented_operation() {
        let document = ApiDoc::openapi();
        let mut responses = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        let mut document = document;
        for (_, operation) in operations_mut(&mut document) {
            let id = operation.operation_id.clone().unwrap_or_default();
            for status in operation.responses.responses.keys() {
                responses.insert((id.clone(), status.clone()));
            }
            ids.insert(id);
        }
        for (source, status, name, target, _) in LINKS {
            assert!(
                responses.contains(&((*source).to_owned(), (*status).to_owned())),
                "{name}: {source} documents no {status}"
            );
            assert!(ids.contains(*target), "{name}: no operation {target}");
        }
    }
}
