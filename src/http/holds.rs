//! The holds routes of API.md: make a hold, capture it, void it, read one
//! or a user's. Like every handler, these parse and shape; the engine decides.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use uuid::Uuid;

use super::auth::caller_still_allowed;
use super::body::{FieldErrors, JsonBody, JsonObject};
use super::envelope::{answer, ok};
use super::input::{
    as_filter_error, parse_amount_value, parse_details, parse_idempotency_key, parse_movement,
    path_user, path_uuid, read_query, refuse_unknown_fields, validated_but_missing,
};
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::{CaptureReceiptJson, CaptureRequest, HoldReceiptJson, HoldRequest, VoidRequest};
use super::json::{Hold, HoldPageJson};
use super::params::{HoldIdParam, HoldListParams, IdempotencyKeyParam, UserIdParam};
use crate::domain::{AssetRef, Cursor, PageLimit, UserId};
use crate::error::ApiError;
use crate::ledger::engine::{Command, HoldStatus, Operation, Route};
use crate::limits::{HOLD_EXPIRES_IN_SECONDS_DEFAULT, HOLD_EXPIRES_IN_SECONDS_MAX};
use crate::store::{HoldQuery, Store};

fn path_hold_id(request: &HttpRequest, errors: &mut FieldErrors) -> Option<Uuid> {
    path_uuid(request, "holdId", "must be a hold id (a UUID)", errors)
}

/// API.md: POST /wallets/{userId}/holds
#[utoipa::path(post, path = "/wallets/{userId}/holds", tag = "holds",
    summary = "Set part of a user's available balance aside",
    params(UserIdParam, IdempotencyKeyParam), request_body = HoldRequest,
    responses(
        (status = 201, description = "Held: the hold, and the user's balance, held and available.",
            body = HoldReceiptJson),
        (status = 200, description = "A retry of an earlier request with this key: its original answer, \
            with `Idempotent-Replayed: true`; nothing written.", body = HoldReceiptJson)))]
pub(super) async fn post_hold(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    let key = parse_idempotency_key(&request, body.remove("idempotencyKey"), &mut errors);
    let expires_in_seconds = match body.remove("expiresInSeconds") {
        None | Some(Value::Null) => Some(HOLD_EXPIRES_IN_SECONDS_DEFAULT),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(seconds) if (1..=u64::from(HOLD_EXPIRES_IN_SECONDS_MAX)).contains(&seconds) => {
                u32::try_from(seconds).ok()
            }
            _ => {
                errors.push(
                    "expiresInSeconds",
                    format!("must be an integer from 1 to {HOLD_EXPIRES_IN_SECONDS_MAX}"),
                );
                None
            }
        },
        Some(_) => {
            errors.push(
                "expiresInSeconds",
                format!("must be an integer from 1 to {HOLD_EXPIRES_IN_SECONDS_MAX}"),
            );
            None
        }
    };
    let movement = parse_movement(&mut body, "", &mut errors);
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let (Some(user), Some(key), Some(expires_in_seconds), Some((asset, amount, details))) =
        (user, key, expires_in_seconds, movement)
    else {
        return Err(validated_but_missing());
    };
    let caller = caller_still_allowed(&request)?;
    let command = Command {
        caller,
        key,
        route: Route::Hold,
        operations: vec![Operation::Hold {
            user,
            asset,
            amount,
            expires_in_seconds,
            details,
        }],
    };
    answer(store.apply(command).await?)
}

/// API.md: POST /holds/{holdId}/capture
#[utoipa::path(post, path = "/holds/{holdId}/capture", tag = "holds",
    summary = "Capture a hold once, to the Treasury or to another user",
    params(HoldIdParam, IdempotencyKeyParam), request_body = CaptureRequest,
    responses(
        (status = 201, description = "Captured: the hold, its SPEND or TRANSFER seen from the hold's \
            user, and that user's balance after it.", body = CaptureReceiptJson),
        (status = 200, description = "A retry of an earlier request with this key: its original answer, \
            with `Idempotent-Replayed: true`; nothing written.", body = CaptureReceiptJson)))]
