//! `wallet copy`: a whole ledger from one database to another, SQLite to
//! PostgreSQL and back. The source is read in one read transaction, so the
//! copy is one committed state even while a server writes to it; the target
//! is written in one transaction, so it holds the whole ledger or nothing.
//!
//! Rows keep their ids (assets, accounts, keys, requests, holds; entries
//! too wherever the target's order allows), so every idempotency record
//! still names its caller and its entries. The history is replayed in the
//! order the source's event feed gives (commit order): each entry with its
//! postings, each hold created HELD and closed where it closed, so the
//! target's own triggers check every row as they checked the original
//! and keep its balances, hold totals, supply figures and feed. Then the
//! copy is audited and every account's balance and held amount is compared
//! with the source's.
//!
//! Each backend supplies a `CopySource` (its reads) and a `CopyTarget` (its
//! writes); the order of the work is here, once.

use crate::ledger::audit::AuditReport;
use crate::limits::{COPY_BATCH_REQUESTS, COPY_BATCH_ROWS, COPY_MISMATCHES_SHOWN_MAX};

use super::{commands, postgres, sqlite, DatabaseLocation};

/// An asset type, as both backends store it.
#[derive(Debug, Clone)]
pub struct AssetCopy {
    pub id: String,
    pub symbol: String,
    pub name: String,
    pub decimals: i64,
    pub created_at: i64,
}

/// An account: a user's (`user` set) or an asset's Treasury.
#[derive(Debug, Clone)]
pub struct AccountCopy {
    pub id: i64,
    pub user: Option<String>,
    pub asset_type_id: String,
    pub created_at: i64,
}

/// An API key: its digest, never a secret.
#[derive(Debug, Clone)]
pub struct KeyCopy {
    pub id: i64,
    pub name: String,
    pub secret_sha256: Vec<u8>,
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// An idempotency record, as the engine wrote it.
#[derive(Debug, Clone)]
pub struct RequestCopy {
    pub id: i64,
    pub caller_id: i64,
    pub key: String,
    pub request: String,
    pub entry_count: i64,
    pub created_at: i64,
    pub hold_seq: Option<i64>,
    pub answer_state: Option<String>,
}

/// A hold as it stands in the source (its final state).
#[derive(Debug, Clone)]
pub struct HoldCopy {
    pub seq: i64,
    pub id: String,
    pub account_id: i64,
    pub user_id: String,
    pub asset_type_id: String,
    pub amount: i64,
    pub status: String,
    pub captured_amount: i64,
    pub request_id: i64,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    /// The parts it set aside, as both backends store it.
    pub parts: String,
}

/// An entry with the balances its postings record. A Treasury's posting
/// carries none on PostgreSQL; the target computes its own.
#[derive(Debug, Clone)]
pub struct EntryCopy {
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub asset_type_id: String,
    pub debit_account_id: i64,
    pub credit_account_id: i64,
    pub amount: i64,
    pub request_id: i64,
    pub reference_id: Option<String>,
    pub note: Option<String>,
    pub metadata: Option<String>,
    /// The id (not the number) of the entry a reversal reverses: entry
    /// numbers may change in the target, ids never do.
    pub reverses_id: Option<String>,
    pub reversed_after: Option<i64>,
    pub hold_seq: Option<i64>,
    pub created_at: i64,
    pub debit_balance_after: Option<i64>,
    pub credit_balance_after: Option<i64>,
    /// What it moved, as both backends store it (`ledger::parts::encode`).
    pub parts: String,
}

/// One step of the history, in the source's commit order.
#[derive(Debug, Clone)]
pub enum Change {
    Entry(EntryCopy),
    /// Written HELD, as it was created.
    HoldCreated(HoldCopy),
    /// Closed to its final state.
    HoldClosed(HoldCopy),
    /// A change of rules on value, with who made it and when.
    Rules(RulesCopy),
}

/// A change of an asset's rules (`user_id` None) or of a user's own values,
/// as the rules stood once it applied.
#[derive(Debug, Clone)]
pub struct RulesCopy {
    pub asset_type_id: String,
    pub user_id: Option<String>,
    pub spend_order: Option<String>,
    pub max_balance: Option<i64>,
    /// As JSON text.
    pub limits: Option<String>,
    pub changed_at: i64,
    pub changed_by: i64,
}

/// An account's balance and what holds set aside of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountBalance {
    pub account_id: i64,
    pub balance: i128,
    pub held: i64,
}

/// How many rows of each kind a ledger holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyCounts {
    pub assets: i64,
    pub accounts: i64,
    pub keys: i64,
    pub requests: i64,
    pub entries: i64,
    pub holds: i64,
    /// Entries, changes of holds and of rules: the steps of the history.
    pub changes: i64,
    pub rule_changes: i64,
}

