//! API tests: the real binary over real HTTP, one database per test.

mod auth;
mod backup;
mod cli;
mod concurrency;
mod contract;
mod crash;
mod deploy;
mod helpers;
mod idempotency;
mod openapi;
mod readme;
mod smoke;
mod transactions;
mod validation;
