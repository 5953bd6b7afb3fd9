//! Property tests: the real storage layer against a plain model of the
//! ledger, and every parser of caller input against arbitrary input.
//!
//! Each runs a few dozen cases in `cargo test`; `PROPTEST_CASES=N` runs N.

mod holds_model;
mod input;
mod ledger_model;

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

/// A fresh ledger for one case, in the folder `dir` the case owns: a SQLite
/// file there. (The PostgreSQL backend, once built, takes a database of its
/// own per case instead.)
pub fn fresh_location(dir: &std::path::Path) -> wallet::store::DatabaseLocation {
    let path = dir.join("wallet.db");
    wallet::store::DatabaseLocation::parse(path.to_str().expect("a UTF-8 path"))
        .expect("a file path is a location")
}
