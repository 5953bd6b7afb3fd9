//! `wallet verify` on PostgreSQL: feeds the ledger to `ledger::audit` in
//! batches, inside one repeatable-read transaction, so the audit sees one
//! committed state while every instance goes on writing. Beside what the
//! SQLite audit checks, it checks what this backend keeps apart from the
//! postings: each user's balance, held amount and active holds on its
//! account row, and each Treasury's balance as its asset's totals; and the
//! paid and free parts: each entry's parts, each user's paid part replayed
//! from them (against every posting's running total and the account row),
//! what its holds set aside of it, and each asset's paid total.

use std::collections::{BTreeMap, HashMap};

use postgres::{IsolationLevel, Row};

use super::migrate::check_current;
use super::{connect, PostgresUrl};
use crate::ledger::audit::{
    AuditAccount, AuditCapture, AuditEntry, AuditEvents, AuditHeld, AuditPosting, AuditReport,
    AuditRequest, AuditReversal, AuditSupply, AuditWindows, Auditor,
};
use crate::ledger::parts;
use crate::limits::AUDIT_BATCH_ENTRIES;

/// What each entry moves of its asset's supply, as the schema's trigger
/// counts it (`ledger_entries_count_in_the_totals`), and whether it moves
/// any figure (then it has one row in `supply_history`).
const SUPPLY_MOVES: &str = "SELECT e.seq, e.asset_type_id, e.created_at, m.*,
           m.treasury <> 0 OR m.topup <> 0 OR m.bonus <> 0 OR m.spent <> 0
           OR m.reversed <> 0 AS moves
      FROM ledger_entries e
      LEFT JOIN accounts t ON t.asset_type_id = e.asset_type_id AND t.owner_type = 'SYSTEM'
      CROSS JOIN LATERAL (
           SELECT CASE WHEN e.credit_account_id = t.id THEN e.amount::numeric
                       WHEN e.debit_account_id = t.id THEN -e.amount::numeric
                       ELSE 0 END AS treasury,
                  CASE WHEN e.credit_account_id = t.id THEN -e.paid::numeric
                       WHEN e.debit_account_id = t.id THEN e.paid::numeric
                       ELSE 0 END AS paid,
                  CASE WHEN e.kind = 'TOPUP' THEN e.amount::numeric ELSE 0 END AS topup,
                  CASE WHEN e.kind = 'BONUS' THEN e.amount::numeric ELSE 0 END AS bonus,
                  CASE WHEN e.kind = 'SPEND' THEN e.amount::numeric ELSE 0 END AS spent,
                  CASE WHEN e.kind = 'REVERSAL' THEN e.amount::numeric ELSE 0 END AS reversed
      ) m";

fn numeric(row: &Row, index: usize) -> anyhow::Result<i128> {
    let text: String = row.get(index);
    Ok(text.parse()?)
}

