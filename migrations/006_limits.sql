-- Schema version 6: rules on value (API.md, Limits). Applied after version
-- 5 by `migrate`, in the same single IMMEDIATE transaction.
--
--   * `rule_changes`: every change of an asset's rules or of a user's own
--     values, append-only, with who made it and when. Its triggers keep the
--     rules in force (`asset_rules`, `user_rules`) and tell the event feed,
--     so no writer can change one without the others.
--   * running totals on each user posting, per entry type a cap may count
--     (below): a window's sum is the newest total minus the total as it
--     stood at the window's start, two index descents however long the
--     history.

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

-- Running totals per user account and type a cap may count, kept on the
-- account's postings themselves: each user posting carries, for TOPUP and
-- BONUS (what the user was credited) and SPEND and TRANSFER (what the user
-- sent), the total of the account's entries of that type up to and
-- including its own. A window's sum is the newest posting's total minus the
-- total of the last posting at or before the window's start: two descents
-- of indexes the ledger has anyway, and no row or index written besides the
-- posting (a table of its own cost a third of the spends a second: two more
-- b-trees written at a random place per spend). A total can outgrow 64 bits
-- over an account's life, so it is kept as high * 2^53 + low, as the
-- supply's totals are. NULL on the Treasury's postings. The writer computes
-- them in the posting's own INSERT; `wallet verify` recomputes every one.
ALTER TABLE postings ADD COLUMN topup_high INTEGER;
ALTER TABLE postings ADD COLUMN topup_low INTEGER;
ALTER TABLE postings ADD COLUMN bonus_high INTEGER;
ALTER TABLE postings ADD COLUMN bonus_low INTEGER;
ALTER TABLE postings ADD COLUMN spend_high INTEGER;
ALTER TABLE postings ADD COLUMN spend_low INTEGER;
ALTER TABLE postings ADD COLUMN transfer_high INTEGER;
ALTER TABLE postings ADD COLUMN transfer_low INTEGER;

-- The history as it stands, counted once. Running sums split in two parts
-- (amount = a * 2^26 + b) so no sum leaves 64 bits, carried into the 2^53
-- split. Postings are append-only: the trigger that refuses an update is
-- lifted for this one statement.
DROP TRIGGER postings_refuse_update;
WITH counted AS (
    SELECT p.account_id, p.entry_seq,
           CASE WHEN e.kind = 'TOPUP' AND e.credit_account_id = p.account_id THEN e.amount ELSE 0 END AS topup,
           CASE WHEN e.kind = 'BONUS' AND e.credit_account_id = p.account_id THEN e.amount ELSE 0 END AS bonus,
           CASE WHEN e.kind = 'SPEND' AND e.debit_account_id = p.account_id THEN e.amount ELSE 0 END AS spend,
           CASE WHEN e.kind = 'TRANSFER' AND e.debit_account_id = p.account_id THEN e.amount ELSE 0 END AS transfer
      FROM postings p
      JOIN ledger_entries e ON e.seq = p.entry_seq
      JOIN accounts a ON a.id = p.account_id AND a.owner_type = 'USER'
), running AS (
    SELECT account_id, entry_seq,
           sum(topup / 67108864) OVER w AS ta, sum(topup % 67108864) OVER w AS tb,
           sum(bonus / 67108864) OVER w AS ba, sum(bonus % 67108864) OVER w AS bb,
           sum(spend / 67108864) OVER w AS sa, sum(spend % 67108864) OVER w AS sb,
           sum(transfer / 67108864) OVER w AS xa, sum(transfer % 67108864) OVER w AS xb
      FROM counted
    WINDOW w AS (PARTITION BY account_id ORDER BY entry_seq)
), carried AS (
    SELECT account_id, entry_seq,
           ta + tb / 67108864 AS ta, tb % 67108864 AS tb,
           ba + bb / 67108864 AS ba, bb % 67108864 AS bb,
           sa + sb / 67108864 AS sa, sb % 67108864 AS sb,
           xa + xb / 67108864 AS xa, xb % 67108864 AS xb
      FROM running
)
UPDATE postings SET
    topup_high = c.ta / 134217728, topup_low = (c.ta % 134217728) * 67108864 + c.tb,
    bonus_high = c.ba / 134217728, bonus_low = (c.ba % 134217728) * 67108864 + c.bb,
    spend_high = c.sa / 134217728, spend_low = (c.sa % 134217728) * 67108864 + c.sb,
    transfer_high = c.xa / 134217728, transfer_low = (c.xa % 134217728) * 67108864 + c.xb
  FROM carried c
 WHERE postings.account_id = c.account_id AND postings.entry_seq = c.entry_seq;
CREATE TRIGGER postings_refuse_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only'); END;
