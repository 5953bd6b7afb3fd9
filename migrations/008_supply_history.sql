-- Version 8: the supply as it stood at an instant (`GET
-- /assets/{asset}/supply?at=`), in O(log n) of the ledger's length.
--
-- Every TOPUP, BONUS and SPEND of an asset passes through its Treasury, so a
-- Treasury's postings carry the asset's running totals of those kinds in
-- the columns a user's postings keep for the caps (`topup_*`, `bonus_*`,
-- `spend_*`; `transfer_*` stays 0), beside its running balance and paid
-- part. A reversal of a transfer does not touch the Treasury, so each
-- REVERSAL records its asset's REVERSAL total in `supply_reversals`:
-- reversals are rare, and the spend path writes nothing there.

CREATE TABLE supply_reversals (
    asset_type_id  TEXT    NOT NULL REFERENCES asset_types (id),
    entry_seq      INTEGER NOT NULL REFERENCES ledger_entries (seq),
    created_at     INTEGER NOT NULL,
    reversed_high  INTEGER NOT NULL CHECK (reversed_high >= 0),
    reversed_low   INTEGER NOT NULL CHECK (reversed_low BETWEEN 0 AND 9007199254740991),
    PRIMARY KEY (asset_type_id, entry_seq)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER supply_reversals_refuse_change BEFORE UPDATE ON supply_reversals
BEGIN SELECT RAISE(ABORT, 'supply_reversals is append-only'); END;
CREATE TRIGGER supply_reversals_refuse_delete BEFORE DELETE ON supply_reversals
BEGIN SELECT RAISE(ABORT, 'supply_reversals is append-only'); END;

-- The history as it stands, counted once, as 006 counted the caps' totals:
-- running sums split in two parts (amount = a * 2^26 + b) so no sum leaves
-- 64 bits, carried into the 2^53 split.
INSERT INTO supply_reversals (asset_type_id, entry_seq, created_at, reversed_high, reversed_low)
SELECT asset_type_id, seq, created_at,
       (ra + rb / 67108864) / 134217728,
       ((ra + rb / 67108864) % 134217728) * 67108864 + rb % 67108864
  FROM (SELECT asset_type_id, seq, created_at,
               sum(amount / 67108864) OVER w AS ra, sum(amount % 67108864) OVER w AS rb
          FROM ledger_entries
         WHERE kind = 'REVERSAL'
        WINDOW w AS (PARTITION BY asset_type_id ORDER BY seq));

-- Postings are append-only: the trigger that refuses an update is lifted
-- for this one statement.
DROP TRIGGER postings_refuse_update;
WITH counted AS (
    SELECT p.account_id, p.entry_seq,
           CASE WHEN e.kind = 'TOPUP' THEN e.amount ELSE 0 END AS topup,
           CASE WHEN e.kind = 'BONUS' THEN e.amount ELSE 0 END AS bonus,
           CASE WHEN e.kind = 'SPEND' THEN e.amount ELSE 0 END AS spend
      FROM postings p
      JOIN ledger_entries e ON e.seq = p.entry_seq
      JOIN accounts a ON a.id = p.account_id AND a.owner_type = 'SYSTEM'
), running AS (
    SELECT account_id, entry_seq,
           sum(topup / 67108864) OVER w AS ta, sum(topup % 67108864) OVER w AS tb,
           sum(bonus / 67108864) OVER w AS ba, sum(bonus % 67108864) OVER w AS bb,
           sum(spend / 67108864) OVER w AS sa, sum(spend % 67108864) OVER w AS sb
      FROM counted
    WINDOW w AS (PARTITION BY account_id ORDER BY entry_seq)
), carried AS (
    SELECT account_id, entry_seq,
           ta + tb / 67108864 AS ta, tb % 67108864 AS tb,
           ba + bb / 67108864 AS ba, bb % 67108864 AS bb,
           sa + sb / 67108864 AS sa, sb % 67108864 AS sb
      FROM running
)
UPDATE postings SET
    topup_high = c.ta / 134217728, topup_low = (c.ta % 134217728) * 67108864 + c.tb,
    bonus_high = c.ba / 134217728, bonus_low = (c.ba % 134217728) * 67108864 + c.bb,
    spend_high = c.sa / 134217728, spend_low = (c.sa % 134217728) * 67108864 + c.sb,
    transfer_high = 0, transfer_low = 0
  FROM carried c
 WHERE postings.account_id = c.account_id AND postings.entry_seq = c.entry_seq;
CREATE TRIGGER postings_refuse_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only'); END;

-- Each reversal records its asset's REVERSAL total once it counts, read
-- from the supply row this same trigger has just moved.
DROP TRIGGER ledger_entries_are_told_and_counted;
CREATE TRIGGER ledger_entries_are_told_and_counted AFTER INSERT ON ledger_entries
BEGIN
    INSERT INTO events (entry_seq) VALUES (NEW.seq);
    UPDATE asset_supply SET
        topup_low = CASE WHEN NEW.kind = 'TOPUP'
                         THEN (topup_low + NEW.amount) % 9007199254740992 ELSE topup_low END,
        topup_high = CASE WHEN NEW.kind = 'TOPUP'
                          THEN topup_high + (topup_low + NEW.amount) / 9007199254740992
                          ELSE topup_high END,
        bonus_low = CASE WHEN NEW.kind = 'BONUS'
                         THEN (bonus_low + NEW.amount) % 9007199254740992 ELSE bonus_low END,
        bonus_high = CASE WHEN NEW.kind = 'BONUS'
                          THEN bonus_high + (bonus_low + NEW.amount) / 9007199254740992
                          ELSE bonus_high END,
        spent_low = CASE WHEN NEW.kind = 'SPEND'
                         THEN (spent_low + NEW.amount) % 9007199254740992 ELSE spent_low END,
        spent_high = CASE WHEN NEW.kind = 'SPEND'
                          THEN spent_high + (spent_low + NEW.amount) / 9007199254740992
                          ELSE spent_high END,
        reversed_low = CASE WHEN NEW.kind = 'REVERSAL'
                            THEN (reversed_low + NEW.amount) % 9007199254740992
                            ELSE reversed_low END,
        reversed_high = CASE WHEN NEW.kind = 'REVERSAL'
                             THEN reversed_high + (reversed_low + NEW.amount) / 9007199254740992
                             ELSE reversed_high END,
        last_entry_at = NEW.created_at
     WHERE asset_type_id = NEW.asset_type_id;
    INSERT INTO supply_reversals (asset_type_id, entry_seq, created_at, reversed_high, reversed_low)
        SELECT NEW.asset_type_id, NEW.seq, NEW.created_at, s.reversed_high, s.reversed_low
          FROM asset_supply s
         WHERE s.asset_type_id = NEW.asset_type_id AND NEW.kind = 'REVERSAL';
END;
