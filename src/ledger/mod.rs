//! The posting rules and the audit: pure, no actix, no SQL, no I/O.
//!
//! Every entry debits one account and credits another by the same amount, so
//! each asset's balances always sum to zero. TOPUP and BONUS debit the asset's
//! Treasury and credit the user; SPEND debits the user and credits the Treasury.
//! A user's balance never goes below zero; no balance leaves the i64 range.

pub mod audit;

use crate::domain::{Amount, Direction, EntryKind};

/// Why a write was refused. A refused write changes nothing and does not
/// consume its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the user has no wallet")]
    WalletNotFound,
    #[error("no such asset")]
    AssetNotFound,
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds { balance: i64, requested: u64 },
    #[error("the credit would take a balance past the largest integer it can hold")]
    BalanceOverflow,
    #[error("the idempotency key was already used for a different request")]
    IdempotencyKeyReused,
}

/// The balances an entry moves, read inside the write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalancesBefore {
    pub user: i64,
    pub treasury: i64,
}

/// What one entry does to the two accounts it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub user_balance_after: i64,
    pub treasury_balance_after: i64,
    /// The signed change to the user's balance (credit positive).
    pub user_delta: i64,
}

impl Posting {
    pub fn treasury_delta(&self) -> i64 {
        -self.user_delta
    }
}

/// Decides an entry of `kind` for `amount` against the balances it moves.
pub fn decide(
    kind: EntryKind,
    amount: Amount,
    before: BalancesBefore,
) -> Result<Posting, Rejection> {
    assert!(amount.get() > 0, "Amount promises a positive value");
    assert!(before.user >= 0, "a user balance is never negative");
    let amount_i64 = amount.as_i64();
    let posting = match kind.user_direction() {
        Direction::Credit => Posting {
            user_balance_after: before
                .user
                .checked_add(amount_i64)
                .ok_or(Rejection::BalanceOverflow)?,
            treasury_balance_after: before
                .treasury
                .checked_sub(amount_i64)
                .ok_or(Rejection::BalanceOverflow)?,
            user_delta: amount_i64,
        },
        Direction::Debit => {
            let user_balance_after = before.user - amount_i64;
            if user_balance_after < 0 {
                return Err(Rejection::InsufficientFunds {
                    balance: before.user,
                    requested: amount.get(),
                });
            }
            Posting {
                user_balance_after,
                treasury_balance_after: before
                    .treasury
                    .checked_add(amount_i64)
                    .ok_or(Rejection::BalanceOverflow)?,
                user_delta: -amount_i64,
            }
        }
    };
    assert_eq!(posting.user_balance_after - posting.user_delta, before.user);
    assert_eq!(
        posting.treasury_balance_after - posting.treasury_delta(),
        before.treasury
    );
    assert!(posting.user_balance_after >= 0);
    Ok(posting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::AMOUNT_MAX;

    fn amount(raw: u64) -> Amount {
        Amount::parse(raw).unwrap()
    }

    fn before(user: i64, treasury: i64) -> BalancesBefore {
        BalancesBefore { user, treasury }
    }

    #[test]
    fn a_topup_moves_value_from_treasury_to_user() {
        let posting = decide(EntryKind::Topup, amount(100), before(0, -500)).unwrap();
        assert_eq!(posting.user_balance_after, 100);
        assert_eq!(posting.treasury_balance_after, -600);
        assert_eq!(posting.user_delta, 100);
    }

    #[test]
    fn a_bonus_posts_like_a_topup() {
        assert_eq!(
            decide(EntryKind::Bonus, amount(7), before(3, -3)),
            decide(EntryKind::Topup, amount(7), before(3, -3))
        );
    }

    #[test]
    fn a_spend_of_the_whole_balance_leaves_zero() {
        let posting = decide(EntryKind::Spend, amount(100), before(100, -100)).unwrap();
        assert_eq!(posting.user_balance_after, 0);
        assert_eq!(posting.treasury_balance_after, 0);
        assert_eq!(posting.user_delta, -100);
    }

    #[test]
    fn a_spend_of_one_more_than_the_balance_is_refused() {
        assert_eq!(
            decide(EntryKind::Spend, amount(101), before(100, -100)),
            Err(Rejection::InsufficientFunds {
                balance: 100,
                requested: 101
            })
        );
    }

    #[test]
    fn a_credit_that_would_overflow_the_user_is_refused() {
        let user = i64::MAX - AMOUNT_MAX as i64 + 1;
        assert_eq!(
            decide(EntryKind::Topup, amount(AMOUNT_MAX), before(user, 0)),
            Err(Rejection::BalanceOverflow)
        );
        assert!(decide(EntryKind::Topup, amount(AMOUNT_MAX), before(user - 1, 0)).is_ok());
    }

    #[test]
    fn a_credit_that_would_overflow_the_treasury_is_refused() {
        let treasury = i64::MIN + AMOUNT_MAX as i64 - 1;
        assert_eq!(
            decide(EntryKind::Topup, amount(AMOUNT_MAX), before(0, treasury)),
            Err(Rejection::BalanceOverflow)
        );
        assert!(decide(
            EntryKind::Topup,
            amount(AMOUNT_MAX),
            before(0, treasury + 1)
        )
        .is_ok());
    }
}
