-- Version 7, after the pass that fills the parts (see 007_parts.sql).

CREATE TRIGGER ledger_entries_refuse_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END;
CREATE TRIGGER postings_refuse_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only'); END;

-- Holds count their paid part in and out with their amount.
DROP TRIGGER holds_count_in_their_account;
CREATE TRIGGER holds_count_in_their_account AFTER INSERT ON holds
BEGIN
    INSERT INTO account_holds (account_id, held, active, held_paid)
    VALUES (NEW.account_id, NEW.amount, 1,
            (SELECT coalesce(sum(json_extract(p.value, '$.amount')), 0)
               FROM json_each(NEW.parts) p WHERE json_extract(p.value, '$.kind') = 'PAID'))
    ON CONFLICT (account_id) DO UPDATE
       SET held = held + excluded.held, active = active + 1,
           held_paid = held_paid + excluded.held_paid;
END;

DROP TRIGGER holds_release_their_account;
CREATE TRIGGER holds_release_their_account AFTER UPDATE OF status ON holds
BEGIN
    UPDATE account_holds
       SET held = held - OLD.amount, active = active - 1,
           held_paid = held_paid - (SELECT coalesce(sum(json_extract(p.value, '$.amount')), 0)
                                      FROM json_each(OLD.parts) p
                                     WHERE json_extract(p.value, '$.kind') = 'PAID')
     WHERE account_id = OLD.account_id;
END;

CREATE TRIGGER holds_close_once BEFORE UPDATE ON holds
WHEN OLD.status <> 'HELD' OR NEW.status = 'HELD'
  OR NEW.seq IS NOT OLD.seq OR NEW.id IS NOT OLD.id OR NEW.account_id IS NOT OLD.account_id
  OR NEW.user_id IS NOT OLD.user_id OR NEW.asset_type_id IS NOT OLD.asset_type_id
  OR NEW.amount IS NOT OLD.amount OR NEW.request_id IS NOT OLD.request_id
  OR NEW.reference_id IS NOT OLD.reference_id OR NEW.note IS NOT OLD.note
  OR NEW.metadata IS NOT OLD.metadata OR NEW.expires_at IS NOT OLD.expires_at
  OR NEW.created_at IS NOT OLD.created_at OR NEW.parts IS NOT OLD.parts
BEGIN SELECT RAISE(ABORT, 'a hold closes once, from HELD, and changes in nothing else'); END;

CREATE TRIGGER holds_name_their_parts BEFORE INSERT ON holds
WHEN NEW.parts IS NULL
BEGIN SELECT RAISE(ABORT, 'a hold must name the parts it sets aside'); END;

CREATE TRIGGER ledger_entries_name_their_parts BEFORE INSERT ON ledger_entries
WHEN NEW.parts IS NULL
BEGIN SELECT RAISE(ABORT, 'an entry must name the parts it moves'); END;

-- No part of a user's balance below zero: paid at least 0 and at most the
-- balance (free, the rest, at least 0). A posting names its running paid
-- total.
DROP TRIGGER postings_keep_users_solvent;
CREATE TRIGGER postings_keep_users_solvent BEFORE INSERT ON postings
WHEN NEW.paid_after IS NULL
  OR ((NEW.balance_after < 0 OR NEW.paid_after < 0 OR NEW.paid_after > NEW.balance_after)
      AND (SELECT owner_type FROM accounts WHERE id = NEW.account_id) = 'USER')
BEGIN SELECT RAISE(ABORT, 'a user balance and each of its parts cannot go below zero'); END;
