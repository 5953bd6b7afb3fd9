-- Schema version 3: the paid and free parts of every user balance (API.md,
-- "Paid, free and expiring currency"), as SQLite's version 7.
--
-- * An entry's parts (what it moved: PAID, FREE, an EXPIRING lot), compact
--   JSON in the order taken (`ledger::parts::encode`), the same for both of
--   its sides; a hold's, what it sets aside.
-- * A user's paid part lives on its account row beside its balance
--   (`accounts.paid`), and of what its holds set aside (`held_paid`), moved
--   by the same triggers inside the write's transaction; free is the rest.
--   Each user posting carries the running paid total once it counts
--   (`paid_after`, checked against the row as `balance_after` is); a
--   Treasury's posting carries none, as it carries no balance.
-- * The paid currency users hold, per asset, is a sum over the asset's
--   `asset_totals` rows (`paid`), moved with the Treasury's total by the
--   entries that touch the Treasury: a transfer between users gives the
--   parts it took, so it changes no sum.
--
-- Columns are added empty; the migration's pass in Rust
-- (`store::postgres::parts::backfill`) fills them by replaying the history
-- in order, then `003_parts_checks.sql` makes the checks hold from the next
-- write. Entries, postings and holds refuse updates; those triggers are
-- disabled for the pass, in this transaction only, and enabled after it.

ALTER TABLE ledger_entries ADD COLUMN parts text
    CONSTRAINT ledger_entries_parts_are_a_list
    CHECK (parts IS NULL OR jsonb_typeof(parts::jsonb) = 'array');
-- Of `amount`, the PAID part it moves: what the triggers move the paid
-- figures by, without reading the parts' JSON on every write (`wallet
-- verify` checks it against the parts).
ALTER TABLE ledger_entries ADD COLUMN paid bigint;
ALTER TABLE holds ADD COLUMN parts text
    CONSTRAINT holds_parts_are_a_list
    CHECK (parts IS NULL OR jsonb_typeof(parts::jsonb) = 'array');
ALTER TABLE postings ADD COLUMN paid_after bigint;
ALTER TABLE accounts
    ADD COLUMN paid bigint NOT NULL DEFAULT 0,
    ADD COLUMN held_paid bigint NOT NULL DEFAULT 0;
ALTER TABLE asset_totals ADD COLUMN paid numeric NOT NULL DEFAULT 0;

ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_are_append_only;
ALTER TABLE postings DISABLE TRIGGER postings_are_append_only;
ALTER TABLE holds DISABLE TRIGGER holds_close_once;
