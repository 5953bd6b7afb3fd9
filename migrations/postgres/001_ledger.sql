-- The PostgreSQL backend's schema, version 1: the ledger of the SQLite
-- schema (versions 1 to 5), shaped for many `wallet serve` instances on one
-- database. What differs, and why:
--
-- * A user's balance, what its holds set aside and how many are active
--   live on its account row, kept by the triggers below inside the write's
--   transaction. A writer locks each account it touches (SELECT ... FOR
--   UPDATE, in account-id order) before it writes, so one user's writes
--   line up on that row and nowhere else, and a posting's balance_after is
--   checked against the row it just moved.
-- * The Treasury keeps no running balance: every write would lock its
--   row. Its total, and each asset's supply figures, are sums over a few
--   `asset_totals` rows per asset; a transaction adds to the row of its
--   own connection (pg_backend_pid() modulo the shard count), so writers
--   on different connections never wait on one another there.
-- * An entry's `seq` is not commit order once transactions overlap. The
--   event feed's `feed_seq` is given at COMMIT (a deferred trigger, under
--   a transaction-scoped advisory lock held until the commit is done), so
--   the feed is numbered in commit order and a reader never sees a later
--   number commit before an earlier one.
--
-- The database refuses what must never be, whatever writes to it: amounts
-- out of range, a user below zero or below what is held, an entry or
-- posting changed or deleted, a posting that is not a leg of its entry, a
-- reversal of more than is left, a hold that does not fit or closes twice.
-- Times are milliseconds since the Unix epoch, as in SQLite.

CREATE TABLE wallet_schema_version (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version   integer NOT NULL CHECK (version >= 1)
);

CREATE FUNCTION wallet_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END $$;

-- Entry kinds: a new kind is an INSERT.
CREATE TABLE entry_kinds (
    name        text    PRIMARY KEY CHECK (name ~ '^[A-Z_]{1,32}$'),
    -- false for REVERSAL: a reversal is never itself reversed.
    reversible  boolean NOT NULL
);
INSERT INTO entry_kinds (name, reversible) VALUES
    ('TOPUP', true), ('BONUS', true), ('SPEND', true), ('TRANSFER', true),
    ('REVERSAL', false);
CREATE TRIGGER entry_kinds_are_kept BEFORE UPDATE OR DELETE ON entry_kinds
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('entry kinds are added, never changed');

CREATE TABLE asset_types (
    id          uuid     PRIMARY KEY,
    symbol      text     NOT NULL UNIQUE CHECK (symbol ~ '^[A-Z0-9_]{1,32}$'),
    name        text     NOT NULL CHECK (char_length(name) BETWEEN 1 AND 128),
    decimals    smallint NOT NULL DEFAULT 0 CHECK (decimals BETWEEN 0 AND 18),
    created_at  bigint   NOT NULL
);
CREATE TRIGGER asset_types_are_kept BEFORE UPDATE OR DELETE ON asset_types
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('asset types are never renamed or deleted');

CREATE FUNCTION asset_types_are_bounded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One at a time, so two instances cannot both add the 1000th.
    PERFORM pg_advisory_xact_lock(hashtext('wallet.asset_types'));
    IF (SELECT count(*) FROM asset_types) >= 1000 THEN
        RAISE EXCEPTION 'at most 1000 asset types' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER asset_types_are_bounded BEFORE INSERT ON asset_types
    FOR EACH ROW EXECUTE FUNCTION asset_types_are_bounded();

