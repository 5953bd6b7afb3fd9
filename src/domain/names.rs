//! The strings of the contract, each with its length and character set.

use super::{is_visible_ascii, ParseError};
use crate::limits::{
    ASSET_DECIMALS_MAX, ASSET_NAME_CHARS_MAX, ASSET_SYMBOL_CHARS_MAX, IDEMPOTENCY_KEY_CHARS_MAX,
    NOTE_CHARS_MAX, REFERENCE_ID_CHARS_MAX, REQUEST_ID_CHARS_MAX, USER_ID_CHARS_MAX,
};
use uuid::Uuid;

/// A wallet's owner: 1-128 characters of `A-Z a-z 0-9 _ . : @ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<UserId, ParseError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_.:@-".contains(c);
        if raw.is_empty() || raw.chars().count() > USER_ID_CHARS_MAX {
            return Err(ParseError::new(format!(
                "must be 1 to {USER_ID_CHARS_MAX} characters"
            )));
        }
        if !raw.chars().all(allowed) {
            return Err(ParseError::new(
                "may contain only A-Z, a-z, 0-9 and the characters _ . : @ -",
            ));
        }
        // URL handling (clients, proxies, our own router) rewrites these
        // path segments, so such a wallet could never be named reliably.
        if raw == "." || raw == ".." {
            return Err(ParseError::new("may not be . or .."));
        }
        Ok(UserId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An asset as a caller names it: by symbol (`GOLD`) or by id (a UUID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AssetRef {
    Symbol(String),
    Id(Uuid),
}

impl AssetRef {
    pub fn parse(raw: &str) -> Result<AssetRef, ParseError> {
        let is_symbol = !raw.is_empty()
            && raw.len() <= ASSET_SYMBOL_CHARS_MAX
            && raw
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if is_symbol {
            return Ok(AssetRef::Symbol(raw.to_owned()));
        }
        // Only the hyphenated form: an id is always written that way in our
        // responses, and one spelling per asset keeps comparisons simple.
        if raw.len() == 36 {
            if let Ok(id) = Uuid::try_parse(raw) {
                return Ok(AssetRef::Id(id));
            }
        }
        Err(ParseError::new(format!(
            "must be an asset symbol (1 to {ASSET_SYMBOL_CHARS_MAX} of A-Z, 0-9, _) or an asset id (UUID)"
        )))
    }
}

/// A new asset's symbol (API.md, `POST /assets`): 1-32 of `A-Z 0-9 _`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssetSymbol(String);

impl AssetSymbol {
    pub fn parse(raw: &str) -> Result<AssetSymbol, ParseError> {
        match AssetRef::parse(raw) {
            Ok(AssetRef::Symbol(symbol)) => Ok(AssetSymbol(symbol)),
            _ => Err(ParseError::new(format!(
                "must be 1 to {ASSET_SYMBOL_CHARS_MAX} of A-Z, 0-9, _"
            ))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text a caller gives (a name, a note, a reference, a metadata
/// value) may hold any character but NUL: SQLite's length() stops at one,
/// so a CHECK on length fails after every check here passed, and
/// PostgreSQL's text and jsonb cannot hold one at all. Refused here, the
/// same on both backends, with the field named.
pub fn refuse_nul(raw: &str) -> Result<(), ParseError> {
    if raw.contains('\0') {
        return Err(ParseError::new("may not contain the NUL character"));
    }
    Ok(())
}

/// An asset's display name: 1-128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssetName(String);

impl AssetName {
    pub fn parse(raw: &str) -> Result<AssetName, ParseError> {
        if raw.is_empty() || raw.chars().count() > ASSET_NAME_CHARS_MAX {
            return Err(ParseError::new(format!(
                "must be 1 to {ASSET_NAME_CHARS_MAX} characters"
            )));
        }
        refuse_nul(raw)?;
        Ok(AssetName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many of an asset's smallest units make one displayed unit, as a
/// power of ten: 0-18. Amounts stay integers; this is for display only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AssetDecimals(u8);

impl AssetDecimals {
    pub fn parse(raw: u64) -> Result<AssetDecimals, ParseError> {
        match u8::try_from(raw) {
            Ok(decimals) if decimals <= ASSET_DECIMALS_MAX => Ok(AssetDecimals(decimals)),
            _ => Err(ParseError::new(format!(
                "must be an integer from 0 to {ASSET_DECIMALS_MAX}"
            ))),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// The caller's name for one write, so a retry is recognised: 1-255 visible
/// ASCII characters, unique across the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<IdempotencyKey, ParseError> {
        if raw.is_empty() || raw.len() > IDEMPOTENCY_KEY_CHARS_MAX || !is_visible_ascii(raw) {
            return Err(ParseError::new(format!(
                "must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} visible ASCII characters"
            )));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    /// A key from the service's own seed, such as `seed:user_alice:GOLD`.
    pub fn for_seed(user: &UserId, symbol: &str) -> Result<IdempotencyKey, ParseError> {
        IdempotencyKey::parse(&format!("seed:{}:{symbol}", user.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The caller's own reference for an entry (an order id, a receipt): any text
/// of at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferenceId(String);

impl ReferenceId {
    pub fn parse(raw: &str) -> Result<ReferenceId, ParseError> {
        if raw.chars().count() > REFERENCE_ID_CHARS_MAX {
            return Err(ParseError::new(format!(
                "must be at most {REFERENCE_ID_CHARS_MAX} characters"
            )));
        }
        refuse_nul(raw)?;
        Ok(ReferenceId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-text note on an entry: at most 1024 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Note(String);

impl Note {
    pub fn parse(raw: &str) -> Result<Note, ParseError> {
        if raw.chars().count() > NOTE_CHARS_MAX {
            return Err(ParseError::new(format!(
                "must be at most {NOTE_CHARS_MAX} characters"
            )));
        }
        refuse_nul(raw)?;
        Ok(Note(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id that ties a request to its response and its log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The caller's own id, when it is 1-128 visible ASCII characters.
    pub fn parse(raw: &str) -> Result<RequestId, ParseError> {
        if raw.is_empty() || raw.len() > REQUEST_ID_CHARS_MAX || !is_visible_ascii(raw) {
            return Err(ParseError::new(format!(
                "must be 1 to {REQUEST_ID_CHARS_MAX} visible ASCII characters"
            )));
        }
        Ok(RequestId(raw.to_owned()))
    }

    pub fn fresh() -> RequestId {
        RequestId(Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asset_name_with_a_nul_is_refused_wherever_it_is() {
        for name in ["\0", "\0name", "na\0me", "name\0"] {
            assert!(AssetName::parse(name).is_err(), "{name:?}");
        }
        assert!(AssetName::parse("Gems \u{1F48E}").is_ok());
    }

    #[test]
    fn the_dot_segments_are_not_user_ids_but_names_with_dots_are() {
        assert!(UserId::parse(".").is_err());
        assert!(UserId::parse("..").is_err());
        assert!(UserId::parse("...").is_ok());
        assert!(UserId::parse(".alice").is_ok());
    }

    #[test]
    fn a_user_id_of_128_allowed_characters_passes_and_129_fails() {
        assert!(UserId::parse(&"a".repeat(128)).is_ok());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn a_user_id_takes_every_allowed_character_and_nothing_else() {
        assert!(UserId::parse("Az09_.:@-").is_ok());
        for bad in ["", "a b", "a/b", "a%2F", "é", "a'b", "a;b", "../x"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn an_asset_is_a_symbol_or_a_hyphenated_uuid() {
        assert_eq!(
            AssetRef::parse("GOLD"),
            Ok(AssetRef::Symbol("GOLD".to_owned()))
        );
        let id = "1f0c4f4e-6a53-4c0c-9d55-2b3f5f3f6a01";
        assert_eq!(AssetRef::parse(id), Ok(AssetRef::Id(id.parse().unwrap())));
        for bad in [
            "",
            "gold",
            "GO LD",
            "1f0c4f4e6a534c0c9d552b3f5f3f6a01",
            "GOLD;--",
        ] {
            assert!(AssetRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_new_asset_names_itself_by_symbol_only_with_bounded_name_and_decimals() {
        assert!(AssetSymbol::parse("GEMS_2").is_ok());
        assert!(AssetSymbol::parse("1f0c4f4e-6a53-4c0c-9d55-2b3f5f3f6a01").is_err());
        assert!(AssetSymbol::parse("gems").is_err());
        assert!(AssetName::parse(&"n".repeat(128)).is_ok());
        assert!(AssetName::parse(&"n".repeat(129)).is_err());
        assert!(AssetName::parse("").is_err());
        assert_eq!(AssetDecimals::parse(18).unwrap().get(), 18);
        assert!(AssetDecimals::parse(19).is_err());
        assert!(AssetDecimals::parse(256).is_err());
    }

    #[test]
    fn an_asset_symbol_of_32_characters_passes_and_33_fails() {
        assert!(AssetRef::parse(&"A".repeat(32)).is_ok());
        assert!(AssetRef::parse(&"A".repeat(33)).is_err());
    }

    #[test]
    fn an_idempotency_key_of_255_visible_characters_passes_and_256_fails() {
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("").is_err());
    }

    #[test]
    fn an_idempotency_key_refuses_spaces_controls_and_non_ascii() {
        for bad in ["a b", "a\tb", "a\u{7f}", "ключ", "a\nb"] {
            assert!(
                IdempotencyKey::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(IdempotencyKey::parse("order-42:retry!~").is_ok());
    }

    #[test]
    fn a_reference_id_is_measured_in_characters_not_bytes() {
        assert!(ReferenceId::parse(&"é".repeat(255)).is_ok());
        assert!(ReferenceId::parse(&"é".repeat(256)).is_err());
        assert!(ReferenceId::parse("").is_ok());
    }

    #[test]
    fn a_nul_is_refused_in_every_free_text_a_caller_gives() {
        assert!(Note::parse("a\0b").is_err());
        assert!(ReferenceId::parse("\0").is_err());
        assert!(AssetName::parse("\0Gold").is_err());
        assert!(Note::parse("tab\tand newline\n are fine").is_ok());
    }

    #[test]
    fn a_note_of_1024_characters_passes_and_1025_fails() {
        assert!(Note::parse(&"n".repeat(1024)).is_ok());
        assert!(Note::parse(&"n".repeat(1025)).is_err());
    }

    #[test]
    fn a_request_id_of_128_visible_characters_passes_and_129_fails() {
        assert!(RequestId::parse(&"r".repeat(128)).is_ok());
        assert!(RequestId::parse(&"r".repeat(129)).is_err());
        assert!(RequestId::parse("has space").is_err());
        assert_ne!(RequestId::fresh(), RequestId::fresh());
    }
}
