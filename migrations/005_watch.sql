-- Schema version 5: what the ledger tells those who watch it. Applied after
-- version 4 by `migrate`, in the same single IMMEDIATE transaction.
--
-- Three things, each kept by triggers as the rows they describe are
-- written, so no caller can forget them and none can drift:
--   * `events`: every committed entry (once per user it touched) and every
--     change of a hold, in commit order: the feed of `GET /events`;
--   * `asset_supply`: per asset, the totals `GET /assets/{asset}/supply`
--     answers in one row, however long the ledger;
--   * an index of entries by time, so a balance back in time finds the
--     last entry before an instant in one descent.

-- The feed, one row per entry and per change of a hold, in commit order.
-- Kept as small as a row can be: an entry's row is one insert of its
-- sequence number (a row naming its accounts, checked by foreign keys, cost
-- a fifth more instructions per spend). What an event says is read from the
-- rows it names when it is served: entries never change, and a hold
-- changes once, to the state its closing event shows. An entry's row gives
-- one event per user account it touches (the debited first), so event ids
-- are `2 * seq` (debit side, or a hold's change) and `2 * seq + 1` (credit
-- side). `wallet verify` checks the feed against the entries and holds.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    -- The entry, for a transaction; NULL for a hold's change.
    entry_seq  INTEGER,
    -- The hold and its change ('hold.created', 'hold.captured', ...).
    hold_seq   INTEGER,
    type       TEXT
) STRICT;

CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;

-- Totals per asset. Sums of amounts can outgrow 64 bits over a ledger's
-- life (an amount is up to 2^53 - 1), so each is kept in two parts:
-- total = high * 2^53 + low, with 0 <= low < 2^53. A step adds an amount
-- below 2^53 to low, so nothing here ever overflows.
CREATE TABLE asset_supply (
    asset_type_id  TEXT    PRIMARY KEY REFERENCES asset_types (id),
    topup_low      INTEGER NOT NULL DEFAULT 0 CHECK (topup_low BETWEEN 0 AND 9007199254740991),
    topup_high     INTEGER NOT NULL DEFAULT 0 CHECK (topup_high >= 0),
    bonus_low      INTEGER NOT NULL DEFAULT 0 CHECK (bonus_low BETWEEN 0 AND 9007199254740991),
    bonus_high     INTEGER NOT NULL DEFAULT 0 CHECK (bonus_high >= 0),
    spent_low      INTEGER NOT NULL DEFAULT 0 CHECK (spent_low BETWEEN 0 AND 9007199254740991),
    spent_high     INTEGER NOT NULL DEFAULT 0 CHECK (spent_high >= 0),
    reversed_low   INTEGER NOT NULL DEFAULT 0 CHECK (reversed_low BETWEEN 0 AND 9007199254740991),
    reversed_high  INTEGER NOT NULL DEFAULT 0 CHECK (reversed_high >= 0),
    -- What HELD holds set aside, and how many user accounts hold a
    -- non-zero balance.
    held           INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    holders        INTEGER NOT NULL DEFAULT 0 CHECK (holders >= 0),
    -- The time of the newest entry of the asset; NULL before the first.
    last_entry_at  INTEGER
) STRICT;

CREATE TRIGGER asset_supply_refuse_delete BEFORE DELETE ON asset_supply
BEGIN SELECT RAISE(ABORT, 'asset_supply rows are never deleted'); END;

-- The totals of the ledger as it stands. A sum in SQL must stay within 64
-- bits too, so amounts are summed in two parts (amount = a * 2^26 + b),
-- each far from overflowing, and then carried into the 2^53 split.
INSERT INTO asset_supply (asset_type_id, held, holders, last_entry_at)
SELECT t.id,
       coalesce((SELECT sum(h.amount) FROM holds h
                  WHERE h.asset_type_id = t.id AND h.status = 'HELD'), 0),
       (SELECT count(*) FROM accounts a
         WHERE a.asset_type_id = t.id AND a.owner_type = 'USER'
           AND coalesce((SELECT p.balance_after FROM postings p WHERE p.account_id = a.id
                          ORDER BY p.entry_seq DESC LIMIT 1), 0) <> 0),
       (SELECT max(e.created_at) FROM ledger_entries e WHERE e.asset_type_id = t.id)
  FROM asset_types t;

