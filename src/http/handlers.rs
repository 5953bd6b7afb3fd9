//! The routes of API.md and their handlers.

use actix_web::http::{header, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;

use super::auth::{authorize, caller_of, caller_still_allowed, RouteAccess};
use super::body::{FieldErrors, JsonObject};
use super::envelope::success;
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::EntryRequest;
use super::json::{Asset, Balance, Balances, Health, ReceiptJson, Transaction, TransactionPage};
use super::openapi::{HistoryParams, IdempotencyKeyParam, UserIdParam};
use crate::domain::{
    Amount, AssetRef, Cursor, EntryKind, IdempotencyKey, Note, PageLimit, ReferenceId, Scope,
    UserId,
};
use crate::error::ApiError;
use crate::limits::QUERY_PROBLEMS_MAX;
use crate::storage::reads::{self, HistoryQuery};
use crate::storage::writer::WriterHandle;
use crate::storage::{OffWorkerPool, PostCommand, ReadPool, StorageError, WriteOutcome};

/// Declares every route once: the server registers exactly these, and
/// `ROUTES` lists them for the OpenAPI document's check against them.
macro_rules! routes {
    ($($method:ident $path:literal, $access:expr => $handler:ident,)+) => {
        /// Every (method, path) the service serves, the path in OpenAPI's form.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path),)+];

        /// What each route of `ROUTES` asks of its callers, for the document.
        pub const ROUTE_ACCESS: &[(&str, &str, RouteAccess)] =
            &[$((stringify!($method), $path, $access),)+];

        pub fn routes(config: &mut web::ServiceConfig) {
            $(
                let method = RouteMethod(stringify!($method));
                let mut routes = vec![web::$method().to($handler)];
                if method.answers_head() {
                    // API.md: HEAD on every GET route; actix-http sends the
                    // head of the GET answer without its body.
                    routes.push(web::head().to($handler));
                }
                config.service(one_method($path, method, $access, routes));
            )+
        }
    };
}

routes! {
    get "/health", RouteAccess::Open => get_health,
    get "/assets", RouteAccess::Needs(Scope::Read) => get_assets,
    get "/wallets/{userId}/balance", RouteAccess::Needs(Scope::Read) => get_balance,
    get "/wallets/{userId}/transactions", RouteAccess::Needs(Scope::Read) => get_transactions,
    post "/wallets/{userId}/topup", RouteAccess::Needs(Scope::Grant) => post_topup,
    post "/wallets/{userId}/bonus", RouteAccess::Needs(Scope::Grant) => post_bonus,
    post "/wallets/{userId}/spend", RouteAccess::Needs(Scope::Spend) => post_spend,
    get "/openapi.json", RouteAccess::Open => get_openapi,
}

/// The method a route answers (`get`, `post`), as the routes table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMethod(pub &'static str);

impl RouteMethod {
    fn answers_head(self) -> bool {
        self.0 == "get"
    }

    /// Whether a request with `method` reaches the handler (and so needs the
    /// access check) rather than the 405.
    pub fn accepts(self, method: &actix_web::http::Method) -> bool {
        method.as_str().eq_ignore_ascii_case(self.0)
            || (self.answers_head() && method == actix_web::http::Method::HEAD)
    }

    /// The `Allow` header of a 405.
    fn allow(self) -> &'static str {
        match self.0 {
            "get" => "GET, HEAD",
            "post" => "POST",
            "put" => "PUT",
            "delete" => "DELETE",
            _ => "",
        }
    }
}

/// A resource that answers one method (and HEAD, for a GET), and 405 in the
/// envelope with `Allow` to the others, behind the access check for
/// `access`. A wrong method is answered 405 before any key is looked at.
fn one_method(
    path: &str,
    method: RouteMethod,
    access: RouteAccess,
    routes: Vec<actix_web::Route>,
) -> impl actix_web::dev::HttpServiceFactory {
    let resource = routes.into_iter().fold(
        web::resource(path).app_data(access).app_data(method),
        |resource, route| resource.route(route),
    );
    resource
        .default_service(web::to(method_not_allowed))
        .wrap(from_fn(authorize))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    if let Some(method) = request.app_data::<RouteMethod>() {
        response.headers_mut().insert(
            header::ALLOW,
            header::HeaderValue::from_static(method.allow()),
        );
    }
    response
}

