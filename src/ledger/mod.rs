//! The posting rules and the audit: pure, no actix, no SQL, no I/O.
//!
//! Every entry debits one account and credits another by the same amount, so
//! each asset's balances always sum to zero. TOPUP and BONUS debit the asset's
//! Treasury and credit the user; SPEND debits the user and credits the
//! Treasury; TRANSFER debits one user and credits another; a REVERSAL moves
//! part or all of an earlier entry back between its two accounts. A user's
//! balance never goes below zero nor past 2^53 - 1; a Treasury's stays in i64.

pub mod audit;
pub mod engine;
pub mod parts;

#[cfg(test)]
mod engine_tests;

/// Why a command was refused. A refused command changes nothing and does
/// not consume its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the user has no wallet")]
    WalletNotFound,
    #[error("no such asset")]
    AssetNotFound,
    #[error("no such transaction")]
    TransactionNotFound,
    #[error("insufficient funds: available {available}, requested {requested}")]
    InsufficientFunds {
        balance: i64,
        available: i64,
        requested: u64,
    },
    #[error("the credit would take a balance past the largest value it may hold")]
    BalanceOverflow,
    /// API.md, Limits: the credit would take the user past `max_balance`.
    #[error("the credit would take the balance past its maximum of {max_balance}")]
    BalanceLimit {
        max_balance: i64,
        balance: i64,
        requested: u64,
    },
    /// API.md, Limits: the entry would take a cap's window past its max.
    #[error("the {} cap of {max} per {window_seconds} s would be passed", kind.as_str())]
    LimitExceeded {
        kind: crate::domain::LimitedKind,
        window_seconds: u32,
        max: i64,
        used: i64,
        requested: u64,
        retry_after: engine::RetryAfter,
    },
    #[error("the idempotency key was already used for a different request")]
    IdempotencyKeyReused { differing: Vec<String> },
    #[error("a reversal cannot be reversed")]
    NotReversible,
    #[error("the reversal exceeds what is left to reverse ({reversible})")]
    ReversalExceedsOriginal { reversible: i64 },
    #[error("a transfer must go to another user")]
    TransferToSelf,
    #[error("an asset with this symbol exists with another name or decimals")]
    AssetExists,
    #[error("the ledger holds as many asset types as it may")]
    TooManyAssets,
    #[error("no such hold")]
    HoldNotFound,
    #[error("the hold is {} and can no longer change", status.as_str())]
    HoldNotActive { status: engine::HoldStatus },
    #[error("the capture is more than the hold ({held})")]
    CaptureExceedsHold { held: i64 },
    #[error("the account has as many active holds as it may")]
    TooManyHolds,
    /// The record behind a key could not be turned back into its answer: a
    /// file changed behind the service's back.
    #[error("the stored request for this key is unreadable")]
    StoredRequestUnreadable,
    /// An account's parts do not add up to what its balance says: a file
    /// changed behind the service's back (`wallet verify` names it).
    #[error("the parts of an account do not add up to its balance")]
    PartsInconsistent,
    /// One operation of a batch was refused, so the whole batch is.
    #[error("operation {operation} of the batch was refused: {cause}")]
    InBatch {
        operation: usize,
        cause: Box<Rejection>,
    },
}
