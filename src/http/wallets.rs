//! The wallet routes of API.md: a user's balance and history, and the
//! single writes on a wallet (topup, bonus, spend, transfer), with the
//! parsers of their queries.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{caller_of, caller_still_allowed};
use super::body::{FieldErrors, JsonBody, JsonObject};
use super::envelope::{answer, ok};
use super::input::{
    as_filter_error, operation_of, parse_at_query, parse_idempotency_key, parse_movement,
    path_user, read_query, refuse_unknown_fields, required_text, validated_but_missing,
};
use super::json::{Balance, Balances, Transaction, TransactionPage};
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::{EntryRequest, ReceiptJson, TransferRequest};
use super::params::{BalanceParams, HistoryParams, IdempotencyKeyParam, UserIdParam};
use crate::domain::{AssetRef, Cursor, EntryKind, PageLimit, ReferenceId, UserId};
use crate::error::ApiError;
use crate::ledger::engine::{Command, Route};
use crate::store::{HistoryQuery, Store};

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
    let at = parse_at_query(request.query_string(), &mut errors);
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
        .map_err(as_filter_error)?;
    Ok(ok(TransactionPage {
        items: page.items.into_iter().map(Transaction::from).collect(),
        next_cursor: page.next_cursor.map(Cursor::encode),
    }))
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
    let known = ["asset", "type", "referenceId", "limit", "cursor"];
    read_query(raw, &known, errors, |name, value, errors| match name {
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
        // read_query passes only the names in `known`.
        _ => {}
    });
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