CREATE TABLE accounts (
    id             bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_type     text    NOT NULL CHECK (owner_type IN ('USER', 'SYSTEM')),
    -- The user id for USER accounts; NULL for the Treasury.
    owner_id       text    CHECK ((owner_type = 'USER') = (owner_id IS NOT NULL)),
    asset_type_id  uuid    NOT NULL REFERENCES asset_types (id),
    balance        bigint  NOT NULL DEFAULT 0,
    held           bigint  NOT NULL DEFAULT 0,
    -- API.md: at most 1000 active holds on one account.
    active_holds   integer NOT NULL DEFAULT 0 CHECK (active_holds BETWEEN 0 AND 1000),
    created_at     bigint  NOT NULL,
    -- No user below zero, nor above what a JavaScript client reads exactly,
    -- nor below what its holds set aside; the Treasury keeps none of these.
    CONSTRAINT no_user_below_zero CHECK (balance BETWEEN 0 AND 9007199254740991),
    -- (A balance below zero is the check above's to refuse, by its name.)
    CONSTRAINT no_debit_below_what_is_held CHECK (held >= 0 AND (balance < 0 OR held <= balance)),
    CONSTRAINT the_treasury_keeps_no_balance
        CHECK (owner_type = 'USER' OR (balance = 0 AND held = 0 AND active_holds = 0)),
    -- The target of the composite foreign keys below: an entry names an
    -- account and its asset together, so the two cannot disagree.
    UNIQUE (id, asset_type_id)
);
CREATE UNIQUE INDEX accounts_by_user ON accounts (owner_id, asset_type_id)
    WHERE owner_type = 'USER';
CREATE UNIQUE INDEX accounts_treasury ON accounts (asset_type_id)
    WHERE owner_type = 'SYSTEM';

CREATE FUNCTION accounts_keep_their_identity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'accounts are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.id, NEW.owner_type, NEW.owner_id, NEW.asset_type_id, NEW.created_at)
       IS DISTINCT FROM (OLD.id, OLD.owner_type, OLD.owner_id, OLD.asset_type_id, OLD.created_at)
    THEN
        RAISE EXCEPTION 'an account keeps its owner and asset' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_keep_their_identity BEFORE UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_keep_their_identity();

-- Per asset, a few rows whose sums are its figures: what the Treasury has
-- moved (its balance), what was issued, spent and reversed ever, what
-- active holds set aside, how many users hold a non-zero balance. numeric,
-- so no sum can overflow.
CREATE TABLE asset_totals (
    asset_type_id  uuid     NOT NULL REFERENCES asset_types (id),
    shard          smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
    treasury       numeric  NOT NULL DEFAULT 0,
    topup          numeric  NOT NULL DEFAULT 0 CHECK (topup >= 0),
    bonus          numeric  NOT NULL DEFAULT 0 CHECK (bonus >= 0),
    spent          numeric  NOT NULL DEFAULT 0 CHECK (spent >= 0),
    reversed       numeric  NOT NULL DEFAULT 0 CHECK (reversed >= 0),
    held           numeric  NOT NULL DEFAULT 0,
    holders        bigint   NOT NULL DEFAULT 0,
    -- The newest entry of the asset counted here; NULL before the first.
    last_entry_at  bigint,
    PRIMARY KEY (asset_type_id, shard)
);
CREATE TRIGGER asset_totals_are_kept BEFORE DELETE ON asset_totals
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('asset totals are never deleted');

CREATE FUNCTION asset_types_open_their_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO asset_totals (asset_type_id, shard)
        SELECT NEW.id, shard FROM generate_series(0, 15) AS shard;
    RETURN NULL;
END $$;
CREATE TRIGGER asset_types_open_their_totals AFTER INSERT ON asset_types
    FOR EACH ROW EXECUTE FUNCTION asset_types_open_their_totals();

-- The row of asset_totals this connection adds to.
CREATE FUNCTION wallet_shard() RETURNS smallint LANGUAGE sql STABLE AS
    $$ SELECT (pg_backend_pid() % 16)::smallint $$;

CREATE TABLE api_keys (
    -- Never 0: caller_id 0 is the anonymous caller.
    id            bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY CHECK (id > 0),
    name          text    NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    secret_sha256 bytea   NOT NULL UNIQUE CHECK (octet_length(secret_sha256) = 32),
    -- A comma-separated list of read, spend, grant, admin, in that order.
    scopes        text    NOT NULL CHECK (scopes ~ '^[a-z,]{4,32}$'),
    created_at    bigint  NOT NULL,
    last_used_at  bigint,
    revoked_at    bigint
);
CREATE TABLE api_keys_generation (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    generation  bigint  NOT NULL
);
INSERT INTO api_keys_generation (generation) VALUES (0);

CREATE FUNCTION api_keys_keep_their_identity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'api keys are revoked, never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.id, NEW.name, NEW.secret_sha256, NEW.scopes, NEW.created_at)
           IS DISTINCT FROM (OLD.id, OLD.name, OLD.secret_sha256, OLD.scopes, OLD.created_at)
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at) THEN
        RAISE EXCEPTION 'an api key only gains a last use or a revocation'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_keep_their_identity BEFORE UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_keep_their_identity();

