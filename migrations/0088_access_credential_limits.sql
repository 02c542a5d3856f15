-- Attempt limits per credential across a partitioned site (workers.partitions > 1): each partition's
-- owner decides for its own doors, so one credential's refusals are counted and locked here, site-wide
-- (community/credential_limits.py). `key` is the keyed hash the handler already counts under
-- (lookup_hash(value, "attempts-{kind}")), never the credential. Rows older than the window (failures)
-- or past their end (locks) are pruned by the retention purge. Portable SQL (SQLite + PostgreSQL).
CREATE TABLE IF NOT EXISTS access_credential_failures (
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_access_credential_failures_key ON access_credential_failures (site, kind, key, at);
CREATE INDEX IF NOT EXISTS ix_access_credential_failures_at ON access_credential_failures (at);

CREATE TABLE IF NOT EXISTS access_credential_locks (
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    until DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (site, kind, key)
);
