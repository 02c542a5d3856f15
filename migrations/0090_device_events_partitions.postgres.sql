-- device_events partitioned by day on PostgreSQL (issue 21 item 3): one partition per UTC day of
-- received_at (epoch seconds, so a day is [d * 86400, (d + 1) * 86400)), named device_events_YYYYMMDD.
-- Retention drops whole partitions instead of deleting rows (privacy/purge.py); the platform creates
-- the coming days' partitions ahead (registry/event_partitions.py). A default partition catches a row
-- no day partition covers yet, so an insert never fails; making that day's partition moves its rows.
--
-- A partitioned table's unique constraints must include the partition key, so the primary key is
-- (device_id, event_id, received_at). Exactly-once events do not rest on it: the worker that owns a
-- device (its lease) looks the batch's (device, event id) pairs up in memory and in the table under
-- its write lock before it inserts (registry/store.py, seen_events). SQLite keeps its table as it is.
ALTER TABLE device_events RENAME TO device_events_unpartitioned;
ALTER TABLE device_events_unpartitioned RENAME CONSTRAINT device_events_pkey TO device_events_unpartitioned_pkey;
ALTER INDEX device_events_received RENAME TO device_events_unpartitioned_received;

CREATE TABLE device_events (
    device_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts DOUBLE PRECISION,
    received_at DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (device_id, event_id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX device_events_received ON device_events(received_at);
CREATE TABLE device_events_default PARTITION OF device_events DEFAULT;

-- The partitions of days first_day..last_day (days since 1970-01-01, UTC) that do not exist yet;
-- returns how many it made. Workers may call it together: they take turns on an advisory lock.
CREATE FUNCTION device_events_add_partitions(first_day BIGINT, last_day BIGINT) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    d BIGINT;
    lo DOUBLE PRECISION;
    hi DOUBLE PRECISION;
    part TEXT;
    made INTEGER := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('device_events_add_partitions'));
    FOR d IN first_day..last_day LOOP
        part := 'device_events_' || to_char(to_timestamp(d * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        lo := d * 86400;
        hi := (d + 1) * 86400;
        IF EXISTS (SELECT 1 FROM device_events_default WHERE received_at >= lo AND received_at < hi) THEN
            -- the default partition holds rows of that day: move them into the day's table, then attach it
            EXECUTE format('CREATE TABLE %I (LIKE device_events INCLUDING DEFAULTS)', part);
            EXECUTE format(
                'WITH moved AS (DELETE FROM device_events_default WHERE received_at >= %s AND received_at < %s '
                'RETURNING *) INSERT INTO %I SELECT * FROM moved', lo, hi, part);
            EXECUTE format('ALTER TABLE device_events ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', part, lo, hi);
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF device_events FOR VALUES FROM (%s) TO (%s)', part, lo, hi);
        END IF;
        made := made + 1;
    END LOOP;
    RETURN made;
END;
$$;

-- the stored events move over: into the default partition, then each day that has rows, and the
-- week ahead, gets its partition
INSERT INTO device_events (device_id, event_id, type, ts, received_at, data)
    SELECT device_id, event_id, type, ts, received_at, data FROM device_events_unpartitioned;
SELECT device_events_add_partitions(day, day)
    FROM (SELECT DISTINCT floor(received_at / 86400)::BIGINT AS day FROM device_events_unpartitioned) AS days;
SELECT device_events_add_partitions(floor(extract(epoch FROM now()) / 86400)::BIGINT,
                                    floor(extract(epoch FROM now()) / 86400)::BIGINT + 7);
DROP TABLE device_events_unpartitioned;
