//! Where a test's ledger lives, for the API tests and the property tests
//! alike: a SQLite file in the test's own folder by default, or, when
//! `WALLET_TEST_POSTGRES` names a PostgreSQL server
//! (`postgres://USER@HOST:PORT`, a role allowed to create databases), a new
//! database of its own there. `scripts/test-on-postgres.sh` starts a
//! throwaway server and runs the suite so.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server the tests run against instead of SQLite, if any.
pub fn postgres_server() -> Option<String> {
    std::env::var("WALLET_TEST_POSTGRES")
        .ok()
        .map(|url| url.trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty())
}

/// A `--db` value for a new, empty ledger: `dir/wallet.db`, or the URL of
/// a database created just now on the test server.
pub fn fresh_database(dir: &Path) -> String {
    match postgres_server() {
        None => dir
            .join("wallet.db")
            .to_str()
            .expect("a UTF-8 path")
            .to_owned(),
        Some(server) => {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let name = format!(
                "t{}_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_micros()
            );
            let mut admin =
                postgres::Client::connect(&format!("{server}/postgres"), postgres::NoTls)
                    .unwrap_or_else(|error| panic!("WALLET_TEST_POSTGRES={server}: {error}"));
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("a test database is created");
            format!("{server}/{name}")
        }
    }
}
