//! `wallet copy` on PostgreSQL: its reads as a source, in one
//! repeatable-read, read-only transaction, and its writes as a target, in
//! one transaction.
//!
//! Written here, every row keeps its number (`OVERRIDING SYSTEM VALUE`),
//! and each identity is then moved past the largest, so the next row a
//! server writes takes a new number. The triggers move each account's
//! balance, paid part and holds, the asset totals and (at COMMIT, in the
//! order the rows were written) the event feed, as they do for a server's
//! writes; a Treasury's postings carry no running balance.

use std::collections::HashSet;

use anyhow::Context;
use postgres::{IsolationLevel, Row, Statement, Transaction};

use super::migrate::{self, check_current};
use super::{connect, PostgresUrl};
use crate::store::copy::{
    holds_a_ledger, AccountBalance, AccountCopy, AssetCopy, Change, CopyCounts, CopySource,
    CopyTarget, EntryCopy, HoldCopy, KeyCopy, RequestCopy, RulesCopy,
};
use crate::store::DatabaseLocation;

/// Runs `work` on the database at `url` as a source, in one repeatable-read
/// transaction: one committed state, while servers go on writing.
pub fn read<T>(
    url: &PostgresUrl,
    work: &mut dyn FnMut(&mut dyn CopySource) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut client = connect(url)?;
    check_current(&mut client).with_context(|| format!("cannot copy {url}"))?;
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let result = work(&mut Source { tx: &mut tx })?;
    tx.commit()?;
    Ok(result)
}

struct Source<'t, 'c> {
    tx: &'t mut Transaction<'c>,
}

const ENTRY_COLUMNS: &str = "e.seq, e.id::text, e.kind, e.asset_type_id::text,
    e.debit_account_id, e.credit_account_id, e.amount, e.request_id, e.reference_id, e.note,
    e.metadata::text, o.id::text, e.reversed_after, e.hold_seq, e.created_at, d.balance_after,
    c.balance_after, e.parts";
const HOLD_COLUMNS: &str = "h.seq, h.id::text, h.account_id, h.user_id, h.asset_type_id::text,
    h.amount, h.status, h.captured_amount, h.request_id, h.reference_id, h.note,
    h.metadata::text, h.expires_at, h.created_at, h.closed_at, h.parts";
/// From column 37, after the entry's and the hold's.
const RULES_COLUMNS: &str = "v.rule_change_seq, r.asset_type_id::text, r.user_id, r.spend_order,
    r.max_balance, r.limits::text, r.changed_at, r.changed_by";

fn entry(row: &Row, at: usize) -> EntryCopy {
    EntryCopy {
        seq: row.get(at),
        id: row.get(at + 1),
        kind: row.get(at + 2),
        asset_type_id: row.get(at + 3),
        debit_account_id: row.get(at + 4),
        credit_account_id: row.get(at + 5),
        amount: row.get(at + 6),
        request_id: row.get(at + 7),
        reference_id: row.get(at + 8),
        note: row.get(at + 9),
        metadata: row.get(at + 10),
        reverses_id: row.get(at + 11),
        reversed_after: row.get(at + 12),
        hold_seq: row.get(at + 13),
        created_at: row.get(at + 14),
        debit_balance_after: row.get(at + 15),
        credit_balance_after: row.get(at + 16),
        parts: row.get(at + 17),
    }
}

fn hold(row: &Row, at: usize) -> HoldCopy {
    HoldCopy {
        seq: row.get(at),
        id: row.get(at + 1),
        account_id: row.get(at + 2),
        user_id: row.get(at + 3),
        asset_type_id: row.get(at + 4),
        amount: row.get(at + 5),
        status: row.get(at + 6),
        captured_amount: row.get(at + 7),
        request_id: row.get(at + 8),
        reference_id: row.get(at + 9),
        note: row.get(at + 10),
        metadata: row.get(at + 11),
        expires_at: row.get(at + 12),
        created_at: row.get(at + 13),
        closed_at: row.get(at + 14),
        parts: row.get(at + 15),
    }
}

impl CopySource for Source<'_, '_> {
    fn counts(&mut self) -> anyhow::Result<CopyCounts> {
        let row = self.tx.query_one(
            "SELECT (SELECT count(*) FROM asset_types), (SELECT count(*) FROM accounts),
                    (SELECT count(*) FROM api_keys), (SELECT count(*) FROM idempotency_records),
                    (SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM holds),
                    (SELECT count(*) FROM events), (SELECT count(*) FROM rule_changes)",
            &[],
        )?;
        Ok(CopyCounts {
            assets: row.get(0),
            accounts: row.get(1),
            keys: row.get(2),
            requests: row.get(3),
            entries: row.get(4),
            holds: row.get(5),
            changes: row.get(6),
            rule_changes: row.get(7),
        })
    }

