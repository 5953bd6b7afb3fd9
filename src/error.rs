//! `ApiError`: the only code that knows HTTP status codes and error codes.
//! Every failure the service answers with, actix's own included, becomes one
//! of these and leaves as the envelope of API.md.

use actix_web::http::StatusCode;
use serde::Serialize;
use serde_json::json;

use crate::auth::Denial;
use crate::domain::Scope;
use crate::ledger::engine::RetryAfter;
use crate::ledger::Rejection;
use crate::limits::{API_KEYS_ACTIVE_MAX, API_KEYS_TOTAL_MAX, HTTP_REQUEST_TIMEOUT};
use crate::store::{KeyError, KeyRejection, LedgerError, StorageError};

/// One problem with one input field, for `details.fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("The request has invalid fields.")]
    Validation(Vec<FieldError>),
    #[error("The request body is not a valid JSON object: {0}.")]
    InvalidJson(String),
    #[error("The request body is larger than {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("The request body must be JSON, sent with Content-Type: application/json.")]
    UnsupportedMediaType,
    #[error("There is no such route.")]
    NotFound,
    #[error("This route does not accept that method.")]
    MethodNotAllowed,
    #[error("The request did not arrive whole within {} seconds; nothing was written.", HTTP_REQUEST_TIMEOUT.as_secs())]
    RequestTimeout,
    #[error("The user has no wallet.")]
    WalletNotFound,
    #[error("There is no such asset.")]
    AssetNotFound,
    #[error("There is no such transaction.")]
    TransactionNotFound,
    #[error("The available balance is too low for this operation.")]
    InsufficientFunds {
        balance: i64,
        available: i64,
        requested: u64,
    },
    #[error("The credit would take a balance past the largest value it can hold.")]
    BalanceOverflow,
    #[error("The credit would take the user's balance past the maximum set for this asset.")]
    BalanceLimit {
        max_balance: i64,
        balance: i64,
        requested: u64,
    },
    #[error("This would take the user past a limit set on this asset for its window.")]
    LimitExceeded {
        kind: &'static str,
        window_seconds: u32,
        max: i64,
        used: i64,
        requested: u64,
        /// None when the amount alone is over the cap.
        retry_after_seconds: Option<u64>,
    },
    #[error("This idempotency key was already used for a different request.")]
    IdempotencyKeyReused { differing: Vec<String> },
    #[error("A reversal cannot itself be reversed.")]
    NotReversible,
    #[error("The amount is more than what is left to reverse of this transaction.")]
    ReversalExceedsOriginal { reversible: i64 },
    #[error("An asset with this symbol exists with another name or decimals.")]
    AssetExists,
    #[error("The ledger holds as many asset types as it may.")]
    TooManyAssets,
    #[error("There is no such hold.")]
    HoldNotFound,
    #[error("The hold is no longer active: it was captured, voided or has expired.")]
    HoldNotActive { status: &'static str },
    #[error("The capture is more than the hold.")]
    CaptureExceedsHold { held: i64 },
    #[error("The account has 1000 active holds, as many as it may.")]
    TooManyHolds,
    #[error("A key with this name exists, or existed: names are never reused, even once revoked.")]
    KeyExists,
    #[error("{} API keys are active, the most allowed, or {} were ever created, the most one database holds; revoke one first.", API_KEYS_ACTIVE_MAX, API_KEYS_TOTAL_MAX)]
    TooManyKeys,
    #[error("No active API key has this name.")]
    KeyNotFound,
    /// API.md: so an operator cannot lock themselves out by a click.
    #[error("A key cannot revoke itself; revoke it with another admin key.")]
    KeyRevokesItself,
    /// An operation of a batch failed: its error, with its index.
    #[error("Operation {operation} of the batch was refused: {error}")]
    InBatch {
        operation: usize,
        error: Box<ApiError>,
    },
    #[error("A valid API key is required, sent as `Authorization: Bearer <key>`.")]
    Unauthorized,
    #[error("This API key lacks the scope this route needs.")]
    Forbidden { required_scope: Scope },
    #[error("This API key has made too many requests; retry after the time given.")]
    RateLimited { retry_after_seconds: u64 },
    #[error("The service is saturated; retry with the same idempotency key shortly.")]
    ServiceOverloaded,
    #[error("The database is unavailable; retry shortly.")]
    DatabaseUnavailable(#[source] StorageError),
    #[error("An unexpected error occurred.")]
    Internal(#[source] anyhow::Error),
}

/// Declares every error code once: its variant, HTTP status, wire name and
/// what it means. `ErrorCode::ALL`, the OpenAPI document and the envelope all
/// come from this one table, so none of them can list a code the others lack.
macro_rules! error_codes {
    ($($variant:ident => $status:ident, $code:literal, $meaning:literal;)+) => {
        /// The `error.code` of a failure envelope (API.md).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            /// Every code the service can answer with.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// When the service answers with this code, for the API documents.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)+
                }
            }
        }
    };
}

