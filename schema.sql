-- The wallet ledger, schema version 1. Applied once, in one IMMEDIATE
-- transaction, by `storage::migrate`; `PRAGMA user_version` records it.
--
-- The ledger is double-entry and append-only: every movement is one row of
-- ledger_entries that debits one account and credits another, plus one row of
-- postings for each of the two accounts recording its balance after the entry.
-- Nothing here is ever updated or deleted, so there is no mutable balance that
-- could drift from the history: an account's balance is the balance_after of
-- its latest posting, found through the postings primary key in O(log n).
--
-- The database refuses on its own what must never be, whatever writes to it:
-- CHECKs on every row, composite foreign keys that keep an entry's accounts in
-- its asset, and triggers that refuse UPDATE and DELETE and refuse a posting
-- whose balance does not follow from the previous one.

-- The currencies. Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE asset_types (
    id          TEXT    PRIMARY KEY,                 -- a UUID, as callers see it
    symbol      TEXT    NOT NULL UNIQUE
                CHECK (length(symbol) BETWEEN 1 AND 32 AND symbol NOT GLOB '*[^A-Z0-9_]*'),
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    created_at  INTEGER NOT NULL
) STRICT;

-- Who holds value: one SYSTEM account (the Treasury) per asset, and one USER
-- account per (user, asset), opened by the first credit to it.
CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    owner_type     TEXT    NOT NULL CHECK (owner_type IN ('USER', 'SYSTEM')),
    -- The user id for USER accounts; NULL for the Treasury.
    owner_id       TEXT    CHECK ((owner_type = 'USER') = (owner_id IS NOT NULL)),
    asset_type_id  TEXT    NOT NULL REFERENCES asset_types (id),
    created_at     INTEGER NOT NULL,
    -- The target of the composite foreign keys below: lets an entry name an
    -- account and its asset together, so the two cannot disagree.
    UNIQUE (id, asset_type_id)
) STRICT;

-- One account per user and asset; also the index a write uses to find it.
CREATE UNIQUE INDEX accounts_by_user ON accounts (owner_id, asset_type_id)
    WHERE owner_type = 'USER';
-- One Treasury per asset.
CREATE UNIQUE INDEX accounts_treasury ON accounts (asset_type_id)
    WHERE owner_type = 'SYSTEM';

-- The journal. seq numbers entries in the order they were appended: history
-- pages and the audit walk it, and a cursor is one seq.
CREATE TABLE ledger_entries (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,      -- the transaction id callers see
    kind               TEXT    NOT NULL CHECK (kind IN ('TOPUP', 'BONUS', 'SPEND')),
    asset_type_id      TEXT    NOT NULL REFERENCES asset_types (id),
    debit_account_id   INTEGER NOT NULL,
    credit_account_id  INTEGER NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
    -- UNIQUE across the whole ledger: the backstop behind the writer's own
    -- check, so no key can ever name two entries.
    idempotency_key    TEXT    NOT NULL UNIQUE
                       CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    reference_id       TEXT    CHECK (length(reference_id) <= 255),
    note               TEXT    CHECK (length(note) <= 1024),
    created_at         INTEGER NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    -- Both accounts hold the entry's asset.
    FOREIGN KEY (debit_account_id, asset_type_id) REFERENCES accounts (id, asset_type_id),
    FOREIGN KEY (credit_account_id, asset_type_id) REFERENCES accounts (id, asset_type_id)
) STRICT;

-- The two legs of each entry, one per account, with the account's balance
-- right after it. WITHOUT ROWID: the primary key is the table, so an
-- account's latest balance and its history pages are one b-tree descent.
CREATE TABLE postings (
    account_id     INTEGER NOT NULL REFERENCES accounts (id),
    entry_seq      INTEGER NOT NULL REFERENCES ledger_entries (seq),
    delta          INTEGER NOT NULL CHECK (delta <> 0),   -- credit positive, debit negative
    balance_after  INTEGER NOT NULL,
    PRIMARY KEY (account_id, entry_seq)
) STRICT, WITHOUT ROWID;

-- Append-only: the history is the truth, so no entry or posting changes.
CREATE TRIGGER ledger_entries_refuse_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
CREATE TRIGGER ledger_entries_refuse_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
CREATE TRIGGER postings_refuse_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only'); END;
CREATE TRIGGER postings_refuse_delete BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only'); END;

-- A posting must be one leg of its entry: the entry's debit account moving by
-- minus the amount, or its credit account moving by the amount.
CREATE TRIGGER postings_match_their_entry BEFORE INSERT ON postings
WHEN NOT EXISTS (
    SELECT 1 FROM ledger_entries e
    WHERE e.seq = NEW.entry_seq
      AND ((e.debit_account_id = NEW.account_id AND NEW.delta = -e.amount)
        OR (e.credit_account_id = NEW.account_id AND NEW.delta = e.amount)))
BEGIN SELECT RAISE(ABORT, 'a posting must be one leg of its entry'); END;

-- A posting's balance follows from the account's previous one, and postings
-- of one account arrive in entry order: the stored balances are a running sum.
CREATE TRIGGER postings_continue_the_balance BEFORE INSERT ON postings
WHEN NEW.balance_after IS NOT COALESCE(
        (SELECT p.balance_after FROM postings p
          WHERE p.account_id = NEW.account_id
          ORDER BY p.entry_seq DESC LIMIT 1), 0) + NEW.delta
  OR EXISTS (SELECT 1 FROM postings p
              WHERE p.account_id = NEW.account_id AND p.entry_seq > NEW.entry_seq)
BEGIN SELECT RAISE(ABORT, 'a posting must continue its account''s balance'); END;

-- A user's balance never goes below zero.
CREATE TRIGGER postings_keep_users_solvent BEFORE INSERT ON postings
WHEN NEW.balance_after < 0
 AND (SELECT owner_type FROM accounts WHERE id = NEW.account_id) = 'USER'
BEGIN SELECT RAISE(ABORT, 'a user balance cannot go below zero'); END;
