//! Feeds the ledger to `ledger::audit`, in batches, inside one read
//! transaction so the audit sees one committed state even while the service
//! writes.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::ledger::audit::{
    AuditAccount, AuditCapture, AuditEntry, AuditEvents, AuditHeld, AuditPosting, AuditReport,
    AuditRequest, AuditReversal, AuditSupply, AuditWindows, Auditor,
};
use crate::limits::AUDIT_BATCH_ENTRIES;

/// The audit alone, for tests that check a file they wrote.
#[cfg(test)]
pub fn audit(conn: &mut Connection) -> rusqlite::Result<AuditReport> {
    audit_reporting(conn, &mut |_| {})
}

/// As `audit`, telling `checked` how many entries it has checked so far
/// after each batch of them.
pub fn audit_reporting(
    conn: &mut Connection,
    checked: &mut dyn FnMut(u64),
) -> rusqlite::Result<AuditReport> {
    let tx = conn.transaction()?;
    let asset_symbols: BTreeMap<String, String> = tx
        .prepare("SELECT id, symbol FROM asset_types")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let accounts: Vec<AuditAccount> = tx
        .prepare("SELECT id, owner_type = 'USER', asset_type_id FROM accounts")?
        .query_map([], |row| {
            Ok(AuditAccount {
                id: row.get(0)?,
                is_user: row.get(1)?,
                asset_type_id: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut auditor = Auditor::new(accounts, asset_symbols);
    // Each entry with the postings stored for its debit and its credit
    // account, found through the postings primary key.
    let mut statement = tx.prepare(
        "SELECT e.seq, e.kind, e.asset_type_id, e.amount, e.debit_account_id, e.credit_account_id,
                d.delta, d.balance_after, c.delta, c.balance_after, e.parts, d.paid_after,
                c.paid_after
           FROM ledger_entries e
           LEFT JOIN postings d ON d.account_id = e.debit_account_id AND d.entry_seq = e.seq
           LEFT JOIN postings c ON c.account_id = e.credit_account_id AND c.entry_seq = e.seq
          WHERE e.seq > ?1
          ORDER BY e.seq
          LIMIT ?2",
    )?;
    let mut after_seq = 0_i64;
    let mut entries_checked = 0_u64;
    loop {
        let batch: Vec<AuditEntry> = statement
            .query_map([after_seq, AUDIT_BATCH_ENTRIES as i64], |row| {
                let posting = |delta: Option<i64>, balance_after: Option<i64>, paid_after| {
                    Some(AuditPosting {
                        delta: delta?,
                        balance_after: Some(balance_after?),
                        paid_after,
                    })
                };
                Ok(AuditEntry {
                    seq: row.get(0)?,
                    kind: row.get(1)?,
                    asset_type_id: row.get(2)?,
                    amount: row.get(3)?,
                    debit_account: row.get(4)?,
                    credit_account: row.get(5)?,
                    debit_posting: posting(row.get(6)?, row.get(7)?, row.get(11)?),
                    credit_posting: posting(row.get(8)?, row.get(9)?, row.get(12)?),
                    parts: row.get(10)?,
                    stored_paid: None,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let Some(last) = batch.last() else { break };
        after_seq = last.seq;
        for entry in &batch {
            auditor.check(entry);
        }
        entries_checked += batch.len() as u64;
        checked(entries_checked);
    }
    drop(statement);
    // Every reversal against its original, with the running total of the
    // original's reversals up to it (a window: one pass, in seq order).
    {
        let mut reversals = tx.prepare(
            "SELECT r.seq, o.kind,
                    coalesce(o.debit_account_id = r.credit_account_id
                             AND o.credit_account_id = r.debit_account_id
                             AND o.asset_type_id = r.asset_type_id, 0),
                    r.reversed_after,
                    sum(r.amount) OVER (PARTITION BY r.reverses_seq ORDER BY r.seq),
                    o.amount
               FROM ledger_entries r
               LEFT JOIN ledger_entries o ON o.seq = r.reverses_seq
              WHERE r.kind = 'REVERSAL' OR r.reverses_seq IS NOT NULL
              ORDER BY r.seq",
        )?;
        let rows = reversals.query_map([], |row| {
            Ok(AuditReversal {
                seq: row.get(0)?,
                original_kind: row.get(1)?,
                same_accounts_reversed: row.get(2)?,
                reversed_after: row.get(3)?,
                reversed_so_far: row.get(4)?,
                original_amount: row.get(5)?,
            })
        })?;
        for row in rows {
            auditor.check_reversal(&row?);
        }
    }
    // Every idempotency record against the entries that name it, and every
    // entry against its record.
    {
        let mut requests = tx.prepare(
            "SELECT r.id, r.entry_count, count(e.seq)
               FROM idempotency_records r
               LEFT JOIN ledger_entries e ON e.request_id = r.id
              GROUP BY r.id
             UNION ALL
             SELECT e.request_id, NULL, count(*)
               FROM ledger_entries e
               LEFT JOIN idempotency_records r ON r.id = e.request_id
              WHERE r.id IS NULL
              GROUP BY e.request_id",
        )?;
        let rows = requests.query_map([], |row| {
            Ok(AuditRequest {
                id: row.get(0)?,
                entry_count: row.get(1)?,
                entries_found: row.get(2)?,
            })
        })?;
        for row in rows {
            auditor.check_request(&row?);
        }
    }
    // Every account with holds or hold totals, its totals three ways.
    {
        let now_ms = crate::clock::now_ms();
        let mut statement = tx.prepare(
            "SELECT a.id, coalesce(ah.held, 0), coalesce(ah.active, 0),
                    coalesce((SELECT sum(h.amount) FROM holds h
                               WHERE h.account_id = a.id AND h.status = 'HELD'), 0),
                    (SELECT count(*) FROM holds h WHERE h.account_id = a.id AND h.status = 'HELD'),
                    coalesce((SELECT sum(h.amount) FROM holds h
                               WHERE h.account_id = a.id AND h.status = 'HELD'
                                 AND h.expires_at > ?1), 0),
                    coalesce(ah.held_paid, 0),
                    coalesce((SELECT sum(json_extract(p.value, '$.amount'))
                                FROM holds h, json_each(h.parts) p
                               WHERE h.account_id = a.id AND h.status = 'HELD'
                                 AND json_extract(p.value, '$.kind') = 'PAID'), 0)
               FROM accounts a LEFT JOIN account_holds ah ON ah.account_id = a.id
              WHERE ah.account_id IS NOT NULL
                 OR EXISTS (SELECT 1 FROM holds h WHERE h.account_id = a.id)",
        )?;
        let rows: Vec<AuditHeld> = statement
            .query_map([now_ms], |row| {
                Ok(AuditHeld {
                    account: row.get(0)?,
                    stored_held: row.get(1)?,
                    stored_active: row.get(2)?,
                    held_by_holds: row.get(3)?,
                    active_by_holds: row.get(4)?,
                    held_unexpired: row.get(5)?,
                    held_as_read: 0,
                    stored_held_paid: row.get(6)?,
                    held_paid_by_holds: row.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        for mut row in rows {
            // The read path's own figure, by the read path's own rule (`unexpired`).
            row.held_as_read = super::holds::held_now(&tx, row.account, now_ms)?;
            auditor.check_held(&row);
        }
    }
    // Every captured hold, and every hold an entry names, with those entries.
    {
        let mut statement = tx.prepare(
            "SELECT h.seq, h.status, h.captured_amount, count(e.seq), max(e.amount),
                    coalesce(max(e.debit_account_id = h.account_id), 0)
               FROM holds h LEFT JOIN ledger_entries e ON e.hold_seq = h.seq
              WHERE h.status = 'CAPTURED' OR e.seq IS NOT NULL
              GROUP BY h.seq",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(AuditCapture {
                hold: row.get(0)?,
                status: row.get(1)?,
                captured_amount: row.get(2)?,
                entries: row.get(3)?,
                entry_amount: row.get(4)?,
                from_hold_account: row.get(5)?,
            })
        })?;
        for row in rows {
            auditor.check_capture(&row?);
        }
    }
    // Each asset's supply totals, stored in two parts (see 005_watch.sql).
    {
        let total =
            |high: i64, low: i64| (high.max(0) as u128) * (1u128 << 53) + low.max(0) as u128;
        let supplies: Vec<AuditSupply> = tx
            .prepare(
                "SELECT s.asset_type_id, s.topup_high, s.topup_low, s.bonus_high, s.bonus_low,
                        s.spent_high, s.spent_low, s.reversed_high, s.reversed_low, s.held,
                        s.holders,
                        coalesce((SELECT p.paid_after FROM postings p WHERE p.account_id = a.id
                                   ORDER BY p.entry_seq DESC LIMIT 1), 0)
                   FROM asset_supply s
                   LEFT JOIN accounts a ON a.asset_type_id = s.asset_type_id
                                       AND a.owner_type = 'SYSTEM'",
            )?
            .query_map([], |row| {
                // What a supply read answers: the Treasury's running paid
                // total, negated.
                let treasury_paid: i64 = row.get(11)?;
                Ok(AuditSupply {
                    asset_type_id: row.get(0)?,
                    topup: total(row.get(1)?, row.get(2)?),
                    bonus: total(row.get(3)?, row.get(4)?),
                    spent: total(row.get(5)?, row.get(6)?),
                    reversed: total(row.get(7)?, row.get(8)?),
                    held: row.get(9)?,
                    holders: row.get(10)?,
                    paid: -i128::from(treasury_paid),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        auditor.check_supply(&supplies);
    }
    // The event feed against the postings and holds it tells of.
    {
        let count = |sql: &str| tx.query_row(sql, [], |row| row.get::<_, i64>(0));
        let events = AuditEvents {
            entry_rows: count("SELECT count(*) FROM events WHERE entry_seq IS NOT NULL")?,
            entries: count("SELECT count(*) FROM ledger_entries")?,
            unmatched_entry_rows: count(
                "SELECT count(*) FROM events v LEFT JOIN ledger_entries e ON e.seq = v.entry_seq
                  WHERE v.entry_seq IS NOT NULL
                    AND (e.seq IS NULL OR v.hold_seq IS NOT NULL OR v.type IS NOT NULL)",
            )?,
            hold_created_events: count("SELECT count(*) FROM events WHERE type = 'hold.created'")?,
            holds: count("SELECT count(*) FROM holds")?,
            closing_events: count(
                "SELECT count(*) FROM events
                  WHERE type IN ('hold.captured', 'hold.voided', 'hold.expired')",
            )?,
            closed_holds: count("SELECT count(*) FROM holds WHERE status <> 'HELD'")?,
            unmatched_hold_events: count(
                "SELECT count(*) FROM events v LEFT JOIN holds h ON h.seq = v.hold_seq
                  WHERE v.entry_seq IS NULL AND v.rule_change_seq IS NULL
                    AND (h.seq IS NULL OR v.type IS NULL
                         OR (v.type <> 'hold.created' AND v.type <> 'hold.' || lower(h.status)))",
            )?,
            out_of_order: count(
                "SELECT count(*) FROM
                   (SELECT entry_seq, lag(entry_seq) OVER (ORDER BY seq) AS before
                      FROM events WHERE entry_seq IS NOT NULL)
                  WHERE entry_seq <= before",
            )?,
            rule_change_rows: count("SELECT count(*) FROM events WHERE rule_change_seq IS NOT NULL")?,
            rule_changes: count("SELECT count(*) FROM rule_changes")?,
            unmatched_rule_rows: count(
                "SELECT count(*) FROM events v LEFT JOIN rule_changes c ON c.seq = v.rule_change_seq
                  WHERE v.rule_change_seq IS NOT NULL
                    AND (c.seq IS NULL OR v.entry_seq IS NOT NULL OR v.hold_seq IS NOT NULL
                         OR v.type IS NOT CASE WHEN c.user_id IS NULL THEN 'asset.rules_changed'
                                               ELSE 'wallet.rules_changed' END)",
            )?,
        };
        auditor.check_events(&events);
        // The caps' running totals on the users' postings, summed again
        // from the entries in two parts (amount = a * 2^26 + b) so no sum
        // leaves 64 bits.
        let windows = AuditWindows {
            // Postings that carry every total: a user's the caps', a
            // Treasury's the supply's back in time; and reversals that
            // carry their asset's REVERSAL total.
            rows: count(
                "SELECT (SELECT count(*) FROM postings
                          WHERE topup_low IS NOT NULL AND bonus_low IS NOT NULL
                            AND spend_low IS NOT NULL AND transfer_low IS NOT NULL)
                      + (SELECT count(*) FROM supply_reversals)",
            )?,
            counted_entries: count(
                "SELECT (SELECT count(*) FROM postings)
                      + (SELECT count(*) FROM ledger_entries WHERE kind = 'REVERSAL')",
            )?,
            mismatched: count(
                "WITH counted AS (
                     SELECT p.*,
                            CASE WHEN e.kind = 'TOPUP' AND (e.credit_account_id = p.account_id
                                                            OR a.owner_type = 'SYSTEM')
                                 THEN e.amount ELSE 0 END AS topup,
                            CASE WHEN e.kind = 'BONUS' AND (e.credit_account_id = p.account_id
                                                            OR a.owner_type = 'SYSTEM')
                                 THEN e.amount ELSE 0 END AS bonus,
                            CASE WHEN e.kind = 'SPEND' AND (e.debit_account_id = p.account_id
                                                            OR a.owner_type = 'SYSTEM')
                                 THEN e.amount ELSE 0 END AS spend,
                            CASE WHEN e.kind = 'TRANSFER' AND e.debit_account_id = p.account_id
                                 THEN e.amount ELSE 0 END AS transfer
                       FROM postings p
                       JOIN ledger_entries e ON e.seq = p.entry_seq
                       JOIN accounts a ON a.id = p.account_id
                 ), running AS (
                     SELECT *,
                            sum(topup / 67108864) OVER w AS ta, sum(topup % 67108864) OVER w AS tb,
                            sum(bonus / 67108864) OVER w AS ba, sum(bonus % 67108864) OVER w AS bb,
                            sum(spend / 67108864) OVER w AS sa, sum(spend % 67108864) OVER w AS sb,
                            sum(transfer / 67108864) OVER w AS xa,
                            sum(transfer % 67108864) OVER w AS xb
                       FROM counted
                     WINDOW w AS (PARTITION BY account_id ORDER BY entry_seq)
                 )
                 SELECT count(*) FROM running
                  WHERE topup_high IS NOT (ta + tb / 67108864) / 134217728
                     OR topup_low IS NOT ((ta + tb / 67108864) % 134217728) * 67108864 + tb % 67108864
                     OR bonus_high IS NOT (ba + bb / 67108864) / 134217728
                     OR bonus_low IS NOT ((ba + bb / 67108864) % 134217728) * 67108864 + bb % 67108864
                     OR spend_high IS NOT (sa + sb / 67108864) / 134217728
                     OR spend_low IS NOT ((sa + sb / 67108864) % 134217728) * 67108864 + sb % 67108864
                     OR transfer_high IS NOT (xa + xb / 67108864) / 134217728
                     OR transfer_low IS NOT ((xa + xb / 67108864) % 134217728) * 67108864 + xb % 67108864",
            )? + count(
                "WITH running AS (
                     SELECT r.asset_type_id, r.entry_seq, r.created_at, r.reversed_high,
                            r.reversed_low, e.seq, e.created_at AS entry_at,
                            sum(e.amount / 67108864) OVER w AS ra,
                            sum(e.amount % 67108864) OVER w AS rb
                       FROM ledger_entries e
                       LEFT JOIN supply_reversals r
                              ON r.asset_type_id = e.asset_type_id AND r.entry_seq = e.seq
                      WHERE e.kind = 'REVERSAL'
                     WINDOW w AS (PARTITION BY e.asset_type_id ORDER BY e.seq)
                 )
                 SELECT count(*) FROM running
                  WHERE entry_seq IS NULL OR created_at IS NOT entry_at
                     OR reversed_high IS NOT (ra + rb / 67108864) / 134217728
                     OR reversed_low IS NOT ((ra + rb / 67108864) % 134217728) * 67108864
                                            + rb % 67108864",
            )?,
        };
        auditor.check_windows(&windows);
    }
    let postings_stored: i64 =
        tx.query_row("SELECT count(*) FROM postings", [], |row| row.get(0))?;
    tx.commit()?;
    Ok(auditor.finish(postings_stored as u64))
}
