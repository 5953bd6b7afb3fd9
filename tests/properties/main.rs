//! Property tests: the real storage layer against a plain model of the
//! ledger, and every parser of caller input against arbitrary input.
//!
//! Each runs a few dozen cases in `cargo test`; `PROPTEST_CASES=N` runs N.

mod holds_model;
mod input;
mod ledger_model;
mod limits_model;
mod real_store;
#[path = "../common/test_database.rs"]
mod test_database;

/// Cases per property: `PROPTEST_CASES` when set, else `default`, which keeps
/// `cargo test` quick while a long run is one environment variable away.
pub fn config(default: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default);
    proptest::test_runner::Config {
        cases,
        ..proptest::test_runner::Config::default()
    }
}

/// A fresh ledger for one case: a SQLite file in the folder `dir` the case
/// owns, or a database of its own on the server `WALLET_TEST_POSTGRES`
/// names.
pub fn fresh_location(dir: &std::path::Path) -> wallet::store::DatabaseLocation {
    wallet::store::DatabaseLocation::parse(&test_database::fresh_database(dir))
        .expect("a test database is a location")
}
