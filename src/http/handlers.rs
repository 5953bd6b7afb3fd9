//! The routes of API.md and their handlers. A handler parses its request
//! into domain types (every problem at once), hands it to the store, and
//! shapes the answer; it holds no SQL and no ledger rule.

use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::auth::{authorize, caller_allowed_for, caller_of, caller_still_allowed, RouteAccess};
use super::body::{BatchJsonObject, FieldErrors, JsonBody, JsonObject};
use super::envelope::success;
use super::holds::{get_hold, get_holds, post_capture, post_hold, post_void};
use super::json::{
    AnswerJson, Asset, Balance, Balances, BatchReceiptJson, Health, ReceiptJson, Transaction,
    TransactionDetailJson, TransactionPage,
};
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::{
    AssetRequest, BatchOperationRequest, BatchRequest, EntryRequest, ReverseRequest,
    TransferRequest,
};
use super::openapi::{
    BalanceParams, HistoryParams, IdempotencyKeyParam, TransactionIdParam, UserIdParam,
};
use super::watch::{get_events, get_metrics, get_supply};
use crate::domain::{
    Amount, AssetDecimals, AssetName, AssetRef, AssetSymbol, Cursor, EntryKind, IdempotencyKey,
    Metadata, Note, PageLimit, ReferenceId, Scope, UserId,
};
use crate::error::ApiError;
use crate::ledger::engine::{
    Command, CreditKind, EntryDetails, NewAsset, Operation, Outcome, Route,
};
use crate::limits::{BATCH_OPERATIONS_MAX, QUERY_PROBLEMS_MAX};
use crate::store::{AssetOutcome, HistoryQuery, StorageError, Store};

/// Declares every route once: the server registers exactly these, and
/// `ROUTES` lists them for the OpenAPI document's check against them. One
/// resource per path, answering its methods (and HEAD on a GET) and 405
/// with `Allow` to the others.
macro_rules! routes {
    ($($path:literal => [$($method:ident $access:expr => $handler:ident),+ $(,)?],)+) => {
        /// Every (method, path) the service serves, the path in OpenAPI's form.
        pub const ROUTES: &[(&str, &str)] = &[$($((stringify!($method), $path),)+)+];

        /// What each route of `ROUTES` asks of its callers, for the document.
        pub const ROUTE_ACCESS: &[(&str, &str, RouteAccess)] =
            &[$($((stringify!($method), $path, $access),)+)+];

        pub fn routes(config: &mut web::ServiceConfig) {
            $({
                const METHODS: ResourceMethods = ResourceMethods {
                    pattern: $path,
                    methods: &[$((stringify!($method), $access),)+],
                };
                let mut routes = Vec::new();
                $(
                    routes.push(web::$method().to($handler));
                    if stringify!($method) == "get" {
                        // API.md: HEAD on every GET route; actix-http sends
                        // the head of the GET answer without its body.
                        routes.push(web::head().to($handler));
                    }
                )+
                config.service(resource($path, METHODS, routes));
            })+
        }
    };
}

routes! {
    "/health" => [get RouteAccess::Open => get_health],
    "/assets" => [
        get RouteAccess::Needs(Scope::Read) => get_assets,
        post RouteAccess::Needs(Scope::Admin) => post_assets,
    ],
    "/wallets/{userId}/balance" => [get RouteAccess::Needs(Scope::Read) => get_balance],
    "/wallets/{userId}/transactions" => [get RouteAccess::Needs(Scope::Read) => get_transactions],
    "/wallets/{userId}/topup" => [post RouteAccess::Needs(Scope::Grant) => post_topup],
    "/wallets/{userId}/bonus" => [post RouteAccess::Needs(Scope::Grant) => post_bonus],
    "/wallets/{userId}/spend" => [post RouteAccess::Needs(Scope::Spend) => post_spend],
    "/wallets/{userId}/transfer" => [post RouteAccess::Needs(Scope::Spend) => post_transfer],
    "/transactions/{id}" => [get RouteAccess::Needs(Scope::Read) => get_transaction],
    "/transactions/{id}/reverse" => [post RouteAccess::Needs(Scope::Grant) => post_reverse],
    "/batch" => [post RouteAccess::NeedsPerOperation => post_batch],
    "/assets/{asset}/supply" => [get RouteAccess::Needs(Scope::Read) => get_supply],
    "/events" => [get RouteAccess::Needs(Scope::Read) => get_events],
    "/metrics" => [get RouteAccess::OpenOnLoopback(Scope::Admin) => get_metrics],
    "/wallets/{userId}/holds" => [
        get RouteAccess::Needs(Scope::Read) => get_holds,
        post RouteAccess::Needs(Scope::Spend) => post_hold,
    ],
    "/holds/{holdId}" => [get RouteAccess::Needs(Scope::Read) => get_hold],
    "/holds/{holdId}/capture" => [post RouteAccess::Needs(Scope::Spend) => post_capture],
    "/holds/{holdId}/void" => [post RouteAccess::Needs(Scope::Spend) => post_void],
    "/openapi.json" => [get RouteAccess::Open => get_openapi],
}

