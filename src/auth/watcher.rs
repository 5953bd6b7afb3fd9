//! The thread that keeps a server's keyring current and records last uses.
//!
//! Why polling a counter: `wallet keys revoke` runs in another process, which
//! cannot reach into the server. Checking the table on each request would
//! add a database round trip to every request; instead this thread reads the
//! one-row generation counter (bumped by triggers on every new or revoked
//! key) every `API_KEYS_RELOAD_INTERVAL`, and reloads the keys only when it
//! moved. A revocation takes effect within that interval, and requests pay
//! nothing for it.
//!
//! Last uses are recorded from here too, at most once per
//! `API_KEY_LAST_USED_FLUSH_INTERVAL`, through the store's writer (the one
//! read-write connection), so the request path never waits for them.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::keyring::Keyring;
use crate::limits::{API_KEYS_RELOAD_INTERVAL, API_KEY_LAST_USED_FLUSH_INTERVAL};
use crate::store::Store;
use anyhow::Context;
use log::error;

/// The running watcher; whoever started it stops it.
pub struct KeyWatcher {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl KeyWatcher {
    /// Watches the keys `store` holds.
    pub fn start(store: Store, keyring: Arc<Keyring>) -> anyhow::Result<KeyWatcher> {
        let (stop, stop_requested) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wallet-keys".into())
            .spawn(move || {
                let mut recorded_at = Instant::now();
                // Each tick waits for a stop; a timeout means carry on.
                while let Err(RecvTimeoutError::Timeout) =
                    stop_requested.recv_timeout(API_KEYS_RELOAD_INTERVAL)
                {
                    if let Err(failure) = reload_if_changed(&store, &keyring) {
                        // The last good set stays in force; the next tick retries.
                        error!("reloading the API keys failed: {failure:#}");
                    }
                    if recorded_at.elapsed() >= API_KEY_LAST_USED_FLUSH_INTERVAL {
                        record_last_uses(&store, &keyring);
                        recorded_at = Instant::now();
                    }
                }
                record_last_uses(&store, &keyring);
            })
            .context("cannot start the key watcher")?;
        Ok(KeyWatcher { stop, thread })
    }

    /// Writes the last uses not yet written, then ends the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            error!("the key watcher ended with a panic");
        }
    }
}

fn reload_if_changed(store: &Store, keyring: &Keyring) -> anyhow::Result<()> {
    if store.key_generation()? == keyring.generation() {
        return Ok(());
    }
    Ok(keyring.reload(|| store.load_keys())?)
}

fn record_last_uses(store: &Store, keyring: &Keyring) {
    let uses = keyring.take_unrecorded_uses();
    if uses.is_empty() {
        return;
    }
    let count = uses.len();
    if let Err(failure) = store.record_key_uses(uses) {
        // Only `wallet keys list` is the poorer for it.
        error!("recording the last use of {count} API keys failed: {failure}");
    }
}
