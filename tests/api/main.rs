//! API tests: the real binary over real HTTP, one database per test.

mod auth;
mod cli;
mod concurrency;
mod contract;
mod crash;
mod helpers;
mod idempotency;
mod smoke;
mod transactions;
mod validation;
