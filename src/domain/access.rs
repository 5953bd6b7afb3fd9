//! Who is calling and what they may do: API key names, scopes, and the caller
//! an entry is written for.

use std::fmt;

use super::ParseError;
use crate::limits::API_KEY_NAME_CHARS_MAX;

/// What a key allows. A game server usually holds `read` and `spend`; a
/// payment webhook `grant`; so a leaked game-server key cannot mint coins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// GET balance, transactions, assets.
    Read,
    /// POST spend.
    Spend,
    /// POST topup and bonus: the scopes that create value.
    Grant,
    /// Every route.
    Admin,
}

impl Scope {
    /// In the order a scope list is written and stored.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Spend, Scope::Grant, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Spend => "spend",
            Scope::Grant => "grant",
            Scope::Admin => "admin",
        }
    }

    /// One scope by its exact name (`read`, never `READ` or ` read`). The
    /// message does not echo the name: the caller's field names it.
    pub fn parse(name: &str) -> Result<Scope, ParseError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
            .ok_or_else(|| ParseError::new("is not a scope: use read, spend, grant or admin"))
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Spend => 2,
            Scope::Grant => 4,
            Scope::Admin => 8,
        }
    }
}

/// A non-empty set of scopes, parsed from `read,spend,...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Comma-separated scope names, each at most once, at least one (the
    /// command line's form).
    pub fn parse(raw: &str) -> Result<Scopes, ParseError> {
        let scopes = raw
            .split(',')
            .map(|name| {
                Scope::parse(name.trim()).map_err(|_| {
                    ParseError::new(format!(
                        "{:?} is not a scope; use a comma-separated list of read, spend, grant, admin",
                        name.trim()
                    ))
                })
            })
            .collect::<Result<Vec<Scope>, ParseError>>()?;
        Scopes::from_list(&scopes)
    }

    /// Scopes given one by one (the JSON list of `POST /keys`): at least
    /// one, each at most once.
    pub fn from_list(scopes: &[Scope]) -> Result<Scopes, ParseError> {
        if scopes.is_empty() {
            return Err(ParseError::new(
                "must name at least one scope: read, spend, grant or admin",
            ));
        }
        let mut bits = 0u8;
        for scope in scopes {
            if bits & scope.bit() != 0 {
                return Err(ParseError::new(format!(
                    "scope {} is listed twice",
                    scope.as_str()
                )));
            }
            bits |= scope.bit();
        }
        Ok(Scopes(bits))
    }

    /// Whether a caller holding these scopes may use a route that needs
    /// `needed`: `admin` allows everything.
    pub fn allow(self, needed: Scope) -> bool {
        self.0 & (needed.bit() | Scope::Admin.bit()) != 0
    }
}

/// The canonical list, `read,spend` in `Scope::ALL` order: how it is stored.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Scope::ALL
            .into_iter()
            .filter(|scope| self.0 & scope.bit() != 0)
            .map(Scope::as_str)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// An operator's name for a key: 1-64 characters of `A-Z a-z 0-9 _ . -`, so it
/// is safe in a shell, a log line and a URL alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(raw: &str) -> Result<KeyName, ParseError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        if raw.is_empty() || raw.len() > API_KEY_NAME_CHARS_MAX || !raw.chars().all(allowed) {
            return Err(ParseError::new(format!(
                "a key name must be 1 to {API_KEY_NAME_CHARS_MAX} characters of A-Z, a-z, 0-9, _ . -"
            )));
        }
        Ok(KeyName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// On whose behalf an entry is written. Idempotency keys are unique per
/// caller, so two callers can never collide on, or replay, each other's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A service running without keys, and the seed.
    Anonymous,
    /// The API key with this id.
    Key(i64),
}

impl Caller {
    /// How the caller is stored in `ledger_entries.caller_id`: 0 for the
    /// anonymous caller, the key's id otherwise (key ids start at 1).
    pub fn stored_id(self) -> i64 {
        match self {
            Caller::Anonymous => 0,
            Caller::Key(id) => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_in_any_order_and_print_in_one() {
        let scopes = Scopes::parse("spend,read").unwrap();
        assert_eq!(scopes.to_string(), "read,spend");
        assert_eq!(
            Scopes::parse("admin,grant,spend,read").unwrap().to_string(),
            "read,spend,grant,admin"
        );
    }

    #[test]
    fn an_unknown_empty_or_repeated_scope_is_refused() {
        for raw in ["", "read,", "write", "read,read", "READ"] {
            assert!(Scopes::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn a_list_of_scopes_is_one_or_more_names_each_once() {
        assert_eq!(
            Scopes::from_list(&[Scope::Spend, Scope::Read]).unwrap(),
            Scopes::parse("read,spend").unwrap()
        );
        assert!(Scopes::from_list(&[]).is_err());
        assert!(Scopes::from_list(&[Scope::Read, Scope::Read]).is_err());
        assert_eq!(Scope::parse("admin"), Ok(Scope::Admin));
        for bad in ["", "READ", " read", "mint"] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_scope_allows_its_own_routes_and_admin_allows_all() {
        let read_spend = Scopes::parse("read,spend").unwrap();
        assert!(read_spend.allow(Scope::Read));
        assert!(read_spend.allow(Scope::Spend));
        assert!(!read_spend.allow(Scope::Grant));
        let admin = Scopes::parse("admin").unwrap();
        for scope in Scope::ALL {
            assert!(admin.allow(scope), "{scope:?}");
        }
        let grant = Scopes::parse("grant").unwrap();
        assert!(!grant.allow(Scope::Read));
    }

    #[test]
    fn a_key_name_of_64_characters_passes_and_65_fails() {
        assert!(KeyName::parse(&"k".repeat(API_KEY_NAME_CHARS_MAX)).is_ok());
        assert!(KeyName::parse(&"k".repeat(API_KEY_NAME_CHARS_MAX + 1)).is_err());
        for bad in ["", "game server", "a/b", "ü", "x;rm"] {
            assert!(KeyName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(KeyName::parse("game-server_1.eu").is_ok());
    }
}