/// A backend's reads of a whole ledger, inside one read transaction.
pub trait CopySource {
    fn counts(&mut self) -> anyhow::Result<CopyCounts>;
    /// Every asset type (at most 1000).
    fn assets(&mut self) -> anyhow::Result<Vec<AssetCopy>>;
    fn accounts_after(&mut self, after_id: i64, limit: usize) -> anyhow::Result<Vec<AccountCopy>>;
    /// Every API key (at most `API_KEYS_TOTAL_MAX`).
    fn keys(&mut self) -> anyhow::Result<Vec<KeyCopy>>;
    fn requests_after(&mut self, after_id: i64, limit: usize) -> anyhow::Result<Vec<RequestCopy>>;
    /// The history's steps after position `after` of the event feed, with
    /// each one's position.
    fn changes_after(&mut self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Change)>>;
    /// Each account's balance, by account id.
    fn balances_after(
        &mut self,
        after_id: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<AccountBalance>>;
}

/// A backend's writes of a whole ledger, inside one write transaction that
/// is committed only when every row was accepted.
pub trait CopyTarget {
    fn assets(&mut self, assets: &[AssetCopy]) -> anyhow::Result<()>;
    fn accounts(&mut self, accounts: &[AccountCopy]) -> anyhow::Result<()>;
    fn keys(&mut self, keys: &[KeyCopy]) -> anyhow::Result<()>;
    fn requests(&mut self, requests: &[RequestCopy]) -> anyhow::Result<()>;
    fn changes(&mut self, changes: &[Change]) -> anyhow::Result<()>;
    /// After the last row: whatever numbering the backend keeps apart from
    /// its rows is brought past them.
    fn finish(&mut self) -> anyhow::Result<()>;
}

/// Where the copy is, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStage {
    /// Steps of the history written so far, of `CopyCounts::changes`.
    Copying,
    /// Entries of the copy audited so far.
    Auditing,
    /// Accounts compared with the source's so far.
    Comparing,
}

/// What a copy did and found.
pub struct CopyOutcome {
    pub counts: CopyCounts,
    /// The copy's audit.
    pub report: AuditReport,
    pub accounts_compared: u64,
    /// Accounts whose balance or held amount differs from the source's
    /// (or that one side lacks), and the first few in words.
    pub mismatch_count: u64,
    pub mismatches: Vec<String>,
}

impl CopyOutcome {
    /// The copy audits clean, holds as many rows of each kind as the
    /// source, and every balance equals the source's.
    pub fn is_proven(&self) -> bool {
        self.report.is_clean() && self.mismatch_count == 0
    }
}

/// The refusal when `to` is not a new, empty database.
pub fn holds_a_ledger(location: &DatabaseLocation, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{} already holds a ledger ({what}); wallet copy writes only into a new or empty database, and nothing was written",
        location.display()
    )
}

/// Copies the ledger at `from` into `to`, audits the copy and compares
/// every balance; `progress` hears each stage's count as it grows, and the
/// total when known.
pub fn copy(
    from: &DatabaseLocation,
    to: &DatabaseLocation,
    progress: &mut dyn FnMut(CopyStage, u64, Option<u64>),
) -> anyhow::Result<CopyOutcome> {
    if same_database(from, to) {
        anyhow::bail!(
            "the source and the target are the same database ({}); name another with --to",
            to.display()
        );
    }
    read(from, &mut |source| {
        let counts = source.counts()?;
        write(to, &mut |target| replay(source, target, counts, progress))?;
        let report = commands::verify_reporting(to, &mut |checked| {
            progress(
                CopyStage::Auditing,
                checked,
                u64::try_from(counts.entries).ok(),
            )
        })?;
        let comparison = read(to, &mut |copy| {
            let copied = copy.counts()?;
            let mut comparison = compare_balances(source, copy, counts.accounts, progress)?;
            for (what, source_count, copy_count) in [
                ("asset types", counts.assets, copied.assets),
                ("accounts", counts.accounts, copied.accounts),
                ("API keys", counts.keys, copied.keys),
                ("idempotency records", counts.requests, copied.requests),
                ("entries", counts.entries, copied.entries),
                ("holds", counts.holds, copied.holds),
                ("changes of rules", counts.rule_changes, copied.rule_changes),
            ] {
                if source_count != copy_count {
                    comparison.record(format!(
                        "the source holds {source_count} {what}, the copy {copy_count}"
                    ));
                }
            }
            Ok(comparison)
        })?;
        Ok(CopyOutcome {
            counts,
            report,
            accounts_compared: comparison.accounts_compared,
            mismatch_count: comparison.mismatch_count,
            mismatches: comparison.mismatches,
        })
    })
}

