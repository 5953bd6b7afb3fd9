-- Version 7: paid and free parts of every user balance (API.md, "Paid,
-- free and expiring currency").
--
-- An entry's parts (what it moved: PAID, FREE, an EXPIRING lot) are kept on
-- the entry, compact JSON in the order taken, the same for both sides. Each
-- posting carries its account's running paid total once it counts
-- (`paid_after`), so a user's paid part is its newest posting's, one
-- descent as the balance is, and the Treasury's is the negative of the paid
-- currency users hold. Free is the balance less paid.
--
-- Columns are added empty; the migration's pass in Rust
-- (`store::sqlite::parts::backfill`) fills them by replaying the history in
-- order, then `007_parts_checks.sql` makes the checks hold from the next
-- write. Entries, postings and holds are append-only; the triggers that
-- refuse an update are lifted for the pass, and put back after it.

ALTER TABLE ledger_entries ADD COLUMN parts TEXT
    CHECK (parts IS NULL OR (json_valid(parts) AND json_type(parts) = 'array'));
ALTER TABLE postings ADD COLUMN paid_after INTEGER;
ALTER TABLE holds ADD COLUMN parts TEXT
    CHECK (parts IS NULL OR (json_valid(parts) AND json_type(parts) = 'array'));
-- What HELD holds set aside of the paid part (the rest of `held` is free).
ALTER TABLE account_holds ADD COLUMN held_paid INTEGER NOT NULL DEFAULT 0
    CHECK (held_paid >= 0 AND held_paid <= held);

DROP TRIGGER ledger_entries_refuse_update;
DROP TRIGGER postings_refuse_update;
DROP TRIGGER holds_close_once;
