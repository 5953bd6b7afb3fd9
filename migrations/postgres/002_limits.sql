-- Schema version 2: rules on value (API.md, Limits), as SQLite's version 6.
--
-- * `rule_changes`: every change of an asset's rules or of a user's own
--   values, append-only, with who made it and when. Its triggers keep the
--   rules in force (`asset_rules`, `user_rules`) and number its event at
--   commit, as entries' are.
-- * `window_totals`: per user account and entry type a cap may count, the
--   running total of the amounts counted, one row per entry. A window's
--   sum is the newest total minus the total at the window's start: two
--   index descents. A user's entries are written under that user's lock,
--   so the totals of one account grow in the order its entries commit.

CREATE TABLE rule_changes (
    seq            bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset_type_id  uuid    NOT NULL REFERENCES asset_types (id),
    -- NULL: the asset's rules; otherwise that user's own values.
    user_id        text    CHECK (user_id IS NULL OR char_length(user_id) BETWEEN 1 AND 128),
    spend_order    text    CHECK (spend_order IN ('free-first', 'paid-first')),
    max_balance    bigint  CHECK (max_balance BETWEEN 0 AND 9007199254740991),
    limits         jsonb   CHECK (limits IS NULL OR (jsonb_typeof(limits) = 'array'
                                                     AND jsonb_array_length(limits) <= 8)),
    changed_at     bigint  NOT NULL,
    -- The API key's id, or 0: the command line, or a service without keys.
    changed_by     bigint  NOT NULL CHECK (changed_by >= 0),
    CHECK ((user_id IS NULL) = (spend_order IS NOT NULL)),
    CHECK (user_id IS NOT NULL OR limits IS NOT NULL)
);
CREATE TRIGGER rule_changes_are_append_only BEFORE UPDATE OR DELETE ON rule_changes
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('rule_changes is append-only');

CREATE TABLE asset_rules (
    asset_type_id  uuid    PRIMARY KEY REFERENCES asset_types (id),
    spend_order    text    NOT NULL,
    max_balance    bigint,
    limits         jsonb   NOT NULL,
    updated_at     bigint  NOT NULL,
    updated_by     bigint  NOT NULL
);

CREATE TABLE user_rules (
    user_id        text    NOT NULL,
    asset_type_id  uuid    NOT NULL REFERENCES asset_types (id),
    max_balance    bigint,
    limits         jsonb,
    updated_at     bigint  NOT NULL,
    updated_by     bigint  NOT NULL,
    PRIMARY KEY (user_id, asset_type_id),
    CHECK (max_balance IS NOT NULL OR limits IS NOT NULL)
);

CREATE FUNCTION rule_changes_take_force() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id IS NULL THEN
        INSERT INTO asset_rules (asset_type_id, spend_order, max_balance, limits,
                                 updated_at, updated_by)
        VALUES (NEW.asset_type_id, NEW.spend_order, NEW.max_balance, NEW.limits,
                NEW.changed_at, NEW.changed_by)
        ON CONFLICT (asset_type_id) DO UPDATE SET
            spend_order = excluded.spend_order, max_balance = excluded.max_balance,
            limits = excluded.limits, updated_at = excluded.updated_at,
            updated_by = excluded.updated_by;
    ELSIF NEW.max_balance IS NULL AND NEW.limits IS NULL THEN
        DELETE FROM user_rules WHERE user_id = NEW.user_id AND asset_type_id = NEW.asset_type_id;
    ELSE
        INSERT INTO user_rules (user_id, asset_type_id, max_balance, limits, updated_at, updated_by)
        VALUES (NEW.user_id, NEW.asset_type_id, NEW.max_balance, NEW.limits,
                NEW.changed_at, NEW.changed_by)
        ON CONFLICT (user_id, asset_type_id) DO UPDATE SET
            max_balance = excluded.max_balance, limits = excluded.limits,
            updated_at = excluded.updated_at, updated_by = excluded.updated_by;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER rule_changes_take_force AFTER INSERT ON rule_changes
    FOR EACH ROW EXECUTE FUNCTION rule_changes_take_force();

-- The feed tells changes of rules too.
ALTER TABLE events
    DROP CONSTRAINT events_check,
    DROP CONSTRAINT events_check1,
    DROP CONSTRAINT events_type_check,
    ADD COLUMN rule_change_seq bigint REFERENCES rule_changes (seq),
    ADD CONSTRAINT events_name_one_thing
        CHECK (num_nonnulls(entry_seq, hold_seq, rule_change_seq) = 1),
    ADD CONSTRAINT events_type_fits
        CHECK ((entry_seq IS NULL) = (type IS NOT NULL)
               AND (type IS NULL
                    OR (hold_seq IS NOT NULL AND type ~ '^hold\.(created|captured|voided|expired)$')
                    OR (rule_change_seq IS NOT NULL
                        AND type IN ('asset.rules_changed', 'wallet.rules_changed'))));

