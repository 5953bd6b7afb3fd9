//! Middleware around every request: the request id (the caller's, when valid,
//! or a fresh one) on the response and in the logs, one access-log line, the
//! request's metrics (by route pattern, never by path), and the one place a
//! 5xx's cause is logged. It also tells the accept layer
//! (`connection.rs`) when a request's head has arrived and when its answer
//! is made, and leaves the request's deadline for the body reader.

use std::rc::Rc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use tracing::error;

use super::connection::ConnectionState;
use crate::limits::HTTP_REQUEST_TIMEOUT;

use super::auth::ResourceMethods;
use crate::domain::{Caller, RequestId};
use crate::error::ApiError;

const REQUEST_ID_HEADER: &str = "x-request-id";

/// The instant by which a request's body must have arrived whole.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Instant);

/// Tells the connection the request is over, however the handler ends
/// (answered, failed or dropped).
struct RequestOnConnection(Option<Rc<ConnectionState>>);

impl Drop for RequestOnConnection {
    fn drop(&mut self) {
        if let Some(state) = &self.0 {
            state.request_ended(Instant::now());
        }
    }
}

fn has_body(request: &ServiceRequest) -> bool {
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim() != "0");
    declared.unwrap_or(false) || headers.contains_key(header::TRANSFER_ENCODING)
}

pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let connection = request.conn_data::<Rc<ConnectionState>>().cloned();
    let deadline = match &connection {
        Some(state) => {
            let deadline = state.request_began(started);
            if !has_body(&request) {
                state.body_read();
            }
            deadline
        }
        None => started + HTTP_REQUEST_TIMEOUT,
    };
    request.extensions_mut().insert(RequestDeadline(deadline));
    let _on_connection = RequestOnConnection(connection);
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| RequestId::parse(value).ok())
        .unwrap_or_else(RequestId::fresh);
    let method = request.method().clone();
    let path = request.path().to_owned();
    // Handlers turn their errors into responses themselves, so an error here
    // would come from actix's routing machinery: logged, and passed to actix.
    let mut response = match next.call(request).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(failure) => {
            error!(
                request_id = request_id.as_str(),
                "{method} {path} failed in the server: {failure}"
            );
            return Err(failure);
        }
    };
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let status = response.status();
    // The resource's own data names its pattern; a path that matched no
    // resource is one label, whatever it was.
    let route = response
        .request()
        .app_data::<ResourceMethods>()
        .map_or(UNMATCHED_ROUTE, |methods| methods.pattern);
    let elapsed = started.elapsed();
    crate::metrics::metrics().observe_request(route, &method, status.as_u16(), elapsed);
    if status.is_server_error() {
        let cause = response
            .response()
            .error()
            .map(|failure| match failure.as_error::<ApiError>() {
                Some(api_error) => error_chain(api_error),
                None => failure.to_string(),
            })
            .unwrap_or_default();
        error!(
            request_id = request_id.as_str(),
            route,
            "{method} {path} failed with {}: {cause}",
            status.as_u16()
        );
    }
    if crate::logging::access_enabled() {
        let key = response
            .request()
            .extensions()
            .get::<Caller>()
            .copied()
            .and_then(|caller| {
                response
                    .request()
                    .app_data::<actix_web::web::Data<crate::auth::Keyring>>()
                    .and_then(|keyring| keyring.name_of(caller))
            });
        crate::logging::access(&crate::logging::AccessLine {
            request_id: request_id.as_str(),
            method: method.as_str(),
            path: &path,
            route,
            status: status.as_u16(),
            latency: elapsed,
            key: key.as_deref(),
        });
    }
    Ok(response)
}

/// The route label of a request that matched no resource (a 404).
const UNMATCHED_ROUTE: &str = "unmatched";

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
