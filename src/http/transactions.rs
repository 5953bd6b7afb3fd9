//! The transaction routes of API.md: `GET /transactions/{id}` (one
//! transaction, both sides) and `POST /transactions/{id}/reverse`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use uuid::Uuid;

use super::auth::caller_still_allowed;
use super::body::{FieldErrors, JsonBody, JsonObject};
use super::envelope::{answer, ok};
use super::input::{
    parse_amount_value, parse_details, parse_idempotency_key, path_uuid, refuse_unknown_fields,
    validated_but_missing,
};
use super::json::TransactionDetailJson;
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::{ReceiptJson, ReverseRequest};
use super::params::{IdempotencyKeyParam, TransactionIdParam};
use crate::error::ApiError;
use crate::ledger::engine::{Command, Operation, Route};
use crate::store::Store;

fn path_transaction_id(request: &HttpRequest, errors: &mut FieldErrors) -> Option<Uuid> {
    path_uuid(request, "id", "must be a transaction id (a UUID)", errors)
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
