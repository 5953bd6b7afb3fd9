//! The service's own routes: `GET /health` (liveness and the database) and
//! `GET /metrics` (Prometheus). `GET /openapi.json` is served by `openapi.rs`.

use actix_web::{web, HttpResponse};

use super::envelope::ok;
use super::json::Health;
use crate::error::ApiError;
use crate::store::{StorageError, Store};

/// API.md: GET /health
#[utoipa::path(get, path = "/health", tag = "service",
    summary = "Liveness and database reachability",
    responses((status = 200, description = "The service and its database answer.", body = Health)))]
pub(super) async fn get_health(store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    // Whatever keeps the database from answering, health reports as the
    // database: a read that fails, or writes that do (a full disk, files
    // changed under the server).
    if store.is_failing() {
        return Err(ApiError::DatabaseUnavailable(StorageError::WritesFailing));
    }
    store.health().map_err(ApiError::DatabaseUnavailable)?;
    Ok(ok(Health {
        status: "ok",
        database: "ok",
        version: env!("CARGO_PKG_VERSION"),
    }))
}

/// API.md: GET /metrics
#[utoipa::path(get, path = "/metrics", tag = "service",
    summary = "Prometheus metrics",
    responses((status = 200, description = "The metrics in Prometheus' text format \
        (`text/plain; version=0.0.4`), bare (no envelope).",
        content_type = "text/plain", body = String)))]
pub(super) async fn get_metrics(store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let figures = store
        .ledger_figures()
        .map_err(ApiError::DatabaseUnavailable)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::exposition(&figures)))
}
