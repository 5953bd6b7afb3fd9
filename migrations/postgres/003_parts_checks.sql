-- Schema version 3, after the pass that fills the parts (see 003_parts.sql).

ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_are_append_only;
ALTER TABLE postings ENABLE TRIGGER postings_are_append_only;
ALTER TABLE holds ENABLE TRIGGER holds_close_once;

-- Every entry names the parts it moves, every hold those it sets aside.
ALTER TABLE ledger_entries ALTER COLUMN parts SET NOT NULL;
ALTER TABLE ledger_entries ALTER COLUMN paid SET NOT NULL;
ALTER TABLE ledger_entries ADD CONSTRAINT parts_paid_within_the_amount
    CHECK (paid BETWEEN 0 AND amount);
ALTER TABLE holds ALTER COLUMN parts SET NOT NULL;

-- No part of a user's balance below zero: paid at least 0 and at most the
-- balance (free, the rest, at least 0); what holds set aside of each part
-- at most what there is of it. The Treasury keeps no parts on its row.
-- (Named after the checks of version 1, which are tried first, by name.)
ALTER TABLE accounts
    ADD CONSTRAINT parts_within_the_balance
        CHECK (paid >= 0 AND (balance < 0 OR paid <= balance)),
    ADD CONSTRAINT parts_within_what_is_held
        CHECK (held_paid >= 0 AND held_paid <= held AND held_paid <= paid
               AND held - held_paid <= balance - paid),
    ADD CONSTRAINT the_treasury_keeps_no_parts
        CHECK (owner_type = 'USER' OR (paid = 0 AND held_paid = 0));

-- The paid amount of stored parts.
CREATE FUNCTION wallet_parts_paid(parts text) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(sum((p ->> 'amount')::bigint), 0)::bigint
      FROM jsonb_array_elements(parts::jsonb) AS p
     WHERE p ->> 'kind' = 'PAID'
$$;


-- A new hold sets its paid part aside with its amount.
CREATE OR REPLACE FUNCTION holds_fit_and_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    account accounts%ROWTYPE;
    hold_paid bigint := wallet_parts_paid(NEW.parts);
BEGIN
    SELECT * INTO account FROM accounts WHERE id = NEW.account_id FOR UPDATE;
    IF NEW.status <> 'HELD' OR NEW.captured_amount <> 0 OR account.owner_type <> 'USER'
       OR account.owner_id IS DISTINCT FROM NEW.user_id
       OR account.balance - account.held < NEW.amount THEN
        RAISE EXCEPTION 'a hold must be new, of a user account, and within its available balance'
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE accounts SET held = held + NEW.amount, held_paid = held_paid + hold_paid,
                        active_holds = active_holds + 1
     WHERE id = NEW.account_id;
    UPDATE asset_totals SET held = held + NEW.amount
     WHERE asset_type_id = NEW.asset_type_id AND shard = wallet_shard();
    RETURN NEW;
END $$;

-- A hold closes once, from HELD, and changes in nothing else (its parts
-- included); closing it gives back what it set aside, its paid part too.
CREATE OR REPLACE FUNCTION holds_close_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'holds are closed, never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status <> 'HELD' OR NEW.status = 'HELD'
       OR (NEW.seq, NEW.id, NEW.account_id, NEW.user_id, NEW.asset_type_id, NEW.amount,
           NEW.request_id, NEW.reference_id, NEW.note, NEW.metadata, NEW.expires_at,
           NEW.created_at, NEW.parts)
          IS DISTINCT FROM
          (OLD.seq, OLD.id, OLD.account_id, OLD.user_id, OLD.asset_type_id, OLD.amount,
           OLD.request_id, OLD.reference_id, OLD.note, OLD.metadata, OLD.expires_at,
           OLD.created_at, OLD.parts) THEN
        RAISE EXCEPTION 'a hold closes once, from HELD, and changes in nothing else'
            USING ERRCODE = 'restrict_violation';
    END IF;
    UPDATE accounts SET held = held - OLD.amount, active_holds = active_holds - 1,
                        held_paid = held_paid - wallet_parts_paid(OLD.parts)
     WHERE id = OLD.account_id;
    UPDATE asset_totals SET held = held - OLD.amount
     WHERE asset_type_id = OLD.asset_type_id AND shard = wallet_shard();
    RETURN NEW;
END $$;

-- That an entry's parts add up to its amount, and that `paid` is their
-- PAID part, `wallet verify` checks, not a trigger: parsing JSON on every
-- write cost spends a third of their rate.

-- As version 1's, and a posting moves its account's paid part by the paid
-- part its entry moves: a user's on its row (which must then equal
-- paid_after), a Treasury's in the totals (the negative of what users
-- hold), where it keeps no running figure (paid_after NULL).
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
    IF account.owner_type = 'USER' THEN
        UPDATE accounts SET balance = balance + NEW.delta, paid = paid + paid_delta
         WHERE id = NEW.account_id
         RETURNING * INTO account;
    END IF;
    IF account.owner_type = 'SYSTEM' THEN
        IF NEW.balance_after IS NOT NULL OR NEW.paid_after IS NOT NULL THEN
            RAISE EXCEPTION 'a Treasury posting keeps no running balance'
                USING ERRCODE = 'check_violation';
        END IF;
        UPDATE asset_totals SET treasury = treasury + NEW.delta, paid = paid - paid_delta
         WHERE asset_type_id = account.asset_type_id AND shard = wallet_shard();
        RETURN NEW;
    END IF;
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