-- Every instance reloads its keys when the generation moves.
CREATE FUNCTION api_keys_bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE api_keys_generation SET generation = generation + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER api_keys_bump_generation_on_insert AFTER INSERT ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_bump_generation();
CREATE TRIGGER api_keys_bump_generation_on_revoke AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION api_keys_bump_generation();

CREATE TABLE idempotency_records (
    id            bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- An api_keys id, or 0 for the anonymous caller.
    caller_id     bigint  NOT NULL CHECK (caller_id >= 0),
    key           text    NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    -- The canonical request and the answer's state, as the engine wrote
    -- them (compact JSON text).
    request       text    NOT NULL CHECK (octet_length(request) <= 262144
                                          AND jsonb_typeof(request::jsonb) = 'object'),
    entry_count   integer NOT NULL CHECK (entry_count >= 0),
    created_at    bigint  NOT NULL,
    hold_seq      bigint,
    answer_state  text    CHECK (answer_state IS NULL
                                 OR (octet_length(answer_state) <= 65536
                                     AND answer_state::jsonb IS NOT NULL)),
    -- A key names one request per caller: a second instance inserting the
    -- same key waits for the first to commit, then finds its record.
    UNIQUE (caller_id, key)
);

CREATE FUNCTION idempotency_records_name_a_known_caller() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.caller_id <> 0 AND NOT EXISTS (SELECT 1 FROM api_keys WHERE id = NEW.caller_id) THEN
        RAISE EXCEPTION 'a record''s caller must be an api key or 0'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER idempotency_records_name_a_known_caller BEFORE INSERT ON idempotency_records
    FOR EACH ROW EXECUTE FUNCTION idempotency_records_name_a_known_caller();
CREATE TRIGGER idempotency_records_are_append_only BEFORE UPDATE OR DELETE ON idempotency_records
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('idempotency_records is append-only');

-- Compact JSON metadata, keys sorted (API.md: an object of at most 2048
-- bytes), kept as the text the engine wrote.
CREATE DOMAIN wallet_metadata AS text
    CHECK (VALUE IS NULL OR (octet_length(VALUE) <= 2048
                             AND jsonb_typeof(VALUE::jsonb) = 'object'));

CREATE TABLE holds (
    seq              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               uuid    NOT NULL UNIQUE,
    account_id       bigint  NOT NULL,
    user_id          text    NOT NULL,
    asset_type_id    uuid    NOT NULL REFERENCES asset_types (id),
    amount           bigint  NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
    status           text    NOT NULL CHECK (status IN ('HELD', 'CAPTURED', 'VOIDED', 'EXPIRED')),
    captured_amount  bigint  NOT NULL DEFAULT 0 CHECK (captured_amount BETWEEN 0 AND amount),
    request_id       bigint  NOT NULL REFERENCES idempotency_records (id),
    reference_id     text    CHECK (char_length(reference_id) <= 255),
    note             text    CHECK (char_length(note) <= 1024),
    metadata         wallet_metadata,
    expires_at       bigint  NOT NULL,
    created_at       bigint  NOT NULL,
    closed_at        bigint,
    CHECK (expires_at > created_at),
    CHECK ((status = 'HELD') = (closed_at IS NULL)),
    CHECK ((status = 'CAPTURED') = (captured_amount > 0)),
    -- An expiry closes at the instant it was due; a capture or a void only
    -- before it.
    CHECK (status <> 'EXPIRED' OR closed_at = expires_at),
    CHECK (status NOT IN ('CAPTURED', 'VOIDED') OR closed_at < expires_at),
    FOREIGN KEY (account_id, asset_type_id) REFERENCES accounts (id, asset_type_id)
);
CREATE INDEX holds_by_request ON holds (request_id);
CREATE INDEX holds_by_user ON holds (user_id, seq);
CREATE INDEX holds_due ON holds (expires_at) WHERE status = 'HELD';
CREATE INDEX holds_due_by_account ON holds (account_id, expires_at) WHERE status = 'HELD';
ALTER TABLE idempotency_records
    ADD FOREIGN KEY (hold_seq) REFERENCES holds (seq) DEFERRABLE INITIALLY DEFERRED;

