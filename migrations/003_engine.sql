-- Schema version 3: one engine for every operation. Applied after version 2
-- by `migrate`, in the same single IMMEDIATE transaction, with foreign keys
-- checked before COMMIT.
--
-- What changes, and why:
-- * Entry kinds live in a table that entries reference, so a new kind is an
--   INSERT, never a table rebuild. TRANSFER and REVERSAL join the three.
-- * An idempotency key becomes its own record (caller, key, the canonical
--   request, the entries it made), because one request may now make many
--   entries (a batch) and a key names one request across every route.
-- * Entries gain `metadata`, and a REVERSAL names the entry it reverses with
--   the running total reversed after it, so "reversals never exceed the
--   entry" is a check on one row, as a balance is on one posting.
-- * Asset types gain `decimals`, for display.

CREATE TABLE entry_kinds (
    name  TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 32 AND name NOT GLOB '*[^A-Z_]*'),
    -- 0 for REVERSAL: a reversal is never itself reversed (NOT_REVERSIBLE).
    reversible  INTEGER NOT NULL CHECK (reversible IN (0, 1))
) STRICT;
INSERT INTO entry_kinds (name, reversible) VALUES
    ('TOPUP', 1), ('BONUS', 1), ('SPEND', 1), ('TRANSFER', 1), ('REVERSAL', 0);
CREATE TRIGGER entry_kinds_refuse_update BEFORE UPDATE ON entry_kinds
BEGIN SELECT RAISE(ABORT, 'entry kinds are added, never changed'); END;
CREATE TRIGGER entry_kinds_refuse_delete BEFORE DELETE ON entry_kinds
BEGIN SELECT RAISE(ABORT, 'entry kinds are added, never changed'); END;

ALTER TABLE asset_types ADD COLUMN decimals INTEGER NOT NULL DEFAULT 0
    CHECK (decimals BETWEEN 0 AND 18);

-- One row per idempotency key a caller has used for a request that was
-- applied. `request` is the canonical request (route, user, every field,
-- the asset by id, metadata keys sorted) as JSON: a retry is a replay when
-- its canonical form equals this one, and IDEMPOTENCY_KEY_REUSED names the
-- fields that differ. A rejected request writes no record.
CREATE TABLE idempotency_records (
    id            INTEGER PRIMARY KEY,
    -- An api_keys id, or 0 for the anonymous caller (see version 2).
    caller_id     INTEGER NOT NULL CHECK (caller_id >= 0),
    key           TEXT    NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request       TEXT    NOT NULL CHECK (json_valid(request) AND length(request) <= 262144),
    -- How many entries the request made; `wallet verify` counts them.
    entry_count   INTEGER NOT NULL CHECK (entry_count >= 0),
    created_at    INTEGER NOT NULL,
    UNIQUE (caller_id, key)
) STRICT;

CREATE TRIGGER idempotency_records_refuse_update BEFORE UPDATE ON idempotency_records
BEGIN SELECT RAISE(ABORT, 'idempotency_records is append-only'); END;
CREATE TRIGGER idempotency_records_refuse_delete BEFORE DELETE ON idempotency_records
BEGIN SELECT RAISE(ABORT, 'idempotency_records is append-only'); END;
CREATE TRIGGER idempotency_records_name_a_known_caller BEFORE INSERT ON idempotency_records
WHEN NEW.caller_id <> 0 AND NOT EXISTS (SELECT 1 FROM api_keys WHERE id = NEW.caller_id)
BEGIN SELECT RAISE(ABORT, 'a record''s caller must be an api key or 0'); END;

-- Every entry written so far was one request of its own: its record is
-- numbered as the entry, and its canonical request is what the version 2
-- writer compared (route, user, asset, amount, referenceId, note), so every
-- old key still replays for its caller.
INSERT INTO idempotency_records (id, caller_id, key, request, entry_count, created_at)
SELECT e.seq, e.caller_id, e.idempotency_key,
       json_object('amount', e.amount, 'asset', e.asset_type_id, 'metadata', NULL,
                   'note', e.note, 'referenceId', e.reference_id,
                   'route', lower(e.kind), 'userId', a.owner_id),
       1, e.created_at
  FROM ledger_entries e
  JOIN accounts a ON a.id = CASE e.kind WHEN 'SPEND' THEN e.debit_account_id
                                        ELSE e.credit_account_id END
 ORDER BY e.seq;

