//! The HTTP face of the service: routes, the envelope, request ids, body
//! parsing and the handlers. A handler parses its request into domain types
//! (every problem at once), hands it to the store, and shapes the answer; it
//! holds no SQL and no ledger rule.
//!
//! - `routes.rs`: the route table (every route once, with its access and its
//!   handler), 404 and 405. Only this file imports it.
//! - The handlers, one file per resource: `service.rs` (`/health`,
//!   `/metrics`), `assets.rs` (`/assets`, `/assets/{asset}/supply`),
//!   `wallets.rs` (a wallet's balance and history, and its topup, bonus,
//!   spend and transfer), `transactions.rs` (`/transactions/{id}`, its
//!   reversal), `batch.rs` (`/batch`), `holds.rs` (`/wallets/{userId}/holds`,
//!   `/holds/{holdId}` and its capture and void), `events.rs` (`/events`,
//!   pages and streams), `keys.rs` (`/keys` and a key's revocation),
//!   `console.rs` (`/console`, the operator console's page and files, kept
//!   in `console/`), and `openapi.rs` (`/openapi.json` and the document).
//! - Shared by the handlers: `input.rs` (the parsers of paths, keys and
//!   fields), `params.rs` (the parameters as the document describes them),
//!   `json.rs` (the payloads), `envelope.rs` (the envelope of every answer).
//! - Around them: `auth.rs` (each route's access and the key check),
//!   `request_context.rs` (request ids, the access log, metrics),
//!   `body.rs` (reading and parsing JSON bodies), `connection.rs` (the accept
//!   layer), `probe.rs` (the client of `wallet health`).

mod assets;
mod auth;
mod batch;
pub mod body;
pub mod connection;
mod console;
pub mod envelope;
mod events;
mod holds;
mod input;
mod json;
mod keys;
pub mod openapi;
mod params;
pub mod probe;
mod request_context;
mod routes;
mod rules;
mod service;
mod transactions;
mod wallets;

pub use json::format_timestamp;
pub use routes::ROUTES;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_http::{HttpService, Protocol};
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use anyhow::Context;
use log::warn;

use crate::auth::Access;
use crate::limits::{
    HTTP_BACKLOG, HTTP_CLIENT_DISCONNECT_TIMEOUT, HTTP_CLIENT_REQUEST_TIMEOUT,
    HTTP_CONNECTIONS_PER_WORKER_MAX, HTTP_FILE_DESCRIPTORS_RESERVED, HTTP_KEEP_ALIVE,
    HTTP_SHUTDOWN_TIMEOUT_SECONDS, HTTP_WORKERS,
};
use crate::store::OpenedStore;
use connection::{ConnectionTable, GuardedStream};

/// The server, bound and ready to run.
pub struct Application {
    server: Server,
    local_addr: SocketAddr,
    storage: OpenedStore,
    access: Access,
}

