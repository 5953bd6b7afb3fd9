use super::ParseError;

/// What a ledger entry does. TOPUP and BONUS move value from the Treasury to a
/// user; SPEND moves it back; TRANSFER moves it from one user to another; a
/// REVERSAL moves (part of) an earlier entry's amount back between its two
/// accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Topup,
    Bonus,
    Spend,
    Transfer,
    Reversal,
}

impl EntryKind {
    pub const ALL: [EntryKind; 5] = [
        EntryKind::Topup,
        EntryKind::Bonus,
        EntryKind::Spend,
        EntryKind::Transfer,
        EntryKind::Reversal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Topup => "TOPUP",
            EntryKind::Bonus => "BONUS",
            EntryKind::Spend => "SPEND",
            EntryKind::Transfer => "TRANSFER",
            EntryKind::Reversal => "REVERSAL",
        }
    }

    pub fn parse(raw: &str) -> Result<EntryKind, ParseError> {
        EntryKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| {
                ParseError::new("must be one of TOPUP, BONUS, SPEND, TRANSFER, REVERSAL")
            })
    }

    /// Whether a reversal may undo an entry of this kind: every kind but a
    /// reversal itself (API.md: NOT_REVERSIBLE).
    pub fn is_reversible(self) -> bool {
        self != EntryKind::Reversal
    }
}

/// Which side of an entry an account is on. Balance = credits - debits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Debit,
    Credit,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Debit, Direction::Credit];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "DEBIT",
            Direction::Credit => "CREDIT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::parse(kind.as_str()), Ok(kind));
        }
    }

    #[test]
    fn kind_names_are_case_sensitive_and_closed() {
        assert!(EntryKind::parse("topup").is_err());
        assert!(EntryKind::parse("REFUND").is_err());
        assert!(EntryKind::parse("").is_err());
    }

    #[test]
    fn only_a_reversal_is_not_reversible() {
        for kind in EntryKind::ALL {
            assert_eq!(kind.is_reversible(), kind != EntryKind::Reversal);
        }
    }
}