    fn assets(&mut self) -> anyhow::Result<Vec<AssetCopy>> {
        let rows = self.tx.query(
            "SELECT id::text, symbol, name, decimals, created_at FROM asset_types ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| AssetCopy {
                id: row.get(0),
                symbol: row.get(1),
                name: row.get(2),
                decimals: i64::from(row.get::<_, i16>(3)),
                created_at: row.get(4),
            })
            .collect())
    }

    fn accounts_after(&mut self, after_id: i64, limit: usize) -> anyhow::Result<Vec<AccountCopy>> {
        let rows = self.tx.query(
            "SELECT id, owner_id, asset_type_id::text, created_at FROM accounts
              WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after_id, &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|row| AccountCopy {
                id: row.get(0),
                user: row.get(1),
                asset_type_id: row.get(2),
                created_at: row.get(3),
            })
            .collect())
    }

    fn keys(&mut self) -> anyhow::Result<Vec<KeyCopy>> {
        let rows = self.tx.query(
            "SELECT id, name, secret_sha256, scopes, created_at, last_used_at, revoked_at
               FROM api_keys ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| KeyCopy {
                id: row.get(0),
                name: row.get(1),
                secret_sha256: row.get(2),
                scopes: row.get(3),
                created_at: row.get(4),
                last_used_at: row.get(5),
                revoked_at: row.get(6),
            })
            .collect())
    }

    fn requests_after(&mut self, after_id: i64, limit: usize) -> anyhow::Result<Vec<RequestCopy>> {
        let rows = self.tx.query(
            "SELECT id, caller_id, key, request, entry_count, created_at, hold_seq, answer_state
               FROM idempotency_records WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after_id, &(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|row| RequestCopy {
                id: row.get(0),
                caller_id: row.get(1),
                key: row.get(2),
                request: row.get(3),
                entry_count: i64::from(row.get::<_, i32>(4)),
                created_at: row.get(5),
                hold_seq: row.get(6),
                answer_state: row.get(7),
            })
            .collect())
    }

    fn changes_after(&mut self, after: i64, limit: usize) -> anyhow::Result<Vec<(i64, Change)>> {
        let rows = self.tx.query(
            &format!(
                "SELECT v.feed_seq, v.entry_seq, v.type, {ENTRY_COLUMNS}, {HOLD_COLUMNS},
                        {RULES_COLUMNS}
                   FROM events v
                   LEFT JOIN rule_changes r ON r.seq = v.rule_change_seq
                   LEFT JOIN ledger_entries e ON e.seq = v.entry_seq
                   LEFT JOIN ledger_entries o ON o.seq = e.reverses_seq
                   LEFT JOIN postings d
                          ON d.account_id = e.debit_account_id AND d.entry_seq = e.seq
                   LEFT JOIN postings c
                          ON c.account_id = e.credit_account_id AND c.entry_seq = e.seq
                   LEFT JOIN holds h ON h.seq = v.hold_seq
                  WHERE v.feed_seq > $1 ORDER BY v.feed_seq LIMIT $2"
            ),
            &[&after, &(limit as i64)],
        )?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let position: i64 = row.get(0);
            let change = if row.get::<_, Option<i64>>(37).is_some() {
                Change::Rules(RulesCopy {
                    asset_type_id: row.get(38),
                    user_id: row.get(39),
                    spend_order: row.get(40),
                    max_balance: row.get(41),
                    limits: row.get(42),
                    changed_at: row.get(43),
                    changed_by: row.get(44),
                })
            } else if row.get::<_, Option<i64>>(1).is_some() {
                if row.get::<_, Option<i64>>(3).is_none() {
                    anyhow::bail!("event {position} names an entry the source does not hold");
                }
                Change::Entry(entry(row, 3))
            } else {
                if row.get::<_, Option<i64>>(21).is_none() {
                    anyhow::bail!("event {position} names a hold the source does not hold");
                }
                let hold = hold(row, 21);
                match row.get::<_, Option<String>>(2).as_deref() {
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
        // A user's balance is on its row; a Treasury's is the sum of its
        // asset's totals.
        let rows = self.tx.query(
            "SELECT a.id,
                    (CASE WHEN a.owner_type = 'USER' THEN a.balance::numeric
                          ELSE (SELECT coalesce(sum(t.treasury), 0) FROM asset_totals t
                                 WHERE t.asset_type_id = a.asset_type_id) END)::text,
                    a.held
               FROM accounts a WHERE a.id > $1 ORDER BY a.id LIMIT $2",
            &[&after_id, &(limit as i64)],
        )?;
        rows.iter()
            .map(|row| {
                Ok(AccountBalance {
                    account_id: row.get(0),
                    balance: row.get::<_, String>(1).parse()?,
                    held: row.get(2),
                })
            })
            .collect()
    }
}

/// Runs `work` on the database at `url` as a target, in one transaction
/// committed only if it succeeds. An empty database is migrated first; one
/// that holds a ledger is refused before anything is written to it.
pub fn write(
    url: &PostgresUrl,
    location: &DatabaseLocation,
    work: &mut dyn FnMut(&mut dyn CopyTarget) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut client = connect(url)?;
    let has_assets: bool = client
        .query_one("SELECT to_regclass('asset_types') IS NOT NULL", &[])?
        .get(0);
    if has_assets {
        let assets: i64 = client
            .query_one("SELECT count(*) FROM asset_types", &[])?
            .get(0);
        if assets > 0 {
            return Err(holds_a_ledger(location, &format!("{assets} asset types")));
        }
    }
    migrate::migrate(url)?;
    let mut tx = client.transaction()?;
    check_current(&mut tx)?;
    // Two copies into one database take turns, and the second finds the
    // first's ledger.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('wallet.copy'))", &[])?;
    let row = tx.query_one(
        "SELECT (SELECT count(*) FROM asset_types), (SELECT count(*) FROM api_keys),
                (SELECT count(*) FROM idempotency_records)",
        &[],
    )?;
    let (assets, keys, requests): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if assets + keys + requests > 0 {
        return Err(holds_a_ledger(
            location,
            &format!("{assets} asset types, {keys} API keys, {requests} idempotency records"),
        ));
    }
    let statements = Statements {
        entry: tx.prepare(
            "INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                                         credit_account_id, amount, request_id, reference_id,
                                         note, metadata, reverses_seq, reversed_after, hold_seq,
                                         created_at, parts, paid)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2::text::uuid, $3, $4::text::uuid, $5, $6, $7, $8, $9, $10,
                     $11::text,
                     (SELECT r.seq FROM ledger_entries r WHERE r.id = $12::text::uuid),
                     $13, $14, $15, $16, $17)",
        )?,
        // With the running paid total, as a server's writer posts.
        posting: tx.prepare(super::parts::INSERT_POSTING)?,
        hold_created: tx.prepare(
            "INSERT INTO holds (seq, id, account_id, user_id, asset_type_id, amount, status,
                                captured_amount, request_id, reference_id, note, metadata,
                                expires_at, created_at, parts)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2::text::uuid, $3, $4, $5::text::uuid, $6, 'HELD', 0, $7, $8, $9,
                     $10::text, $11, $12, $13)",
        )?,
        hold_closed: tx.prepare(
            "UPDATE holds SET status = $2, captured_amount = $3, closed_at = $4
              WHERE seq = $1 AND status = 'HELD'",
        )?,
    };
    work(&mut Target {
        tx: &mut tx,
        treasuries: HashSet::new(),
        statements,
    })?;
    tx.commit()
        .with_context(|| format!("cannot commit the copy to {url}"))?;
    Ok(())
}

