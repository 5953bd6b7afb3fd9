use super::ParseError;

/// What a ledger entry does. TOPUP and BONUS move value from the Treasury to a
/// user; SPEND moves it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Topup,
    Bonus,
    Spend,
}

impl EntryKind {
    pub const ALL: [EntryKind; 3] = [EntryKind::Topup, EntryKind::Bonus, EntryKind::Spend];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Topup => "TOPUP",
            EntryKind::Bonus => "BONUS",
            EntryKind::Spend => "SPEND",
        }
    }

    pub fn parse(raw: &str) -> Result<EntryKind, ParseError> {
        EntryKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| ParseError::new("must be one of TOPUP, BONUS, SPEND"))
    }

    /// The user's side of an entry of this kind.
    pub fn user_direction(self) -> Direction {
        match self {
            EntryKind::Topup | EntryKind::Bonus => Direction::Credit,
            EntryKind::Spend => Direction::Debit,
        }
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
    fn only_a_spend_debits_the_user() {
        assert_eq!(EntryKind::Spend.user_direction(), Direction::Debit);
        assert_eq!(EntryKind::Topup.user_direction(), Direction::Credit);
        assert_eq!(EntryKind::Bonus.user_direction(), Direction::Credit);
    }
}
