//! The keys a running server accepts, held in memory so that checking a
//! request costs no database round trip and no blocking-pool hop: a read
//! lock, a SHA-256 and a constant-time comparison. The watcher replaces the
//! set when the table changes; each key carries its rate-limit bucket and its
//! last use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use log::info;

use super::secret;
use crate::domain::{Caller, Scope};
use crate::store::{ActiveKeyRow, KeySnapshot};

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No key, or one that is unknown or revoked: 401.
    Unauthenticated,
    /// A valid key without the route's scope: 403.
    MissingScope(Scope),
    /// The key's bucket is empty: 429, retry after this many seconds.
    RateLimited { retry_after_seconds: u64 },
}

/// The per-key token bucket's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// One accepted key, with its running state.
#[derive(Debug)]
pub struct ActiveKey {
    row: ActiveKeyRow,
    bucket: Mutex<TokenBucket>,
    /// Milliseconds since the epoch of the last request made with the key.
    last_used_ms: AtomicI64,
    /// The last use already written to the database.
    last_used_recorded_ms: AtomicI64,
}

#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    fn full(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(limit.burst),
            refilled_at: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    fn take(&mut self, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(limit.per_second)).min(f64::from(limit.burst));
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(
                missing / f64::from(limit.per_second),
            ))
        }
    }
}

/// The accepted keys of one generation of the table.
#[derive(Debug, Default)]
struct KeySet {
    generation: i64,
    /// Whether a key is required: once any key was created, or from the start
    /// where the service may not run open. So creating the first key closes
    /// the service at once, and revoking the last never opens it again.
    enforced: bool,
    /// Indexed by the first 8 bytes of the digest; the whole digest is then
    /// compared in constant time. Two keys sharing those bytes (about one
    /// chance in 2^57 among the keys allowed) share a slot.
    by_digest_prefix: HashMap<u64, Vec<Arc<ActiveKey>>>,
    /// The same keys by id, for the check at the moment of a write.
    by_id: HashMap<i64, Arc<ActiveKey>>,
}

fn digest_prefix(digest: &[u8; 32]) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(prefix)
}

/// Who may call, shared by every worker and the watcher.
#[derive(Debug)]
pub struct Keyring {
    current: RwLock<Arc<KeySet>>,
    rate_limit: RateLimit,
    /// Whether callers without a key are served while no key exists: on a
    /// loopback address, or with `--insecure-no-auth`. Otherwise the service
    /// starts locked, and the first key created unlocks it for keyed callers.
    open_without_keys: bool,
    /// Bumped each time a new generation is installed: what long-lived
    /// answers (event streams) wait on to check their caller again.
    replaced: tokio::sync::watch::Sender<u64>,
    /// Held from reading a snapshot to installing it (`reload`), so that of
    /// two reloads the one that read later installs later.
    reloading: Mutex<()>,
}

