-- The API-key edge (PostgreSQL): failed-key windows in the database, shared by every
-- instance (guesses through one count on all), console sessions that can be ended,
-- and stored API keys that can be revoked. Mirrors the SQLite migration of this version.

-- A revoked first-run key is kept, marked, so that it is never accepted again and a restart
-- without configured keys refuses to start instead of minting a new key.
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT;

-- Failed API-key attempts per bucket (a client address, or a prefix of the presented key) in
-- a fixed window.
CREATE TABLE auth_failures (
    bucket       TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    window_start BIGINT NOT NULL,
    failures     BIGINT NOT NULL
);
CREATE INDEX auth_failures_window ON auth_failures (window_start);

-- Console sign-ins: the cookie names one of these rows (by the hash of its nonce); signing
-- out deletes it, so the cookie stops working on every instance.
CREATE TABLE console_sessions (
    id_hash         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    key_fingerprint TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
CREATE INDEX console_sessions_key ON console_sessions (key_fingerprint);
