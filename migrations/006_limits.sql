-- Schema version 6: rules on value (API.md, Limits). Applied after version
-- 5 by `migrate`, in the same single IMMEDIATE transaction.
--
--   * `rule_changes`: every change of an asset's rules or of a user's own
--     values, append-only, with who made it and when. Its triggers keep the
--     rules in force (`asset_rules`, `user_rules`) and tell the event feed,
--     so no writer can change one without the others.
--   * `window_totals`: per user account and entry type that a cap may
--     count, the running total of the amounts counted, one row per entry.
--     A window's sum is the newest total minus the total as it stood at the
--     window's start: two index descents, however long the history.

CREATE TABLE rule_changes (
    seq            INTEGER PRIMARY KEY,
    asset_type_id  TEXT    NOT NULL REFERENCES asset_types (id),
    -- NULL: the asset's rules; otherwise that user's own values.
    user_id        TEXT    CHECK (user_id IS NULL OR length(user_id) BETWEEN 1 AND 128),
    -- The rules as the change leaves them. An asset's always have a spend
    -- order and limits; a user's override has no spend order, and a NULL
    -- max_balance or limits there means "the asset's".
    spend_order    TEXT    CHECK (spend_order IN ('free-first', 'paid-first')),
    max_balance    INTEGER CHECK (max_balance BETWEEN 0 AND 9007199254740991),
    limits         TEXT    CHECK (limits IS NULL OR (json_valid(limits)
                                  AND json_type(limits) = 'array'
                                  AND json_array_length(limits) <= 8)),
    changed_at     INTEGER NOT NULL,
    -- The API key's id, or 0: the command line, or a service without keys.
    changed_by     INTEGER NOT NULL CHECK (changed_by >= 0),
    CHECK ((user_id IS NULL) = (spend_order IS NOT NULL)),
    CHECK (user_id IS NOT NULL OR limits IS NOT NULL)
) STRICT;

CREATE TRIGGER rule_changes_refuse_update BEFORE UPDATE ON rule_changes
BEGIN SELECT RAISE(ABORT, 'rule_changes is append-only'); END;
CREATE TRIGGER rule_changes_refuse_delete BEFORE DELETE ON rule_changes
BEGIN SELECT RAISE(ABORT, 'rule_changes is append-only'); END;

CREATE TABLE asset_rules (
    asset_type_id  TEXT    PRIMARY KEY REFERENCES asset_types (id),
    spend_order    TEXT    NOT NULL,
    max_balance    INTEGER,
    limits         TEXT    NOT NULL,
    updated_at     INTEGER NOT NULL,
    updated_by     INTEGER NOT NULL
) STRICT;

CREATE TABLE user_rules (
    user_id        TEXT    NOT NULL,
    asset_type_id  TEXT    NOT NULL REFERENCES asset_types (id),
    max_balance    INTEGER,
    limits         TEXT,
    updated_at     INTEGER NOT NULL,
    updated_by     INTEGER NOT NULL,
    PRIMARY KEY (user_id, asset_type_id),
    CHECK (max_balance IS NOT NULL OR limits IS NOT NULL)
) STRICT, WITHOUT ROWID;

-- A change's row is the rules in force from then on, and one event.
ALTER TABLE events ADD COLUMN rule_change_seq INTEGER REFERENCES rule_changes (seq);

CREATE TRIGGER rule_changes_take_force AFTER INSERT ON rule_changes
BEGIN
    INSERT INTO asset_rules (asset_type_id, spend_order, max_balance, limits, updated_at, updated_by)
    SELECT NEW.asset_type_id, NEW.spend_order, NEW.max_balance, NEW.limits,
           NEW.changed_at, NEW.changed_by
     WHERE NEW.user_id IS NULL
    ON CONFLICT (asset_type_id) DO UPDATE SET
        spend_order = excluded.spend_order, max_balance = excluded.max_balance,
        limits = excluded.limits, updated_at = excluded.updated_at,
        updated_by = excluded.updated_by;
    DELETE FROM user_rules
     WHERE NEW.user_id IS NOT NULL AND NEW.max_balance IS NULL AND NEW.limits IS NULL
       AND user_id = NEW.user_id AND asset_type_id = NEW.asset_type_id;
    INSERT INTO user_rules (user_id, asset_type_id, max_balance, limits, updated_at, updated_by)
    SELECT NEW.user_id, NEW.asset_type_id, NEW.max_balance, NEW.limits,
           NEW.changed_at, NEW.changed_by
     WHERE NEW.user_id IS NOT NULL AND (NEW.max_balance IS NOT NULL OR NEW.limits IS NOT NULL)
    ON CONFLICT (user_id, asset_type_id) DO UPDATE SET
        max_balance = excluded.max_balance, limits = excluded.limits,
        updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    INSERT INTO events (rule_change_seq, type)
    VALUES (NEW.seq, CASE WHEN NEW.user_id IS NULL THEN 'asset.rules_changed'
                          ELSE 'wallet.rules_changed' END);
