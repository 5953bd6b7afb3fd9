//! API key secrets: how one is made, recognised and digested. A secret is
//! `wk_` and 48 lower-case hex digits (192 random bits); the prefix lets a
//! leaked key be recognised by secret scanners and by eye.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::limits::API_KEY_SECRET_BYTES;

pub const SECRET_PREFIX: &str = "wk_";
/// The length of a whole secret, prefix included.
pub const SECRET_CHARS: usize = SECRET_PREFIX.len() + 2 * API_KEY_SECRET_BYTES;

/// A new secret and its digest. The random bytes come from `getrandom`, the
/// operating system's CSPRNG (`getrandom(2)` on Linux), never from a
/// seeded, predictable generator.
pub fn generate() -> anyhow::Result<(String, [u8; 32])> {
    let mut bytes = [0u8; API_KEY_SECRET_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("the system's random source failed: {error}"))?;
    let mut secret = String::with_capacity(SECRET_CHARS);
    secret.push_str(SECRET_PREFIX);
    for byte in bytes {
        secret.push_str(&format!("{byte:02x}"));
    }
    let digest = digest(&secret);
    Ok((secret, digest))
}

/// Whether `presented` has a secret's shape; anything else is refused before
/// it is hashed. Its length is fixed, so this bounds the work per request.
pub fn is_well_formed(presented: &str) -> bool {
    presented.len() == SECRET_CHARS
        && presented.starts_with(SECRET_PREFIX)
        && presented[SECRET_PREFIX.len()..]
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// SHA-256 of the secret: what the database keeps. A fast hash suffices for
/// 192 random bits: there is no dictionary to try.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether two digests are equal, in time that does not depend on where they
/// first differ, so response times cannot be used to home in on a stored
/// digest byte by byte. The only comparison of digests in the service.
pub fn digests_match(presented: &[u8; 32], stored: &[u8; 32]) -> bool {
    #[cfg(test)]
    tests::count_constant_time_comparison();
    bool::from(presented.ct_eq(stored))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static CONSTANT_TIME_COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    pub(crate) fn count_constant_time_comparison() {
        CONSTANT_TIME_COMPARISONS.with(|count| count.set(count.get() + 1));
    }

    /// Constant-time comparisons made on this thread so far.
    pub(crate) fn constant_time_comparisons() -> usize {
        CONSTANT_TIME_COMPARISONS.with(Cell::get)
    }

    #[test]
    fn a_new_secret_is_well_formed_random_and_digested() {
        let (first, first_digest) = generate().unwrap();
        let (second, _) = generate().unwrap();
        assert!(is_well_formed(&first), "{first}");
        assert_eq!(first.len(), SECRET_CHARS);
        assert!(
            SECRET_CHARS - SECRET_PREFIX.len() >= 32,
            "at least 128 bits"
        );
        assert_ne!(first, second);
        assert_eq!(first_digest, digest(&first));
        assert!(digests_match(&first_digest, &digest(&first)));
        assert!(!digests_match(&first_digest, &digest(&second)));
    }

    #[test]
    fn a_secret_of_the_wrong_shape_is_not_well_formed() {
        let (secret, _) = generate().unwrap();
        let wrong = [
            secret[..secret.len() - 1].to_owned(),
            format!("{secret}0"),
            secret.replacen("wk_", "wx_", 1),
            secret.to_uppercase(),
            format!("{}g", &secret[..secret.len() - 1]),
            String::new(),
        ];
        for candidate in wrong {
            assert!(!is_well_formed(&candidate), "{candidate}");
        }
    }
}
