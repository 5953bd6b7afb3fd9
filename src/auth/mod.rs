//! Who may call the service: API keys with scopes, checked in memory on every
//! request, kept current by a watcher thread, and the start-up rule that a
//! service reachable from other machines never runs open by accident.
//! Secrets are never logged and never stored; only their digests are.

pub mod keyring;
pub mod secret;
mod watcher;

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use log::warn;

pub use keyring::{Denial, Keyring, RateLimit};
use watcher::KeyWatcher;

use crate::storage::keys::{self, KeySnapshot};
use crate::storage::open;

/// How a server decides who may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// The address served, for the refusal message.
    pub bind: String,
    /// Whether only this machine can reach that address.
    pub bind_is_loopback: bool,
    /// `--insecure-no-auth`: serve a non-loopback address without keys.
    pub insecure_no_auth: bool,
    pub rate_limit: RateLimit,
}

/// The keyring a server checks requests against, and its watcher.
pub struct Access {
    pub keyring: Arc<Keyring>,
    watcher: KeyWatcher,
}

impl Access {
    /// Loads the keys of the (migrated) file at `path`, refuses an exposed
    /// service without keys, and starts watching for changes.
    pub fn start(path: &Path, policy: &AccessPolicy) -> anyhow::Result<Access> {
        let mut conn = open::open_read_write(path)?;
        let snapshot = keys::load(&mut conn)?;
        check_exposure(&snapshot, policy)?;
        if !snapshot.any_key_exists && !policy.bind_is_loopback {
            warn!(
                "serving {} without API keys (--insecure-no-auth): anyone who reaches it can mint currency",
                policy.bind
            );
        }
        let keyring = Arc::new(Keyring::new(snapshot, policy.rate_limit));
        let watcher = KeyWatcher::start(conn, Arc::clone(&keyring))?;
        Ok(Access { keyring, watcher })
    }

    /// Records the keys' last uses and stops watching.
    pub fn stop(self) {
        self.watcher.stop();
    }
}

/// No active key and an address other machines can reach: refused, unless
/// the operator said `--insecure-no-auth`. On loopback the service may run
/// open (a sidecar, the quick start).
fn check_exposure(snapshot: &KeySnapshot, policy: &AccessPolicy) -> anyhow::Result<()> {
    if snapshot.active.is_empty() && !policy.bind_is_loopback && !policy.insecure_no_auth {
        bail!(
            "refusing to serve {} with no API key: create one with `wallet keys create --name NAME --scopes read,spend` and send it as `Authorization: Bearer <key>`, or pass --insecure-no-auth to serve without keys",
            policy.bind
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::keys::ActiveKeyRow;

    fn policy(bind_is_loopback: bool, insecure_no_auth: bool) -> AccessPolicy {
        AccessPolicy {
            bind: "0.0.0.0:8080".into(),
            bind_is_loopback,
            insecure_no_auth,
            rate_limit: RateLimit {
                per_second: 1,
                burst: 1,
            },
        }
    }

    fn snapshot(active: usize) -> KeySnapshot {
        KeySnapshot {
            generation: 1,
            any_key_exists: true,
            active: (0..active)
                .map(|id| ActiveKeyRow {
                    id: id as i64 + 1,
                    name: format!("k{id}"),
                    scopes: crate::domain::Scopes::parse("read").unwrap(),
                    secret_sha256: [id as u8; 32],
                })
                .collect(),
        }
    }

    #[test]
    fn an_exposed_service_needs_an_active_key_or_the_insecure_flag() {
        let error = check_exposure(&snapshot(0), &policy(false, false))
            .unwrap_err()
            .to_string();
        assert!(error.contains("wallet keys create"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        assert!(check_exposure(&snapshot(0), &policy(false, true)).is_ok());
        assert!(check_exposure(&snapshot(0), &policy(true, false)).is_ok());
        assert!(check_exposure(&snapshot(1), &policy(false, false)).is_ok());
    }
}
