-- Twin version history (issue 18 item 4, issue 17 item 6): one row per committed twin change, written in
-- the same transaction as the twin (registry/store.py). `changed` is the merge patch of the change (new
-- values; null removes a field); a desired allow-list is kept as its version and entry count only.
-- Bounded: the newest history.keep_versions rows per device, none older than history.keep_days
-- (registry/history.py prunes periodically, never per write).
CREATE TABLE twin_history (
    device_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    actor TEXT NOT NULL,
    changed TEXT NOT NULL,
    PRIMARY KEY (device_id, version)
);
CREATE INDEX ix_twin_history_ts ON twin_history (ts);