error_codes! {
    Validation => BAD_REQUEST, "VALIDATION_ERROR",
        "An input is invalid; `details.fields` lists every problem found.";
    InvalidJson => BAD_REQUEST, "INVALID_JSON",
        "The body is not valid JSON, or not a JSON object.";
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE",
        "The body is larger than 16 KiB (64 KiB for `POST /batch`).";
    UnsupportedMediaType => UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE",
        "The body was not sent with `Content-Type: application/json`.";
    NotFound => NOT_FOUND, "NOT_FOUND",
        "There is no such route.";
    MethodNotAllowed => METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED",
        "The route exists but does not answer this method; `Allow` lists the ones it does.";
    RequestTimeout => REQUEST_TIMEOUT, "REQUEST_TIMEOUT",
        "The request (head and body) did not arrive within 10 seconds; the connection is closed and nothing was written.";
    WalletNotFound => NOT_FOUND, "WALLET_NOT_FOUND",
        "The user has no account at all.";
    AssetNotFound => NOT_FOUND, "ASSET_NOT_FOUND",
        "No asset has this symbol or id.";
    TransactionNotFound => NOT_FOUND, "TRANSACTION_NOT_FOUND",
        "No transaction has this id.";
    InsufficientFunds => UNPROCESSABLE_ENTITY, "INSUFFICIENT_FUNDS",
        "The available balance is short; `details` holds `balance`, `available` and `requested`.";
    BalanceOverflow => UNPROCESSABLE_ENTITY, "BALANCE_OVERFLOW",
        "The credit would take a user's balance past 2^53 - 1 (a Treasury's past a signed 64-bit integer).";
    BalanceLimit => UNPROCESSABLE_ENTITY, "BALANCE_LIMIT",
        "The credit would take the user's balance past `maxBalance` (the asset's, or the user's own); `details` holds `maxBalance`, `balance` and `requested`. Nothing was written.";
    LimitExceeded => UNPROCESSABLE_ENTITY, "LIMIT_EXCEEDED",
        "The entry would take the user's entries of one type in the trailing window past a limit; `details` holds `type`, `windowSeconds`, `max`, `used`, `requested` and `retryAfterSeconds` (when the window frees enough; null when the amount alone is over `max`). Nothing was written.";
    IdempotencyKeyReused => UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED",
        "The idempotency key was already used for a different request; `details.differing` names the fields that differ.";
    NotReversible => UNPROCESSABLE_ENTITY, "NOT_REVERSIBLE",
        "The transaction is a REVERSAL, which cannot be reversed.";
    ReversalExceedsOriginal => UNPROCESSABLE_ENTITY, "REVERSAL_EXCEEDS_ORIGINAL",
        "The reversal is more than what is left of the original; `details.reversible` says how much is.";
    AssetExists => CONFLICT, "ASSET_EXISTS",
        "An asset with this symbol exists with another name or decimals.";
    TooManyAssets => UNPROCESSABLE_ENTITY, "TOO_MANY_ASSETS",
        "The ledger already holds 1000 asset types.";
    HoldNotFound => NOT_FOUND, "HOLD_NOT_FOUND",
        "No hold has this id.";
    HoldNotActive => CONFLICT, "HOLD_NOT_ACTIVE",
        "The hold was captured, voided or has expired; `details.status` says which.";
    CaptureExceedsHold => UNPROCESSABLE_ENTITY, "CAPTURE_EXCEEDS_HOLD",
        "The capture is more than the hold; `details.held` is the hold's amount.";
    TooManyHolds => UNPROCESSABLE_ENTITY, "TOO_MANY_HOLDS",
        "The account (one user, one asset) already has 1000 active holds.";
    KeyExists => CONFLICT, "KEY_EXISTS",
        "A key with this name exists or existed (revoked keys keep their names): names are never reused.";
    TooManyKeys => UNPROCESSABLE_ENTITY, "TOO_MANY_KEYS",
        "100 API keys are active already (or 10000 were ever created); revoke one first.";
    KeyNotFound => NOT_FOUND, "KEY_NOT_FOUND",
        "No active API key has this name: none ever had it, or it is revoked already (a revocation is final).";
    // The one code with two statuses (API.md): the request is valid, but
    // what it asks would lock its caller out. Listed after `Validation`, so
    // a look-up by wire name finds the 400 first.
    KeyRevokesItself => UNPROCESSABLE_ENTITY, "VALIDATION_ERROR",
        "The key named in the path is the key making the request: a key cannot revoke itself. `details.fields` names `name`.";
    Unauthorized => UNAUTHORIZED, "UNAUTHORIZED",
        "No API key, or one that is unknown or revoked, was sent as `Authorization: Bearer <key>`.";
    Forbidden => FORBIDDEN, "FORBIDDEN",
        "The API key lacks the scope this route needs; `details.requiredScope` names it.";
    RateLimited => TOO_MANY_REQUESTS, "RATE_LIMITED",
        "The API key sent more requests than its rate limit; retry after `Retry-After`.";
    ServiceOverloaded => SERVICE_UNAVAILABLE, "SERVICE_OVERLOADED",
        "The write queue is full; retry with the same key after `Retry-After`.";
    DatabaseUnavailable => SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE",
        "The database cannot be read or written now; retry after `Retry-After`.";
    Internal => INTERNAL_SERVER_ERROR, "INTERNAL_ERROR",
        "An unexpected failure; its cause is logged with the request id.";
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let meanings: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|code| {
                format!(
                    "- `{}` ({}): {}",
                    code.as_str(),
                    code.status().as_u16(),
                    code.meaning()
                )
            })
            .collect();
        // A wire name given twice (VALIDATION_ERROR, at 400 and 422) is one
        // value of the enumeration.
        let mut names: Vec<&str> = Vec::new();
        for code in ErrorCode::ALL {
            if !names.contains(&code.as_str()) {
                names.push(code.as_str());
            }
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .description(Some(meanings.join("\n")))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

impl ApiError {
    /// The one mapping from failure to code, and so to status.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Validation(_) => ErrorCode::Validation,
            ApiError::InvalidJson(_) => ErrorCode::InvalidJson,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::RequestTimeout => ErrorCode::RequestTimeout,
            ApiError::WalletNotFound => ErrorCode::WalletNotFound,
            ApiError::AssetNotFound => ErrorCode::AssetNotFound,
            ApiError::TransactionNotFound => ErrorCode::TransactionNotFound,
            ApiError::InsufficientFunds { .. } => ErrorCode::InsufficientFunds,
            ApiError::BalanceOverflow => ErrorCode::BalanceOverflow,
            ApiError::BalanceLimit { .. } => ErrorCode::BalanceLimit,
            ApiError::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            ApiError::IdempotencyKeyReused { .. } => ErrorCode::IdempotencyKeyReused,
            ApiError::NotReversible => ErrorCode::NotReversible,
            ApiError::ReversalExceedsOriginal { .. } => ErrorCode::ReversalExceedsOriginal,
            ApiError::AssetExists => ErrorCode::AssetExists,
            ApiError::TooManyAssets => ErrorCode::TooManyAssets,
            ApiError::HoldNotFound => ErrorCode::HoldNotFound,
            ApiError::HoldNotActive { .. } => ErrorCode::HoldNotActive,
            ApiError::CaptureExceedsHold { .. } => ErrorCode::CaptureExceedsHold,
            ApiError::TooManyHolds => ErrorCode::TooManyHolds,
            ApiError::KeyExists => ErrorCode::KeyExists,
            ApiError::TooManyKeys => ErrorCode::TooManyKeys,
            ApiError::KeyNotFound => ErrorCode::KeyNotFound,
            ApiError::KeyRevokesItself => ErrorCode::KeyRevokesItself,
            ApiError::InBatch { error, .. } => error.code(),
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::Forbidden { .. } => ErrorCode::Forbidden,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::ServiceOverloaded => ErrorCode::ServiceOverloaded,
            ApiError::DatabaseUnavailable(_) => ErrorCode::DatabaseUnavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub(crate) fn details(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::Validation(fields) => Some(json!({ "fields": fields })),
            ApiError::InsufficientFunds {
                balance,
                available,
                requested,
            } => {
                Some(json!({ "balance": balance, "available": available, "requested": requested }))
            }
            ApiError::BalanceLimit {
                max_balance,
                balance,
                requested,
            } => Some(
                json!({ "maxBalance": max_balance, "balance": balance, "requested": requested }),
            ),
            ApiError::LimitExceeded {
                kind,
                window_seconds,
                max,
                used,
                requested,
                retry_after_seconds,
            } => Some(json!({
                "type": kind,
                "windowSeconds": window_seconds,
                "max": max,
                "used": used,
                "requested": requested,
                "retryAfterSeconds": retry_after_seconds,
            })),
            ApiError::IdempotencyKeyReused { differing } => Some(json!({ "differing": differing })),
            ApiError::ReversalExceedsOriginal { reversible } => {
                Some(json!({ "reversible": reversible }))
            }
            ApiError::HoldNotActive { status } => Some(json!({ "status": status })),
            ApiError::CaptureExceedsHold { held } => Some(json!({ "held": held })),
            ApiError::InBatch { operation, error } => {
                let mut details = match error.details() {
                    Some(serde_json::Value::Object(map)) => map,
                    _ => serde_json::Map::new(),
                };
                details.insert("operation".into(), json!(operation));
                Some(serde_json::Value::Object(details))
            }
            ApiError::Forbidden { required_scope } => {
                Some(json!({ "requiredScope": required_scope.as_str() }))
            }
            ApiError::RateLimited {
                retry_after_seconds,
            } => Some(json!({ "retryAfterSeconds": retry_after_seconds })),
            ApiError::KeyRevokesItself => Some(json!({ "fields": [FieldError::new(
                "name",
                "is the key making this request; a key cannot revoke itself",
            )] })),
            _ => None,
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::WalletNotFound => ApiError::WalletNotFound,
            Rejection::AssetNotFound => ApiError::AssetNotFound,
            Rejection::TransactionNotFound => ApiError::TransactionNotFound,
            Rejection::InsufficientFunds {
                balance,
                available,
                requested,
            } => ApiError::InsufficientFunds {
                balance,
                available,
                requested,
            },
            Rejection::BalanceOverflow => ApiError::BalanceOverflow,
            Rejection::BalanceLimit {
                max_balance,
                balance,
                requested,
            } => ApiError::BalanceLimit {
                max_balance,
                balance,
                requested,
            },
            Rejection::LimitExceeded {
                kind,
                window_seconds,
                max,
                used,
                requested,
                retry_after,
            } => ApiError::LimitExceeded {
                kind: kind.as_str(),
                window_seconds,
                max,
                used,
                requested,
                retry_after_seconds: match retry_after {
                    RetryAfter::Never => None,
                    RetryAfter::Seconds(seconds) => Some(seconds),
                    // The store resolves this before answering; were it
                    // not to, the whole window is a time that is enough.
                    RetryAfter::WhenStoredLeave { .. } => Some(u64::from(window_seconds)),
                },
            },
            Rejection::IdempotencyKeyReused { differing } => {
                ApiError::IdempotencyKeyReused { differing }
            }
            Rejection::NotReversible => ApiError::NotReversible,
            Rejection::ReversalExceedsOriginal { reversible } => {
                ApiError::ReversalExceedsOriginal { reversible }
            }
            Rejection::TransferToSelf => ApiError::field("to", "must be another user than userId"),
            Rejection::AssetExists => ApiError::AssetExists,
            Rejection::TooManyAssets => ApiError::TooManyAssets,
            Rejection::HoldNotFound => ApiError::HoldNotFound,
            Rejection::HoldNotActive { status } => ApiError::HoldNotActive {
                status: status.as_str(),
            },
            Rejection::CaptureExceedsHold { held } => ApiError::CaptureExceedsHold { held },
            Rejection::TooManyHolds => ApiError::TooManyHolds,
            Rejection::StoredRequestUnreadable => ApiError::Internal(anyhow::anyhow!(
                "the stored request for an idempotency key is unreadable"
            )),
            Rejection::PartsInconsistent => ApiError::Internal(anyhow::anyhow!(
                "an account's parts do not add up to its balance; run wallet verify"
            )),
            Rejection::InBatch { operation, cause } => ApiError::InBatch {
                operation,
                error: Box::new(ApiError::from(*cause)),
            },
        }
    }
}

