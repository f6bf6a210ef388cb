-- The nightly run scores only the rows whose scores can change: those whose totals changed
-- since they were last scored (needs_scoring, set by the consumer and by the window sliding),
-- and those whose measures lie where a breakpoint moved. No index covers these columns, so
-- that the consumer's and the run's updates stay heap-only (HOT), for which the pages keep room.
ALTER TABLE customer_segments ADD COLUMN needs_scoring boolean NOT NULL DEFAULT true;
ALTER TABLE customer_segments SET (fillfactor = 80);

-- A first run writes a row for every customer with a purchase; the foreign key made each of
-- those inserts lock its customer row (FOR KEY SHARE), dirtying and logging every page of
-- customers: 96 s of a million-customer first run. The rows are derived: each comes from a
-- purchase (whose foreign key to customers stays) or from the consumer holding the customer's
-- row, and customers are never deleted (erasure anonymizes in place).
ALTER TABLE customer_segments DROP CONSTRAINT customer_segments_organization_id_customer_id_fkey;
