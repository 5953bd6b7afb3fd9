//! The check in front of every route: the route's access (open, or a scope),
//! the caller's bearer key, their rate limit. It runs before the body is
//! read, so a caller without the scope learns nothing from validation. The
//! caller it finds is left in the request's extensions for the handler.
//! Never logs the Authorization header or any part of it. What each route
//! asks (`RouteAccess`, and per path `ResourceMethods`) is defined here; the
//! route table in `routes.rs` declares it for each route.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use crate::auth::Keyring;
use crate::clock::now_ms;
use crate::domain::{Caller, Scope};
use crate::error::ApiError;

/// What a route asks of its callers; set on each resource in `routes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAccess {
    /// Anyone, always: `GET /health`, for load balancers and probes.
    Open,
    /// A key holding this scope (or `admin`), once any key exists.
    Needs(Scope),
    /// Anyone when the server is bound to a loopback address (a sidecar's
    /// scraper beside it); elsewhere as `Needs` (API.md: `GET /metrics`).
    OpenOnLoopback(Scope),
    /// A key, whose scopes the handler checks once the body says what it
    /// needs (API.md: `POST /batch` needs every scope its operations would).
    NeedsPerOperation,
}

/// The methods one path answers, each with what it asks of its callers,
/// and the path's pattern: what metrics and logs name a request's route by.
#[derive(Debug, Clone, Copy)]
pub struct ResourceMethods {
    pub pattern: &'static str,
    pub methods: &'static [(&'static str, RouteAccess)],
}

impl ResourceMethods {
    /// What a request with `method` needs; None when the path does not
    /// answer it (405). HEAD is answered as GET.
    pub fn access_for(&self, method: &Method) -> Option<RouteAccess> {
        let asked = if method == Method::HEAD {
            "get"
        } else {
            method.as_str()
        };
        self.methods
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(asked))
            .map(|(_, access)| *access)
    }

    /// The `Allow` header of a 405.
    pub fn allow(&self) -> String {
        self.methods
            .iter()
            .map(|(name, _)| match *name {
                "get" => "GET, HEAD",
                "post" => "POST",
                "put" => "PUT",
                _ => "",
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where the server listens, as the routes open on loopback need to know.
#[derive(Debug, Clone, Copy)]
pub struct ServedOn {
    pub loopback: bool,
}

pub async fn authorize(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // A method the route does not answer goes straight to its 405: the
    // answer is the same for every caller, so it needs no key.
    let methods = request.app_data::<ResourceMethods>().copied();
    let access = methods.and_then(|methods| methods.access_for(request.method()));
    if methods.is_some() && access.is_none() {
        return Ok(next.call(request).await?.map_into_boxed_body());
    }
    let needed = match access {
        Some(RouteAccess::Open) => return Ok(next.call(request).await?.map_into_boxed_body()),
        Some(RouteAccess::Needs(scope)) => Some(scope),
        Some(RouteAccess::OpenOnLoopback(scope)) => {
            let on_loopback = request
                .app_data::<ServedOn>()
                .is_some_and(|served| served.loopback);
            if on_loopback {
                return Ok(next.call(request).await?.map_into_boxed_body());
            }
            Some(scope)
        }
        Some(RouteAccess::NeedsPerOperation) => None,
        // A route registered without saying who may call it: a defect, and
        // refused rather than served open.
        None => {
            let error = ApiError::Internal(anyhow::anyhow!(
                "route {} declares no access",
                request.path()
            ));
            return Ok(request.error_response(error));
        }
    };
    let Some(keyring) = request.app_data::<web::Data<Keyring>>() else {
        let error = ApiError::Internal(anyhow::anyhow!("no keyring in the application"));
        return Ok(request.error_response(error));
    };
    let decision = keyring.authorize(bearer_token(&request), needed, now_ms());
    match decision {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            Ok(next.call(request).await?.map_into_boxed_body())
        }
        Err(denial) => Ok(request.error_response(ApiError::from(denial))),
    }
}

/// The token of `Authorization: Bearer <token>`; the scheme is
/// case-insensitive (RFC 7235). Anything else counts as no key.
fn bearer_token(request: &ServiceRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The caller `authorize` let through, checked again now: a write calls this
/// after its body has arrived and just before its command goes to the
/// writer, so a key revoked in between writes nothing (API.md,
/// Authentication).
pub fn caller_still_allowed(request: &actix_web::HttpRequest) -> Result<Caller, ApiError> {
    let access = request
        .app_data::<ResourceMethods>()
        .and_then(|methods| methods.access_for(request.method()));
    let Some(RouteAccess::Needs(needed)) = access else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "a write route declares no scope"
        )));
    };
    caller_allowed_for(request, &[needed])
}

/// The caller, checked now for every scope of `needed`, in order: the
/// first it lacks is the 403's `requiredScope`.
pub fn caller_allowed_for(
    request: &actix_web::HttpRequest,
    needed: &[Scope],
) -> Result<Caller, ApiError> {
    let caller = caller_of(request)?;
    let keyring = request
        .app_data::<web::Data<Keyring>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no keyring in the application")))?;
    for scope in needed {
        keyring.confirm(caller, *scope)?;
    }
    Ok(caller)
}

/// The caller `authorize` let through, for a handler.
pub fn caller_of(request: &actix_web::HttpRequest) -> Result<Caller, ApiError> {
    request
        .extensions()
        .get::<Caller>()
        .copied()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a handler ran without a caller")))
}