/// Runs a read on a pooled read-only connection, on the worker thread
/// itself. Every read is bounded (a balance is a row per asset, a history
/// page at most `PAGE_LIMIT_MAX` rows, each found by one index descent) and
/// WAL readers never wait for the writer, so a read takes microseconds; the
/// hop to the blocking pool and back cost more than that, and doing without
/// it raised balance reads from about 42,000 to 55,000 a second on two cores
/// (`wallet bench --scenarios read`). Each worker holds one connection at a
/// time, so the pool never makes it wait.
fn read<T, E>(
    pool: &ReadPool,
    query: impl FnOnce(&mut Connection) -> Result<T, E>,
) -> Result<T, ApiError>
where
    E: Into<ApiError>,
{
    let mut conn = pool.get().map_err(StorageError::from)?;
    query(&mut conn).map_err(Into::into)
}

fn ok<T: Serialize>(data: T) -> HttpResponse {
    success(StatusCode::OK, data)
}

/// API.md: GET /health
#[utoipa::path(get, path = "/health", tag = "service",
    summary = "Liveness and database reachability",
    responses((status = 200, description = "The service and its database answer.", body = Health)))]
pub(super) async fn get_health(
    pool: web::Data<ReadPool>,
    writer: web::Data<WriterHandle>,
) -> Result<HttpResponse, ApiError> {
    // Whatever keeps the database from answering, health reports as the
    // database: a read that fails, or writes that do (a full disk, files
    // changed under the server).
    if writer.is_failing() {
        return Err(ApiError::DatabaseUnavailable(StorageError::WritesFailing));
    }
    read(&pool, |conn| {
        reads::health(conn).map_err(ApiError::DatabaseUnavailable)
    })?;
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
pub(super) async fn get_assets(pool: web::Data<ReadPool>) -> Result<HttpResponse, ApiError> {
    let rows = read(&pool, reads::assets)?;
    Ok(ok(rows.into_iter().map(Asset::from).collect::<Vec<_>>()))
}

fn path_user(request: &HttpRequest, errors: &mut FieldErrors) -> Option<UserId> {
    let raw = request.match_info().get("userId").unwrap_or_default();
    errors.check("userId", UserId::parse(raw))
}

/// API.md: GET /wallets/{userId}/balance
#[utoipa::path(get, path = "/wallets/{userId}/balance", tag = "ledger",
    summary = "A user's balance in every asset",
    params(UserIdParam),
    responses((status = 200, description = "One row per asset type, 0 where the user has no account.",
        body = Balances)))]
pub(super) async fn get_balance(
    request: HttpRequest,
    pool: web::Data<ReadPool>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    errors.into_result()?;
    let user = user.expect("a user id that passed validation");
    let rows = read(&pool, |conn| reads::balances(conn, &user))?;
    Ok(ok(Balances {
        user_id: user.as_str().to_owned(),
        balances: rows.into_iter().map(Balance::from).collect(),
    }))
}

/// API.md: GET /wallets/{userId}/transactions?asset=&type=&limit=&cursor=
#[utoipa::path(get, path = "/wallets/{userId}/transactions", tag = "ledger",
    summary = "A user's history, newest first, a page at a time",
    params(UserIdParam, HistoryParams),
    responses((status = 200, description = "A page of entries and the cursor of the next.",
        body = TransactionPage)))]
