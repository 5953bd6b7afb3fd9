//! Paging through a wallet's history.

use super::ParseError;
use crate::limits::{CURSOR_CHARS_MAX, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};

/// How many items one page holds: `1..=PAGE_LIMIT_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(usize);

impl PageLimit {
    pub fn parse(raw: &str) -> Result<PageLimit, ParseError> {
        let refuse = || ParseError::new(format!("must be an integer from 1 to {PAGE_LIMIT_MAX}"));
        // Digits only: `+5`, ` 5` and `5.0` are refused rather than guessed at.
        if raw.is_empty() || raw.len() > 3 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse());
        }
        match raw.parse::<usize>() {
            Ok(limit) if (1..=PAGE_LIMIT_MAX).contains(&limit) => Ok(PageLimit(limit)),
            _ => Err(refuse()),
        }
    }

    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        PageLimit(PAGE_LIMIT_DEFAULT)
    }
}

/// Where the next page starts: the sequence number of the last entry the
/// previous page held. Entries are numbered in the order they are appended, so
/// a page "older than N" is the same set however many entries arrive later:
/// paging never repeats or skips one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(i64);

impl Cursor {
    pub fn after_entry(entry_seq: i64) -> Cursor {
        assert!(entry_seq > 0, "entry sequence numbers start at 1");
        Cursor(entry_seq)
    }

    pub fn parse(raw: &str) -> Result<Cursor, ParseError> {
        let refuse = || ParseError::new("is not a cursor this service returned");
        if raw.is_empty()
            || raw.len() > CURSOR_CHARS_MAX
            || !raw.bytes().all(|b| b.is_ascii_digit())
            || raw.starts_with('0')
        {
            return Err(refuse());
        }
        match raw.parse::<i64>() {
            Ok(seq) if seq > 0 => Ok(Cursor(seq)),
            _ => Err(refuse()),
        }
    }

    /// Entries strictly older than this one belong to the next page.
    pub fn entry_seq(self) -> i64 {
        self.0
    }

    pub fn encode(self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_limit_of_200_passes_and_201_fails() {
        assert_eq!(PageLimit::parse("200").unwrap().get(), 200);
        assert!(PageLimit::parse("201").is_err());
    }

    #[test]
    fn a_page_limit_of_1_passes_and_0_fails() {
        assert_eq!(PageLimit::parse("1").unwrap().get(), 1);
        assert!(PageLimit::parse("0").is_err());
    }

    #[test]
    fn a_page_limit_must_be_plain_digits() {
        for bad in [
            "",
            "-1",
            "+5",
            "5.0",
            "ten",
            "1e2",
            " 5",
            "99999999999999999999",
        ] {
            assert!(PageLimit::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(PageLimit::default().get(), PAGE_LIMIT_DEFAULT);
    }

    #[test]
    fn a_cursor_round_trips_through_its_encoding() {
        let cursor = Cursor::after_entry(42);
        assert_eq!(Cursor::parse(&cursor.encode()), Ok(cursor));
        assert_eq!(
            Cursor::parse(&i64::MAX.to_string()).unwrap().entry_seq(),
            i64::MAX
        );
    }

    #[test]
    fn a_cursor_refuses_anything_it_could_not_have_produced() {
        for bad in [
            "",
            "0",
            "-1",
            "007",
            "abc",
            "9223372036854775808",
            "1 OR 1=1",
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