/// The methods one path answers, each with what it asks of its callers,
/// and the path's pattern: what metrics and logs name a request's route by.
#[derive(Debug, Clone, Copy)]
pub struct ResourceMethods {
    pub pattern: &'static str,
    pub methods: &'static [(&'static str, RouteAccess)],
}

impl ResourceMethods {
    /// What a request with `method` needs; None when the path does not
    /// answer it (405). HEAD is answered as GET.
    pub fn access_for(&self, method: &Method) -> Option<RouteAccess> {
        let asked = if method == Method::HEAD {
            "get"
        } else {
            method.as_str()
        };
        self.methods
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(asked))
            .map(|(_, access)| *access)
    }

    /// The `Allow` header of a 405.
    fn allow(&self) -> String {
        self.methods
            .iter()
            .map(|(name, _)| match *name {
                "get" => "GET, HEAD",
                "post" => "POST",
                _ => "",
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A resource answering `methods` and 405 in the envelope with `Allow` to
/// the others, behind the access check. A wrong method is answered 405
/// before any key is looked at.
fn resource(
    path: &str,
    methods: ResourceMethods,
    routes: Vec<actix_web::Route>,
) -> impl actix_web::dev::HttpServiceFactory {
    let resource = routes
        .into_iter()
        .fold(web::resource(path).app_data(methods), |resource, route| {
            resource.route(route)
        });
    resource
        .default_service(web::to(method_not_allowed))
        .wrap(from_fn(authorize))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    if let Some(methods) = request.app_data::<ResourceMethods>() {
        if let Ok(allow) = header::HeaderValue::from_str(&methods.allow()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    response
}

pub(super) fn ok<T: Serialize>(data: T) -> HttpResponse {
    success(StatusCode::OK, data)
}

/// API.md: GET /health
#[utoipa::path(get, path = "/health", tag = "service",
    summary = "Liveness and database reachability",
    responses((status = 200, description = "The service and its database answer.", body = Health)))]
pub(super) async fn get_health(store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    // Whatever keeps the database from answering, health reports as the
    // database: a read that fails, or writes that do (a full disk, files
    // changed under the server).
    if store.is_failing() {
        return Err(ApiError::DatabaseUnavailable(StorageError::WritesFailing));
    }
    store.health().map_err(ApiError::DatabaseUnavailable)?;
    Ok(ok(Health {
        status: "ok",
        database: "ok",
        version: env!("CARGO_PKG_VERSION"),
    }))
}

/// The OpenAPI 3.1 document of this API, itself generated from the code.
/// Served as the document itself, not in the envelope, so that OpenAPI tools
/// can read it as it is.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    summary = "This API's OpenAPI 3.1 document",
    responses((status = 200, description = "The OpenAPI document, bare (no envelope).",
        content_type = "application/json", body = Object)))]
pub(super) async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(super::openapi::document_json())
}

/// API.md: GET /assets
#[utoipa::path(get, path = "/assets", tag = "ledger",
    summary = "The asset types, ordered by symbol",
    responses((status = 200, description = "Every asset type.", body = Vec<Asset>)))]
pub(super) async fn get_assets(store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let rows = store.assets()?;
    Ok(ok(rows.into_iter().map(Asset::from).collect::<Vec<_>>()))
}

/// API.md: POST /assets
#[utoipa::path(post, path = "/assets", tag = "ledger",
    summary = "Create an asset type and its Treasury",
    request_body = AssetRequest,
    responses(
        (status = 201, description = "Created.", body = Asset),
        (status = 200, description = "An asset with this symbol, name and decimals exists already; \
            nothing written.", body = Asset)))]
