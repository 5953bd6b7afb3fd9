//! API tests: the real binary over real HTTP, one database per test.

mod cli;
mod concurrency;
mod contract;
mod crash;
mod crash_loop;
mod faults;
mod helpers;
mod hostile;
mod idempotency;
mod overload;
mod smoke;
mod transactions;
mod validation;