pub(super) async fn get_transactions(
    request: HttpRequest,
    pool: web::Data<OffWorkerPool>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    let query = parse_history_query(request.query_string(), &mut errors);
    errors.into_result()?;
    let user = user.expect("a user id that passed validation");
    // A page is bounded work, but a cold page cache makes it disk reads:
    // it runs on the blocking pool, under a time limit, so it can never
    // stall an HTTP worker (health checks, writes) behind it.
    let pool = pool.into_inner();
    let page = web::block(move || {
        let mut conn = pool.0.get().map_err(StorageError::from)?;
        reads::within_time_limit(&mut conn, |conn| reads::history(conn, &user, &query))
            .map_err(ApiError::from)
    })
    .await
    .map_err(|error| ApiError::Internal(error.into()))?
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

/// The query string of a history request. An empty value means "not given",
/// as in API.md's own template `?asset=&type=&limit=&cursor=`; an unknown or
/// repeated parameter is refused, so a typo never silently widens a filter.
fn parse_history_query(raw: &str, errors: &mut FieldErrors) -> HistoryQuery {
    let mut query = HistoryQuery {
        asset: None,
        kind: None,
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
        if value.is_empty() && ["asset", "type", "limit", "cursor"].contains(&name.as_str()) {
            continue;
        }
        match name.as_str() {
            "asset" => query.asset = errors.check("asset", AssetRef::parse(value)),
            "type" => query.kind = errors.check("type", EntryKind::parse(value)),
            "limit" => {
                if let Some(limit) = errors.check("limit", PageLimit::parse(value)) {
                    query.limit = limit;
                }
            }
            "cursor" => query.cursor = errors.check("cursor", Cursor::parse(value)),
            _ => errors.push(
                &truncate_for_echo(name),
                "is not a known parameter (asset, type, limit, cursor)",
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
    writer: web::Data<WriterHandle>,
) -> Result<HttpResponse, ApiError> {
    post_entry(EntryKind::Topup, request, body, writer).await
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
    writer: web::Data<WriterHandle>,
) -> Result<HttpResponse, ApiError> {
    post_entry(EntryKind::Bonus, request, body, writer).await
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
    writer: web::Data<WriterHandle>,
) -> Result<HttpResponse, ApiError> {
    post_entry(EntryKind::Spend, request, body, writer).await
}

/// 201 with the receipt for a new entry; 200 with `Idempotent-Replayed: true`
/// and the original receipt for a retry.
async fn post_entry(
    kind: EntryKind,
    request: HttpRequest,
    body: JsonObject,
    writer: web::Data<WriterHandle>,
) -> Result<HttpResponse, ApiError> {
    let mut command = parse_post_command(kind, &request, body)?;
    // The body has arrived: the key is checked again before anything is
    // written, so one revoked while the body was on its way is refused.
    command.caller = caller_still_allowed(&request)?;
    match writer.post(command).await.map_err(ApiError::from)? {
        WriteOutcome::Created(receipt) => {
            Ok(success(StatusCode::CREATED, ReceiptJson::from(receipt)))
        }
        WriteOutcome::Replayed(receipt) => {
            let mut response = ok(ReceiptJson::from(receipt));
            response.headers_mut().insert(
                header::HeaderName::from_static("idempotent-replayed"),
                header::HeaderValue::from_static("true"),
            );
            Ok(response)
        }
    }
}

const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The path, the header and every body field, each checked, every problem
/// reported together.
fn parse_post_command(
    kind: EntryKind,
    request: &HttpRequest,
    JsonObject(mut body): JsonObject,
) -> Result<PostCommand, ApiError> {
    let caller = caller_of(request)?;
    let mut errors = FieldErrors::default();
    let user = path_user(request, &mut errors);

    let asset = match body.remove("asset") {
        Some(Value::String(raw)) => errors.check("asset", AssetRef::parse(&raw)),
        None | Some(Value::Null) => {
            errors.push("asset", "is required");
            None
        }
        Some(_) => {
            errors.push("asset", "must be a string");
            None
        }
    };
    let amount = match body.remove("amount") {
        Some(Value::Number(number)) => match number.as_u64() {
            Some(raw) => errors.check("amount", Amount::parse(raw)),
            None => {
                errors.push("amount", "must be a positive integer");
                None
            }
        },
        None | Some(Value::Null) => {
            errors.push("amount", "is required");
            None
        }
        Some(_) => {
            errors.push(
                "amount",
                "must be a JSON integer, not a string or other type",
            );
            None
        }
    };
    let idempotency_key =
        parse_idempotency_key(request, body.remove("idempotencyKey"), &mut errors);
    let reference_id = optional_text(&mut body, "referenceId", ReferenceId::parse, &mut errors);
    let note = optional_text(&mut body, "note", Note::parse, &mut errors);
    for unknown in body.keys() {
        errors.push(&truncate_for_echo(unknown), "is not a known field");
    }
    errors.into_result()?;
    match (user, asset, amount, idempotency_key) {
        (Some(user), Some(asset), Some(amount), Some(idempotency_key)) => Ok(PostCommand {
            caller,
            user,
            kind,
            asset,
            amount,
            idempotency_key,
            reference_id: reference_id.flatten(),
            note: note.flatten(),
        }),
        _ => Err(ApiError::Internal(anyhow::anyhow!(
            "a field was missing although validation passed"
        ))),
    }
}

/// The key from the body field or the `Idempotency-Key` header: one of them is
/// required, and when both are given they must agree. Problems with both are
/// reported together.
fn parse_idempotency_key(
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

/// An optional string field: absent or null is `Some(None)`; a problem is `None`.
fn optional_text<T>(
    body: &mut serde_json::Map<String, Value>,
    field: &str,
    parse: impl Fn(&str) -> Result<T, crate::domain::ParseError>,
    errors: &mut FieldErrors,
) -> Option<Option<T>> {
    match body.remove(field) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text)) => errors.check(field, parse(&text)).map(Some),
        Some(_) => {
            errors.push(field, "must be a string or null");
            None
        }
    }
}

/// A caller's own field name, echoed back in an error, cut to a sane length.
fn truncate_for_echo(name: &str) -> String {
    const ECHO_CHARS_MAX: usize = 64;
    if name.chars().count() <= ECHO_CHARS_MAX {
        name.to_owned()
    } else {
        let mut cut: String = name.chars().take(ECHO_CHARS_MAX).collect();
        cut.push('…');
        cut
    }
}