-- A new hold must be HELD, of a user account of its user, and fit what the
-- account has available; it is counted on the account and in the totals.
CREATE FUNCTION holds_fit_and_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    account accounts%ROWTYPE;
BEGIN
    SELECT * INTO account FROM accounts WHERE id = NEW.account_id FOR UPDATE;
    IF NEW.status <> 'HELD' OR NEW.captured_amount <> 0 OR account.owner_type <> 'USER'
       OR account.owner_id IS DISTINCT FROM NEW.user_id
       OR account.balance - account.held < NEW.amount THEN
        RAISE EXCEPTION 'a hold must be new, of a user account, and within its available balance'
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE accounts SET held = held + NEW.amount, active_holds = active_holds + 1
     WHERE id = NEW.account_id;
    UPDATE asset_totals SET held = held + NEW.amount
     WHERE asset_type_id = NEW.asset_type_id AND shard = wallet_shard();
    RETURN NEW;
END $$;
CREATE TRIGGER holds_fit_and_count BEFORE INSERT ON holds
    FOR EACH ROW EXECUTE FUNCTION holds_fit_and_count();

-- A hold closes once, from HELD, and changes in nothing else; closing it
-- gives back what it set aside.
CREATE FUNCTION holds_close_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'holds are closed, never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status <> 'HELD' OR NEW.status = 'HELD'
       OR (NEW.seq, NEW.id, NEW.account_id, NEW.user_id, NEW.asset_type_id, NEW.amount,
           NEW.request_id, NEW.reference_id, NEW.note, NEW.metadata, NEW.expires_at,
           NEW.created_at)
          IS DISTINCT FROM
          (OLD.seq, OLD.id, OLD.account_id, OLD.user_id, OLD.asset_type_id, OLD.amount,
           OLD.request_id, OLD.reference_id, OLD.note, OLD.metadata, OLD.expires_at,
           OLD.created_at) THEN
        RAISE EXCEPTION 'a hold closes once, from HELD, and changes in nothing else'
            USING ERRCODE = 'restrict_violation';
    END IF;
    UPDATE accounts SET held = held - OLD.amount, active_holds = active_holds - 1
     WHERE id = OLD.account_id;
    UPDATE asset_totals SET held = held - OLD.amount
     WHERE asset_type_id = OLD.asset_type_id AND shard = wallet_shard();
    RETURN NEW;
END $$;
CREATE TRIGGER holds_close_once BEFORE UPDATE OR DELETE ON holds
    FOR EACH ROW EXECUTE FUNCTION holds_close_once();

CREATE TABLE ledger_entries (
    seq                bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                 uuid    NOT NULL UNIQUE,
    kind               text    NOT NULL REFERENCES entry_kinds (name),
    asset_type_id      uuid    NOT NULL REFERENCES asset_types (id),
    debit_account_id   bigint  NOT NULL,
    credit_account_id  bigint  NOT NULL,
    amount             bigint  NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
    request_id         bigint  NOT NULL REFERENCES idempotency_records (id),
    reference_id       text    CHECK (char_length(reference_id) <= 255),
    note               text    CHECK (char_length(note) <= 1024),
    metadata           wallet_metadata,
    -- A REVERSAL names the entry it reverses and the total reversed of it
    -- once this reversal counts; nothing else names either.
    reverses_seq       bigint  REFERENCES ledger_entries (seq),
    reversed_after     bigint,
    hold_seq           bigint  REFERENCES holds (seq),
    created_at         bigint  NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind = 'REVERSAL') = (reverses_seq IS NOT NULL)),
    CHECK ((reverses_seq IS NULL) = (reversed_after IS NULL)),
    FOREIGN KEY (debit_account_id, asset_type_id) REFERENCES accounts (id, asset_type_id),
    FOREIGN KEY (credit_account_id, asset_type_id) REFERENCES accounts (id, asset_type_id)
);
CREATE UNIQUE INDEX ledger_entries_by_hold ON ledger_entries (hold_seq)
    WHERE hold_seq IS NOT NULL;
