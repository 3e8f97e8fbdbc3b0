-- The API-key edge (SQLite): failed-key windows in the database (the same code path as
-- PostgreSQL, where they are shared by every instance), console sessions that can be ended,
-- and stored API keys that can be revoked. Mirrors the PostgreSQL migration of this version.

-- A revoked first-run key is kept, marked, so that it is never accepted again and a restart
-- without configured keys refuses to start instead of minting a new key.
ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER;

-- Failed API-key attempts per bucket (a client address, or a prefix of the presented key) in
-- a fixed window.
CREATE TABLE auth_failures (
    bucket       TEXT PRIMARY KEY NOT NULL,
    window_start INTEGER NOT NULL,
    failures     INTEGER NOT NULL
);
CREATE INDEX auth_failures_window ON auth_failures (window_start);

-- Console sign-ins: the cookie names one of these rows (by the hash of its nonce); signing
-- out deletes it, so the cookie stops working on every instance.
CREATE TABLE console_sessions (
    id_hash         TEXT PRIMARY KEY NOT NULL,
    key_fingerprint TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
CREATE INDEX console_sessions_key ON console_sessions (key_fingerprint);