impl From<Denial> for ApiError {
    fn from(denial: Denial) -> Self {
        match denial {
            Denial::Unauthenticated => ApiError::Unauthorized,
            Denial::MissingScope(required_scope) => ApiError::Forbidden { required_scope },
            Denial::RateLimited {
                retry_after_seconds,
            } => ApiError::RateLimited {
                retry_after_seconds,
            },
        }
    }
}

impl From<KeyRejection> for ApiError {
    fn from(rejection: KeyRejection) -> Self {
        match rejection {
            KeyRejection::KeyExists(_) => ApiError::KeyExists,
            KeyRejection::TooManyActiveKeys | KeyRejection::TooManyKeysInAll => {
                ApiError::TooManyKeys
            }
            KeyRejection::KeyNotFound(_) => ApiError::KeyNotFound,
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Rejected(rejection) => rejection.into(),
            KeyError::Storage(storage) => storage.into(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Overloaded => ApiError::ServiceOverloaded,
            StorageError::Backend(_) => ApiError::Internal(error.into()),
            StorageError::Unavailable(_)
            | StorageError::Pool(_)
            | StorageError::WriterStopped
            | StorageError::BatchRolledBack
            | StorageError::ClockBeforeEpoch
            | StorageError::FilesLost
            | StorageError::WritesFailing => ApiError::DatabaseUnavailable(error),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Rejected(rejection) => rejection.into(),
            LedgerError::Storage(storage) => storage.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;
    use actix_web::http::header;
    use actix_web::ResponseError;

    fn every_variant() -> Vec<ApiError> {
        vec![
            ApiError::Validation(vec![FieldError::new("amount", "must be positive")]),
            ApiError::InvalidJson("expected value".into()),
            ApiError::PayloadTooLarge { limit: 16_384 },
            ApiError::UnsupportedMediaType,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::RequestTimeout,
            ApiError::WalletNotFound,
            ApiError::AssetNotFound,
            ApiError::TransactionNotFound,
            ApiError::InsufficientFunds {
                balance: 5,
                available: 5,
                requested: 10,
            },
            ApiError::BalanceOverflow,
            ApiError::BalanceLimit {
                max_balance: 1000,
                balance: 900,
                requested: 101,
            },
            ApiError::LimitExceeded {
                kind: "SPEND",
                window_seconds: 60,
                max: 100,
                used: 90,
                requested: 11,
                retry_after_seconds: Some(5),
            },
            ApiError::IdempotencyKeyReused {
                differing: vec!["amount".into()],
            },
            ApiError::NotReversible,
            ApiError::ReversalExceedsOriginal { reversible: 0 },
            ApiError::AssetExists,
            ApiError::TooManyAssets,
            ApiError::HoldNotFound,
            ApiError::HoldNotActive { status: "VOIDED" },
            ApiError::CaptureExceedsHold { held: 5 },
            ApiError::TooManyHolds,
            ApiError::KeyExists,
            ApiError::TooManyKeys,
            ApiError::KeyNotFound,
            ApiError::KeyRevokesItself,
            ApiError::Unauthorized,
            ApiError::Forbidden {
                required_scope: Scope::Grant,
            },
            ApiError::RateLimited {
                retry_after_seconds: 3,
            },
            ApiError::ServiceOverloaded,
            ApiError::DatabaseUnavailable(StorageError::WriterStopped),
            ApiError::Internal(anyhow::anyhow!("secret cause")),
        ]
    }

    fn body_of(error: &ApiError) -> serde_json::Value {
        let bytes = error.error_response().into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn every_variant_maps_to_its_status_and_code_inside_the_envelope() {
        let expected = [
            (400, "VALIDATION_ERROR"),
            (400, "INVALID_JSON"),
            (413, "PAYLOAD_TOO_LARGE"),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
            (404, "NOT_FOUND"),
            (405, "METHOD_NOT_ALLOWED"),
            (408, "REQUEST_TIMEOUT"),
            (404, "WALLET_NOT_FOUND"),
            (404, "ASSET_NOT_FOUND"),
            (404, "TRANSACTION_NOT_FOUND"),
            (422, "INSUFFICIENT_FUNDS"),
            (422, "BALANCE_OVERFLOW"),
            (422, "BALANCE_LIMIT"),
            (422, "LIMIT_EXCEEDED"),
            (422, "IDEMPOTENCY_KEY_REUSED"),
            (422, "NOT_REVERSIBLE"),
            (422, "REVERSAL_EXCEEDS_ORIGINAL"),
            (409, "ASSET_EXISTS"),
            (422, "TOO_MANY_ASSETS"),
            (404, "HOLD_NOT_FOUND"),
            (409, "HOLD_NOT_ACTIVE"),
            (422, "CAPTURE_EXCEEDS_HOLD"),
            (422, "TOO_MANY_HOLDS"),
            (409, "KEY_EXISTS"),
            (422, "TOO_MANY_KEYS"),
            (404, "KEY_NOT_FOUND"),
            (422, "VALIDATION_ERROR"),
            (401, "UNAUTHORIZED"),
            (403, "FORBIDDEN"),
            (429, "RATE_LIMITED"),
            (503, "SERVICE_OVERLOADED"),
            (503, "DATABASE_UNAVAILABLE"),
            (500, "INTERNAL_ERROR"),
        ];
        let variants = every_variant();
        assert_eq!(variants.len(), expected.len());
        let codes: Vec<ErrorCode> = variants.iter().map(ApiError::code).collect();
        assert_eq!(codes, ErrorCode::ALL, "every code is some variant's, once");
        for (error, (status, code)) in variants.iter().zip(expected) {
            assert_eq!(
                error.error_response().status().as_u16(),
                status,
                "{error:?}"
            );
            let body = body_of(error);
            assert_eq!(body["success"], false);
            assert!(body["data"].is_null());
            assert_eq!(body["error"]["code"], code);
            assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        }
    }

    #[test]
    fn an_internal_error_never_shows_its_cause() {
        let body = body_of(&ApiError::Internal(anyhow::anyhow!("secret cause")));
        assert!(!body.to_string().contains("secret cause"));
    }

    #[test]
    fn validation_and_insufficient_funds_carry_their_details() {
        let body = body_of(&ApiError::Validation(vec![
            FieldError::new("amount", "a"),
            FieldError::new("asset", "b"),
        ]));
        assert_eq!(body["error"]["details"]["fields"][1]["field"], "asset");
        let body = body_of(&ApiError::InsufficientFunds {
            balance: 5,
            available: 5,
            requested: 10,
        });
        assert_eq!(
            body["error"]["details"],
            json!({"balance": 5, "available": 5, "requested": 10})
        );
        // A batch's failure: its operation's code and details, and its index.
        let body = body_of(&ApiError::InBatch {
            operation: 2,
            error: Box::new(ApiError::ReversalExceedsOriginal { reversible: 0 }),
        });
        assert_eq!(body["error"]["code"], "REVERSAL_EXCEEDS_ORIGINAL");
        assert_eq!(
            body["error"]["details"],
            json!({"reversible": 0, "operation": 2})
        );
        assert!(body_of(&ApiError::NotFound)["error"]
            .get("details")
            .is_none());
    }

    #[test]
    fn a_key_revoking_itself_is_a_422_validation_error_naming_the_path_s_name() {
        let body = body_of(&ApiError::KeyRevokesItself);
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(body["error"]["details"]["fields"][0]["field"], "name");
        assert_eq!(ApiError::KeyRevokesItself.code().status().as_u16(), 422);
    }

    #[test]
    fn every_rejection_of_a_key_has_its_own_code() {
        let name = crate::domain::KeyName::parse("game").unwrap();
        for (rejection, code) in [
            (KeyRejection::KeyExists(name.clone()), ErrorCode::KeyExists),
            (KeyRejection::TooManyActiveKeys, ErrorCode::TooManyKeys),
            (KeyRejection::TooManyKeysInAll, ErrorCode::TooManyKeys),
            (KeyRejection::KeyNotFound(name), ErrorCode::KeyNotFound),
        ] {
            assert_eq!(ApiError::from(rejection).code(), code);
        }
    }

    #[test]
    fn every_503_carries_retry_after() {
        for error in [
            ApiError::ServiceOverloaded,
            ApiError::DatabaseUnavailable(StorageError::Overloaded),
        ] {
            let response = error.error_response();
            assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
        }
    }

    #[test]
    fn a_401_asks_for_a_bearer_key_and_a_429_says_when_to_retry() {
        let response = ApiError::Unauthorized.error_response();
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        let response = ApiError::RateLimited {
            retry_after_seconds: 3,
        }
        .error_response();
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "3");
        let body = body_of(&ApiError::Forbidden {
            required_scope: Scope::Grant,
        });
        assert_eq!(body["error"]["details"], json!({"requiredScope": "grant"}));
    }
}
