-- migrate:up
ALTER TABLE orders ADD COLUMN IF NOT EXISTS shipped_at timestamptz;
CREATE INDEX IF NOT EXISTS orders_shipped_at_idx ON orders (shipped_at);

-- migrate:down
-- (a DROP is held for approval by the example policies: a rollback needs a DBA)
DROP INDEX IF EXISTS orders_shipped_at_idx;
ALTER TABLE orders DROP COLUMN IF EXISTS shipped_at;
