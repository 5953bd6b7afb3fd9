-- Schema version 4: each asset's supply as it stood at any instant
-- (API.md, GET /assets/{asset}/supply?at=), as SQLite's running totals on
-- the Treasury's postings give it there.
--
-- * `supply_history`: one row per entry that moves a figure of the supply
--   (the Treasury's balance, the paid part users hold, what was topped up,
--   given as bonus, spent, reversed): the figures of the `asset_totals`
--   row the entry moved (its shard), as they are once it counts. Written
--   by the statement that moves that row, so under its row lock: a shard's
--   rows are numbered (`n`) in the order they commit, and each row's time
--   is at least the time of the row before it in its shard (the instances'
--   clocks may differ by a little), so time and `n` grow together and "the
--   newest row of a shard at or before T" is one index descent. The supply
--   at T is the sum, over the asset's 16 shards, of each one's newest row
--   at or before T: 16 descents, whatever the ledger's length.
-- * An entry now moves all its figures at once, from its own trigger: the
--   Treasury's balance and paid total too, which its Treasury posting
--   moved before. One UPDATE of the shard row per entry (there were two
--   for an entry touching the Treasury), and one INSERT beside it.
-- * A transfer between users moves no figure, and writes no row.
--
-- Existing entries do not record which shard they moved, so the history
-- of an existing ledger cannot be split by shard. It is kept as if every
-- existing entry had moved shard 0: each asset's figures are folded into
-- its shard 0 row (the other shards' figures moved to it; what is held and
-- the holders, which are not kept back in time, stay where they are), and
-- shard 0's history is the asset's running totals in commit order (the
-- feed's), each row's time the latest entry time so far. Sums are what
-- they were at every instant.

ALTER TABLE asset_totals
    -- How many rows of `supply_history` this shard has, and the time of
    -- its newest (NULL before the first).
    ADD COLUMN history_rows bigint NOT NULL DEFAULT 0,
    ADD COLUMN history_at bigint;

-- numeric, as `asset_totals`, so no sum can overflow. No foreign keys: each
-- would cost every write a lookup; `wallet verify` checks every row
-- against the entry it names.
CREATE TABLE supply_history (
    asset_type_id  uuid     NOT NULL,
    shard          smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    created_at     bigint   NOT NULL,
    -- The row's number in its shard, from 1.
    n              bigint   NOT NULL CHECK (n >= 1),
    -- The entry that moved the shard.
    entry_seq      bigint   NOT NULL,
    treasury       numeric  NOT NULL,
    paid           numeric  NOT NULL,
    topup          numeric  NOT NULL CHECK (topup >= 0),
    bonus          numeric  NOT NULL CHECK (bonus >= 0),
    spent          numeric  NOT NULL CHECK (spent >= 0),
    reversed       numeric  NOT NULL CHECK (reversed >= 0),
    PRIMARY KEY (asset_type_id, shard, created_at, n)
);
CREATE TRIGGER supply_history_is_append_only BEFORE UPDATE OR DELETE ON supply_history
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('supply_history is append-only');

-- The existing ledger, folded into shard 0 (see the top of this file).
UPDATE asset_totals s SET
    treasury = CASE WHEN s.shard = 0 THEN f.treasury ELSE 0 END,
    paid = CASE WHEN s.shard = 0 THEN f.paid ELSE 0 END,
    topup = CASE WHEN s.shard = 0 THEN f.topup ELSE 0 END,
    bonus = CASE WHEN s.shard = 0 THEN f.bonus ELSE 0 END,
    spent = CASE WHEN s.shard = 0 THEN f.spent ELSE 0 END,
    reversed = CASE WHEN s.shard = 0 THEN f.reversed ELSE 0 END
  FROM (SELECT asset_type_id, sum(treasury) AS treasury, sum(paid) AS paid,
               sum(topup) AS topup, sum(bonus) AS bonus, sum(spent) AS spent,
               sum(reversed) AS reversed
          FROM asset_totals GROUP BY asset_type_id) f
 WHERE f.asset_type_id = s.asset_type_id;

INSERT INTO supply_history (asset_type_id, shard, created_at, n, entry_seq, treasury, paid,
                            topup, bonus, spent, reversed)
SELECT asset_type_id, 0, max(created_at) OVER running, row_number() OVER running, seq,
       sum(treasury) OVER running, sum(paid) OVER running, sum(topup) OVER running,
       sum(bonus) OVER running, sum(spent) OVER running, sum(reversed) OVER running
  FROM (SELECT e.seq, e.asset_type_id, e.created_at, v.feed_seq,
               CASE WHEN e.credit_account_id = t.id THEN e.amount::numeric
                    WHEN e.debit_account_id = t.id THEN -e.amount::numeric
                    ELSE 0 END AS treasury,
               CASE WHEN e.credit_account_id = t.id THEN -e.paid::numeric
                    WHEN e.debit_account_id = t.id THEN e.paid::numeric
                    ELSE 0 END AS paid,
               CASE WHEN e.kind = 'TOPUP' THEN e.amount::numeric ELSE 0 END AS topup,
               CASE WHEN e.kind = 'BONUS' THEN e.amount::numeric ELSE 0 END AS bonus,
               CASE WHEN e.kind = 'SPEND' THEN e.amount::numeric ELSE 0 END AS spent,
               CASE WHEN e.kind = 'REVERSAL' THEN e.amount::numeric ELSE 0 END AS reversed
          FROM ledger_entries e
          JOIN events v ON v.entry_seq = e.seq
          LEFT JOIN accounts t ON t.asset_type_id = e.asset_type_id AND t.owner_type = 'SYSTEM'
       ) moved
 WHERE treasury <> 0 OR topup <> 0 OR bonus <> 0 OR spent <> 0 OR reversed <> 0
WINDOW running AS (PARTITION BY asset_type_id ORDER BY feed_seq);

UPDATE asset_totals s SET history_rows = h.rows, history_at = h.at
  FROM (SELECT asset_type_id, count(*) AS rows, max(created_at) AS at
          FROM supply_history GROUP BY asset_type_id) h
 WHERE s.asset_type_id = h.asset_type_id AND s.shard = 0;

-- Each entry counts in its asset's totals, by kind and by what it moves
-- of the Treasury (its balance; the paid part users hold, the other way
-- round), on this connection's shard; one that moves any figure of the
-- supply leaves the shard's figures in its history, in the same statement.
CREATE OR REPLACE FUNCTION ledger_entries_count_in_the_totals() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    treasury_id bigint;
    treasury_delta bigint := 0;
    paid_delta bigint := 0;
BEGIN
    SELECT id INTO treasury_id FROM accounts
     WHERE asset_type_id = NEW.asset_type_id AND owner_type = 'SYSTEM';
    IF NEW.credit_account_id = treasury_id THEN
        treasury_delta := NEW.amount;
        paid_delta := -NEW.paid;
    ELSIF NEW.debit_account_id = treasury_id THEN
        treasury_delta := -NEW.amount;
        paid_delta := NEW.paid;
    END IF;
    IF treasury_delta = 0 AND NEW.kind NOT IN ('TOPUP', 'BONUS', 'SPEND', 'REVERSAL') THEN
        UPDATE asset_totals SET last_entry_at = greatest(last_entry_at, NEW.created_at)
         WHERE asset_type_id = NEW.asset_type_id AND shard = wallet_shard();
        RETURN NULL;
    END IF;
    WITH moved AS (
        UPDATE asset_totals SET
            treasury = treasury + treasury_delta,
            paid = paid + paid_delta,
            topup = topup + CASE WHEN NEW.kind = 'TOPUP' THEN NEW.amount ELSE 0 END,
            bonus = bonus + CASE WHEN NEW.kind = 'BONUS' THEN NEW.amount ELSE 0 END,
            spent = spent + CASE WHEN NEW.kind = 'SPEND' THEN NEW.amount ELSE 0 END,
            reversed = reversed + CASE WHEN NEW.kind = 'REVERSAL' THEN NEW.amount ELSE 0 END,
            last_entry_at = greatest(last_entry_at, NEW.created_at),
            history_rows = history_rows + 1,
            history_at = greatest(history_at, NEW.created_at)
         WHERE asset_type_id = NEW.asset_type_id AND shard = wallet_shard()
        RETURNING *)
    INSERT INTO supply_history (asset_type_id, shard, created_at, n, entry_seq, treasury, paid,
                                topup, bonus, spent, reversed)
    SELECT asset_type_id, shard, history_at, history_rows, NEW.seq, treasury, paid, topup,
           bonus, spent, reversed
      FROM moved;
    RETURN NULL;
END $$;

-- As version 3's, but a Treasury's posting moves no totals: its entry
-- moved them (above).
CREATE OR REPLACE FUNCTION postings_move_their_account() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry ledger_entries%ROWTYPE;
    account accounts%ROWTYPE;
    paid_delta bigint;
BEGIN
    SELECT * INTO entry FROM ledger_entries WHERE seq = NEW.entry_seq;
    IF entry.debit_account_id = NEW.account_id AND NEW.delta = -entry.amount THEN
        paid_delta := -entry.paid;
    ELSIF entry.credit_account_id = NEW.account_id AND NEW.delta = entry.amount THEN
        paid_delta := entry.paid;
    ELSE
        RAISE EXCEPTION 'a posting must be one leg of its entry' USING ERRCODE = 'check_violation';
    END IF;
    -- The Treasury's row is read, never written: every write would queue
    -- behind an update of it.
    SELECT * INTO account FROM accounts WHERE id = NEW.account_id;
    IF account.owner_type = 'SYSTEM' THEN
        IF NEW.balance_after IS NOT NULL OR NEW.paid_after IS NOT NULL THEN
            RAISE EXCEPTION 'a Treasury posting keeps no running balance'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    UPDATE accounts SET balance = balance + NEW.delta, paid = paid + paid_delta
     WHERE id = NEW.account_id
     RETURNING * INTO account;
    IF NEW.balance_after IS DISTINCT FROM account.balance
       OR NEW.paid_after IS DISTINCT FROM account.paid
       OR EXISTS (SELECT 1 FROM postings p
                   WHERE p.account_id = NEW.account_id AND p.entry_seq > NEW.entry_seq) THEN
        RAISE EXCEPTION 'a posting must continue its account''s balance and paid part'
            USING ERRCODE = 'check_violation';
    END IF;
    IF (account.balance = 0) <> (account.balance - NEW.delta = 0) THEN
        UPDATE asset_totals
           SET holders = holders + CASE WHEN account.balance = 0 THEN -1 ELSE 1 END
         WHERE asset_type_id = account.asset_type_id AND shard = wallet_shard();
    END IF;
    RETURN NEW;
END $$;
