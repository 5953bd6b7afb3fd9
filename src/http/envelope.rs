//! The envelope of API.md: `{"success", "data", "error"}` on every response,
//! and the success answers the handlers build in it (`ok`, and `answer` for
//! a write's outcome).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use super::json::AnswerJson;
use crate::error::{ApiError, ErrorCode};
use crate::ledger::engine::Outcome;
use crate::limits::RETRY_AFTER_SECONDS;

#[derive(Serialize)]
struct Envelope<T: Serialize> {
    success: bool,
    data: Option<T>,
    error: Option<ErrorBody>,
}

/// `error` of a failure envelope.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    code: ErrorCode,
    /// A human sentence; never the internal cause of a 500.
    message: String,
    /// Present for some codes: `fields` for VALIDATION_ERROR, `balance` and
    /// `requested` for INSUFFICIENT_FUNDS.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
}

/// A success: `{"success": true, "data": <data>, "error": null}`.
pub fn success<T: Serialize>(status: StatusCode, data: T) -> HttpResponse {
    HttpResponse::build(status).json(Envelope {
        success: true,
        data: Some(data),
        error: None,
    })
}

/// A success with 200 OK.
pub(super) fn ok<T: Serialize>(data: T) -> HttpResponse {
    success(StatusCode::OK, data)
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

/// A failure's body; `ApiError`'s answer below is its only caller.
fn error_envelope(
    code: ErrorCode,
    message: String,
    details: Option<serde_json::Value>,
) -> impl Serialize {
    Envelope::<()> {
        success: false,
        data: None,
        error: Some(ErrorBody {
            code,
            message,
            details,
        }),
    }
}

/// Every failure the service answers with leaves here, as the envelope.
impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        // Every error answer is made here, once: so it is counted here.
        crate::metrics::metrics().count_rejection(code.as_str());
        let status = code.status();
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
            // The rest of the body may still be on its way: the connection
            // cannot be reused.
            ApiError::RequestTimeout => {
                response.force_close();
            }
            // RFC 6750: a 401 names the scheme the caller should use.
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.json(error_envelope(code, self.to_string(), self.details()))
    }
}
