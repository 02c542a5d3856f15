-- Core registry: sites, devices, service accounts, twin documents, device events, commands.
CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    origin_lat DOUBLE PRECISION,
    origin_lon DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    x DOUBLE PRECISION,
    y DOUBLE PRECISION,
    secret_hash TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX devices_site ON devices(site_id);

CREATE TABLE service_accounts (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE twins (
    device_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    doc TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE device_events (
    device_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts DOUBLE PRECISION,
    received_at DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (device_id, event_id)
);
CREATE INDEX device_events_received ON device_events(received_at);

CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);
