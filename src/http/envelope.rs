//! The envelope of API.md: `{"success", "data", "error"}` on every response.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    success: bool,
    data: Option<T>,
    error: Option<ErrorBody<'a>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
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
pub(crate) fn error_envelope<'a>(
    code: &'a str,
    message: &'a str,
    details: Option<serde_json::Value>,
) -> impl Serialize + 'a {
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