impl Keyring {
    pub fn new(snapshot: KeySnapshot, rate_limit: RateLimit, open_without_keys: bool) -> Keyring {
        let keyring = Keyring {
            current: RwLock::new(Arc::default()),
            rate_limit,
            open_without_keys,
            replaced: tokio::sync::watch::Sender::new(0),
            reloading: Mutex::new(()),
        };
        keyring.replace(snapshot);
        keyring
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The name of a caller's key, for the log; `None` for the anonymous
    /// caller or a key no longer active.
    pub fn name_of(&self, caller: Caller) -> Option<String> {
        match caller {
            Caller::Anonymous => None,
            Caller::Key(id) => self
                .current()
                .by_id
                .get(&id)
                .map(|key| key.row.name.clone()),
        }
    }

    pub fn generation(&self) -> i64 {
        self.current().generation
    }

    /// Whether every route but the open ones needs a key.
    pub fn is_enforced(&self) -> bool {
        self.current().enforced
    }

    /// Installs a new generation. A key that is still active keeps its
    /// bucket and last use, so reloading resets no one's rate limit.
    pub fn replace(&self, snapshot: KeySnapshot) {
        let old = self.current();
        let old_by_id: HashMap<i64, &Arc<ActiveKey>> = old
            .by_digest_prefix
            .values()
            .flatten()
            .map(|key| (key.row.id, key))
            .collect();
        let now = Instant::now();
        let mut by_digest_prefix: HashMap<u64, Vec<Arc<ActiveKey>>> = HashMap::new();
        for row in snapshot.active {
            let key = match old_by_id.get(&row.id) {
                Some(existing) if existing.row == row => Arc::clone(existing),
                _ => Arc::new(ActiveKey {
                    bucket: Mutex::new(TokenBucket::full(self.rate_limit, now)),
                    last_used_ms: AtomicI64::new(0),
                    last_used_recorded_ms: AtomicI64::new(0),
                    row,
                }),
            };
            by_digest_prefix
                .entry(digest_prefix(&key.row.secret_sha256))
                .or_default()
                .push(key);
        }
        let by_id = by_digest_prefix
            .values()
            .flatten()
            .map(|key| (key.row.id, Arc::clone(key)))
            .collect();
        let next = Arc::new(KeySet {
            generation: snapshot.generation,
            enforced: snapshot.any_key_exists || !self.open_without_keys,
            by_digest_prefix,
            by_id,
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        self.replaced.send_modify(|count| *count += 1);
    }

    /// Reads the keys with `load` and installs them, one reload at a time:
    /// the watcher's, and a server's own right after it wrote a key
    /// (`POST /keys`, a revocation), which then holds from the next request
    /// on rather than from the watcher's next look. Without the lock, a
    /// watcher that read the table just before the write could install
    /// its older snapshot over the newer one (until its next look).
    pub fn reload<E>(&self, load: impl FnOnce() -> Result<KeySnapshot, E>) -> Result<(), E> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let snapshot = load()?;
        info!(
            "API keys changed: {} active, keys {}",
            snapshot.active.len(),
            if snapshot.any_key_exists {
                "required"
            } else {
                "not required"
            }
        );
        self.replace(snapshot);
        Ok(())
    }

    /// Changes each time the accepted keys are replaced (a key created or
    /// revoked): an answer that outlives its request re-checks its caller
    /// with `confirm` then.
    pub fn replacements(&self) -> tokio::sync::watch::Receiver<u64> {
        self.replaced.subscribe()
    }

    /// Decides one request: `presented` is the bearer token, if any; `needed`
    /// the route's scope; `now_ms` the wall clock, for the key's last use.
    pub fn authorize(
        &self,
        presented: Option<&str>,
        needed: impl Into<Option<Scope>>,
        now_ms: i64,
    ) -> Result<Caller, Denial> {
        let needed: Option<Scope> = needed.into();
        let set = self.current();
        if !set.enforced {
            return Ok(Caller::Anonymous);
        }
        let key = presented
            .filter(|token| secret::is_well_formed(token))
            .and_then(|token| {
                let digest = secret::digest(token);
                set.by_digest_prefix
                    .get(&digest_prefix(&digest))?
                    .iter()
                    .find(|key| secret::digests_match(&digest, &key.row.secret_sha256))
                    .cloned()
            })
            .ok_or(Denial::Unauthenticated)?;
        key.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(self.rate_limit, Instant::now())
            .map_err(|wait| Denial::RateLimited {
                retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
            })?;
        // Stored only when it moved by a second or more: every worker writing
        // the same cache line on every request would cost more than it tells.
        if now_ms - key.last_used_ms.load(Ordering::Relaxed) >= 1000 {
            key.last_used_ms.store(now_ms, Ordering::Relaxed);
        }
        // No scope named: the route checks its scopes once it has the body
        // (`POST /batch`).
        if let Some(needed) = needed.filter(|needed| !key.row.scopes.allow(*needed)) {
            return Err(Denial::MissingScope(needed));
        }
        Ok(Caller::Key(key.row.id))
    }

    /// Checks again, once a request's body has arrived and just before its
    /// command goes to the writer, that `caller` may still use a route that
    /// needs `needed`: a key revoked (or a service closed by its first key)
    /// while the body was on its way is refused, so nothing it sent is
    /// written. An in-memory look-up; no rate-limit token is taken again.
    pub fn confirm(&self, caller: Caller, needed: Scope) -> Result<(), Denial> {
        let set = self.current();
        match caller {
            Caller::Anonymous if set.enforced => Err(Denial::Unauthenticated),
            Caller::Anonymous => Ok(()),
            Caller::Key(id) => {
                let key = set.by_id.get(&id).ok_or(Denial::Unauthenticated)?;
                if key.row.scopes.allow(needed) {
                    Ok(())
                } else {
                    Err(Denial::MissingScope(needed))
                }
            }
        }
    }

    /// Last uses not yet written: `(key id, time)`; marks them written.
    pub fn take_unrecorded_uses(&self) -> Vec<(i64, i64)> {
        let set = self.current();
        set.by_digest_prefix
            .values()
            .flatten()
            .filter_map(|key| {
                let used = key.last_used_ms.load(Ordering::Relaxed);
                let recorded = key.last_used_recorded_ms.swap(used, Ordering::Relaxed);
                (used > recorded).then_some((key.row.id, used))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::tests::constant_time_comparisons;
    use crate::domain::Scopes;

    const GENEROUS: RateLimit = RateLimit {
        per_second: 1000,
        burst: 1000,
    };

    fn row(id: i64, secret: &str, scopes: &str) -> ActiveKeyRow {
        ActiveKeyRow {
            id,
            name: format!("key{id}"),
            scopes: Scopes::parse(scopes).unwrap(),
            secret_sha256: secret::digest(secret),
        }
    }

    fn snapshot(generation: i64, active: Vec<ActiveKeyRow>) -> KeySnapshot {
        KeySnapshot {
            generation,
            any_key_exists: true,
            active,
        }
    }

    /// A table in which no key was ever created.
    fn no_keys() -> KeySnapshot {
        KeySnapshot {
            generation: 0,
            any_key_exists: false,
            active: Vec::new(),
        }
    }

    #[test]
    fn without_any_key_every_caller_is_anonymous() {
        let keyring = Keyring::new(no_keys(), GENEROUS, true);
        assert_eq!(
            keyring.authorize(None, Scope::Grant, 0),
            Ok(Caller::Anonymous)
        );
    }

    #[test]
    fn a_locked_keyring_refuses_everyone_until_the_first_key_arrives() {
        let (game, _) = secret::generate().unwrap();
        let keyring = Keyring::new(no_keys(), GENEROUS, false);
        assert!(keyring.is_enforced());
        assert_eq!(
            keyring.authorize(None, Scope::Read, 0),
            Err(Denial::Unauthenticated)
        );
        keyring.replace(snapshot(1, vec![row(7, &game, "read")]));
        assert_eq!(
            keyring.authorize(Some(&game), Scope::Read, 0),
            Ok(Caller::Key(7))
        );
    }

    #[test]
    fn a_known_key_passes_with_its_scope_and_anything_else_is_refused() {
        let (game, _) = secret::generate().unwrap();
        let (stranger, _) = secret::generate().unwrap();
        let keyring = Keyring::new(
            snapshot(1, vec![row(7, &game, "read,spend")]),
            GENEROUS,
            true,
        );
        assert_eq!(
            keyring.authorize(Some(&game), Scope::Spend, 0),
            Ok(Caller::Key(7))
        );
        assert_eq!(
            keyring.authorize(Some(&game), Scope::Grant, 0),
            Err(Denial::MissingScope(Scope::Grant))
        );
        for presented in [None, Some(stranger.as_str()), Some("Bearer"), Some("wk_")] {
            assert_eq!(
                keyring.authorize(presented, Scope::Read, 0),
                Err(Denial::Unauthenticated),
                "{presented:?}"
            );
        }
        let revoked = snapshot(2, Vec::new());
        keyring.replace(revoked);
        assert_eq!(
            keyring.authorize(Some(&game), Scope::Read, 0),
            Err(Denial::Unauthenticated)
        );
    }

    /// Goal: the digest is compared whole, by the constant-time function. A
    /// stored digest that agrees with the presented one on the bytes the
    /// index uses, and differs only in its last byte, must be compared (and
    /// refused) by `digests_match`, not accepted by the index lookup.
    #[test]
    fn the_whole_digest_is_compared_in_constant_time() {
        let (presented, digest) = secret::generate().unwrap();
        let mut near_miss = row(3, "unused", "admin");
        near_miss.secret_sha256 = digest;
        near_miss.secret_sha256[31] ^= 1;
        let keyring = Keyring::new(snapshot(1, vec![near_miss]), GENEROUS, true);
        let before = constant_time_comparisons();
        assert_eq!(
            keyring.authorize(Some(&presented), Scope::Read, 0),
            Err(Denial::Unauthenticated)
        );
        assert_eq!(constant_time_comparisons(), before + 1);

        let keyring = Keyring::new(
            snapshot(1, vec![row(4, &presented, "read")]),
            GENEROUS,
            true,
        );
        let before = constant_time_comparisons();
        assert_eq!(
            keyring.authorize(Some(&presented), Scope::Read, 0),
            Ok(Caller::Key(4))
        );
        assert_eq!(constant_time_comparisons(), before + 1);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let limit = RateLimit {
            per_second: 2,
            burst: 3,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(limit, start);
        for _ in 0..3 {
            bucket.take(limit, start).unwrap();
        }
        let wait = bucket.take(limit, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(bucket.take(limit, start + wait).is_ok());
        assert!(bucket.take(limit, start + wait).is_err());
        // Idle for long: back to the burst, never beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            bucket.take(limit, later).unwrap();
        }
        assert!(bucket.take(limit, later).is_err());
    }

    #[test]
    fn a_reload_keeps_a_surviving_key_s_bucket_and_last_use() {
        let (game, _) = secret::generate().unwrap();
        let limit = RateLimit {
            per_second: 1,
            burst: 1,
        };
        let keyring = Keyring::new(snapshot(1, vec![row(7, &game, "read")]), limit, true);
        keyring.authorize(Some(&game), Scope::Read, 5_000).unwrap();
        keyring.replace(snapshot(2, vec![row(7, &game, "read")]));
        assert!(matches!(
            keyring.authorize(Some(&game), Scope::Read, 5_000),
            Err(Denial::RateLimited { .. })
        ));
        assert_eq!(keyring.take_unrecorded_uses(), vec![(7, 5_000)]);
        assert_eq!(keyring.take_unrecorded_uses(), Vec::new());
    }

    #[test]
    fn a_reload_installs_what_it_read_and_a_failed_one_keeps_the_keys_in_force() {
        let (game, _) = secret::generate().unwrap();
        let keyring = Keyring::new(no_keys(), GENEROUS, true);
        keyring
            .reload(|| Ok::<_, ()>(snapshot(1, vec![row(1, &game, "read")])))
            .unwrap();
        assert_eq!(keyring.generation(), 1);
        assert_eq!(
            keyring.authorize(Some(&game), Scope::Read, 0),
            Ok(Caller::Key(1))
        );
        assert_eq!(keyring.reload(|| Err("unreadable")), Err("unreadable"));
        assert_eq!(keyring.generation(), 1);
        assert!(keyring.authorize(Some(&game), Scope::Read, 0).is_ok());
    }

    #[test]
    fn a_key_revoked_after_it_was_let_in_is_refused_at_the_write() {
        let (webhook, _) = secret::generate().unwrap();
        let (reader, _) = secret::generate().unwrap();
        let keyring = Keyring::new(
            snapshot(1, vec![row(1, &webhook, "grant"), row(2, &reader, "read")]),
            GENEROUS,
            true,
        );
        let caller = keyring.authorize(Some(&webhook), Scope::Grant, 0).unwrap();
        assert_eq!(keyring.confirm(caller, Scope::Grant), Ok(()));
        keyring.replace(snapshot(2, vec![row(2, &reader, "read")]));
        assert_eq!(
            keyring.confirm(caller, Scope::Grant),
            Err(Denial::Unauthenticated)
        );
        assert_eq!(
            keyring.confirm(Caller::Key(2), Scope::Grant),
            Err(Denial::MissingScope(Scope::Grant))
        );
    }

    #[test]
    fn an_anonymous_write_is_refused_once_the_first_key_exists() {
        let keyring = Keyring::new(no_keys(), GENEROUS, true);
        assert_eq!(keyring.confirm(Caller::Anonymous, Scope::Grant), Ok(()));
        let (webhook, _) = secret::generate().unwrap();
        keyring.replace(snapshot(1, vec![row(1, &webhook, "grant")]));
        assert_eq!(
            keyring.confirm(Caller::Anonymous, Scope::Grant),
            Err(Denial::Unauthenticated)
        );
    }
}