pub(super) async fn post_assets(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let symbol = required_text(&mut body, "symbol", AssetSymbol::parse, &mut errors);
    let name = required_text(&mut body, "name", AssetName::parse, &mut errors);
    let decimals = match body.remove("decimals") {
        None | Some(Value::Null) => Some(AssetDecimals::default()),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(raw) => errors.check("decimals", AssetDecimals::parse(raw)),
            None => {
                errors.push("decimals", "must be an integer from 0 to 18");
                None
            }
        },
        Some(_) => {
            errors.push("decimals", "must be an integer from 0 to 18");
            None
        }
    };
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let (Some(symbol), Some(name), Some(decimals)) = (symbol, name, decimals) else {
        return Err(validated_but_missing());
    };
    caller_still_allowed(&request)?;
    let outcome = store
        .create_asset(NewAsset {
            symbol,
            name,
            decimals,
        })
        .await?;
    Ok(match outcome {
        AssetOutcome::Created(row) => success(StatusCode::CREATED, Asset::from(row)),
        AssetOutcome::AlreadyTheSame(row) => ok(Asset::from(row)),
    })
}

pub(super) fn path_user(request: &HttpRequest, errors: &mut FieldErrors) -> Option<UserId> {
    let raw = request.match_info().get("userId").unwrap_or_default();
    errors.check("userId", UserId::parse(raw))
}

/// The id in the path segment `name`: a UUID in its hyphenated form, or a
/// problem naming `name` (API.md, Conventions).
pub(super) fn path_uuid(
    request: &HttpRequest,
    name: &str,
    message: &str,
    errors: &mut FieldErrors,
) -> Option<Uuid> {
    let raw = request.match_info().get(name).unwrap_or_default();
    match Uuid::try_parse(raw) {
        Ok(id) if raw.len() == 36 => Some(id),
        _ => {
            errors.push(name, message);
            None
        }
    }
}

fn path_transaction_id(request: &HttpRequest, errors: &mut FieldErrors) -> Option<Uuid> {
    path_uuid(request, "id", "must be a transaction id (a UUID)", errors)
}

/// API.md: GET /wallets/{userId}/balance
#[utoipa::path(get, path = "/wallets/{userId}/balance", tag = "ledger",
    summary = "A user's balance in every asset, now or at an instant",
    params(UserIdParam, BalanceParams),
    responses((status = 200, description = "One row per asset type, 0 where the user has no account.",
        body = Balances)))]
pub(super) async fn get_balance(
    request: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    let at = parse_balance_query(request.query_string(), &mut errors);
    errors.into_result()?;
    let user = user.ok_or_else(validated_but_missing)?;
    let balances = match at {
        None => store
            .balances(&user)?
            .into_iter()
            .map(Balance::from)
            .collect(),
        Some(at_ms) => store
            .balances_as_of(&user, at_ms)?
            .into_iter()
            .map(Balance::as_it_stood)
            .collect(),
    };
    Ok(ok(Balances {
        user_id: user.as_str().to_owned(),
        balances,
    }))
}

/// `?at=<RFC 3339 time>` of a balance, in milliseconds since the epoch (any
/// offset; a finer fraction is cut to the millisecond, which counts the
/// entries of that millisecond). Not a time, or one in the future, is a
/// problem naming `at`; any other parameter is refused.
fn parse_balance_query(raw: &str, errors: &mut FieldErrors) -> Option<i64> {
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(raw) {
        Ok(pairs) => pairs,
        Err(_) => {
            errors.push("query", "is not a valid query string");
            return None;
        }
    };
    let mut at = None;
    for (index, (name, value)) in pairs.iter().enumerate() {
        if errors.len() >= QUERY_PROBLEMS_MAX {
            break;
        }
        match name.as_str() {
            "at" if pairs[..index].iter().any(|(earlier, _)| earlier == "at") => {
                errors.push("at", "is given more than once")
            }
            "at" if value.is_empty() => refuse_empty("at", errors),
            "at" => {
                let parsed = time::OffsetDateTime::parse(
                    value,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
                .and_then(|time| i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok());
                match parsed {
                    Some(ms) if ms > crate::clock::now_ms() => {
                        errors.push("at", "is in the future")
                    }
                    Some(ms) => at = Some(ms),
                    None => errors.push(
                        "at",
                        "must be an RFC 3339 time, such as 2026-11-23T10:15:30.123Z",
                    ),
                }
            }
            _ => errors.push(&truncate_for_echo(name), "is not a known parameter (at)"),
        }
    }
    at
}

/// API.md: GET /wallets/{userId}/transactions?asset=&type=&referenceId=&limit=&cursor=
#[utoipa::path(get, path = "/wallets/{userId}/transactions", tag = "ledger",
    summary = "A user's history, newest first, a page at a time",
    params(UserIdParam, HistoryParams),
    responses((status = 200, description = "A page of entries and the cursor of the next.",
        body = TransactionPage)))]
