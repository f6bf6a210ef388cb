-- The nightly run scores only the rows whose scores can change: those whose totals changed
-- since they were last scored (needs_scoring, set by the consumer and by the window sliding),
-- and those whose measures lie where a breakpoint moved (found through the three indexes).
ALTER TABLE customer_segments ADD COLUMN needs_scoring boolean NOT NULL DEFAULT true;

CREATE INDEX customer_segments_needs_scoring_idx ON customer_segments (organization_id) WHERE needs_scoring;
CREATE INDEX customer_segments_frequency_idx ON customer_segments (organization_id, window_orders)
    WHERE window_orders > 0;
CREATE INDEX customer_segments_monetary_idx ON customer_segments (organization_id, window_amount)
    WHERE window_orders > 0;
CREATE INDEX customer_segments_recency_idx ON customer_segments (organization_id, last_purchase_at)
    WHERE window_orders > 0;