impl Application {
    /// Binds `bind` and builds the server over `storage`, letting in whom
    /// `access` allows. Must run inside an actix system.
    ///
    /// Built from actix-web's parts rather than `HttpServer`, so that every
    /// connection passes through the accept layer (`connection.rs`) on its
    /// way to the HTTP/1.1 dispatcher; routes, middleware and handlers are
    /// actix-web's as usual.
    pub fn build(storage: OpenedStore, access: Access, bind: &str) -> anyhow::Result<Application> {
        let stop_requested = stop_requested().context("cannot install signal handlers")?;
        let listener =
            TcpListener::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
        let local_addr = listener.local_addr()?;
        let store = web::Data::new(storage.store());
        let keyring = web::Data::from(access.keyring.clone());
        let served_on = auth::ServedOn {
            loopback: local_addr.ip().is_loopback(),
        };
        let streams = web::Data::new(events::EventStreams::default());
        let stop_requested = {
            let streams = streams.clone();
            async move {
                stop_requested.await;
                // Streams never end by themselves: end them, so the stop
                // drains as it would without them.
                streams.close_all();
            }
        };
        let per_worker = connections_per_worker();
        let table = ConnectionTable::new(per_worker * HTTP_WORKERS);
        let mut builder = Server::build();
        let shutdown = builder.graceful_shutdown_signal();
        builder = builder
            .workers(HTTP_WORKERS)
            .backlog(HTTP_BACKLOG)
            .max_concurrent_connections(per_worker)
            .shutdown_timeout(HTTP_SHUTDOWN_TIMEOUT_SECONDS)
            .shutdown_signal(stop_requested)
            .listen("wallet", listener, move || {
                let app = App::new()
                    .app_data(store.clone())
                    .app_data(keyring.clone())
                    .app_data(streams.clone())
                    .app_data(served_on)
                    .wrap(from_fn(request_context::request_context))
                    .configure(routes::routes)
                    .default_service(web::to(routes::not_found))
                    .into_factory()
                    .map_err(|error| error.error_response());
                let shutdown = shutdown.clone();
                let http = HttpService::build()
                    // Tells the dispatchers to close idle keep-alive
                    // connections once a stop begins, as HttpServer does.
                    .graceful_shutdown_signal(move || {
                        let shutdown = shutdown.clone();
                        async move { shutdown.notified().await }
                    })
                    .keep_alive(HTTP_KEEP_ALIVE)
                    .client_request_timeout(HTTP_CLIENT_REQUEST_TIMEOUT)
                    .client_disconnect_timeout(HTTP_CLIENT_DISCONNECT_TIMEOUT)
                    .local_addr(local_addr)
                    .on_connect_ext(|io: &GuardedStream, extensions| {
                        extensions.insert(io.state());
                    })
                    .finish(map_config(app, |_| AppConfig::default()));
                let table = Arc::clone(&table);
                fn_service(move |io: tokio::net::TcpStream| {
                    let table = Arc::clone(&table);
                    async move {
                        let _ = io.set_nodelay(true);
                        let peer = io.peer_addr().ok();
                        match table.admit(peer.map(|address| address.ip())) {
                            Ok(admission) => Ok((
                                GuardedStream::new(io, table, admission),
                                Protocol::Http1,
                                peer,
                            )),
                            Err(refusal) => {
                                connection::refuse(io).await;
                                Err(actix_http::error::DispatchError::Io(std::io::Error::other(
                                    format!("connection refused: {refusal:?}"),
                                )))
                            }
                        }
                    }
                })
                .and_then(http)
            })
            .with_context(|| format!("cannot listen on {bind}"))?;
        let server = builder.run();
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
    pub fn handle(&self) -> actix_server::ServerHandle {
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

/// Connection slots per worker: `HTTP_CONNECTIONS_PER_WORKER_MAX`, or fewer
/// when the process may not open that many files. The open-file limit is
/// raised to its hard ceiling first (often 1024 soft, far more hard).
fn connections_per_worker() -> usize {
    let wanted = HTTP_CONNECTIONS_PER_WORKER_MAX * HTTP_WORKERS + HTTP_FILE_DESCRIPTORS_RESERVED;
    let allowed = raise_open_file_limit(wanted as u64) as usize;
    let per_worker = (allowed.saturating_sub(HTTP_FILE_DESCRIPTORS_RESERVED) / HTTP_WORKERS)
        .clamp(16, HTTP_CONNECTIONS_PER_WORKER_MAX);
    if per_worker < HTTP_CONNECTIONS_PER_WORKER_MAX {
        warn!(
            "the open-file limit ({allowed}) allows {per_worker} connections per worker, not {HTTP_CONNECTIONS_PER_WORKER_MAX}; raise it (ulimit -n) for more"
        );
    }
    per_worker
}

/// Raises the soft open-file limit towards `wanted` (never past the hard
/// limit) and returns the limit in force.
fn raise_open_file_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}
