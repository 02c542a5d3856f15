-- Rules engine state in the registry database (issue 8), so that a standby worker of the site, on
-- any host, takes over the pending duration timers and the alarms of the worker it replaces.
-- Keyed by site: one database may serve several sites. Portable SQL (SQLite + PostgreSQL).

CREATE TABLE IF NOT EXISTS rule_timers (
    site TEXT NOT NULL,
    key TEXT NOT NULL,
    due DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (site, key)
);

CREATE TABLE IF NOT EXISTS rule_alarms (
    site TEXT NOT NULL,
    id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    raised_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (site, id)
);
CREATE INDEX IF NOT EXISTS ix_rule_alarms_subject ON rule_alarms (site, rule_id, subject, state);
CREATE INDEX IF NOT EXISTS ix_rule_alarms_raised ON rule_alarms (site, raised_at);
