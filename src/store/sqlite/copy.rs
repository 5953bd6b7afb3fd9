//! `wallet copy` on a SQLite file: its reads as a source, in one read
//! transaction, and its writes as a target, in one IMMEDIATE transaction.
//!
//! Written here, an entry keeps its number when it comes after every one
//! written before it (always, from a SQLite source) and takes the next
//! number otherwise: SQLite numbers its feed by entry, so entries must be
//! numbered in the order they are written. A Treasury's postings carry the
//! running balance this file keeps for it, computed as they are written.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use rusqlite::{params, Row, Transaction, TransactionBehavior};

use super::{migrate, open};
use crate::store::copy::{
    holds_a_ledger, AccountBalance, AccountCopy, AssetCopy, Change, CopyCounts, CopySource,
    CopyTarget, EntryCopy, HoldCopy, KeyCopy, RequestCopy, RulesCopy,
};
use crate::store::DatabaseLocation;

/// Runs `work` on the file at `path` as a source, in one read transaction.
pub fn read<T>(
    path: &Path,
    work: &mut dyn FnMut(&mut dyn CopySource) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut conn = open::open_read_only(path)?;
    migrate::check_current(&conn).with_context(|| format!("cannot copy {}", path.display()))?;
    let tx = conn.transaction()?;
    let result = work(&mut Source { tx: &tx })?;
    tx.commit()?;
    Ok(result)
}

struct Source<'t, 'c> {
    tx: &'t Transaction<'c>,
}

/// The columns of an entry and its two postings' balances, from `e`, `o`
/// (the entry it reverses), `d` and `c` (its debit and credit postings).
const ENTRY_COLUMNS: &str = "e.seq, e.id, e.kind, e.asset_type_id, e.debit_account_id,
    e.credit_account_id, e.amount, e.request_id, e.reference_id, e.note, e.metadata, o.id,
    e.reversed_after, e.hold_seq, e.created_at, d.balance_after, c.balance_after, e.parts";
const HOLD_COLUMNS: &str = "h.seq, h.id, h.account_id, h.user_id, h.asset_type_id, h.amount,
    h.status, h.captured_amount, h.request_id, h.reference_id, h.note, h.metadata, h.expires_at,
    h.created_at, h.closed_at, h.parts";
/// From column 37, after the entry's and the hold's.
const RULES_COLUMNS: &str = "v.rule_change_seq, r.asset_type_id, r.user_id, r.spend_order,
    r.max_balance, r.limits, r.changed_at, r.changed_by";

fn entry(row: &Row, at: usize) -> rusqlite::Result<EntryCopy> {
    Ok(EntryCopy {
        seq: row.get(at)?,
        id: row.get(at + 1)?,
        kind: row.get(at + 2)?,
        asset_type_id: row.get(at + 3)?,
        debit_account_id: row.get(at + 4)?,
        credit_account_id: row.get(at + 5)?,
        amount: row.get(at + 6)?,
        request_id: row.get(at + 7)?,
        reference_id: row.get(at + 8)?,
        note: row.get(at + 9)?,
        metadata: row.get(at + 10)?,
        reverses_id: row.get(at + 11)?,
        reversed_after: row.get(at + 12)?,
        hold_seq: row.get(at + 13)?,
        created_at: row.get(at + 14)?,
        debit_balance_after: row.get(at + 15)?,
        credit_balance_after: row.get(at + 16)?,
        parts: row.get(at + 17)?,
    })
}

fn hold(row: &Row, at: usize) -> rusqlite::Result<HoldCopy> {
    Ok(HoldCopy {
        seq: row.get(at)?,
        id: row.get(at + 1)?,
        account_id: row.get(at + 2)?,
        user_id: row.get(at + 3)?,
        asset_type_id: row.get(at + 4)?,
        amount: row.get(at + 5)?,
        status: row.get(at + 6)?,
        captured_amount: row.get(at + 7)?,
        request_id: row.get(at + 8)?,
        reference_id: row.get(at + 9)?,
        note: row.get(at + 10)?,
        metadata: row.get(at + 11)?,
        expires_at: row.get(at + 12)?,
        created_at: row.get(at + 13)?,
        closed_at: row.get(at + 14)?,
        parts: row.get(at + 15)?,
    })
}

