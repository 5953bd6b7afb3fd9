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
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = details_schema)]
    details: Option<serde_json::Value>,
}

/// `error.details`, as `ApiError::details` fills it: which members come
/// with which code is in each code's meaning.
fn details_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let integer = || ObjectBuilder::new().schema_type(Type::Integer);
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let field_problem = ObjectBuilder::new()
        .property(
            "field",
            text().description(Some(
                "The input's name, such as `amount` or `operations[2].to`.",
            )),
        )
        .property(
            "message",
            text().description(Some("What is wrong with it.")),
        )
        .required("field")
        .required("message");
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Present for some codes. Members may be added; clients ignore the ones they do not know.",
        ))
        .property(
            "fields",
            ArrayBuilder::new()
                .items(field_problem)
                .description(Some("VALIDATION_ERROR: every problem found, not only the first.")),
        )
        .property("balance", integer().description(Some("INSUFFICIENT_FUNDS, BALANCE_LIMIT: the balance.")))
        .property("available", integer().description(Some("INSUFFICIENT_FUNDS: what holds leave of it.")))
        .property("requested", integer().description(Some("INSUFFICIENT_FUNDS, BALANCE_LIMIT, LIMIT_EXCEEDED: the amount asked for.")))
        .property("maxBalance", integer().description(Some("BALANCE_LIMIT: the maximum balance in force for the user.")))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(crate::domain::LimitedKind::ALL.map(crate::domain::LimitedKind::as_str)))
                .description(Some("LIMIT_EXCEEDED: the type of entry the limit counts.")),
        )
        .property("windowSeconds", integer().description(Some("LIMIT_EXCEEDED: the limit's window.")))
        .property("max", integer().description(Some("LIMIT_EXCEEDED: the limit's max.")))
        .property("used", integer().description(Some("LIMIT_EXCEEDED: what the window holds already.")))
        .property(
            "differing",
            ArrayBuilder::new()
                .items(text())
                .description(Some("IDEMPOTENCY_KEY_REUSED: the request fields that differ from the original's.")),
        )
        .property("reversible", integer().description(Some("REVERSAL_EXCEEDS_ORIGINAL: what is left to reverse.")))
        .property("status", text().description(Some("HOLD_NOT_ACTIVE: the hold's status.")))
        .property("held", integer().description(Some("CAPTURE_EXCEEDS_HOLD: the hold's amount.")))
        .property(
            "operation",
            integer().minimum(Some(0)).description(Some("A batch's failure: the index of the operation that failed, from 0.")),
        )
        .property(
            "requiredScope",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(crate::domain::Scope::ALL.map(crate::domain::Scope::as_str)))
                .description(Some("FORBIDDEN: the scope the route needs.")),
        )
        .property(
            "retryAfterSeconds",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                .minimum(Some(1))
                .description(Some(
                    "RATE_LIMITED: as the `Retry-After` header. LIMIT_EXCEEDED: when enough of \
                     the window will have left it for the amount asked; null when the amount \
                     alone is over the limit's max.",
                )),
        )
        .build()
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