CREATE INDEX ledger_entries_by_reference ON ledger_entries (reference_id)
    WHERE reference_id IS NOT NULL;
CREATE INDEX ledger_entries_by_request ON ledger_entries (request_id);
CREATE INDEX ledger_entries_by_time ON ledger_entries (created_at);
CREATE INDEX ledger_entries_reversals ON ledger_entries (reverses_seq, seq)
    WHERE reverses_seq IS NOT NULL;
CREATE TRIGGER ledger_entries_are_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('ledger_entries is append-only');

-- A reversal undoes at most what is left of a reversible entry, the other
-- way round; a capture spends exactly what its hold captured, from its
-- account. Both are checked with the rows they depend on locked.
CREATE FUNCTION ledger_entries_check_their_origin() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    original ledger_entries%ROWTYPE;
    reversed_before bigint;
BEGIN
    IF NEW.reverses_seq IS NOT NULL THEN
        SELECT * INTO original FROM ledger_entries WHERE seq = NEW.reverses_seq FOR SHARE;
        SELECT coalesce(max(reversed_after), 0) INTO reversed_before
          FROM ledger_entries WHERE reverses_seq = NEW.reverses_seq;
        IF NOT FOUND OR original.seq IS NULL
           OR NOT (SELECT reversible FROM entry_kinds WHERE name = original.kind)
           OR original.asset_type_id <> NEW.asset_type_id
           OR original.debit_account_id <> NEW.credit_account_id
           OR original.credit_account_id <> NEW.debit_account_id
           OR NEW.reversed_after > original.amount
           OR NEW.reversed_after <> NEW.amount + reversed_before THEN
            RAISE EXCEPTION 'a reversal must undo what is left of a reversible entry, the other way round'
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF NEW.hold_seq IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM holds h
         WHERE h.seq = NEW.hold_seq AND h.status = 'CAPTURED'
           AND h.account_id = NEW.debit_account_id AND h.captured_amount = NEW.amount
           AND h.closed_at = NEW.created_at AND NEW.kind IN ('SPEND', 'TRANSFER')) THEN
        RAISE EXCEPTION 'a capture must spend exactly what its hold captured, from its account'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_entries_check_their_origin BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_check_their_origin();

-- Each entry counts in its asset's totals, by kind.
CREATE FUNCTION ledger_entries_count_in_the_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE asset_totals SET
        topup = topup + CASE WHEN NEW.kind = 'TOPUP' THEN NEW.amount ELSE 0 END,
        bonus = bonus + CASE WHEN NEW.kind = 'BONUS' THEN NEW.amount ELSE 0 END,
        spent = spent + CASE WHEN NEW.kind = 'SPEND' THEN NEW.amount ELSE 0 END,
        reversed = reversed + CASE WHEN NEW.kind = 'REVERSAL' THEN NEW.amount ELSE 0 END,
        last_entry_at = greatest(last_entry_at, NEW.created_at)
     WHERE asset_type_id = NEW.asset_type_id AND shard = wallet_shard();
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_count_in_the_totals AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_count_in_the_totals();

CREATE TABLE postings (
    account_id     bigint NOT NULL REFERENCES accounts (id),
    entry_seq      bigint NOT NULL REFERENCES ledger_entries (seq),
    -- Credit positive, debit negative.
    delta          bigint NOT NULL CHECK (delta <> 0),
    -- The user's balance once this posting counts; NULL on the Treasury,
    -- which keeps no running balance.
    balance_after  bigint,
    PRIMARY KEY (account_id, entry_seq)
);
CREATE TRIGGER postings_are_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('postings is append-only');

