-- MCP authorization: Tether as the OAuth 2.1 authorization server of its own MCP server.
-- Mirrors migrations/sqlite/20261207000006_mcp_oauth.sql. Every secret (request ids, codes,
-- refresh tokens) is stored as a SHA-256 hash only; the access tokens issued are rows of
-- agent_tokens (with mcp_client_id and grant_id set), so the MCP server needs no OAuth.

-- Clients registered through dynamic client registration (RFC 7591). Clients named by a
-- metadata document URL are fetched when used, never stored here.
CREATE TABLE mcp_oauth_clients (
    client_id     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    client_name   TEXT,
    redirect_uris TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Authorization requests waiting for the app's approval: single use, short-lived.
CREATE TABLE mcp_oauth_requests (
    request_hash   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    client_name    TEXT,
    redirect_uri   TEXT NOT NULL,
    state          TEXT,
    code_challenge TEXT NOT NULL,
    scope          TEXT NOT NULL,
    resource       TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX mcp_oauth_requests_expires_at ON mcp_oauth_requests (expires_at);

-- What one end user approved for one client: the family every code, refresh token and
-- access token of that approval belongs to (revoking it revokes them all).
CREATE TABLE mcp_oauth_grants (
    id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    client_id    TEXT NOT NULL,
    client_name  TEXT,
    end_user_id  TEXT NOT NULL,
    access       TEXT NOT NULL,
    integrations TEXT,
    scope        TEXT NOT NULL,
    resource     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX mcp_oauth_grants_end_user ON mcp_oauth_grants (end_user_id, created_at);

-- Authorization codes: kept after use (used_at) so that a second use is recognised and
-- revokes the grant (RFC 6749 section 4.1.2).
CREATE TABLE mcp_oauth_codes (
    code_hash      TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    grant_id       TEXT NOT NULL REFERENCES mcp_oauth_grants (id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX mcp_oauth_codes_expires_at ON mcp_oauth_codes (expires_at);

-- Refresh tokens, rotated on every use: a used one presented again revokes its grant.
CREATE TABLE mcp_oauth_refresh_tokens (
    token_hash TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL REFERENCES mcp_oauth_grants (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX mcp_oauth_refresh_tokens_grant ON mcp_oauth_refresh_tokens (grant_id);
CREATE INDEX mcp_oauth_refresh_tokens_expires_at ON mcp_oauth_refresh_tokens (expires_at);

-- The key that signs the request parameter sent to the app's sign-in page, sealed by the
-- vault; one row, so every instance signs and verifies with the same key.
CREATE TABLE mcp_oauth_signing_key (
    singleton  INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    sealed_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