END;

-- Running totals per (user account, type counted). A total can outgrow 64
-- bits over an account's life (amounts are up to 2^53 - 1), so it is kept
-- as total = total_high * 2^53 + total_low, 0 <= total_low < 2^53, as the
-- supply's totals are. Totals only grow, so the key orders rows in time.
CREATE TABLE window_totals (
    -- Written only by the trigger below, from the entry itself, so neither
    -- id needs a foreign key's look-up on every spend; `wallet verify`
    -- checks every row against the entries.
    account_id  INTEGER NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('TOPUP', 'BONUS', 'SPEND', 'TRANSFER')),
    total_high  INTEGER NOT NULL CHECK (total_high >= 0),
    total_low   INTEGER NOT NULL CHECK (total_low BETWEEN 0 AND 9007199254740991),
    created_at  INTEGER NOT NULL,
    entry_seq   INTEGER NOT NULL,
    PRIMARY KEY (account_id, kind, total_high, total_low)
) STRICT, WITHOUT ROWID;

-- The total as it stood at an instant: one descent.
CREATE INDEX window_totals_by_time ON window_totals (account_id, kind, created_at);

CREATE TRIGGER window_totals_refuse_update BEFORE UPDATE ON window_totals
BEGIN SELECT RAISE(ABORT, 'window_totals is append-only'); END;
CREATE TRIGGER window_totals_refuse_delete BEFORE DELETE ON window_totals
BEGIN SELECT RAISE(ABORT, 'window_totals is append-only'); END;

-- The history as it stands, counted once: running sums split in two parts
-- (amount = a * 2^26 + b) so no sum leaves 64 bits, carried into the 2^53
-- split.
CREATE TEMP TABLE window_backfill AS
WITH counted AS (
    SELECT e.seq, e.kind, e.amount, e.created_at,
           CASE WHEN e.kind IN ('TOPUP', 'BONUS') THEN e.credit_account_id
                ELSE e.debit_account_id END AS account_id
      FROM ledger_entries e
     WHERE e.kind IN ('TOPUP', 'BONUS', 'SPEND', 'TRANSFER')
), running AS (
    SELECT seq, kind, account_id, created_at,
           sum(amount / 67108864) OVER w AS a, sum(amount % 67108864) OVER w AS b
      FROM counted
    WINDOW w AS (PARTITION BY account_id, kind ORDER BY seq)
), carried AS (
    SELECT seq, kind, account_id, created_at, a + b / 67108864 AS a, b % 67108864 AS b
      FROM running
)
SELECT account_id, kind, a / 134217728 AS total_high,
       (a % 134217728) * 67108864 + b AS total_low, created_at, seq
  FROM carried;

INSERT INTO window_totals (account_id, kind, total_high, total_low, created_at, entry_seq)
SELECT account_id, kind, total_high, total_low, created_at, seq
  FROM window_backfill ORDER BY seq;

DROP TABLE window_backfill;

CREATE TRIGGER ledger_entries_count_in_their_windows AFTER INSERT ON ledger_entries
WHEN NEW.kind IN ('TOPUP', 'BONUS', 'SPEND', 'TRANSFER')
BEGIN
    INSERT INTO window_totals (account_id, kind, total_high, total_low, created_at, entry_seq)
    SELECT c.account_id, NEW.kind,
           coalesce(t.total_high, 0) + (coalesce(t.total_low, 0) + NEW.amount) / 9007199254740992,
           (coalesce(t.total_low, 0) + NEW.amount) % 9007199254740992,
           NEW.created_at, NEW.seq
      FROM (SELECT CASE WHEN NEW.kind IN ('TOPUP', 'BONUS') THEN NEW.credit_account_id
                        ELSE NEW.debit_account_id END AS account_id) c
      LEFT JOIN (SELECT w.total_high, w.total_low FROM window_totals w
                  WHERE w.account_id = CASE WHEN NEW.kind IN ('TOPUP', 'BONUS')
                                            THEN NEW.credit_account_id
                                            ELSE NEW.debit_account_id END
                    AND w.kind = NEW.kind
                  ORDER BY w.total_high DESC, w.total_low DESC LIMIT 1) t ON 1;
END;