impl CopySource for Source<'_, '_> {
    fn counts(&mut self) -> anyhow::Result<CopyCounts> {
        Ok(self.tx.query_row(
            "SELECT (SELECT count(*) FROM asset_types), (SELECT count(*) FROM accounts),
                    (SELECT count(*) FROM api_keys), (SELECT count(*) FROM idempotency_records),
                    (SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM holds),
                    (SELECT count(*) FROM events), (SELECT count(*) FROM rule_changes)",
            [],
            |row| {
                Ok(CopyCounts {
                    assets: row.get(0)?,
                    accounts: row.get(1)?,
                    keys: row.get(2)?,
                    requests: row.get(3)?,
                    entries: row.get(4)?,
                    holds: row.get(5)?,
                    changes: row.get(6)?,
                    rule_changes: row.get(7)?,
                })
            },
        )?)
    }

    fn assets(&mut self) -> anyhow::Result<Vec<AssetCopy>> {
        let mut statement = self.tx.prepare(
            "SELECT id, symbol, name, decimals, created_at FROM asset_types ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(AssetCopy {
                id: row.get(0)?,
                symbol: row.get(1)?,
                name: row.get(2)?,
                decimals: row.get(3)?,
                created_at: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn accounts_after(&mut self, after_id: i64, limit: usize) -> anyhow::Result<Vec<AccountCopy>> {
        let mut statement = self.tx.prepare_cached(
            "SELECT id, owner_id, asset_type_id, created_at FROM accounts
              WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after_id, limit as i64], |row| {
            Ok(AccountCopy {
                id: row.get(0)?,
                user: row.get(1)?,
                asset_type_id: row.get(2)?,
                created_at: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn keys(&mut self) -> anyhow::Result<Vec<KeyCopy>> {
        let mut statement = self.tx.prepare(
            "SELECT id, name, secret_sha256, scopes, created_at, last_used_at, revoked_at
               FROM api_keys ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(KeyCopy {
                id: row.get(0)?,
                name: row.get(1)?,
                secret_sha256: row.get(2)?,
                scopes: row.get(3)?,
                created_at: row.get(4)?,
                last_used_at: row.get(5)?,
                revoked_at: row.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn requests_after(&mut self, after_id: i64, limit: usize) -> anyhow::Result<Vec<RequestCopy>> {
        let mut statement = self.tx.prepare_cached(
            "SELECT id, caller_id, key, request, entry_count, created_at, hold_seq, answer_state
               FROM idempotency_records WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after_id, limit as i64], |row| {
            Ok(RequestCopy {
                id: row.get(0)?,
                caller_id: row.get(1)?,
                key: row.get(2)?,
                request: row.get(3)?,
                entry_count: row.get(4)?,
                created_at: row.get(5)?,
                hold_seq: row.get(6)?,
                answer_state: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn changes_after(&mut self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Change)>> {
        let mut statement = self.tx.prepare_cached(&format!(
            "SELECT v.seq, v.entry_seq, v.type, {ENTRY_COLUMNS}, {HOLD_COLUMNS}, {RULES_COLUMNS}
               FROM events v
               LEFT JOIN rule_changes r ON r.seq = v.rule_change_seq
               LEFT JOIN ledger_entries e ON e.seq = v.entry_seq
               LEFT JOIN ledger_entries o ON o.seq = e.reverses_seq
               LEFT JOIN postings d ON d.account_id = e.debit_account_id AND d.entry_seq = e.seq
               LEFT JOIN postings c ON c.account_id = e.credit_account_id AND c.entry_seq = e.seq
               LEFT JOIN holds h ON h.seq = v.hold_seq
              WHERE v.seq > ?1 ORDER BY v.seq LIMIT ?2"
        ))?;
        let mut rows = statement.query(params![after, limit as i64])?;
        let mut changes = Vec::with_capacity(limit);
        while let Some(row) = rows.next()? {
            let position: i64 = row.get(0)?;
            let entry_seq: Option<i64> = row.get(1)?;
            let kind: Option<String> = row.get(2)?;
            let change = if row.get::<_, Option<i64>>(37)?.is_some() {
                Change::Rules(RulesCopy {
                    asset_type_id: row.get(38)?,
                    user_id: row.get(39)?,
                    spend_order: row.get(40)?,
                    max_balance: row.get(41)?,
                    limits: row.get(42)?,
                    changed_at: row.get(43)?,
                    changed_by: row.get(44)?,
                })
            } else if entry_seq.is_some() {
                if row.get::<_, Option<i64>>(3)?.is_none() {
                    anyhow::bail!("event {position} names an entry the source does not hold");
                }
                Change::Entry(entry(row, 3)?)
            } else {
                if row.get::<_, Option<i64>>(21)?.is_none() {
                    anyhow::bail!("event {position} names a hold the source does not hold");
                }
                let hold = hold(row, 21)?;
                match kind.as_deref() {
                    Some("hold.created") => Change::HoldCreated(hold),
                    _ => Change::HoldClosed(hold),
                }
            };
            changes.push((position, change));
        }
        Ok(changes)
    }

    fn balances_after(
        &mut self,
        after_id: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<AccountBalance>> {
        let mut statement = self.tx.prepare_cached(
            "SELECT a.id,
                    coalesce((SELECT p.balance_after FROM postings p WHERE p.account_id = a.id
                               ORDER BY p.entry_seq DESC LIMIT 1), 0),
                    coalesce(h.held, 0)
               FROM accounts a LEFT JOIN account_holds h ON h.account_id = a.id
              WHERE a.id > ?1 ORDER BY a.id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after_id, limit as i64], |row| {
            Ok(AccountBalance {
                account_id: row.get(0)?,
                balance: i128::from(row.get::<_, i64>(1)?),
                held: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Runs `work` on the file at `path` as a target, in one IMMEDIATE
/// transaction committed only if it succeeds. A new file is created and
/// migrated, and removed again if the copy fails; a file that holds a
/// ledger is refused before anything is written to it.
pub fn write(
    path: &Path,
    location: &DatabaseLocation,
    work: &mut dyn FnMut(&mut dyn CopyTarget) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let existed = path.exists();
    let written = write_into(path, location, existed, work);
    if written.is_err() && !existed {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
    written
}

fn write_into(
    path: &Path,
    location: &DatabaseLocation,
    existed: bool,
    work: &mut dyn FnMut(&mut dyn CopyTarget) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if existed {
        // Before migrating it: a file with a ledger in it is not touched.
        let conn = open::open_read_only(path)?;
        let has_assets: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'asset_types'",
            [],
            |row| row.get(0),
        )?;
        if has_assets {
            let assets: i64 =
                conn.query_row("SELECT count(*) FROM asset_types", [], |row| row.get(0))?;
            if assets > 0 {
                return Err(holds_a_ledger(location, &format!("{assets} asset types")));
            }
        }
    }
    let mut conn = open::open_read_write(path)?;
    migrate::migrate(&mut conn).with_context(|| format!("cannot migrate {}", path.display()))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .with_context(|| format!("cannot lock {} to write the copy", path.display()))?;
    let (assets, keys, requests): (i64, i64, i64) = tx.query_row(
        "SELECT (SELECT count(*) FROM asset_types), (SELECT count(*) FROM api_keys),
                (SELECT count(*) FROM idempotency_records)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    if assets + keys + requests > 0 {
        return Err(holds_a_ledger(
            location,
            &format!("{assets} asset types, {keys} API keys, {requests} idempotency records"),
        ));
    }
    // A request names the hold it closed, and a hold the request that made
    // it: every reference is checked at COMMIT instead of row by row.
    tx.pragma_update(None, "defer_foreign_keys", "ON")?;
    work(&mut Target {
        tx: &tx,
        treasuries: HashMap::new(),
        last_seq: 0,
    })?;
    tx.commit()
        .with_context(|| format!("cannot commit the copy to {}", path.display()))?;
    Ok(())
}

struct Target<'t, 'c> {
    tx: &'t Transaction<'c>,
    /// Each Treasury's running balance, by account id.
    treasuries: HashMap<i64, i64>,
    /// The number of the last entry written.
    last_seq: i64,
}

impl Target<'_, '_> {
    /// The balance an account's posting of `delta` records: the source's
    /// for a user, this file's running one for a Treasury.
    fn balance_after(
        &mut self,
        account: i64,
        delta: i64,
        from_source: Option<i64>,
    ) -> anyhow::Result<i64> {
        match self.treasuries.get_mut(&account) {
            Some(running) => {
                *running = running
                    .checked_add(delta)
                    .context("a Treasury's balance overflows")?;
                Ok(*running)
            }
            None => from_source
                .with_context(|| format!("a posting of account {account} has no balance")),
        }
    }

    fn entry(&mut self, entry: &EntryCopy) -> anyhow::Result<()> {
        let seq = if entry.seq > self.last_seq {
            entry.seq
        } else {
            self.last_seq + 1
        };
        self.last_seq = seq;
        self.tx
            .prepare_cached(
                "INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                                             credit_account_id, amount, request_id, reference_id,
                                             note, metadata, reverses_seq, reversed_after,
                                             hold_seq, created_at, parts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
                         (SELECT r.seq FROM ledger_entries r WHERE r.id = ?12), ?13, ?14, ?15,
                         ?16)",
            )?
            .execute(params![
                seq,
                entry.id,
                entry.kind,
                entry.asset_type_id,
                entry.debit_account_id,
                entry.credit_account_id,
                entry.amount,
                entry.request_id,
                entry.reference_id,
                entry.note,
                entry.metadata,
                entry.reverses_id,
                entry.reversed_after,
                entry.hold_seq,
                entry.created_at,
                entry.parts,
            ])?;
        let parts = crate::ledger::parts::decode(&entry.parts)
            .with_context(|| format!("entry {} has unreadable parts", entry.id))?;
        let paid = crate::ledger::parts::paid_of(&parts);
        let legs = [
            (
                entry.debit_account_id,
                -entry.amount,
                entry.debit_balance_after,
            ),
            (
                entry.credit_account_id,
                entry.amount,
                entry.credit_balance_after,
            ),
        ];
        let kind = crate::domain::EntryKind::parse(&entry.kind)?;
        for ((account, delta, from_source), credited) in legs.into_iter().zip([false, true]) {
            let paid_delta = if credited { paid } else { -paid };
            let balance_after = self.balance_after(account, delta, from_source)?;
            let is_user: bool = self
                .tx
                .prepare_cached("SELECT owner_type = 'USER' FROM accounts WHERE id = ?1")?
                .query_row([account], |row| row.get(0))?;
            // The running totals, as the writer computes them.
            self.tx
                .prepare_cached(super::rules::INSERT_POSTING)?
                .execute(params![
                    account,
                    seq,
                    delta,
                    balance_after,
                    super::rules::counted_kind(kind, credited, is_user),
                    entry.amount,
                    paid_delta
                ])?;
        }
        Ok(())
    }
}

impl CopyTarget for Target<'_, '_> {
    fn assets(&mut self, assets: &[AssetCopy]) -> anyhow::Result<()> {
        let mut statement = self.tx.prepare(
            "INSERT INTO asset_types (id, symbol, name, decimals, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for asset in assets {
            statement
                .execute(params![
                    asset.id,
                    asset.symbol,
                    asset.name,
                    asset.decimals,
                    asset.created_at
                ])
                .with_context(|| format!("the copy refused asset type {}", asset.symbol))?;
        }
        Ok(())
    }

    fn accounts(&mut self, accounts: &[AccountCopy]) -> anyhow::Result<()> {
        let mut statement = self.tx.prepare_cached(
            "INSERT INTO accounts (id, owner_type, owner_id, asset_type_id, created_at)
             VALUES (?1, CASE WHEN ?2 IS NULL THEN 'SYSTEM' ELSE 'USER' END, ?2, ?3, ?4)",
        )?;
        for account in accounts {
            statement
                .execute(params![
                    account.id,
                    account.user,
                    account.asset_type_id,
                    account.created_at
                ])
                .with_context(|| format!("the copy refused account {}", account.id))?;
            if account.user.is_none() {
                self.treasuries.insert(account.id, 0);
            }
        }
        Ok(())
    }

    fn keys(&mut self, keys: &[KeyCopy]) -> anyhow::Result<()> {
        let mut statement = self.tx.prepare(
            "INSERT INTO api_keys (id, name, secret_sha256, scopes, created_at, last_used_at,
                                   revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for key in keys {
            statement
                .execute(params![
                    key.id,
                    key.name,
                    key.secret_sha256,
                    key.scopes,
                    key.created_at,
                    key.last_used_at,
                    key.revoked_at
                ])
                .with_context(|| format!("the copy refused API key {}", key.name))?;
        }
        Ok(())
    }

    fn requests(&mut self, requests: &[RequestCopy]) -> anyhow::Result<()> {
        let mut statement = self.tx.prepare_cached(
            "INSERT INTO idempotency_records (id, caller_id, key, request, entry_count,
                                              created_at, hold_seq, answer_state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for request in requests {
            statement
                .execute(params![
                    request.id,
                    request.caller_id,
                    request.key,
                    request.request,
                    request.entry_count,
                    request.created_at,
                    request.hold_seq,
                    request.answer_state
                ])
                .with_context(|| format!("the copy refused idempotency record {}", request.id))?;
        }
        Ok(())
    }

    fn changes(&mut self, changes: &[Change]) -> anyhow::Result<()> {
        for change in changes {
            match change {
                Change::Entry(entry) => self
                    .entry(entry)
                    .with_context(|| format!("the copy refused entry {}", entry.id))?,
                Change::HoldCreated(hold) => {
                    self.tx
                        .prepare_cached(
                            "INSERT INTO holds (seq, id, account_id, user_id, asset_type_id,
                                                amount, status, captured_amount, request_id,
                                                reference_id, note, metadata, expires_at,
                                                created_at, parts)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'HELD', 0, ?7, ?8, ?9, ?10, ?11,
                                     ?12, ?13)",
                        )?
                        .execute(params![
                            hold.seq,
                            hold.id,
                            hold.account_id,
                            hold.user_id,
                            hold.asset_type_id,
                            hold.amount,
                            hold.request_id,
                            hold.reference_id,
                            hold.note,
                            hold.metadata,
                            hold.expires_at,
                            hold.created_at,
                            hold.parts
                        ])
                        .with_context(|| format!("the copy refused hold {}", hold.id))?;
                }
                Change::Rules(rules) => {
                    self.tx
                        .prepare_cached(
                            "INSERT INTO rule_changes (asset_type_id, user_id, spend_order,
                                                       max_balance, limits, changed_at, changed_by)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )?
                        .execute(params![
                            rules.asset_type_id,
                            rules.user_id,
                            rules.spend_order,
                            rules.max_balance,
                            rules.limits,
                            rules.changed_at,
                            rules.changed_by
                        ])
                        .context("the copy refused a change of rules")?;
                }
                Change::HoldClosed(hold) => {
                    let closed = self
                        .tx
                        .prepare_cached(
                            "UPDATE holds SET status = ?2, captured_amount = ?3, closed_at = ?4
                              WHERE seq = ?1 AND status = 'HELD'",
                        )?
                        .execute(params![
                            hold.seq,
                            hold.status,
                            hold.captured_amount,
                            hold.closed_at
                        ])
                        .with_context(|| format!("the copy refused closing hold {}", hold.id))?;
                    if closed != 1 {
                        anyhow::bail!(
                            "hold {} closes in the source but is not HELD in the copy",
                            hold.id
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        // Rows keep the numbers given; SQLite numbers what comes next past
        // the largest on its own.
        Ok(())
    }
}