struct Target<'t, 'c> {
    tx: &'t mut Transaction<'c>,
    /// The Treasuries' account ids: their postings carry no balance.
    treasuries: HashSet<i64>,
    statements: Statements,
}

/// The history's statements, prepared once for the whole copy.
struct Statements {
    entry: Statement,
    posting: Statement,
    hold_created: Statement,
    hold_closed: Statement,
}

impl Target<'_, '_> {
    fn entry(&mut self, entry: &EntryCopy) -> anyhow::Result<()> {
        let parts = crate::ledger::parts::decode(&entry.parts)
            .with_context(|| format!("entry {} has unreadable parts", entry.id))?;
        self.tx.execute(
            &self.statements.entry,
            &[
                &entry.seq,
                &entry.id,
                &entry.kind,
                &entry.asset_type_id,
                &entry.debit_account_id,
                &entry.credit_account_id,
                &entry.amount,
                &entry.request_id,
                &entry.reference_id,
                &entry.note,
                &entry.metadata,
                &entry.reverses_id,
                &entry.reversed_after,
                &entry.hold_seq,
                &entry.created_at,
                &entry.parts,
                &crate::ledger::parts::paid_of(&parts),
            ],
        )?;
        for (account, delta, balance_after) in [
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
        ] {
            let balance_after =
                if self.treasuries.contains(&account) {
                    None
                } else {
                    Some(balance_after.with_context(|| {
                        format!("a posting of account {account} has no balance")
                    })?)
                };
            let paid = super::parts::paid_delta(&parts, delta);
            let written = self.tx.execute(
                &self.statements.posting,
                &[&account, &entry.seq, &delta, &balance_after, &paid],
            )?;
            if written != 1 {
                anyhow::bail!("no account {account} to post to");
            }
        }
        Ok(())
    }
}