pub(super) async fn post_capture(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let hold = path_hold_id(&request, &mut errors);
    let key = parse_idempotency_key(&request, body.remove("idempotencyKey"), &mut errors);
    let amount = match body.remove("amount") {
        None | Some(Value::Null) => Some(None),
        Some(value) => parse_amount_value(value, "amount", &mut errors).map(Some),
    };
    let to = match body.remove("to") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(raw)) => errors.check("to", UserId::parse(&raw)).map(Some),
        Some(_) => {
            errors.push("to", "must be a string");
            None
        }
    };
    // A capture's entry takes the hold's referenceId: only a note and
    // metadata are its own.
    if body.contains_key("referenceId") {
        errors.push("referenceId", "is the hold's; a capture does not take one");
        body.remove("referenceId");
    }
    let details = parse_details(&mut body, "", &mut errors);
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let (Some(hold), Some(key), Some(amount), Some(to), Some(details)) =
        (hold, key, amount, to, details)
    else {
        return Err(validated_but_missing());
    };
    let caller = caller_still_allowed(&request)?;
    let command = Command {
        caller,
        key,
        route: Route::Capture,
        operations: vec![Operation::Capture {
            hold,
            amount,
            to,
            details,
        }],
    };
    answer(store.apply(command).await?)
}

/// API.md: POST /holds/{holdId}/void
#[utoipa::path(post, path = "/holds/{holdId}/void", tag = "holds",
    summary = "Release a hold, writing no entry",
    params(HoldIdParam, IdempotencyKeyParam), request_body = VoidRequest,
    responses(
        (status = 200, description = "Voided (or a retry of an earlier void with this key, with \
            `Idempotent-Replayed: true`): the hold, and its user's balance.", body = HoldReceiptJson)))]
pub(super) async fn post_void(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let hold = path_hold_id(&request, &mut errors);
    let key = parse_idempotency_key(&request, body.remove("idempotencyKey"), &mut errors);
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let (Some(hold), Some(key)) = (hold, key) else {
        return Err(validated_but_missing());
    };
    let caller = caller_still_allowed(&request)?;
    let command = Command {
        caller,
        key,
        route: Route::Void,
        operations: vec![Operation::Void { hold }],
    };
    // API.md: a void answers 200, new or replayed.
    let mut response = answer(store.apply(command).await?)?;
    if response.status() == StatusCode::CREATED {
        *response.status_mut() = StatusCode::OK;
    }
    Ok(response)
}

/// API.md: GET /holds/{holdId}
#[utoipa::path(get, path = "/holds/{holdId}", tag = "holds",
    summary = "One hold, as it stands now",
    params(HoldIdParam),
    responses((status = 200, description = "The hold; one past its expiry reads EXPIRED.", body = Hold)))]
pub(super) async fn get_hold(
    request: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let id = path_hold_id(&request, &mut errors);
    errors.into_result()?;
    let hold = store.hold(id.ok_or_else(validated_but_missing)?)?;
    Ok(ok(Hold::from(hold)))
}

/// API.md: GET /wallets/{userId}/holds?status=&asset=&limit=&cursor=
#[utoipa::path(get, path = "/wallets/{userId}/holds", tag = "holds",
    summary = "A user's holds, newest first, a page at a time",
    params(UserIdParam, HoldListParams),
    responses((status = 200, description = "A page of holds and the cursor of the next.",
        body = HoldPageJson)))]
pub(super) async fn get_holds(
    request: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    let query = parse_hold_query(request.query_string(), &mut errors);
    errors.into_result()?;
    let user = user.ok_or_else(validated_but_missing)?;
    let page = store
        .holds(&user, query)
        .map_err(ApiError::from)
        .map_err(as_filter_error)?;
    Ok(ok(HoldPageJson {
        items: page.items.into_iter().map(Hold::from).collect(),
        next_cursor: page.next_cursor.map(Cursor::encode),
    }))
}

/// The query of a holds list, read as a history query is: an unknown,
/// repeated or empty parameter is refused.
fn parse_hold_query(raw: &str, errors: &mut FieldErrors) -> HoldQuery {
    let mut query = HoldQuery {
        status: None,
        asset: None,
        limit: PageLimit::default(),
        cursor: None,
    };
    let known = ["status", "asset", "limit", "cursor"];
    read_query(raw, &known, errors, |name, value, errors| match name {
        "status" => match HoldStatus::parse(value) {
            Some(status) => query.status = Some(status),
            None => errors.push("status", "must be one of HELD, CAPTURED, VOIDED, EXPIRED"),
        },
        "asset" => query.asset = errors.check("asset", AssetRef::parse(value)),
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