pub(super) async fn get_transactions(
    request: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    let query = parse_history_query(request.query_string(), &mut errors);
    errors.into_result()?;
    let user = user.ok_or_else(validated_but_missing)?;
    let page = store
        .history(user, query)
        .await
        .map_err(ApiError::from)
        .map_err(|error| match error {
            // Here the asset is a filter the caller wrote, not a thing to act on.
            ApiError::AssetNotFound => ApiError::field("asset", "no asset has this symbol or id"),
            other => other,
        })?;
    Ok(ok(TransactionPage {
        items: page.items.into_iter().map(Transaction::from).collect(),
        next_cursor: page.next_cursor.map(Cursor::encode),
    }))
}

/// API.md: GET /transactions/{id}
#[utoipa::path(get, path = "/transactions/{id}", tag = "ledger",
    summary = "One transaction, both sides",
    params(TransactionIdParam),
    responses((status = 200, description = "The transaction, and how much of it later reversals undid.",
        body = TransactionDetailJson)))]
pub(super) async fn get_transaction(
    request: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let id = path_transaction_id(&request, &mut errors);
    errors.into_result()?;
    let detail = store.transaction(id.ok_or_else(validated_but_missing)?)?;
    Ok(ok(TransactionDetailJson::from(detail)))
}

/// The query string of a history request. An unknown, repeated or empty
/// parameter is refused, so a typo (or a form field left blank) never
/// silently widens a filter: `?asset=` is not "every asset".
fn parse_history_query(raw: &str, errors: &mut FieldErrors) -> HistoryQuery {
    let mut query = HistoryQuery {
        asset: None,
        kind: None,
        reference_id: None,
        limit: PageLimit::default(),
        cursor: None,
    };
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(raw) {
        Ok(pairs) => pairs,
        Err(_) => {
            errors.push("query", "is not a valid query string");
            return query;
        }
    };
    // Linear in the query's length: a set of the names seen, and no more
    // than `QUERY_PROBLEMS_MAX` problems reported (each name echoed cut
    // short), however long and repetitive a hostile query string is.
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (name, value) in &pairs {
        if errors.len() >= QUERY_PROBLEMS_MAX {
            break;
        }
        if !seen.insert(name.as_str()) {
            errors.push(&truncate_for_echo(name), "is given more than once");
            continue;
        }
        let known = ["asset", "type", "referenceId", "limit", "cursor"];
        if value.is_empty() && known.contains(&name.as_str()) {
            refuse_empty(name, errors);
            continue;
        }
        match name.as_str() {
            "asset" => query.asset = errors.check("asset", AssetRef::parse(value)),
            "type" => query.kind = errors.check("type", EntryKind::parse(value)),
            "referenceId" => {
                query.reference_id = errors.check("referenceId", ReferenceId::parse(value))
            }
            "limit" => {
                if let Some(limit) = errors.check("limit", PageLimit::parse(value)) {
                    query.limit = limit;
                }
            }
            "cursor" => query.cursor = errors.check("cursor", Cursor::parse(value)),
            _ => errors.push(
                &truncate_for_echo(name),
                "is not a known parameter (asset, type, referenceId, limit, cursor)",
            ),
        }
    }
    query
}

/// API.md: POST /wallets/{userId}/topup
#[utoipa::path(post, path = "/wallets/{userId}/topup", tag = "ledger",
    summary = "Credit a user from the Treasury (a purchase)",
    params(UserIdParam, IdempotencyKeyParam), request_body = EntryRequest,
    responses(
        (status = 201, description = "Written: the new entry and the balance after it.", body = ReceiptJson),
        (status = 200, description = "A retry of an earlier request with this key: its original answer, \
            with `Idempotent-Replayed: true`; nothing written.", body = ReceiptJson)))]