-- The journal, rebuilt seq for seq (SQLite cannot drop a column's CHECK or
-- a table's UNIQUE in place). The triggers that read it are dropped first
-- and recreated after the swap.
DROP TRIGGER postings_match_their_entry;
DROP TRIGGER ledger_entries_name_a_known_caller;

CREATE TABLE ledger_entries_v3 (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    kind               TEXT    NOT NULL REFERENCES entry_kinds (name),
    asset_type_id      TEXT    NOT NULL REFERENCES asset_types (id),
    debit_account_id   INTEGER NOT NULL,
    credit_account_id  INTEGER NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
    -- The request that made it; its key and caller are there.
    request_id         INTEGER NOT NULL REFERENCES idempotency_records (id),
    reference_id       TEXT    CHECK (length(reference_id) <= 255),
    note               TEXT    CHECK (length(note) <= 1024),
    -- Compact JSON, keys sorted (API.md: at most 2048 bytes).
    metadata           TEXT    CHECK (metadata IS NULL
                                      OR (json_valid(metadata) AND json_type(metadata) = 'object'
                                          AND length(CAST(metadata AS BLOB)) <= 2048)),
    -- A REVERSAL names the entry it reverses and the total reversed of it
    -- once this reversal counts; nothing else names either.
    reverses_seq       INTEGER REFERENCES ledger_entries_v3 (seq),
    reversed_after     INTEGER,
    created_at         INTEGER NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind = 'REVERSAL') = (reverses_seq IS NOT NULL)),
    CHECK ((reverses_seq IS NULL) = (reversed_after IS NULL)),
    FOREIGN KEY (debit_account_id, asset_type_id) REFERENCES accounts (id, asset_type_id),
    FOREIGN KEY (credit_account_id, asset_type_id) REFERENCES accounts (id, asset_type_id)
) STRICT;

INSERT INTO ledger_entries_v3 (seq, id, kind, asset_type_id, debit_account_id, credit_account_id,
                               amount, request_id, reference_id, note, metadata,
                               reverses_seq, reversed_after, created_at)
SELECT seq, id, kind, asset_type_id, debit_account_id, credit_account_id,
       amount, seq, reference_id, note, NULL, NULL, NULL, created_at
  FROM ledger_entries ORDER BY seq;

DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_v3 RENAME TO ledger_entries;

-- A request's entries, for its replay; a reversal's predecessors, for the
-- running total (one descent: the newest reversal of an entry).
CREATE INDEX ledger_entries_by_request ON ledger_entries (request_id);
CREATE INDEX ledger_entries_reversals ON ledger_entries (reverses_seq, seq)
    WHERE reverses_seq IS NOT NULL;
-- History filtered by referenceId finds its rows without a scan of the
-- user's whole history.
CREATE INDEX ledger_entries_by_reference ON ledger_entries (reference_id)
    WHERE reference_id IS NOT NULL;

CREATE TRIGGER ledger_entries_refuse_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
CREATE TRIGGER ledger_entries_refuse_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;

-- A reversal undoes part of a reversible entry of the same asset, between
-- the same two accounts the other way round, and the running total of the
-- entry's reversals continues from the previous one and never passes the
-- entry's amount: concurrent partial reversals can never add up to more.
CREATE TRIGGER ledger_entries_reverse_within_the_original BEFORE INSERT ON ledger_entries
WHEN NEW.reverses_seq IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM ledger_entries o JOIN entry_kinds k ON k.name = o.kind
     WHERE o.seq = NEW.reverses_seq AND k.reversible = 1
       AND o.asset_type_id = NEW.asset_type_id
       AND o.debit_account_id = NEW.credit_account_id
       AND o.credit_account_id = NEW.debit_account_id
       AND NEW.reversed_after <= o.amount
       AND NEW.reversed_after = NEW.amount + coalesce(
             (SELECT r.reversed_after FROM ledger_entries r
               WHERE r.reverses_seq = NEW.reverses_seq
               ORDER BY r.seq DESC LIMIT 1), 0))
BEGIN SELECT RAISE(ABORT, 'a reversal must undo what is left of a reversible entry, the other way round'); END;

CREATE TRIGGER postings_match_their_entry BEFORE INSERT ON postings
WHEN NOT EXISTS (
    SELECT 1 FROM ledger_entries e
    WHERE e.seq = NEW.entry_seq
      AND ((e.debit_account_id = NEW.account_id AND NEW.delta = -e.amount)
        OR (e.credit_account_id = NEW.account_id AND NEW.delta = e.amount)))
BEGIN SELECT RAISE(ABORT, 'a posting must be one leg of its entry'); END;

-- The asset catalogue is bounded (API.md: at most 1000 asset types).
CREATE TRIGGER asset_types_are_bounded BEFORE INSERT ON asset_types
WHEN (SELECT count(*) FROM asset_types) >= 1000
BEGIN SELECT RAISE(ABORT, 'at most 1000 asset types'); END;
CREATE TRIGGER asset_types_refuse_update BEFORE UPDATE ON asset_types
BEGIN SELECT RAISE(ABORT, 'asset types are never renamed'); END;
CREATE TRIGGER asset_types_refuse_delete BEFORE DELETE ON asset_types
BEGIN SELECT RAISE(ABORT, 'asset types are never deleted'); END;
