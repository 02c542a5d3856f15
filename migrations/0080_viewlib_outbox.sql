-- Captures waiting for the police view library (GA/T 1400, issue 19 item 9). One row per face, vehicle
-- or person object; the object with its image is encrypted (payload); the row is deleted once the
-- server accepted it, or when it is given up (max_age_s).
CREATE TABLE viewlib_outbox (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_error TEXT
);
CREATE INDEX ix_viewlib_outbox_due ON viewlib_outbox (site, next_at);
