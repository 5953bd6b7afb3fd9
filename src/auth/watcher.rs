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
//! Last uses are written here too, at most once per
//! `API_KEY_LAST_USED_FLUSH_INTERVAL`, in one short transaction on this
//! thread's own connection, so the request path and the ledger writer never
//! wait for them.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;
use log::{error, info};
use rusqlite::Connection;

use super::keyring::Keyring;
use crate::limits::{API_KEYS_RELOAD_INTERVAL, API_KEY_LAST_USED_FLUSH_INTERVAL};
use crate::storage::keys;

/// The running watcher; whoever started it stops it.
pub struct KeyWatcher {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl KeyWatcher {
    /// Watches the file on `conn`, a connection of its own.
    pub fn start(conn: Connection, keyring: Arc<Keyring>) -> anyhow::Result<KeyWatcher> {
        let (stop, stop_requested) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("wallet-keys".into())
            .spawn(move || {
                let mut conn = conn;
                let mut recorded_at = Instant::now();
                // Each tick waits for a stop; a timeout means carry on.
                while let Err(RecvTimeoutError::Timeout) =
                    stop_requested.recv_timeout(API_KEYS_RELOAD_INTERVAL)
                {
                    if let Err(failure) = reload_if_changed(&mut conn, &keyring) {
                        // The last good set stays in force; the next tick retries.
                        error!("reloading the API keys failed: {failure:#}");
                    }
                    if recorded_at.elapsed() >= API_KEY_LAST_USED_FLUSH_INTERVAL {
                        record_last_uses(&mut conn, &keyring);
                        recorded_at = Instant::now();
                    }
                }
                record_last_uses(&mut conn, &keyring);
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

fn reload_if_changed(conn: &mut Connection, keyring: &Keyring) -> anyhow::Result<()> {
    if keys::generation(conn)? == keyring.generation() {
        return Ok(());
    }
    let snapshot = keys::load(conn)?;
    info!(
        "API keys changed: {} active, keys {}",
        snapshot.active.len(),
        if snapshot.any_key_exists {
            "required"
        } else {
            "not required"
        }
    );
    keyring.replace(snapshot);
    Ok(())
}

fn record_last_uses(conn: &mut Connection, keyring: &Keyring) {
    let uses = keyring.take_unrecorded_uses();
    if let Err(failure) = keys::record_last_used(conn, &uses) {
        // Only `wallet keys list` is the poorer for it.
        error!(
            "recording the last use of {} API keys failed: {failure}",
            uses.len()
        );
    }
}