-- A posting is one leg of its entry and moves its account: a user's
-- balance on its row (which must then equal balance_after, and which the
-- row's CHECKs keep at or above zero and what is held), the Treasury's in
-- the totals. A user's postings come in entry order: its writer holds the
-- account's row lock from before the entry was numbered.
CREATE FUNCTION postings_move_their_account() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry ledger_entries%ROWTYPE;
    account accounts%ROWTYPE;
BEGIN
    SELECT * INTO entry FROM ledger_entries WHERE seq = NEW.entry_seq;
    IF NOT ((entry.debit_account_id = NEW.account_id AND NEW.delta = -entry.amount)
            OR (entry.credit_account_id = NEW.account_id AND NEW.delta = entry.amount)) THEN
        RAISE EXCEPTION 'a posting must be one leg of its entry' USING ERRCODE = 'check_violation';
    END IF;
    -- The Treasury's row is read, never written: every write would queue
    -- behind an update of it.
    SELECT * INTO account FROM accounts WHERE id = NEW.account_id;
    IF account.owner_type = 'USER' THEN
        UPDATE accounts SET balance = balance + NEW.delta
         WHERE id = NEW.account_id
         RETURNING * INTO account;
    END IF;
    IF account.owner_type = 'SYSTEM' THEN
        IF NEW.balance_after IS NOT NULL THEN
            RAISE EXCEPTION 'a Treasury posting keeps no running balance'
                USING ERRCODE = 'check_violation';
        END IF;
        UPDATE asset_totals SET treasury = treasury + NEW.delta
         WHERE asset_type_id = account.asset_type_id AND shard = wallet_shard();
        RETURN NEW;
    END IF;
    IF NEW.balance_after IS DISTINCT FROM account.balance
       OR EXISTS (SELECT 1 FROM postings p
                   WHERE p.account_id = NEW.account_id AND p.entry_seq > NEW.entry_seq) THEN
        RAISE EXCEPTION 'a posting must continue its account''s balance'
            USING ERRCODE = 'check_violation';
    END IF;
    IF (account.balance = 0) <> (account.balance - NEW.delta = 0) THEN
        UPDATE asset_totals
           SET holders = holders + CASE WHEN account.balance = 0 THEN -1 ELSE 1 END
         WHERE asset_type_id = account.asset_type_id AND shard = wallet_shard();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER postings_move_their_account BEFORE INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION postings_move_their_account();

-- Every entry and every change of a hold, numbered in commit order (see
-- the top of this file).
CREATE TABLE events (
    feed_seq   bigint  PRIMARY KEY,
    -- The entry, for a transaction; NULL for a hold's change.
    entry_seq  bigint  REFERENCES ledger_entries (seq),
    -- The hold and its change ('hold.created', 'hold.captured', ...).
    hold_seq   bigint  REFERENCES holds (seq),
    type       text    CHECK (type IS NULL OR type ~ '^hold\.(created|captured|voided|expired)$'),
    CHECK ((entry_seq IS NULL) <> (hold_seq IS NULL)),
    CHECK ((hold_seq IS NULL) = (type IS NULL))
);
CREATE SEQUENCE events_feed_seq AS bigint;
CREATE TRIGGER events_are_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION wallet_refuse('events is append-only');

-- Fired at COMMIT, in the order the rows were written: the first takes the
-- feed's lock, held until the commit is done, so feed numbers are given in
-- commit order across every instance.
CREATE FUNCTION wallet_feed_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('wallet.feed'));
    IF TG_TABLE_NAME = 'ledger_entries' THEN
        INSERT INTO events (feed_seq, entry_seq) VALUES (nextval('events_feed_seq'), NEW.seq);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO events (feed_seq, hold_seq, type)
            VALUES (nextval('events_feed_seq'), NEW.seq, 'hold.created');
    ELSE
        INSERT INTO events (feed_seq, hold_seq, type)
            VALUES (nextval('events_feed_seq'), NEW.seq, 'hold.' || lower(NEW.status));
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_entries_are_told AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wallet_feed_record();
CREATE CONSTRAINT TRIGGER holds_are_told AFTER INSERT ON holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wallet_feed_record();
CREATE CONSTRAINT TRIGGER holds_closing_is_told AFTER UPDATE OF status ON holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION wallet_feed_record();
