-- No index leads by segment code. customer_segments_code_idx made every segment change a
-- non-HOT update (a new entry in it and in the primary key) and was about a third of the cost
-- of a first run's insert; its one reader, GET /segments/{code}/customers, now walks the
-- organization's rows by the primary key, a bounded number per page.
DROP INDEX customer_segments_code_idx;