pub(super) async fn post_topup(
    request: HttpRequest,
    body: JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    post_single(Route::Topup, request, body, store).await
}

/// API.md: POST /wallets/{userId}/bonus
#[utoipa::path(post, path = "/wallets/{userId}/bonus", tag = "ledger",
    summary = "Credit a user from the Treasury, as a BONUS",
    params(UserIdParam, IdempotencyKeyParam), request_body = EntryRequest,
    responses(
        (status = 201, description = "Written: the new entry and the balance after it.", body = ReceiptJson),
        (status = 200, description = "A retry of an earlier request with this key: its original answer, \
            with `Idempotent-Replayed: true`; nothing written.", body = ReceiptJson)))]
pub(super) async fn post_bonus(
    request: HttpRequest,
    body: JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    post_single(Route::Bonus, request, body, store).await
}

/// API.md: POST /wallets/{userId}/spend
#[utoipa::path(post, path = "/wallets/{userId}/spend", tag = "ledger",
    summary = "Debit a user back to the Treasury",
    params(UserIdParam, IdempotencyKeyParam), request_body = EntryRequest,
    responses(
        (status = 201, description = "Written: the new entry and the balance after it.", body = ReceiptJson),
        (status = 200, description = "A retry of an earlier request with this key: its original answer, \
            with `Idempotent-Replayed: true`; nothing written.", body = ReceiptJson)))]
pub(super) async fn post_spend(
    request: HttpRequest,
    body: JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    post_single(Route::Spend, request, body, store).await
}

/// API.md: POST /wallets/{userId}/transfer
#[utoipa::path(post, path = "/wallets/{userId}/transfer", tag = "ledger",
    summary = "Move value from this user to another",
    params(UserIdParam, IdempotencyKeyParam), request_body = TransferRequest,
    responses(
        (status = 201, description = "Written: the sender's side of the entry and the sender's balance after it.",
            body = ReceiptJson),
        (status = 200, description = "A retry of an earlier request with this key: its original answer, \
            with `Idempotent-Replayed: true`; nothing written.", body = ReceiptJson)))]
pub(super) async fn post_transfer(
    request: HttpRequest,
    body: JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    post_single(Route::Transfer, request, body, store).await
}

/// API.md: POST /transactions/{id}/reverse
#[utoipa::path(post, path = "/transactions/{id}/reverse", tag = "ledger",
    summary = "Undo all or part of a transaction",
    params(TransactionIdParam, IdempotencyKeyParam), request_body = ReverseRequest,
    responses(
        (status = 201, description = "Written: the REVERSAL, seen from the user of the original's path, \
            and that user's balance after it.", body = ReceiptJson),
        (status = 200, description = "A retry of an earlier request with this key: its original answer, \
            with `Idempotent-Replayed: true`; nothing written.", body = ReceiptJson)))]
pub(super) async fn post_reverse(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let entry = path_transaction_id(&request, &mut errors);
    let key = parse_idempotency_key(&request, body.remove("idempotencyKey"), &mut errors);
    let amount = match body.remove("amount") {
        None | Some(Value::Null) => Some(None),
        Some(value) => parse_amount_value(value, "amount", &mut errors).map(Some),
    };
    let details = parse_details(&mut body, "", &mut errors);
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let (Some(entry), Some(key), Some(amount), Some(details)) = (entry, key, amount, details)
    else {
        return Err(validated_but_missing());
    };
    let caller = caller_still_allowed(&request)?;
    let command = Command {
        caller,
        key,
        route: Route::Reverse,
        operations: vec![Operation::Reverse {
            entry,
            amount,
            details,
        }],
    };
    answer(store.apply(command).await?)
}

/// API.md: POST /batch
#[utoipa::path(post, path = "/batch", tag = "ledger",
    summary = "Apply up to 100 operations all together or not at all",
    params(IdempotencyKeyParam), request_body = BatchRequest,
    responses(
        (status = 201, description = "Written: one transaction per operation, in order, and one balance \
            per (user, asset) touched.", body = BatchReceiptJson),
        (status = 200, description = "A retry of an earlier batch with this key: its original answer, \
            with `Idempotent-Replayed: true`; nothing written.", body = BatchReceiptJson)))]