pub fn audit(url: &PostgresUrl, checked: &mut dyn FnMut(u64)) -> anyhow::Result<AuditReport> {
    let mut client = connect(url)?;
    check_current(&mut client)?;
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let asset_symbols: BTreeMap<String, String> = tx
        .query("SELECT id::text, symbol FROM asset_types", &[])?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let account_rows = tx.query(
        "SELECT id, owner_type = 'USER', asset_type_id::text, balance, paid, held_paid
           FROM accounts",
        &[],
    )?;
    let accounts: Vec<AuditAccount> = account_rows
        .iter()
        .map(|row| AuditAccount {
            id: row.get(0),
            is_user: row.get(1),
            asset_type_id: row.get(2),
        })
        .collect();
    let mut auditor = Auditor::new(accounts, asset_symbols);
    let batch = tx.prepare(
        "SELECT e.seq, e.kind, e.asset_type_id::text, e.amount, e.debit_account_id,
                e.credit_account_id, d.delta, d.balance_after, c.delta, c.balance_after,
                e.parts, d.paid_after, c.paid_after, e.paid
           FROM ledger_entries e
           LEFT JOIN postings d ON d.account_id = e.debit_account_id AND d.entry_seq = e.seq
           LEFT JOIN postings c ON c.account_id = e.credit_account_id AND c.entry_seq = e.seq
          WHERE e.seq > $1
          ORDER BY e.seq
          LIMIT $2",
    )?;
    let mut after_seq = 0_i64;
    let mut entries_checked = 0_u64;
    loop {
        let rows = tx.query(&batch, &[&after_seq, &(AUDIT_BATCH_ENTRIES as i64)])?;
        let Some(last) = rows.last() else { break };
        after_seq = last.get(0);
        for row in &rows {
            // Columns: delta and balance at 6 and 7 (debit), 8 and 9
            // (credit); the running paid totals at 11 and 12.
            let posting = |delta: usize, paid_after: usize| {
                row.get::<_, Option<i64>>(delta)
                    .map(|delta_value| AuditPosting {
                        delta: delta_value,
                        balance_after: row.get(delta + 1),
                        paid_after: row.get(paid_after),
                    })
            };
            auditor.check(&AuditEntry {
                seq: row.get(0),
                kind: row.get(1),
                asset_type_id: row.get(2),
                amount: row.get(3),
                debit_account: row.get(4),
                credit_account: row.get(5),
                debit_posting: posting(6, 11),
                credit_posting: posting(8, 12),
                parts: row.get(10),
                stored_paid: Some(row.get(13)),
            });
        }
        entries_checked += rows.len() as u64;
        checked(entries_checked);
    }
    // What each account row stores, against its postings: a user's balance
    // and paid part; a Treasury keeps none on its row.
    for row in &account_rows {
        let is_user: bool = row.get(1);
        let paid: i64 = row.get(4);
        if is_user {
            auditor.check_stored_balance(row.get(0), i128::from(row.get::<_, i64>(3)));
            auditor.check_stored_paid(row.get(0), paid);
        } else if paid != 0 {
            auditor.check_stored_paid(row.get(0), paid);
        }
    }
    // Each Treasury's balance: the sum of its asset's totals.
    for row in tx.query(
        "SELECT a.id, sum(s.treasury)::text FROM accounts a
           JOIN asset_totals s ON s.asset_type_id = a.asset_type_id
          WHERE a.owner_type = 'SYSTEM' GROUP BY a.id",
        &[],
    )? {
        auditor.check_stored_balance(row.get(0), numeric(&row, 1)?);
    }
    for row in tx.query(
        "SELECT r.seq, o.kind,
                coalesce(o.debit_account_id = r.credit_account_id
                         AND o.credit_account_id = r.debit_account_id
                         AND o.asset_type_id = r.asset_type_id, false),
                r.reversed_after,
                (sum(r.amount) OVER (PARTITION BY r.reverses_seq ORDER BY r.seq))::bigint,
                o.amount
           FROM ledger_entries r
           LEFT JOIN ledger_entries o ON o.seq = r.reverses_seq
          WHERE r.kind = 'REVERSAL' OR r.reverses_seq IS NOT NULL
          ORDER BY r.seq",
        &[],
    )? {
        auditor.check_reversal(&AuditReversal {
            seq: row.get(0),
            original_kind: row.get(1),
            same_accounts_reversed: row.get(2),
            reversed_after: row.get(3),
            reversed_so_far: row.get(4),
            original_amount: row.get(5),
        });
    }
    for row in tx.query(
        "SELECT r.id, r.entry_count::bigint, count(e.seq)
           FROM idempotency_records r
           LEFT JOIN ledger_entries e ON e.request_id = r.id
          GROUP BY r.id",
        &[],
    )? {
        auditor.check_request(&AuditRequest {
            id: row.get(0),
            entry_count: row.get(1),
            entries_found: row.get(2),
        });
    }
    // Each user account's hold figures, as stored on its row and as its
    // holds give them; a balance read answers the stored figure less the
    // holds due (the read path's rule).
    let now_ms = crate::clock::now_ms();
    let mut held_paid_by_holds: HashMap<i64, i64> = HashMap::new();
    for row in tx.query(
        "SELECT account_id, parts FROM holds WHERE status = 'HELD'",
        &[],
    )? {
        let text: Option<String> = row.get(1);
        // A HELD hold with unreadable parts sets aside none the audit can
        // count: its account's stored figure then disagrees, and is named.
        let paid = text
            .as_deref()
            .and_then(parts::decode)
            .map_or(-1, |parts| parts::paid_of(&parts));
        *held_paid_by_holds.entry(row.get(0)).or_insert(0) += paid;
    }
    for row in tx.query(
        "SELECT a.id, a.held, a.active_holds::bigint, a.held_paid,
                coalesce(sum(h.amount) FILTER (WHERE h.status = 'HELD'), 0)::bigint,
                count(h.seq) FILTER (WHERE h.status = 'HELD'),
                coalesce(sum(h.amount) FILTER (WHERE h.status = 'HELD' AND h.expires_at > $1), 0)::bigint
           FROM accounts a LEFT JOIN holds h ON h.account_id = a.id
          WHERE a.owner_type = 'USER' AND (a.held <> 0 OR a.active_holds <> 0 OR h.seq IS NOT NULL)
          GROUP BY a.id, a.held_paid",
        &[&now_ms],
    )? {
        let account: i64 = row.get(0);
        let stored_held: i64 = row.get(1);
        let due: i64 = row.get::<_, i64>(4) - row.get::<_, i64>(6);
        auditor.check_held(&AuditHeld {
            account,
            stored_held,
            stored_active: row.get(2),
            held_by_holds: row.get(4),
            active_by_holds: row.get(5),
            held_unexpired: row.get(6),
            held_as_read: stored_held - due,
            stored_held_paid: row.get(3),
            held_paid_by_holds: held_paid_by_holds.get(&account).copied().unwrap_or(0),
        });
    }
    for row in tx.query(
        "SELECT h.seq, h.status, h.captured_amount, count(e.seq), max(e.amount),
                coalesce(bool_or(e.debit_account_id = h.account_id), false)
           FROM holds h LEFT JOIN ledger_entries e ON e.hold_seq = h.seq
          WHERE h.status = 'CAPTURED' OR e.seq IS NOT NULL
          GROUP BY h.seq",
        &[],
    )? {
        auditor.check_capture(&AuditCapture {
            hold: row.get(0),
            status: row.get(1),
            captured_amount: row.get(2),
            entries: row.get(3),
            entry_amount: row.get(4),
            from_hold_account: row.get(5),
        });
    }
    let mut supplies = Vec::new();
    for row in tx.query(
        "SELECT asset_type_id::text, sum(topup)::text, sum(bonus)::text, sum(spent)::text,
                sum(reversed)::text, sum(held)::text, sum(holders)::bigint, sum(paid)::text
           FROM asset_totals GROUP BY asset_type_id",
        &[],
    )? {
        let unsigned = |value: i128| u128::try_from(value).unwrap_or(0);
        supplies.push(AuditSupply {
            asset_type_id: row.get(0),
            topup: unsigned(numeric(&row, 1)?),
            bonus: unsigned(numeric(&row, 2)?),
            spent: unsigned(numeric(&row, 3)?),
            reversed: unsigned(numeric(&row, 4)?),
            held: i64::try_from(numeric(&row, 5)?)?,
            holders: row.get(6),
            paid: numeric(&row, 7)?,
        });
    }
    auditor.check_supply(&supplies);
    let mut count = |sql: &str| -> anyhow::Result<i64> { Ok(tx.query_one(sql, &[])?.get(0)) };
    let events = AuditEvents {
        entry_rows: count("SELECT count(*) FROM events WHERE entry_seq IS NOT NULL")?,
        entries: count("SELECT count(*) FROM ledger_entries")?,
        unmatched_entry_rows: count(
            "SELECT count(*) FROM events v LEFT JOIN ledger_entries e ON e.seq = v.entry_seq
              WHERE v.entry_seq IS NOT NULL AND e.seq IS NULL",
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
                AND (h.seq IS NULL OR (v.type <> 'hold.created'
                                       AND v.type <> 'hold.' || lower(h.status)))",
        )?,
        // Entry numbers are not commit order across users here; within one
        // user account they are, and the feed must agree with them there.
        out_of_order: count(
            "SELECT count(*) FROM
               (SELECT p.entry_seq,
                       lag(p.entry_seq) OVER (PARTITION BY p.account_id ORDER BY v.feed_seq) AS before
                  FROM postings p
                  JOIN events v ON v.entry_seq = p.entry_seq
                  JOIN accounts a ON a.id = p.account_id AND a.owner_type = 'USER') AS s
              WHERE entry_seq <= before",
        )?,
        rule_change_rows: count("SELECT count(*) FROM events WHERE rule_change_seq IS NOT NULL")?,
        rule_changes: count("SELECT count(*) FROM rule_changes")?,
        unmatched_rule_rows: count(
            "SELECT count(*) FROM events v LEFT JOIN rule_changes c ON c.seq = v.rule_change_seq
              WHERE v.rule_change_seq IS NOT NULL
                AND (c.seq IS NULL OR v.type IS DISTINCT FROM
                     CASE WHEN c.user_id IS NULL THEN 'asset.rules_changed'
                          ELSE 'wallet.rules_changed' END)",
        )?,
    };
    auditor.check_events(&events);
    // The caps' running totals, one row per entry a cap may count; and
    // the supply's history, one row per entry that moves a figure of the
    // supply (`004_supply_history.sql`).
    let windows = AuditWindows {
        rows: count(
            "SELECT (SELECT count(*) FROM window_totals) + (SELECT count(*) FROM supply_history)",
        )?,
        counted_entries: count(&format!(
            "SELECT (SELECT count(*) FROM ledger_entries
                      WHERE kind IN ('TOPUP', 'BONUS', 'SPEND', 'TRANSFER'))
                  + (SELECT count(*) FROM ({SUPPLY_MOVES}) m WHERE m.moves)"
        ))?,
        mismatched: count(&format!(
            "SELECT count(*) FROM (
                 SELECT h.*, m.seq AS found, m.asset_type_id AS entry_asset,
                        m.created_at AS entry_at, m.moves,
                        row_number() OVER w AS counted_n,
                        lag(h.created_at) OVER w AS before_at,
                        sum(m.treasury) OVER w AS r_treasury, sum(m.paid) OVER w AS r_paid,
                        sum(m.topup) OVER w AS r_topup, sum(m.bonus) OVER w AS r_bonus,
                        sum(m.spent) OVER w AS r_spent, sum(m.reversed) OVER w AS r_reversed
                   FROM supply_history h LEFT JOIN ({SUPPLY_MOVES}) m ON m.seq = h.entry_seq
                 WINDOW w AS (PARTITION BY h.asset_type_id, h.shard ORDER BY h.n)) s
              WHERE found IS NULL OR NOT moves OR entry_asset <> asset_type_id
                 OR created_at < entry_at OR created_at < before_at OR n <> counted_n
                 OR (treasury, paid, topup, bonus, spent, reversed) IS DISTINCT FROM
                    (r_treasury, r_paid, r_topup, r_bonus, r_spent, r_reversed)"
        ))? + count("SELECT count(*) - count(DISTINCT entry_seq) FROM supply_history")?
            // Each shard's newest row: its figures now.
            + count(
                "SELECT count(*) FROM asset_totals s
                   LEFT JOIN LATERAL (
                        SELECT * FROM supply_history h
                         WHERE h.asset_type_id = s.asset_type_id AND h.shard = s.shard
                         ORDER BY h.created_at DESC, h.n DESC LIMIT 1) h ON true
                  WHERE s.history_rows <> coalesce(h.n, 0)
                     OR s.history_at IS DISTINCT FROM h.created_at
                     OR (s.treasury, s.paid, s.topup, s.bonus, s.spent, s.reversed)
                        IS DISTINCT FROM
                        (coalesce(h.treasury, 0), coalesce(h.paid, 0), coalesce(h.topup, 0),
                         coalesce(h.bonus, 0), coalesce(h.spent, 0), coalesce(h.reversed, 0))",
            )?
            + count(
            "SELECT count(*) FROM (
                 SELECT w.total_high, w.total_low, w.kind, w.account_id, w.created_at,
                        e.kind AS entry_kind, e.created_at AS entry_created_at,
                        CASE WHEN e.kind IN ('TOPUP', 'BONUS') THEN e.credit_account_id
                             ELSE e.debit_account_id END AS entry_account,
                        sum(e.amount::numeric) OVER (PARTITION BY w.account_id, w.kind
                                                     ORDER BY w.entry_seq) AS running
                   FROM window_totals w LEFT JOIN ledger_entries e ON e.seq = w.entry_seq) s
              WHERE entry_kind IS DISTINCT FROM kind OR entry_account IS DISTINCT FROM account_id
                 OR entry_created_at IS NULL OR created_at < entry_created_at
                 OR running IS DISTINCT FROM total_high::numeric * 9007199254740992 + total_low",
        )?,
    };
    auditor.check_windows(&windows);
    let postings_stored = count("SELECT count(*) FROM postings")?;
    tx.commit()?;
    Ok(auditor.finish(u64::try_from(postings_stored).unwrap_or(0)))
}
