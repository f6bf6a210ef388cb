-- RFM segmentation: per-customer purchase totals kept by the events consumer, the window they
-- count from, and a record of every run.
--
-- customer_segments becomes the per-customer aggregate row as well as the scores. Its two
-- writers never touch each other's columns: the consumer (in the transaction that applies an
-- order) keeps the totals (window_orders, window_amount, total_orders, lifetime_value,
-- average_order_value, last_purchase_at); a run writes the scores, the segment and the flags.
-- A row exists for every customer with a purchase fact; one the runs have not scored yet has a
-- NULL segment_code, and one with no completed purchase in the window has NULL scores (segment
-- 'lost').

ALTER TABLE customer_segments
    DROP COLUMN days_since_last_purchase,
    ALTER COLUMN segment_code DROP NOT NULL,
    ALTER COLUMN rfm_recency DROP NOT NULL,
    ALTER COLUMN rfm_frequency DROP NOT NULL,
    ALTER COLUMN rfm_monetary DROP NOT NULL,
    ALTER COLUMN segment_id SET DEFAULT gen_random_uuid(),
    ALTER COLUMN calculated_at DROP NOT NULL,
    ALTER COLUMN calculated_at DROP DEFAULT,
    -- Completed purchases since the organization's window start (segment_windows).
    ADD COLUMN window_orders integer NOT NULL DEFAULT 0,
    ADD COLUMN window_amount numeric(14, 2) NOT NULL DEFAULT 0,
    -- The newest completed purchase ever (recency counts from it while window_orders > 0).
    ADD COLUMN last_purchase_at timestamptz,
    -- The run that last changed the scores or segment.
    ADD COLUMN run_id uuid,
    DROP CONSTRAINT customer_segments_scores_check,
    ADD CONSTRAINT customer_segments_scores_check CHECK (
        (rfm_recency IS NULL AND rfm_frequency IS NULL AND rfm_monetary IS NULL)
        OR (rfm_recency BETWEEN 1 AND 5 AND rfm_frequency BETWEEN 1 AND 5 AND rfm_monetary BETWEEN 1 AND 5)),
    ADD CONSTRAINT customer_segments_totals_check CHECK (
        window_orders >= 0 AND window_amount >= 0 AND total_orders >= 0 AND lifetime_value >= 0
        AND window_orders <= total_orders);

-- The start of the window each organization's window_orders and window_amount count from: a
-- run moves it (taking out what slid out) while no consumer adds to the totals. No row: no run
-- yet, and the totals count every completed purchase.
CREATE TABLE segment_windows (
    organization_id uuid PRIMARY KEY,
    counted_from    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every run of an organization: what it used and what it did, so a segment can be explained.
CREATE TABLE segment_runs (
    run_id                uuid PRIMARY KEY,
    organization_id       uuid NOT NULL,
    trigger               varchar(20) NOT NULL,
    mode                  varchar(20) NOT NULL,
    as_of                 date NOT NULL,
    window_days           integer NOT NULL,
    window_start          timestamptz NOT NULL,
    rules_version         integer NOT NULL,
    -- 20/40/60/80th percentiles (interpolated, two decimals) of the window population.
    recency_breakpoints   numeric(14, 2)[],
    frequency_breakpoints numeric(14, 2)[],
    monetary_breakpoints  numeric(14, 2)[],
    -- Customers with a completed purchase in the window, and every row scored (with 'lost').
    customers_scored      integer NOT NULL,
    customers_total       integer NOT NULL,
    segment_counts        jsonb NOT NULL,
    rows_written          integer NOT NULL,
    changes               integer NOT NULL,
    events                integer NOT NULL,
    started_at            timestamptz NOT NULL,
    finished_at           timestamptz NOT NULL,
    duration_ms           integer NOT NULL,

    CONSTRAINT segment_runs_trigger_check CHECK (trigger IN ('nightly', 'api')),
    CONSTRAINT segment_runs_mode_check CHECK (mode IN ('baseline', 'from_scratch', 'incremental')),
    CONSTRAINT segment_runs_window_check CHECK (window_days BETWEEN 1 AND 3650)
);
CREATE INDEX segment_runs_latest_idx ON segment_runs (organization_id, finished_at DESC);

-- What slid out of the window since the last run, read by date range.
CREATE INDEX purchases_occurred_idx ON purchases (organization_id, occurred_at) WHERE status = 'completed';

DO $$
DECLARE
    tenant_table text;
BEGIN
    FOREACH tenant_table IN ARRAY ARRAY['segment_windows', 'segment_runs']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tenant_table);
        EXECUTE format(
            'CREATE POLICY %I ON %I USING (organization_id = current_organization_id()) '
            'WITH CHECK (organization_id = current_organization_id())',
            tenant_table || '_organization_isolation', tenant_table);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON segment_windows, segment_runs TO customer_app;
