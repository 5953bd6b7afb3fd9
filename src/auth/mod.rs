//! Who may call the service: API keys with scopes, checked in memory on every
//! request, kept current by a watcher thread, and the start-up rule that a
//! service reachable from other machines never runs open by accident: with
//! no key it starts locked, and the first key created unlocks it.
//! Secrets are never logged and never stored; only their digests are.

pub mod keyring;
pub mod secret;
mod watcher;

use std::sync::Arc;

use log::warn;

pub use keyring::{Denial, Keyring, RateLimit};
use watcher::KeyWatcher;

use crate::store::{DatabaseLocation, Store};

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

impl AccessPolicy {
    /// Whether callers without a key are served while no key exists. Off
    /// loopback, and without `--insecure-no-auth`, the service starts locked.
    pub fn open_without_keys(&self) -> bool {
        self.bind_is_loopback || self.insecure_no_auth
    }
}

/// The keyring a server checks requests against, and its watcher.
pub struct Access {
    pub keyring: Arc<Keyring>,
    watcher: KeyWatcher,
}

impl Access {
    /// Loads the keys of the (migrated) database at `location`, says how to
    /// unlock an exposed service that has no key, and starts watching for
    /// changes through `store`.
    pub fn start(
        store: Store,
        location: &DatabaseLocation,
        policy: &AccessPolicy,
    ) -> anyhow::Result<Access> {
        let snapshot = store.load_keys()?;
        if snapshot.active.is_empty() && !policy.open_without_keys() {
            // Once, at start: the watcher's reload line says when it unlocks.
            warn!("{}", locked_notice(location, policy));
        } else if !snapshot.any_key_exists && !policy.bind_is_loopback {
            warn!(
                "serving {} without API keys (--insecure-no-auth): anyone who reaches it can mint currency",
                policy.bind
            );
        }
        let keyring = Arc::new(Keyring::new(
            snapshot,
            policy.rate_limit,
            policy.open_without_keys(),
        ));
        let watcher = KeyWatcher::start(store, Arc::clone(&keyring))?;
        Ok(Access { keyring, watcher })
    }

    /// Records the keys' last uses and stops watching.
    pub fn stop(self) {
        self.watcher.stop();
    }
}

/// What an operator reads when an exposed service starts with no active key:
/// that it is locked, and the command that creates the first key in each of
/// the deployments the README describes (a volume or a Fly machine has no
/// shell, so each form runs the binary itself).
fn locked_notice(location: &DatabaseLocation, policy: &AccessPolicy) -> String {
    let create = "keys create --name NAME --scopes read,spend";
    format!(
        "serving {bind} LOCKED: no API key is active, so every route but /health and /openapi.json answers 401 until one is created. \
         Create the first key on this database (in force within {reload} ms, no restart): \
         `wallet {create} --db {db}`; \
         in Docker `docker run --rm -v wallet-data:/data wallet {create}`; \
         with compose `docker compose run --rm wallet {create}`; \
         on Fly.io `fly ssh console -C \"/usr/local/bin/wallet {create}\"`. \
         To serve without keys instead, start with --insecure-no-auth",
        bind = policy.bind,
        reload = crate::limits::API_KEYS_RELOAD_INTERVAL.as_millis(),
        db = location.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn only_loopback_or_the_insecure_flag_serve_without_keys() {
        assert!(!policy(false, false).open_without_keys());
        assert!(policy(false, true).open_without_keys());
        assert!(policy(true, false).open_without_keys());
    }

    #[test]
    fn the_locked_notice_is_one_line_naming_every_way_to_create_a_key() {
        let notice = locked_notice(
            &DatabaseLocation::parse("/data/wallet.db").unwrap(),
            &policy(false, false),
        );
        assert!(!notice.contains('\n'), "one line: {notice}");
        for form in [
            "wallet keys create --name NAME --scopes read,spend --db /data/wallet.db",
            "docker run --rm -v wallet-data:/data wallet keys create",
            "docker compose run --rm wallet keys create",
            "fly ssh console -C",
            "--insecure-no-auth",
        ] {
            assert!(notice.contains(form), "{form}: {notice}");
        }
    }
}