pub(super) async fn post_batch(
    request: HttpRequest,
    JsonBody(mut body): BatchJsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let key = parse_idempotency_key(&request, body.remove("idempotencyKey"), &mut errors);
    let mut operations = Vec::new();
    let mut needed: Vec<Scope> = Vec::new();
    match body.remove("operations") {
        Some(Value::Array(items)) if (1..=BATCH_OPERATIONS_MAX).contains(&items.len()) => {
            for (index, item) in items.into_iter().enumerate() {
                if errors.len() >= QUERY_PROBLEMS_MAX {
                    break;
                }
                if let Some((operation, scope)) = parse_batch_operation(index, item, &mut errors) {
                    if !needed.contains(&scope) {
                        needed.push(scope);
                    }
                    operations.push(operation);
                }
            }
        }
        Some(Value::Array(_)) => errors.push(
            "operations",
            format!("must hold 1 to {BATCH_OPERATIONS_MAX} operations"),
        ),
        None | Some(Value::Null) => errors.push("operations", "is required"),
        Some(_) => errors.push("operations", "must be a list of operations"),
    }
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let key = key.ok_or_else(validated_but_missing)?;
    // API.md: every scope its operations would need one by one, checked
    // now that the body says which; the first missing is the 403's.
    let caller = caller_allowed_for(&request, &needed)?;
    let command = Command {
        caller,
        key,
        route: Route::Batch,
        operations,
    };
    answer(store.apply(command).await?)
}

/// One operation of a batch, its fields named `operations[i].field`, and
/// the scope it needs.
fn parse_batch_operation(
    index: usize,
    item: Value,
    errors: &mut FieldErrors,
) -> Option<(Operation, Scope)> {
    let prefix = format!("operations[{index}].");
    let Value::Object(mut fields) = item else {
        errors.push(&format!("operations[{index}]"), "must be an object");
        return None;
    };
    let name = |field: &str| format!("{prefix}{field}");
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => match kind.as_str() {
            "topup" => Some(Route::Topup),
            "bonus" => Some(Route::Bonus),
            "spend" => Some(Route::Spend),
            "transfer" => Some(Route::Transfer),
            _ => {
                errors.push(
                    &name("type"),
                    "must be one of topup, bonus, spend, transfer",
                );
                None
            }
        },
        None | Some(Value::Null) => {
            errors.push(&name("type"), "is required");
            None
        }
        Some(_) => {
            errors.push(&name("type"), "must be a string");
            None
        }
    };
    let user = required_text(&mut fields, &name("userId"), UserId::parse, errors);
    // `to` is for transfers only; elsewhere it is refused, not ignored.
    let to = match (kind, fields.remove("to")) {
        (Some(Route::Transfer), value) => match value {
            Some(Value::String(raw)) => errors.check(&name("to"), UserId::parse(&raw)),
            None | Some(Value::Null) => {
                errors.push(&name("to"), "is required for a transfer");
                None
            }
            Some(_) => {
                errors.push(&name("to"), "must be a string");
                None
            }
        },
        (_, None | Some(Value::Null)) => None,
        (_, Some(_)) => {
            errors.push(&name("to"), "is only for transfers");
            None
        }
    };
    let fields_out = parse_movement(&mut fields, &prefix, errors);
    refuse_unknown_fields_named(&fields, &prefix, errors);
    let (kind, user, (asset, amount, details)) = (kind?, user?, fields_out?);
    if kind == Route::Transfer && to.as_ref() == Some(&user) {
        errors.push(&name("to"), "must be another user than userId");
        return None;
    }
    operation_of(kind, user, to, asset, amount, details)
}

/// The operation a route (or a batch `type`) names, and the scope it needs.
fn operation_of(
    route: Route,
    user: UserId,
    to: Option<UserId>,
    asset: AssetRef,
    amount: Amount,
    details: EntryDetails,
) -> Option<(Operation, Scope)> {
    Some(match route {
        Route::Topup | Route::Bonus => (
            Operation::Credit {
                kind: if route == Route::Topup {
                    CreditKind::Topup
                } else {
                    CreditKind::Bonus
                },
                user,
                asset,
                amount,
                details,
            },
            Scope::Grant,
        ),
        Route::Spend => (
            Operation::Spend {
                user,
                asset,
                amount,
                details,
            },
            Scope::Spend,
        ),
        Route::Transfer => (
            Operation::Transfer {
                from: user,
                to: to?,
                asset,
                amount,
                details,
            },
            Scope::Spend,
        ),
        Route::Reverse | Route::Batch | Route::Hold | Route::Capture | Route::Void => return None,
    })
}

