//! The wallet service: a double-entry, append-only ledger of virtual
//! currencies on one SQLite file, served over HTTP.

/// API keys, scopes and rate limits: who may call, checked in memory.
pub mod auth;
/// `wallet bench`: the load generator the project measures itself with.
pub mod bench;
/// The command line: serve, migrate, seed, verify, keys, bench.
pub mod cli;
/// The wall clock in milliseconds, and the refusal of one before 1970.
pub mod clock;
/// Resolved settings; the only reader of the environment besides clap.
pub mod config;
/// Domain types, valid by construction.
pub mod domain;
/// `ApiError`: the one mapping from failure to HTTP status and error code.
pub mod error;
/// Routes, the envelope, request ids, body parsing, handlers.
pub mod http;
/// The engine that decides every write, and the audit; pure.
pub mod ledger;
/// Every bound in the service, with its reason.
pub mod limits;
/// The log: text or JSON lines, written off the request path.
pub mod logging;
/// The Prometheus metrics of `GET /metrics`.
pub mod metrics;
/// A progress line on a terminal, for the commands that can run long.
pub mod progress;
/// The store seam, and behind it the only SQL (SQLite: open, migrate, read
/// pool, writer thread, queries, seed).
pub mod store;
