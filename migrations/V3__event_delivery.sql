-- Event delivery: the relay publishes each organization's pending outbox rows in the order
-- they were written.

-- Write order of the outbox. A change that follows another on the same customer waits for
-- that customer's row lock, so it takes a later number: per customer, seq is commit order.
ALTER TABLE outbox ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
DROP INDEX outbox_pending_idx;
CREATE INDEX outbox_pending_idx ON outbox (organization_id, seq) WHERE published_at IS NULL;