/// A topup, bonus, spend or transfer by its own route: the path, the
/// header and every body field, each checked, every problem reported
/// together; then the key is checked again and the command applied.
async fn post_single(
    route: Route,
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    caller_of(&request)?;
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    let to = if route == Route::Transfer {
        required_text(&mut body, "to", UserId::parse, &mut errors)
    } else {
        None
    };
    let key = parse_idempotency_key(&request, body.remove("idempotencyKey"), &mut errors);
    let movement = parse_movement(&mut body, "", &mut errors);
    refuse_unknown_fields(&body, &mut errors);
    if let (Some(user), Some(to)) = (&user, &to) {
        if user == to {
            errors.push("to", "must be another user than userId");
        }
    }
    errors.into_result()?;
    let (Some(user), Some(key), Some((asset, amount, details))) = (user, key, movement) else {
        return Err(validated_but_missing());
    };
    let (operation, _) =
        operation_of(route, user, to, asset, amount, details).ok_or_else(validated_but_missing)?;
    // The body has arrived: the key is checked again before anything is
    // written, so one revoked while the body was on its way is refused.
    let caller = caller_still_allowed(&request)?;
    let command = Command {
        caller,
        key,
        route,
        operations: vec![operation],
    };
    answer(store.apply(command).await?)
}

/// 201 with the answer for a new command; 200 with `Idempotent-Replayed:
/// true` and the original answer for a retry.
pub(super) fn answer(outcome: Outcome) -> Result<HttpResponse, ApiError> {
    Ok(match outcome {
        Outcome::Created(answer) => success(StatusCode::CREATED, AnswerJson::from(answer)),
        Outcome::Replayed(answer) => {
            let mut response = ok(AnswerJson::from(answer));
            response.headers_mut().insert(
                header::HeaderName::from_static("idempotent-replayed"),
                header::HeaderValue::from_static("true"),
            );
            response
        }
    })
}

/// `asset`, `amount`, `referenceId`, `note` and `metadata`, each field named
/// with `prefix`.
pub(super) fn parse_movement(
    body: &mut Map<String, Value>,
    prefix: &str,
    errors: &mut FieldErrors,
) -> Option<(AssetRef, Amount, EntryDetails)> {
    let asset = required_text(body, &format!("{prefix}asset"), AssetRef::parse, errors);
    let amount = match body.remove("amount") {
        None | Some(Value::Null) => {
            errors.push(&format!("{prefix}amount"), "is required");
            None
        }
        Some(value) => parse_amount_value(value, &format!("{prefix}amount"), errors),
    };
    let details = parse_details(body, prefix, errors);
    Some((asset?, amount?, details?))
}

