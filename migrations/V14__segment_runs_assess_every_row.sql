-- An incremental run reads every row's totals and scores in the pass that places the
-- breakpoints, assesses each row itself and writes those that change, so it no longer needs to
-- be told which rows changed: totals_version (drawn by every change to a row's totals) and
-- segment_windows.scored_through (the last version a run scored) go, and with the column its
-- sequence.
ALTER TABLE customer_segments DROP COLUMN totals_version;
ALTER TABLE segment_windows DROP COLUMN scored_through;