CREATE OR REPLACE FUNCTION wallet_feed_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('wallet.feed'));
    IF TG_TABLE_NAME = 'ledger_entries' THEN
        INSERT INTO events (feed_seq, entry_seq) VALUES (nextval('events_feed_seq'), NEW.seq);
    ELSIF TG_TABLE_NAME = 'rule_changes' THEN
        INSERT INTO events (feed_seq, rule_change_seq, type)
            VALUES (nextval('events_feed_seq'), NEW.seq,
                    CASE WHEN NEW.user_id IS NULL THEN 'asset.rules_changed'
                         ELSE 'wallet.rules_changed' END);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO events (feed_seq, hold_seq, type)
            VALUES (nextval('events_feed_seq'), NEW.seq, 'hold.created');
    ELSE
        INSERT INTO events (feed_seq, hold_seq, type)
            VALUES (nextval('events_feed_seq'), NEW.seq, 'hold.' || lower(NEW.status));
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER rule_changes_are_told AFTER INSERT ON rule_changes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wallet_feed_record();

-- Running totals, kept as total = total_high * 2^53 + total_low as in
-- SQLite, so both backends read them alike. One b-tree, keyed in the order
-- an account's entries commit: a user's entries are written under that
-- user's lock, and each row's time is at least the row's before it (the
-- instances' clocks may differ by a little), so time and total grow
-- together. A second index, by total, cost spends a second random write.
CREATE TABLE window_totals (
    account_id  bigint  NOT NULL,
    kind        text    NOT NULL CHECK (kind IN ('TOPUP', 'BONUS', 'SPEND', 'TRANSFER')),
    created_at  bigint  NOT NULL,
    total_high  bigint  NOT NULL CHECK (total_high >= 0),
    total_low   bigint  NOT NULL CHECK (total_low BETWEEN 0 AND 9007199254740991),
    entry_seq   bigint  NOT NULL,
    PRIMARY KEY (account_id, kind, created_at, total_high, total_low)
);
CREATE TRIGGER window_totals_are_append_only BEFORE UPDATE OR DELETE ON window_totals
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('window_totals is append-only');

INSERT INTO window_totals (account_id, kind, created_at, total_high, total_low, entry_seq)
SELECT account_id, kind, max(created_at) OVER running, floor(total / 9007199254740992)::bigint,
       (total % 9007199254740992)::bigint, seq
  FROM (SELECT seq, kind, created_at,
               CASE WHEN kind IN ('TOPUP', 'BONUS') THEN credit_account_id
                    ELSE debit_account_id END AS account_id,
               sum(amount::numeric) OVER (
                   PARTITION BY CASE WHEN kind IN ('TOPUP', 'BONUS') THEN credit_account_id
                                     ELSE debit_account_id END, kind
                   ORDER BY seq) AS total
          FROM ledger_entries
         WHERE kind IN ('TOPUP', 'BONUS', 'SPEND', 'TRANSFER')) counted
WINDOW running AS (PARTITION BY account_id, kind ORDER BY seq);

CREATE FUNCTION ledger_entries_count_in_their_windows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    counted bigint := CASE WHEN NEW.kind IN ('TOPUP', 'BONUS') THEN NEW.credit_account_id
                           ELSE NEW.debit_account_id END;
    high bigint := 0;
    low bigint := 0;
    made bigint := NEW.created_at;
BEGIN
    SELECT w.total_high, w.total_low, greatest(w.created_at, NEW.created_at)
      INTO high, low, made
      FROM window_totals w
     WHERE w.account_id = counted AND w.kind = NEW.kind
     ORDER BY w.created_at DESC, w.total_high DESC, w.total_low DESC LIMIT 1;
    IF NOT FOUND THEN
        high := 0;
        low := 0;
        made := NEW.created_at;
    END IF;
    INSERT INTO window_totals (account_id, kind, created_at, total_high, total_low, entry_seq)
    VALUES (counted, NEW.kind, made, high + (low + NEW.amount) / 9007199254740992,
            (low + NEW.amount) % 9007199254740992, NEW.seq);
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_count_in_their_windows AFTER INSERT ON ledger_entries
    FOR EACH ROW WHEN (NEW.kind IN ('TOPUP', 'BONUS', 'SPEND', 'TRANSFER'))
    EXECUTE FUNCTION ledger_entries_count_in_their_windows();
