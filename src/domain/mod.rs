//! Domain types, valid by construction: a value that exists has passed its
//! `parse`, so nothing past the HTTP edge validates again.

mod access;
mod amount;
mod entry_kind;
mod metadata;
mod names;
mod page;
mod rules;

pub use access::{Caller, KeyName, Scope, Scopes};
pub use amount::Amount;
pub use entry_kind::{Direction, EntryKind};
pub use metadata::Metadata;
pub use names::{
    AssetDecimals, AssetName, AssetRef, AssetSymbol, IdempotencyKey, Note, ReferenceId, RequestId,
    UserId,
};
pub use page::{Cursor, PageLimit};
pub use rules::{
    parse_limit_max, parse_max_balance, parse_window_seconds, AssetRules, AssetRulesChange,
    FieldChange, Limit, LimitedKind, Limits, RulesInForce, SpendOrder, UserOverride,
    UserRulesChange,
};

/// Why a raw value was refused, as a sentence a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(message: impl Into<String>) -> Self {
        ParseError(message.into())
    }
}

/// Visible ASCII: `!` (0x21) to `~` (0x7E); no spaces, no control characters.
fn is_visible_ascii(text: &str) -> bool {
    text.bytes().all(|byte| (0x21..=0x7e).contains(&byte))
}
