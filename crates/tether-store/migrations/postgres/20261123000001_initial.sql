-- Tether's initial schema (PostgreSQL). Never edit once released: add a new migration instead.
-- Mirrors migrations/sqlite/20261123000001_initial.sql. Timestamps are UTC unix seconds
-- (BIGINT), sealed bytes are BYTEA. Keys and ids compare bytewise (COLLATE "C"), as SQLite
-- compares them, so cursors and listings order the same on both backends.

CREATE TABLE connect_sessions (
    token_hash            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    end_user_id           TEXT NOT NULL,
    end_user_email        TEXT,
    end_user_display_name TEXT,
    integrations          TEXT,
    return_url            TEXT,
    expires_at            BIGINT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX connect_sessions_expires_at ON connect_sessions (expires_at);

CREATE TABLE flow_states (
    state_hash         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    browser_hash       TEXT NOT NULL,
    session_token_hash TEXT NOT NULL,
    integration        TEXT NOT NULL,
    end_user_id        TEXT NOT NULL,
    pkce_verifier      BYTEA NOT NULL,
    redirect_uri       TEXT NOT NULL,
    return_url         TEXT,
    display            TEXT NOT NULL,
    expires_at         BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX flow_states_expires_at ON flow_states (expires_at);

CREATE TABLE connections (
    id                    TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    integration           TEXT COLLATE "C" NOT NULL,
    end_user_id           TEXT COLLATE "C" NOT NULL,
    end_user_email        TEXT,
    end_user_display_name TEXT,
    status                TEXT NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    credentials           BYTEA NOT NULL,
    credentials_version   BIGINT NOT NULL DEFAULT 1,
    access_expires_at     BIGINT,
    metadata              TEXT NOT NULL DEFAULT '{}',
    last_error            TEXT,
    refresh_failures      BIGINT NOT NULL DEFAULT 0,
    next_refresh_at       BIGINT,
    lease_owner           TEXT,
    lease_until           BIGINT,
    refresh_started_at    BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (integration, end_user_id)
);
CREATE INDEX connections_access_expires_at ON connections (status, access_expires_at);
CREATE INDEX connections_end_user ON connections (end_user_id);
