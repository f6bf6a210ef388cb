-- A segment run writes only what changes.
--
-- A segment row is its customer's: (organization_id, customer_id) is its key. The seed's
-- surrogate segment_id was read by nothing, and its random values sent each of a first run's
-- million inserts to a random page of one more index.
ALTER TABLE customer_segments
    DROP CONSTRAINT customer_segments_pkey,
    DROP COLUMN segment_id,
    DROP CONSTRAINT customer_segments_customer_key,
    ADD CONSTRAINT customer_segments_pkey PRIMARY KEY (organization_id, customer_id);

-- What a run must look at: every change to a row's totals (the consumer's, the window sliding)
-- draws a new totals_version; a run records the version its scores cover
-- (segment_windows.scored_through), and the next one scores the rows above it. This replaces
-- needs_scoring, which a run had to clear row by row, writing rows whose scores stayed.
-- Versions are drawn while holding the organization's totals lock (shared by consumers,
-- exclusive for a run), so none drawn before a run's mark is committed after it.
CREATE SEQUENCE segment_totals_version AS bigint;
GRANT USAGE ON SEQUENCE segment_totals_version TO customer_app;
ALTER TABLE customer_segments ADD COLUMN totals_version bigint NOT NULL DEFAULT 0;
UPDATE customer_segments SET totals_version = nextval('segment_totals_version') WHERE needs_scoring;
ALTER TABLE customer_segments
    ALTER COLUMN totals_version SET DEFAULT nextval('segment_totals_version'),
    DROP COLUMN needs_scoring;
ALTER SEQUENCE segment_totals_version OWNED BY customer_segments.totals_version;
ALTER TABLE segment_windows ADD COLUMN scored_through bigint NOT NULL DEFAULT 0;
