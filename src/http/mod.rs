//! The HTTP face of the service: routes, the envelope, request ids, body
//! parsing and the handlers. Handlers parse input into domain types and hand
//! it to storage; they hold no SQL and no balance logic.

mod auth;
pub mod body;
pub mod envelope;
mod handlers;
mod json;
pub mod openapi;
pub mod probe;
mod request_context;

pub use handlers::ROUTES;
pub use json::format_timestamp;

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::auth::Access;
use crate::limits::{
    HTTP_BACKLOG, HTTP_CLIENT_DISCONNECT_TIMEOUT, HTTP_CLIENT_REQUEST_TIMEOUT,
    HTTP_CONNECTIONS_PER_WORKER_MAX, HTTP_KEEP_ALIVE, HTTP_SHUTDOWN_TIMEOUT_SECONDS, HTTP_WORKERS,
};
use crate::storage::Storage;

/// The server, bound and ready to run.
pub struct Application {
    server: Server,
    local_addr: SocketAddr,
    storage: Storage,
    access: Access,
}

impl Application {
    /// Binds `bind` and builds the server over `storage`, letting in whom
    /// `access` allows. Must run inside an actix system.
    pub fn build(storage: Storage, access: Access, bind: &str) -> anyhow::Result<Application> {
        let stop_requested = stop_requested().context("cannot install signal handlers")?;
        let listener =
            TcpListener::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
        let local_addr = listener.local_addr()?;
        let writer = web::Data::new(storage.writer.handle());
        let pool = web::Data::new(storage.pool.clone());
        let keyring = web::Data::from(access.keyring.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(writer.clone())
                .app_data(pool.clone())
                .app_data(keyring.clone())
                .wrap(from_fn(request_context::request_context))
                .configure(handlers::routes)
                .default_service(web::to(handlers::not_found))
        })
        .workers(HTTP_WORKERS)
        .max_connections(HTTP_CONNECTIONS_PER_WORKER_MAX)
        .backlog(HTTP_BACKLOG)
        .client_request_timeout(HTTP_CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(HTTP_CLIENT_DISCONNECT_TIMEOUT)
        .keep_alive(HTTP_KEEP_ALIVE)
        .shutdown_timeout(HTTP_SHUTDOWN_TIMEOUT_SECONDS)
        .shutdown_signal(stop_requested)
        .listen(listener)
        .with_context(|| format!("cannot listen on {bind}"))?
        .run();
        Ok(Application {
            server,
            local_addr,
            storage,
            access,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server from code (the bench) as a signal would.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT: then stops accepting, lets requests in
    /// flight finish, drains the writer and closes the database.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("the HTTP server failed")?;
        // The writer's queue holds nothing new now: every handler has
        // finished. Stopping it applies what is queued and closes the file.
        let storage = self.storage;
        let access = self.access;
        web::block(move || {
            access.stop();
            storage.close();
        })
        .await
        .context("closing the database failed")?;
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT. actix-server on its own treats SIGINT as a
/// forced stop that drops requests in flight; API.md wants both signals to
/// drain, so both lead to its graceful shutdown.
fn stop_requested() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = match futures_util::future::select(
            Box::pin(terminate.recv()),
            Box::pin(interrupt.recv()),
        )
        .await
        {
            futures_util::future::Either::Left(_) => "SIGTERM",
            futures_util::future::Either::Right(_) => "SIGINT",
        };
        log::info!("{name} received: finishing requests in flight, then stopping");
    })
}
