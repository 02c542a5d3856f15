-- One alarm system (issue 14): every alarm of a site — from rules, access control and the platform —
-- in one table, with an outbox written in the same transaction as each transition and the webhook
-- deliveries the dispatcher makes from it. Replaces rule_alarms and community_alarms (copied here).
CREATE TABLE alarms (
    site TEXT NOT NULL,
    id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    audience TEXT NOT NULL,
    raised_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (site, id)
);
CREATE INDEX ix_alarms_open ON alarms (site, dedupe_key, state);
CREATE INDEX ix_alarms_raised ON alarms (site, raised_at);
CREATE INDEX ix_alarms_state ON alarms (site, state, severity);

CREATE TABLE alarm_outbox (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    alarm_id TEXT NOT NULL,
    event TEXT NOT NULL,
    publish INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX ix_alarm_outbox_site ON alarm_outbox (site, created_at);

CREATE TABLE alarm_deliveries (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    alarm_id TEXT NOT NULL,
    event TEXT NOT NULL,
    target TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION,
    failed_at DOUBLE PRECISION,
    last_error TEXT
);
CREATE INDEX ix_alarm_deliveries_due ON alarm_deliveries (site, delivered_at, failed_at, next_at);

INSERT INTO alarms (site, id, rule_id, subject, dedupe_key, kind, severity, state, audience, raised_at, updated_at, doc)
SELECT site, id, rule_id, subject, rule_id || '|' || subject,
       COALESCE((doc::jsonb ->> 'kind'), 'unknown'), COALESCE((doc::jsonb ->> 'severity'), 'medium'),
       CASE state WHEN 'active' THEN 'raised' ELSE state END, 'all', raised_at, updated_at, doc
FROM rule_alarms;

INSERT INTO alarms (site, id, rule_id, subject, dedupe_key, kind, severity, state, audience, raised_at, updated_at, doc)
SELECT site, id, 'access', COALESCE(subject, ''), 'access|watchlist|' || COALESCE(watch_id, id), kind, 'critical',
       CASE WHEN acknowledged_at IS NULL THEN 'raised' ELSE 'acknowledged' END, 'police', ts,
       COALESCE(acknowledged_at, ts),
       json_build_object('id', id, 'site', site, 'rule_id', 'access', 'subject', COALESCE(subject, ''), 'kind', kind,
                   'severity', 'critical', 'message', 'watchlist match: ' || reason,
                   'state', CASE WHEN acknowledged_at IS NULL THEN 'raised' ELSE 'acknowledged' END,
                   'raised_at', ts, 'updated_at', COALESCE(acknowledged_at, ts),
                   'dedupe_key', 'access|watchlist|' || COALESCE(watch_id, id), 'audience', 'police',
                   'acked_by', acknowledged_by, 'acked_at', acknowledged_at,
                   'evidence', json_build_object('device', device_id, 'camera', camera, 'watch_id', watch_id,
                                           'snapshot_ref', snapshot_ref, 'score', score, 'list_reason', reason))::text
FROM community_alarms;

DROP TABLE rule_alarms;
DROP TABLE community_alarms;
