-- The nightly run scores only the rows whose scores can change: those whose totals changed
-- since they were last scored (needs_scoring, set by the consumer and by the window sliding),
-- and those whose measures lie where a breakpoint moved. No index covers these columns, so
-- that the consumer's and the run's updates stay heap-only (HOT), for which the pages keep room.
ALTER TABLE customer_segments ADD COLUMN needs_scoring boolean NOT NULL DEFAULT true;
ALTER TABLE customer_segments SET (fillfactor = 80);
