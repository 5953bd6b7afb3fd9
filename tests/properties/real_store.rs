//! The real store for the model tests: a fresh database (a SQLite file,
//! or a PostgreSQL database of its own) with the asset GOLD, standing at a
//! clock the test moves, and driven only through `Store`, as the handlers
//! drive it.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use wallet::clock::Clock;
use wallet::domain::{AssetDecimals, AssetName, AssetSymbol};
use wallet::ledger::engine::{Command, NewAsset, Outcome};
use wallet::ledger::Rejection;
use wallet::limits::WRITE_BATCH_MAX;
use wallet::store::{commands, AssetOutcome, DatabaseLocation, LedgerError, OpenedStore, Store};

/// The store as a server holds it, on a fresh database with the asset
/// catalogue, standing at a clock the test moves, and driven only through
/// `Store`.
pub struct Real {
    _dir: tempfile::TempDir,
    pub location: DatabaseLocation,
    opened: Option<OpenedStore>,
    pub store: Store,
    pub runtime: tokio::runtime::Runtime,
    pub clock: Arc<AtomicI64>,
}

impl Real {
    pub fn open(start_ms: i64) -> Real {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::fresh_location(dir.path());
        commands::migrate(&location).unwrap();
        let gold = NewAsset {
            symbol: AssetSymbol::parse("GOLD").unwrap(),
            name: AssetName::parse("Gold Coins").unwrap(),
            decimals: AssetDecimals::default(),
        };
        assert!(matches!(
            commands::create_asset(&location, gold).unwrap(),
            Ok(AssetOutcome::Created(_))
        ));
        let (clock, hand) = Clock::manual(start_ms);
        let opened =
            OpenedStore::open_with_clock(&location, WRITE_BATCH_MAX, false, clock).unwrap();
        let store = opened.store();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        Real {
            _dir: dir,
            location,
            opened: Some(opened),
            store,
            runtime,
            clock: hand,
        }
    }

    pub fn apply(&self, command: Command) -> Result<Outcome, Rejection> {
        match self.runtime.block_on(self.store.apply(command)) {
            Ok(outcome) => Ok(outcome),
            Err(LedgerError::Rejected(rejection)) => Err(rejection),
            Err(other) => panic!("a storage failure: {other:?}"),
        }
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        if let Some(opened) = self.opened.take() {
            opened.close();
        }
    }
}
