use super::ParseError;
use crate::limits::AMOUNT_MAX;

/// An amount of an asset in its smallest unit, always in `1..=AMOUNT_MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(u64);

impl Amount {
    pub fn parse(raw: u64) -> Result<Amount, ParseError> {
        if raw == 0 {
            return Err(ParseError::new("must be a positive integer"));
        }
        if raw > AMOUNT_MAX {
            return Err(ParseError::new(format!("must be at most {AMOUNT_MAX}")));
        }
        Ok(Amount(raw))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The amount as a stored integer. Lossless: AMOUNT_MAX < i64::MAX.
    pub fn as_i64(self) -> i64 {
        const _: () = assert!(AMOUNT_MAX < i64::MAX as u64);
        self.0 as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_of_zero_is_rejected() {
        assert!(Amount::parse(0).is_err());
    }

    #[test]
    fn an_amount_of_one_is_accepted() {
        assert_eq!(Amount::parse(1).unwrap().get(), 1);
    }

    #[test]
    fn the_largest_safe_integer_is_accepted_and_one_more_is_rejected() {
        assert_eq!(
            Amount::parse(AMOUNT_MAX).unwrap().as_i64(),
            9_007_199_254_740_991
        );
        assert!(Amount::parse(AMOUNT_MAX + 1).is_err());
        assert!(Amount::parse(u64::MAX).is_err());
    }
}
