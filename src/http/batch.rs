//! The batch route of API.md: `POST /batch`, up to 100 operations applied
//! all together or not at all, and the parser of one operation.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::auth::caller_allowed_for;
use super::body::{BatchJsonObject, FieldErrors, JsonBody};
use super::envelope::answer;
use super::input::{
    operation_of, parse_idempotency_key, parse_movement, refuse_unknown_fields,
    refuse_unknown_fields_named, required_text, validated_but_missing,
};
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::{BatchOperationRequest, BatchReceiptJson, BatchRequest};
use super::params::IdempotencyKeyParam;
use crate::domain::{Scope, UserId};
use crate::error::ApiError;
use crate::ledger::engine::{Command, Operation, Route};
use crate::limits::{BATCH_OPERATIONS_MAX, QUERY_PROBLEMS_MAX};
use crate::store::Store;

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
