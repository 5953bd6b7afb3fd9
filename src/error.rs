//! `ApiError`: the only code that knows HTTP status codes and error codes.
//! Every failure the service answers with, actix's own included, becomes one
//! of these and leaves as the envelope of API.md.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::json;

use crate::auth::Denial;
use crate::domain::Scope;
use crate::http::envelope::error_envelope;
use crate::ledger::Rejection;
use crate::limits::{BODY_BYTES_MAX, RETRY_AFTER_SECONDS};
use crate::storage::{LedgerError, StorageError};

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
    #[error("The request body is larger than {BODY_BYTES_MAX} bytes.")]
    PayloadTooLarge,
    #[error("The request body must be JSON, sent with Content-Type: application/json.")]
    UnsupportedMediaType,
    #[error("There is no such route.")]
    NotFound,
    #[error("This route does not accept that method.")]
    MethodNotAllowed,
    #[error("The user has no wallet.")]
    WalletNotFound,
    #[error("There is no such asset.")]
    AssetNotFound,
    #[error("The balance is too low for this spend.")]
    InsufficientFunds { balance: i64, requested: u64 },
    #[error("The credit would take a balance past the largest value it can hold.")]
    BalanceOverflow,
    #[error("This idempotency key was already used for a different request.")]
    IdempotencyKeyReused,
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

impl ApiError {
    /// The one mapping from failure to status and code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Validation(_) => (StatusCode::BAD_REQUEST, "VALIDATION_ERROR"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "INVALID_JSON"),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            ApiError::WalletNotFound => (StatusCode::NOT_FOUND, "WALLET_NOT_FOUND"),
            ApiError::AssetNotFound => (StatusCode::NOT_FOUND, "ASSET_NOT_FOUND"),
            ApiError::InsufficientFunds { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "INSUFFICIENT_FUNDS")
            }
            ApiError::BalanceOverflow => (StatusCode::UNPROCESSABLE_ENTITY, "BALANCE_OVERFLOW"),
            ApiError::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED")
            }
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::ServiceOverloaded => (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_OVERLOADED"),
            ApiError::DatabaseUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::Validation(fields) => Some(json!({ "fields": fields })),
            ApiError::InsufficientFunds { balance, requested } => {
                Some(json!({ "balance": balance, "requested": requested }))
            }
            ApiError::Forbidden { required_scope } => {
                Some(json!({ "requiredScope": required_scope.as_str() }))
            }
            ApiError::RateLimited {
                retry_after_seconds,
            } => Some(json!({ "retryAfterSeconds": retry_after_seconds })),
            _ => None,
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::RateLimited {
                retry_after_seconds,
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()));
            }
            // RFC 6750: a 401 names the scheme the caller should use.
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.json(error_envelope(code, &self.to_string(), self.details()))
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::WalletNotFound => ApiError::WalletNotFound,
            Rejection::AssetNotFound => ApiError::AssetNotFound,
            Rejection::InsufficientFunds { balance, requested } => {
                ApiError::InsufficientFunds { balance, requested }
            }
            Rejection::BalanceOverflow => ApiError::BalanceOverflow,
            Rejection::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
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

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Overloaded => ApiError::ServiceOverloaded,
            StorageError::Sqlite(_) => ApiError::Internal(error.into()),
            StorageError::Unavailable(_)
            | StorageError::ReadPool(_)
            | StorageError::WriterStopped
            | StorageError::BatchRolledBack => ApiError::DatabaseUnavailable(error),
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

    fn every_variant() -> Vec<ApiError> {
        vec![
            ApiError::Validation(vec![FieldError::new("amount", "must be positive")]),
            ApiError::InvalidJson("expected value".into()),
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::WalletNotFound,
            ApiError::AssetNotFound,
            ApiError::InsufficientFunds {
                balance: 5,
                requested: 10,
            },
            ApiError::BalanceOverflow,
            ApiError::IdempotencyKeyReused,
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
            (404, "WALLET_NOT_FOUND"),
            (404, "ASSET_NOT_FOUND"),
            (422, "INSUFFICIENT_FUNDS"),
            (422, "BALANCE_OVERFLOW"),
            (422, "IDEMPOTENCY_KEY_REUSED"),
            (401, "UNAUTHORIZED"),
            (403, "FORBIDDEN"),
            (429, "RATE_LIMITED"),
            (503, "SERVICE_OVERLOADED"),
            (503, "DATABASE_UNAVAILABLE"),
            (500, "INTERNAL_ERROR"),
        ];
        let variants = every_variant();
        assert_eq!(variants.len(), expected.len());
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
            requested: 10,
        });
        assert_eq!(
            body["error"]["details"],
            json!({"balance": 5, "requested": 10})
        );
        assert!(body_of(&ApiError::NotFound)["error"]
            .get("details")
            .is_none());
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