CREATE TEMP TABLE supply_backfill AS
WITH parts AS (
    SELECT asset_type_id, kind, sum(amount / 67108864) AS a, sum(amount % 67108864) AS b
      FROM ledger_entries GROUP BY asset_type_id, kind
), carried AS (
    SELECT asset_type_id, kind, a + b / 67108864 AS a, b % 67108864 AS b FROM parts
)
SELECT asset_type_id, kind,
       (a % 134217728) * 67108864 + b AS low, a / 134217728 AS high
  FROM carried;

UPDATE asset_supply SET
    topup_low = coalesce((SELECT low FROM supply_backfill s
                           WHERE s.asset_type_id = asset_supply.asset_type_id AND s.kind = 'TOPUP'), 0),
    topup_high = coalesce((SELECT high FROM supply_backfill s
                            WHERE s.asset_type_id = asset_supply.asset_type_id AND s.kind = 'TOPUP'), 0),
    bonus_low = coalesce((SELECT low FROM supply_backfill s
                           WHERE s.asset_type_id = asset_supply.asset_type_id AND s.kind = 'BONUS'), 0),
    bonus_high = coalesce((SELECT high FROM supply_backfill s
                            WHERE s.asset_type_id = asset_supply.asset_type_id AND s.kind = 'BONUS'), 0),
    spent_low = coalesce((SELECT low FROM supply_backfill s
                           WHERE s.asset_type_id = asset_supply.asset_type_id AND s.kind = 'SPEND'), 0),
    spent_high = coalesce((SELECT high FROM supply_backfill s
                            WHERE s.asset_type_id = asset_supply.asset_type_id AND s.kind = 'SPEND'), 0),
    reversed_low = coalesce((SELECT low FROM supply_backfill s
                              WHERE s.asset_type_id = asset_supply.asset_type_id AND s.kind = 'REVERSAL'), 0),
    reversed_high = coalesce((SELECT high FROM supply_backfill s
                               WHERE s.asset_type_id = asset_supply.asset_type_id AND s.kind = 'REVERSAL'), 0);

DROP TABLE supply_backfill;

CREATE TRIGGER asset_types_open_their_supply AFTER INSERT ON asset_types
BEGIN
    INSERT INTO asset_supply (asset_type_id) VALUES (NEW.id);
END;

-- The feed and the totals of every entry.
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
END;

-- A user account's balance crossing zero, either way, moves the count of
-- holders. The Treasury is no holder.
CREATE TRIGGER postings_count_holders AFTER INSERT ON postings
WHEN (NEW.balance_after = 0) <> (NEW.balance_after - NEW.delta = 0)
BEGIN
    UPDATE asset_supply
       SET holders = holders + CASE WHEN NEW.balance_after = 0 THEN -1 ELSE 1 END
     WHERE asset_type_id = (SELECT a.asset_type_id FROM accounts a
                             WHERE a.id = NEW.account_id AND a.owner_type = 'USER');
END;

CREATE TRIGGER holds_are_told_and_counted AFTER INSERT ON holds
BEGIN
    INSERT INTO events (hold_seq, type) VALUES (NEW.seq, 'hold.created');
    UPDATE asset_supply SET held = held + NEW.amount WHERE asset_type_id = NEW.asset_type_id;
END;

CREATE TRIGGER holds_closing_is_told_and_counted AFTER UPDATE OF status ON holds
BEGIN
    INSERT INTO events (hold_seq, type) VALUES (NEW.seq, 'hold.' || lower(NEW.status));
    UPDATE asset_supply SET held = held - OLD.amount WHERE asset_type_id = OLD.asset_type_id;
END;

-- The feed of what was there before this version, in the order it
-- happened as far as the rows tell: by time, then a hold's opening, its
-- closing, and entries (a capture's entry follows its hold's closing in
-- the same millisecond), then by sequence.
INSERT INTO events (entry_seq, hold_seq, type)
SELECT entry_seq, hold_seq, type FROM (
    SELECT e.created_at AS at, 2 AS stage, e.seq AS row_seq,
           e.seq AS entry_seq, NULL AS hold_seq, NULL AS type
      FROM ledger_entries e
    UNION ALL
    SELECT h.created_at, 0, h.seq, NULL, h.seq, 'hold.created' FROM holds h
    UNION ALL
    SELECT h.closed_at, 1, h.seq, NULL, h.seq, 'hold.' || lower(h.status)
      FROM holds h WHERE h.status <> 'HELD'
)
ORDER BY at, stage, row_seq;

-- Entries by time: the last entry at or before an instant in one descent
-- (entries are appended in time order, so this index only ever grows at
-- its end).
CREATE INDEX ledger_entries_by_time ON ledger_entries (created_at);
