-- The web console (issue 18): staff and police accounts (scrypt password hashes), sessions and the
-- residents' one-time sign-in links. Tokens are stored only as SHA-256 hashes.
CREATE TABLE console_users (
    site TEXT NOT NULL,
    username TEXT NOT NULL,
    person_id TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (site, username)
);

CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    person_id TEXT NOT NULL,
    via TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION
);
CREATE INDEX ix_console_sessions_person ON console_sessions (site, person_id);

CREATE TABLE console_links (
    token_hash TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    person_id TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION
);
