-- When each device was last heard from (issue 20 item 1): any message it sent; written in batches.
ALTER TABLE devices ADD COLUMN last_seen DOUBLE PRECISION;