pub(super) fn parse_amount_value(
    value: Value,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<Amount> {
    match value {
        Value::Number(number) => match number.as_u64() {
            Some(raw) => errors.check(field, Amount::parse(raw)),
            None => {
                errors.push(field, "must be a positive integer");
                None
            }
        },
        _ => {
            errors.push(field, "must be a JSON integer, not a string or other type");
            None
        }
    }
}

/// `referenceId`, `note` and `metadata`, all optional.
pub(super) fn parse_details(
    body: &mut Map<String, Value>,
    prefix: &str,
    errors: &mut FieldErrors,
) -> Option<EntryDetails> {
    let reference_id = optional_text(body, "referenceId", prefix, ReferenceId::parse, errors);
    let note = optional_text(body, "note", prefix, Note::parse, errors);
    let metadata = match body.remove("metadata") {
        None | Some(Value::Null) => Some(None),
        Some(value) => errors
            .check(&format!("{prefix}metadata"), Metadata::parse(&value))
            .map(Some),
    };
    Some(EntryDetails {
        reference_id: reference_id?,
        note: note?,
        metadata: metadata?,
    })
}

/// A required string field, parsed.
fn required_text<T>(
    body: &mut Map<String, Value>,
    field: &str,
    parse: impl Fn(&str) -> Result<T, crate::domain::ParseError>,
    errors: &mut FieldErrors,
) -> Option<T> {
    let key = field.rsplit('.').next().unwrap_or(field);
    match body.remove(key) {
        Some(Value::String(raw)) => errors.check(field, parse(&raw)),
        None | Some(Value::Null) => {
            errors.push(field, "is required");
            None
        }
        Some(_) => {
            errors.push(field, "must be a string");
            None
        }
    }
}

/// Every field left in `body` is one the route does not know.
pub(super) fn refuse_unknown_fields(body: &Map<String, Value>, errors: &mut FieldErrors) {
    refuse_unknown_fields_named(body, "", errors);
}

fn refuse_unknown_fields_named(body: &Map<String, Value>, prefix: &str, errors: &mut FieldErrors) {
    for unknown in body.keys() {
        if errors.len() >= QUERY_PROBLEMS_MAX {
            break;
        }
        errors.push(
            &format!("{prefix}{}", truncate_for_echo(unknown)),
            "is not a known field",
        );
    }
}

/// A field validation said was there is not: a defect, answered 500.
pub(super) fn validated_but_missing() -> ApiError {
    ApiError::Internal(anyhow::anyhow!(
        "a field was missing although validation passed"
    ))
}

const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The key from the body field or the `Idempotency-Key` header: one of them is
/// required, and when both are given they must agree. Problems with both are
/// reported together.
pub(super) fn parse_idempotency_key(
    request: &HttpRequest,
    from_body: Option<Value>,
    errors: &mut FieldErrors,
) -> Option<IdempotencyKey> {
    /// One source of the key: not given, given but refused, or given and valid.
    enum Given {
        Absent,
        Refused,
        Valid(IdempotencyKey),
    }
    let checked = |parsed: Option<IdempotencyKey>| parsed.map_or(Given::Refused, Given::Valid);
    let header_values: Vec<_> = request.headers().get_all(IDEMPOTENCY_KEY_HEADER).collect();
    let from_header = match header_values.as_slice() {
        [] => Given::Absent,
        [value] => match value.to_str() {
            Ok(text) => checked(errors.check("Idempotency-Key", IdempotencyKey::parse(text))),
            Err(_) => {
                errors.push("Idempotency-Key", "must be visible ASCII");
                Given::Refused
            }
        },
        _ => {
            errors.push("Idempotency-Key", "must be sent once");
            Given::Refused
        }
    };
    let from_body = match from_body {
        None | Some(Value::Null) => Given::Absent,
        Some(Value::String(text)) => {
            checked(errors.check("idempotencyKey", IdempotencyKey::parse(&text)))
        }
        Some(_) => {
            errors.push("idempotencyKey", "must be a string");
            Given::Refused
        }
    };
    match (from_body, from_header) {
        (Given::Valid(body), Given::Valid(header)) if body != header => {
            errors.push(
                "idempotencyKey",
                "differs from the Idempotency-Key header; send one, or the same in both",
            );
            None
        }
        (Given::Valid(key), Given::Valid(_) | Given::Absent)
        | (Given::Absent, Given::Valid(key)) => Some(key),
        (Given::Absent, Given::Absent) => {
            errors.push(
                "idempotencyKey",
                "is required, as this field or as the Idempotency-Key header",
            );
            None
        }
        // A refused source has already said why.
        (Given::Refused, _) | (_, Given::Refused) => None,
    }
}

/// An optional string field: absent or null is `Some(None)`; a problem is
/// `None`. Its problems are named with `prefix`.
fn optional_text<T>(
    body: &mut Map<String, Value>,
    field: &str,
    prefix: &str,
    parse: impl Fn(&str) -> Result<T, crate::domain::ParseError>,
    errors: &mut FieldErrors,
) -> Option<Option<T>> {
    let named = format!("{prefix}{field}");
    match body.remove(field) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text)) => errors.check(&named, parse(&text)).map(Some),
        Some(_) => {
            errors.push(&named, "must be a string or null");
            None
        }
    }
}

/// A query parameter given with no value: refused rather than read as
/// absent, since a filter or a time the caller meant to set and left blank
/// would otherwise answer a wider question than the one asked.
pub(super) fn refuse_empty(name: &str, errors: &mut FieldErrors) {
    errors.push(
        name,
        "is empty: give it a value, or leave the parameter out",
    );
}

/// A caller's own field name, echoed back in an error, cut to a sane length.
pub(super) fn truncate_for_echo(name: &str) -> String {
    const ECHO_CHARS_MAX: usize = 64;
    if name.chars().count() <= ECHO_CHARS_MAX {
        name.to_owned()
    } else {
        let mut cut: String = name.chars().take(ECHO_CHARS_MAX).collect();
        cut.push('…');
        cut
    }
}
