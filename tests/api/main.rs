//! API tests: the real binary over real HTTP, one database per test.

mod auth;
mod backup;
mod bench;
mod bounds;
mod cli;
mod concurrency;
mod container;
mod contract;
mod crash;
mod crash_loop;
mod deploy;
mod engine;
mod engine_concurrency;
mod faults;
mod helpers;
mod holds;
mod hostile;
mod idempotency;
mod migration;
mod openapi;
mod overload;
mod readme;
mod restore;
mod smoke;
mod transactions;
mod validation;
