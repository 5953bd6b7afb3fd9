//! The envelope of API.md: `{"success", "data", "error"}` on every response.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::error::ErrorCode;

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

/// A failure's body; `ApiError` is its only caller.
pub(crate) fn error_envelope(
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
