-- The seed data of API.md, part one: the three asset types and a Treasury for
-- each. INSERT OR IGNORE, with fixed ids, so applying it twice changes nothing
-- and every database names an asset by the same id.
--
-- Part two, the users' initial balances, is posted by `storage::seed` as
-- ordinary TOPUP entries through the writer, each with the idempotency key
-- `seed:<userId>:<SYMBOL>`, so a second run is a replay that writes nothing.

INSERT OR IGNORE INTO asset_types (id, symbol, name, created_at) VALUES
    ('6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a01', 'GOLD',    'Gold Coins',     1795392000000),
    ('6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a02', 'DIAMOND', 'Diamonds',       1795392000000),
    ('6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a03', 'LOYALTY', 'Loyalty Points', 1795392000000);

INSERT OR IGNORE INTO accounts (owner_type, owner_id, asset_type_id, created_at)
    SELECT 'SYSTEM', NULL, id, created_at FROM asset_types;

-- The users' initial balances (API.md, "Seed data"), posted by storage::seed.
CREATE TEMP TABLE IF NOT EXISTS seed_grants (user_id TEXT NOT NULL, symbol TEXT NOT NULL, amount INTEGER NOT NULL);
DELETE FROM temp.seed_grants;
INSERT INTO temp.seed_grants (user_id, symbol, amount) VALUES
    ('user_alice', 'GOLD',    1000),
    ('user_alice', 'DIAMOND',  100),
    ('user_alice', 'LOYALTY',  500),
    ('user_bob',   'GOLD',     500),
    ('user_bob',   'DIAMOND',   25),
    ('user_bob',   'LOYALTY',  100);
