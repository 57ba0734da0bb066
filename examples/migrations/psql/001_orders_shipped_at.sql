-- Run by the pipeline through sluice:  psql -v ON_ERROR_STOP=1 --single-transaction -f 001_orders_shipped_at.sql
-- Additive and idempotent, so a re-run of the job is harmless. Under the example policies this is
-- DDL the migrator may run; a DROP TABLE or TRUNCATE here would be held for a DBA's approval.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS shipped_at timestamptz;
CREATE INDEX IF NOT EXISTS orders_shipped_at_idx ON orders (shipped_at);
