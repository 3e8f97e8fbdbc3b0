-- Tether's initial schema (SQLite). Never edit once released: add a new migration instead.
-- Timestamps are UTC unix seconds.

CREATE TABLE connect_sessions (
    token_hash            TEXT PRIMARY KEY NOT NULL,
    end_user_id           TEXT NOT NULL,
    end_user_email        TEXT,
    end_user_display_name TEXT,
    integrations          TEXT,
    return_url            TEXT,
    expires_at            INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX connect_sessions_expires_at ON connect_sessions (expires_at);

CREATE TABLE flow_states (
    state_hash         TEXT PRIMARY KEY NOT NULL,
    browser_hash       TEXT NOT NULL,
    session_token_hash TEXT NOT NULL,
    integration        TEXT NOT NULL,
    end_user_id        TEXT NOT NULL,
    pkce_verifier      BLOB NOT NULL,
    redirect_uri       TEXT NOT NULL,
    return_url         TEXT,
    display            TEXT NOT NULL,
    expires_at         INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX flow_states_expires_at ON flow_states (expires_at);

CREATE TABLE connections (
    id                    TEXT PRIMARY KEY NOT NULL,
    integration           TEXT NOT NULL,
    end_user_id           TEXT NOT NULL,
    end_user_email        TEXT,
    end_user_display_name TEXT,
    status                TEXT NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    credentials           BLOB NOT NULL,
    credentials_version   INTEGER NOT NULL DEFAULT 1,
    access_expires_at     INTEGER,
    metadata              TEXT NOT NULL DEFAULT '{}',
    last_error            TEXT,
    refresh_failures      INTEGER NOT NULL DEFAULT 0,
    next_refresh_at       INTEGER,
    lease_owner           TEXT,
    lease_until           INTEGER,
    refresh_started_at    INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (integration, end_user_id)
);
CREATE INDEX connections_access_expires_at ON connections (status, access_expires_at);
CREATE INDEX connections_end_user ON connections (end_user_id);
