-- Schema version 2: API keys, and idempotency keys scoped to the caller.
-- Applied after schema.sql by `storage::migrate`, in the same single IMMEDIATE
-- transaction as any earlier step, with foreign keys checked before COMMIT.

-- The callers that may use the service. Only a SHA-256 digest of each secret
-- is kept: the secret is printed once by `wallet keys create` and a copy of
-- this file (a backup, a stolen disk) cannot be turned back into a working key.
-- Secrets carry at least 128 random bits, so a fast hash is enough: there is
-- no dictionary to guess from, unlike a password.
CREATE TABLE api_keys (
    -- Never 0: caller_id 0 in ledger_entries is the anonymous caller.
    id            INTEGER PRIMARY KEY CHECK (id > 0),
    -- How operators name the key (`wallet keys revoke NAME`); never reused,
    -- even once revoked, so a name in a log always means one key.
    name          TEXT    NOT NULL UNIQUE
                  CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^A-Za-z0-9_.-]*'),
    secret_sha256 BLOB    NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    -- A comma-separated list of read, spend, grant, admin, in that order.
    scopes        TEXT    NOT NULL CHECK (length(scopes) BETWEEN 4 AND 32
                                          AND scopes NOT GLOB '*[^a-z,]*'),
    created_at    INTEGER NOT NULL,
    -- Written by the server at most once a minute per key, never per request.
    last_used_at  INTEGER,
    -- Set once by `wallet keys revoke`; a revoked key is kept, not deleted,
    -- because the entries it wrote name it as their caller.
    revoked_at    INTEGER
) STRICT;

-- Bumped by every change that decides who may call (a new key, a
-- revocation), so a running server notices one by reading a single row
-- instead of the whole table.
CREATE TABLE api_keys_generation (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    generation  INTEGER NOT NULL
) STRICT;
INSERT INTO api_keys_generation (id, generation) VALUES (1, 0);

CREATE TRIGGER api_keys_bump_generation_on_insert AFTER INSERT ON api_keys
BEGIN UPDATE api_keys_generation SET generation = generation + 1; END;
CREATE TRIGGER api_keys_bump_generation_on_revoke AFTER UPDATE OF revoked_at ON api_keys
BEGIN UPDATE api_keys_generation SET generation = generation + 1; END;

-- A key's identity never changes, and a revocation is final: un-revoking by
-- hand would bring back a key an operator decided was compromised.
CREATE TRIGGER api_keys_refuse_delete BEFORE DELETE ON api_keys
BEGIN SELECT RAISE(ABORT, 'api keys are revoked, never deleted'); END;
CREATE TRIGGER api_keys_keep_their_identity BEFORE UPDATE ON api_keys
WHEN NEW.id IS NOT OLD.id OR NEW.name IS NOT OLD.name
  OR NEW.secret_sha256 IS NOT OLD.secret_sha256 OR NEW.scopes IS NOT OLD.scopes
  OR NEW.created_at IS NOT OLD.created_at
  OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS NOT OLD.revoked_at)
BEGIN SELECT RAISE(ABORT, 'an api key only gains a last use or a revocation'); END;

-- ledger_entries gains caller_id, and its idempotency keys become unique per
-- caller: the same key from two API keys names two different requests, and
-- one caller never finds (and so never replays) another's entry. SQLite
-- cannot drop a UNIQUE column constraint, so the table is rebuilt: copied
-- whole, seq for seq, then swapped in. Every existing entry, the seed's
-- included, belongs to the anonymous caller (0), the only caller version 1
-- knew, so its keys still replay for that caller.
--
-- The postings trigger that reads ledger_entries is dropped first and
-- recreated after the swap, as are the append-only triggers, which go with
-- the old table.
DROP TRIGGER postings_match_their_entry;

CREATE TABLE ledger_entries_v2 (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    kind               TEXT    NOT NULL CHECK (kind IN ('TOPUP', 'BONUS', 'SPEND')),
    asset_type_id      TEXT    NOT NULL REFERENCES asset_types (id),
    debit_account_id   INTEGER NOT NULL,
    credit_account_id  INTEGER NOT NULL,
    amount             INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
    idempotency_key    TEXT    NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    reference_id       TEXT    CHECK (length(reference_id) <= 255),
    note               TEXT    CHECK (length(note) <= 1024),
    created_at         INTEGER NOT NULL,
    -- Who wrote the entry: an api_keys id, or 0 for the anonymous caller (a
    -- service without keys, and the seed). Not NULL, because UNIQUE treats
    -- NULLs as distinct and would let anonymous keys repeat.
    caller_id          INTEGER NOT NULL DEFAULT 0 CHECK (caller_id >= 0),
    CHECK (debit_account_id <> credit_account_id),
    FOREIGN KEY (debit_account_id, asset_type_id) REFERENCES accounts (id, asset_type_id),
    FOREIGN KEY (credit_account_id, asset_type_id) REFERENCES accounts (id, asset_type_id),
    -- The backstop behind the writer's own check, and the index it looks
    -- keys up by.
    UNIQUE (caller_id, idempotency_key)
) STRICT;

INSERT INTO ledger_entries_v2 (seq, id, kind, asset_type_id, debit_account_id, credit_account_id,
                               amount, idempotency_key, reference_id, note, created_at, caller_id)
SELECT seq, id, kind, asset_type_id, debit_account_id, credit_account_id,
       amount, idempotency_key, reference_id, note, created_at, 0
  FROM ledger_entries;

DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_v2 RENAME TO ledger_entries;

CREATE TRIGGER ledger_entries_refuse_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
CREATE TRIGGER ledger_entries_refuse_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;

-- A caller other than the anonymous one is a key that exists. (A foreign key
-- cannot say this: 0 names no row.)
CREATE TRIGGER ledger_entries_name_a_known_caller BEFORE INSERT ON ledger_entries
WHEN NEW.caller_id <> 0 AND NOT EXISTS (SELECT 1 FROM api_keys WHERE id = NEW.caller_id)
BEGIN SELECT RAISE(ABORT, 'an entry''s caller must be an api key or 0'); END;

CREATE TRIGGER postings_match_their_entry BEFORE INSERT ON postings
WHEN NOT EXISTS (
    SELECT 1 FROM ledger_entries e
    WHERE e.seq = NEW.entry_seq
      AND ((e.debit_account_id = NEW.account_id AND NEW.delta = -e.amount)
        OR (e.credit_account_id = NEW.account_id AND NEW.delta = e.amount)))
BEGIN SELECT RAISE(ABORT, 'a posting must be one leg of its entry'); END;