impl CopyTarget for Target<'_, '_> {
    fn assets(&mut self, assets: &[AssetCopy]) -> anyhow::Result<()> {
        let insert = self.tx.prepare(
            "INSERT INTO asset_types (id, symbol, name, decimals, created_at)
             VALUES ($1::text::uuid, $2, $3, $4, $5)",
        )?;
        for asset in assets {
            let decimals = i16::try_from(asset.decimals)?;
            self.tx
                .execute(
                    &insert,
                    &[
                        &asset.id,
                        &asset.symbol,
                        &asset.name,
                        &decimals,
                        &asset.created_at,
                    ],
                )
                .with_context(|| format!("the copy refused asset type {}", asset.symbol))?;
        }
        Ok(())
    }

    fn accounts(&mut self, accounts: &[AccountCopy]) -> anyhow::Result<()> {
        let insert = self.tx.prepare(
            "INSERT INTO accounts (id, owner_type, owner_id, asset_type_id, created_at)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, CASE WHEN $2::text IS NULL THEN 'SYSTEM' ELSE 'USER' END, $2,
                     $3::text::uuid, $4)",
        )?;
        for account in accounts {
            self.tx
                .execute(
                    &insert,
                    &[
                        &account.id,
                        &account.user,
                        &account.asset_type_id,
                        &account.created_at,
                    ],
                )
                .with_context(|| format!("the copy refused account {}", account.id))?;
            if account.user.is_none() {
                self.treasuries.insert(account.id);
            }
        }
        Ok(())
    }

    fn keys(&mut self, keys: &[KeyCopy]) -> anyhow::Result<()> {
        let insert = self.tx.prepare(
            "INSERT INTO api_keys (id, name, secret_sha256, scopes, created_at, last_used_at,
                                   revoked_at)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )?;
        for key in keys {
            self.tx
                .execute(
                    &insert,
                    &[
                        &key.id,
                        &key.name,
                        &key.secret_sha256,
                        &key.scopes,
                        &key.created_at,
                        &key.last_used_at,
                        &key.revoked_at,
                    ],
                )
                .with_context(|| format!("the copy refused API key {}", key.name))?;
        }
        Ok(())
    }

    fn requests(&mut self, requests: &[RequestCopy]) -> anyhow::Result<()> {
        let insert = self.tx.prepare(
            "INSERT INTO idempotency_records (id, caller_id, key, request, entry_count,
                                              created_at, hold_seq, answer_state)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )?;
        for request in requests {
            let entry_count = i32::try_from(request.entry_count)?;
            self.tx
                .execute(
                    &insert,
                    &[
                        &request.id,
                        &request.caller_id,
                        &request.key,
                        &request.request,
                        &entry_count,
                        &request.created_at,
                        &request.hold_seq,
                        &request.answer_state,
                    ],
                )
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
                        .execute(
                            &self.statements.hold_created,
                            &[
                                &hold.seq,
                                &hold.id,
                                &hold.account_id,
                                &hold.user_id,
                                &hold.asset_type_id,
                                &hold.amount,
                                &hold.request_id,
                                &hold.reference_id,
                                &hold.note,
                                &hold.metadata,
                                &hold.expires_at,
                                &hold.created_at,
                                &hold.parts,
                            ],
                        )
                        .with_context(|| format!("the copy refused hold {}", hold.id))?;
                }
                Change::Rules(rules) => {
                    self.tx
                        .execute(
                            "INSERT INTO rule_changes (asset_type_id, user_id, spend_order,
                                                       max_balance, limits, changed_at, changed_by)
                             VALUES ($1::text::uuid, $2, $3, $4, $5::text::jsonb, $6, $7)",
                            &[
                                &rules.asset_type_id,
                                &rules.user_id,
                                &rules.spend_order,
                                &rules.max_balance,
                                &rules.limits,
                                &rules.changed_at,
                                &rules.changed_by,
                            ],
                        )
                        .context("the copy refused a change of rules")?;
                }
                Change::HoldClosed(hold) => {
                    let closed = self
                        .tx
                        .execute(
                            &self.statements.hold_closed,
                            &[
                                &hold.seq,
                                &hold.status,
                                &hold.captured_amount,
                                &hold.closed_at,
                            ],
                        )
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
        for (table, column) in [
            ("accounts", "id"),
            ("api_keys", "id"),
            ("idempotency_records", "id"),
            ("holds", "seq"),
            ("ledger_entries", "seq"),
        ] {
            self.tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                                   coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
                ),
                &[],
            )?;
        }
        Ok(())
    }
}
