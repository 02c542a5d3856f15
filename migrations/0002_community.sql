-- Community access control (issue 5): registry, credentials, passes, watchlist, decisions, audit.
-- Personal data (names, phones, ID-card numbers, face templates, card numbers, PINs) is stored
-- AES-GCM encrypted (*_enc); *_hash columns hold keyed HMAC-SHA256 look-up hashes.
-- Portable SQL (SQLite + PostgreSQL); idempotent so it can be re-applied safely.

CREATE TABLE IF NOT EXISTS community_buildings (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    name TEXT,
    units INTEGER NOT NULL DEFAULT 1,
    floors INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS community_households (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    building_id TEXT NOT NULL,
    unit INTEGER,
    room TEXT
);
CREATE INDEX IF NOT EXISTS ix_community_households_building ON community_households (building_id);

CREATE TABLE IF NOT EXISTS community_devices (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    building_id TEXT,
    unit INTEGER,
    gate_id TEXT
);

CREATE TABLE IF NOT EXISTS community_people (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    role TEXT NOT NULL,
    household_id TEXT,
    name_enc TEXT,
    phone_enc TEXT,
    phone_hash TEXT,
    id_number_enc TEXT,
    id_number_hash TEXT,
    face_consent BOOLEAN NOT NULL DEFAULT FALSE,
    lease_start DOUBLE PRECISION,
    lease_end DOUBLE PRECISION,
    registered_by TEXT,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_community_people_household ON community_people (household_id);
CREATE INDEX IF NOT EXISTS ix_community_people_phone ON community_people (phone_hash);
CREATE UNIQUE INDEX IF NOT EXISTS ux_community_people_id_number ON community_people (id_number_hash);

CREATE TABLE IF NOT EXISTS community_enrolments (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    operator TEXT NOT NULL,
    match_score DOUBLE PRECISION NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    matched BOOLEAN NOT NULL,
    ts DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_community_enrolments_person ON community_enrolments (person_id);

CREATE TABLE IF NOT EXISTS community_credentials (
    id TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value_enc TEXT NOT NULL,
    value_hash TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS ix_community_credentials_person ON community_credentials (person_id);
CREATE INDEX IF NOT EXISTS ix_community_credentials_hash ON community_credentials (kind, value_hash);

CREATE TABLE IF NOT EXISTS community_vehicles (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    plate TEXT NOT NULL,
    color TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_community_vehicles_plate ON community_vehicles (site, plate);

CREATE TABLE IF NOT EXISTS community_passes (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    visitor_name_enc TEXT,
    visitor_phone_enc TEXT,
    visitor_phone_hash TEXT,
    plate TEXT,
    valid_from DOUBLE PRECISION NOT NULL,
    valid_until DOUBLE PRECISION NOT NULL,
    doors TEXT NOT NULL,
    max_uses INTEGER NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_community_passes_issuer ON community_passes (issued_by);

CREATE TABLE IF NOT EXISTS community_watchlist (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    plate TEXT,
    template_enc TEXT,
    label TEXT,
    reason TEXT NOT NULL,
    added_by TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE IF NOT EXISTS community_captures (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    device_id TEXT NOT NULL,
    camera TEXT,
    credential_kind TEXT NOT NULL,
    plate TEXT,
    subject_id TEXT,
    score DOUBLE PRECISION,
    snapshot_ref TEXT
);
CREATE INDEX IF NOT EXISTS ix_community_captures_ts ON community_captures (ts);

CREATE TABLE IF NOT EXISTS access_decisions (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    device_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    allowed BOOLEAN NOT NULL,
    reason TEXT NOT NULL,
    subject_id TEXT,
    subject_role TEXT,
    credential_kind TEXT NOT NULL,
    credential_ref TEXT,
    score DOUBLE PRECISION,
    pass_id TEXT,
    capture_id TEXT,
    command_ok BOOLEAN
);
CREATE INDEX IF NOT EXISTS ix_access_decisions_ts ON access_decisions (ts);
CREATE INDEX IF NOT EXISTS ix_access_decisions_subject ON access_decisions (subject_id, ts);

CREATE TABLE IF NOT EXISTS community_alarms (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    device_id TEXT NOT NULL,
    camera TEXT,
    watch_id TEXT,
    subject TEXT,
    reason TEXT NOT NULL,
    snapshot_ref TEXT,
    score DOUBLE PRECISION,
    acknowledged_by TEXT,
    acknowledged_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS ix_community_alarms_ts ON community_alarms (ts);

CREATE TABLE IF NOT EXISTS community_api_tokens (
    token_hash TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    label TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE IF NOT EXISTS community_audit_log (
    id TEXT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    actor_role TEXT,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS ix_community_audit_log_ts ON community_audit_log (ts);
