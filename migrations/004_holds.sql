-- Schema version 4: holds. Applied after version 3 by `migrate`, in the same
-- single IMMEDIATE transaction.
--
-- A hold sets part of a user's balance aside; it moves no value until it is
-- captured, when its capture is an ordinary SPEND or TRANSFER entry that
-- names it. A hold is the one row of the ledger that changes: once, from
-- HELD to CAPTURED, VOIDED or EXPIRED, and never again (a trigger refuses
-- anything else), so a hold can never be closed twice.
--
-- What is held per account is kept in `account_holds`, maintained by the
-- triggers on `holds` alone, so a balance read finds `held` in one row
-- however many holds the account has. The database refuses on its own a hold
-- above what is available and a debit into held money.

CREATE TABLE holds (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL UNIQUE,            -- the hold id callers see
    account_id     INTEGER NOT NULL,
    -- The account's user, so a user's holds list in one index.
    user_id        TEXT    NOT NULL,
    asset_type_id  TEXT    NOT NULL REFERENCES asset_types (id),
    amount         INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
    status         TEXT    NOT NULL CHECK (status IN ('HELD', 'CAPTURED', 'VOIDED', 'EXPIRED')),
    captured_amount INTEGER NOT NULL DEFAULT 0 CHECK (captured_amount BETWEEN 0 AND amount),
    -- The request that made it (its key and caller are there).
    request_id     INTEGER NOT NULL REFERENCES idempotency_records (id),
    reference_id   TEXT    CHECK (length(reference_id) <= 255),
    note           TEXT    CHECK (length(note) <= 1024),
    metadata       TEXT    CHECK (metadata IS NULL
                                  OR (json_valid(metadata) AND json_type(metadata) = 'object'
                                      AND length(CAST(metadata AS BLOB)) <= 2048)),
    expires_at     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    closed_at      INTEGER,
    CHECK (expires_at > created_at),
    CHECK ((status = 'HELD') = (closed_at IS NULL)),
    CHECK ((status = 'CAPTURED') = (captured_amount > 0)),
    -- An expiry closes at the instant it was due; a capture or a void only
    -- before it.
    CHECK (status <> 'EXPIRED' OR closed_at = expires_at),
    CHECK (status NOT IN ('CAPTURED', 'VOIDED') OR closed_at < expires_at),
    FOREIGN KEY (account_id, asset_type_id) REFERENCES accounts (id, asset_type_id)
) STRICT;

CREATE INDEX holds_by_user ON holds (user_id, seq);
CREATE INDEX holds_by_request ON holds (request_id);
-- Active holds by when they fall due: the writer's sweep, and what one
-- account has due at a given instant.
CREATE INDEX holds_due ON holds (expires_at) WHERE status = 'HELD';
CREATE INDEX holds_due_by_account ON holds (account_id, expires_at) WHERE status = 'HELD';

-- What each account has set aside by holds still marked HELD, and how many.
-- Only the triggers below write it.
CREATE TABLE account_holds (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts (id),
    held        INTEGER NOT NULL CHECK (held >= 0),
    -- API.md: at most 1000 active holds on one account.
    active      INTEGER NOT NULL CHECK (active BETWEEN 0 AND 1000)
) STRICT;

-- A new hold is HELD, belongs to a user account of its user, and fits in
-- what the account has not set aside already.
CREATE TRIGGER holds_fit_the_balance BEFORE INSERT ON holds
WHEN NEW.status <> 'HELD' OR NEW.captured_amount <> 0 OR NOT EXISTS (
    SELECT 1 FROM accounts a
     WHERE a.id = NEW.account_id AND a.owner_type = 'USER' AND a.owner_id = NEW.user_id)
  OR coalesce((SELECT p.balance_after FROM postings p WHERE p.account_id = NEW.account_id
                ORDER BY p.entry_seq DESC LIMIT 1), 0)
     < coalesce((SELECT h.held FROM account_holds h WHERE h.account_id = NEW.account_id), 0)
       + NEW.amount
BEGIN SELECT RAISE(ABORT, 'a hold must be new, of a user account, and within its available balance'); END;

CREATE TRIGGER holds_count_in_their_account AFTER INSERT ON holds
BEGIN
    INSERT INTO account_holds (account_id, held, active) VALUES (NEW.account_id, NEW.amount, 1)
    ON CONFLICT (account_id) DO UPDATE SET held = held + excluded.held, active = active + 1;
END;

-- A hold closes once, and nothing else about it ever changes.
CREATE TRIGGER holds_close_once BEFORE UPDATE ON holds
WHEN OLD.status <> 'HELD' OR NEW.status = 'HELD'
  OR NEW.seq IS NOT OLD.seq OR NEW.id IS NOT OLD.id OR NEW.account_id IS NOT OLD.account_id
  OR NEW.user_id IS NOT OLD.user_id OR NEW.asset_type_id IS NOT OLD.asset_type_id
  OR NEW.amount IS NOT OLD.amount OR NEW.request_id IS NOT OLD.request_id
  OR NEW.reference_id IS NOT OLD.reference_id OR NEW.note IS NOT OLD.note
  OR NEW.metadata IS NOT OLD.metadata OR NEW.expires_at IS NOT OLD.expires_at
  OR NEW.created_at IS NOT OLD.created_at
BEGIN SELECT RAISE(ABORT, 'a hold closes once, from HELD, and changes in nothing else'); END;

CREATE TRIGGER holds_release_their_account AFTER UPDATE OF status ON holds
BEGIN
    UPDATE account_holds SET held = held - OLD.amount, active = active - 1
     WHERE account_id = OLD.account_id;
END;

CREATE TRIGGER holds_refuse_delete BEFORE DELETE ON holds
BEGIN SELECT RAISE(ABORT, 'holds are closed, never deleted'); END;

-- A capture's entry names its hold: at most one entry per hold.
ALTER TABLE ledger_entries ADD COLUMN hold_seq INTEGER REFERENCES holds (seq);
CREATE UNIQUE INDEX ledger_entries_by_hold ON ledger_entries (hold_seq) WHERE hold_seq IS NOT NULL;

-- The entry of a capture is a SPEND or TRANSFER from the hold's account, of
-- exactly what the hold says was captured, at the instant it closed.
CREATE TRIGGER ledger_entries_capture_their_hold BEFORE INSERT ON ledger_entries
WHEN NEW.hold_seq IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM holds h
     WHERE h.seq = NEW.hold_seq AND h.status = 'CAPTURED'
       AND h.account_id = NEW.debit_account_id AND h.captured_amount = NEW.amount
       AND h.closed_at = NEW.created_at AND NEW.kind IN ('SPEND', 'TRANSFER'))
BEGIN SELECT RAISE(ABORT, 'a capture must spend exactly what its hold captured, from its account'); END;

-- No debit takes a user's balance below what holds set aside.
CREATE TRIGGER postings_keep_held_money BEFORE INSERT ON postings
WHEN NEW.delta < 0
 AND NEW.balance_after < (SELECT h.held FROM account_holds h WHERE h.account_id = NEW.account_id)
BEGIN SELECT RAISE(ABORT, 'a debit cannot take a balance below what is held'); END;

-- A capture or a void names the hold it closed; the answer to a hold route
-- (and to any write whose user had money held) records the balances as they
-- were, so a replay answers them as then.
ALTER TABLE idempotency_records ADD COLUMN hold_seq INTEGER REFERENCES holds (seq);
ALTER TABLE idempotency_records ADD COLUMN answer_state TEXT
    CHECK (answer_state IS NULL OR (json_valid(answer_state) AND length(answer_state) <= 65536));