/// Whether `from` and `to` name one database: the same URL, or the same
/// file however its path is spelt.
fn same_database(from: &DatabaseLocation, to: &DatabaseLocation) -> bool {
    match (from, to) {
        (DatabaseLocation::Sqlite(a), DatabaseLocation::Sqlite(b)) => {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
        }
        (a, b) => a == b,
    }
}

fn read<T>(
    location: &DatabaseLocation,
    work: &mut dyn FnMut(&mut dyn CopySource) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    match location {
        DatabaseLocation::Sqlite(path) => sqlite::copy::read(path, work),
        DatabaseLocation::Postgres(url) => postgres::copy::read(url, work),
    }
}

fn write(
    location: &DatabaseLocation,
    work: &mut dyn FnMut(&mut dyn CopyTarget) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match location {
        DatabaseLocation::Sqlite(path) => sqlite::copy::write(path, location, work),
        DatabaseLocation::Postgres(url) => postgres::copy::write(url, location, work),
    }
}

/// Every row of the source into the target: the catalogue, the accounts,
/// the keys and the requests first (what the history names), then the
/// history in commit order, batch by batch.
fn replay(
    source: &mut dyn CopySource,
    target: &mut dyn CopyTarget,
    counts: CopyCounts,
    progress: &mut dyn FnMut(CopyStage, u64, Option<u64>),
) -> anyhow::Result<()> {
    let total = u64::try_from(counts.changes).ok();
    target.assets(&source.assets()?)?;
    let mut after = 0;
    loop {
        let batch = source.accounts_after(after, COPY_BATCH_ROWS)?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        target.accounts(&batch)?;
    }
    target.keys(&source.keys()?)?;
    let mut after = 0;
    loop {
        let batch = source.requests_after(after, COPY_BATCH_REQUESTS)?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        target.requests(&batch)?;
    }
    let mut after = 0;
    let mut copied = 0_u64;
    loop {
        let batch = source.changes_after(after, COPY_BATCH_ROWS)?;
        let Some((last, _)) = batch.last() else { break };
        after = *last;
        copied += batch.len() as u64;
        let changes: Vec<Change> = batch.into_iter().map(|(_, change)| change).collect();
        target.changes(&changes)?;
        progress(CopyStage::Copying, copied, total);
    }
    target.finish()
}

/// Walks both sides' accounts in id order, batch by batch, and records
/// every account whose balance or held amount differs or that one side
/// lacks.
fn compare_balances(
    source: &mut dyn CopySource,
    copy: &mut dyn CopySource,
    accounts: i64,
    progress: &mut dyn FnMut(CopyStage, u64, Option<u64>),
) -> anyhow::Result<Comparison> {
    let mut outcome = Comparison::default();
    let mut after = 0;
    loop {
        let ours = source.balances_after(after, COPY_BATCH_ROWS)?;
        let Some(last) = ours.last() else { break };
        let last = last.account_id;
        // The copy's accounts in the same range: up to the source's last.
        let mut theirs = copy.balances_after(after, COPY_BATCH_ROWS)?;
        theirs.retain(|balance| balance.account_id <= last);
        let mut theirs = theirs.into_iter().peekable();
        for balance in &ours {
            while let Some(extra) = theirs.next_if(|copied| copied.account_id < balance.account_id)
            {
                outcome.record(format!(
                    "account {} is in the copy but not in the source",
                    extra.account_id
                ));
            }
            match theirs.next_if(|copied| copied.account_id == balance.account_id) {
                Some(copied) if copied == *balance => {}
                Some(copied) => outcome.record(format!(
                    "account {}: the source has balance {} (held {}), the copy {} (held {})",
                    balance.account_id, balance.balance, balance.held, copied.balance, copied.held
                )),
                None => outcome.record(format!(
                    "account {} is missing from the copy",
                    balance.account_id
                )),
            }
            outcome.accounts_compared += 1;
        }
        for extra in theirs {
            outcome.record(format!(
                "account {} is in the copy but not in the source",
                extra.account_id
            ));
        }
        after = last;
        progress(
            CopyStage::Comparing,
            outcome.accounts_compared,
            u64::try_from(accounts).ok(),
        );
    }
    let extra = copy.balances_after(after, 1)?;
    if let Some(extra) = extra.first() {
        outcome.record(format!(
            "account {} is in the copy but not in the source",
            extra.account_id
        ));
    }
    Ok(outcome)
}

/// Differences found so far between the source and the copy.
#[derive(Default)]
struct Comparison {
    accounts_compared: u64,
    mismatch_count: u64,
    mismatches: Vec<String>,
}

impl Comparison {
    fn record(&mut self, mismatch: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < COPY_MISMATCHES_SHOWN_MAX {
            self.mismatches.push(mismatch);
        }
    }
}
