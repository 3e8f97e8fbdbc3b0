-- Agent tokens: bearer tokens for the MCP server, each acting for one end user with read or
-- write access to some (or all) of that user's integrations. Only the SHA-256 of a token is
-- kept. Minted by the app through the API, or issued to an MCP OAuth client (`mcp_client_id`,
-- `grant_id`: revoking a grant revokes every token it issued).
CREATE TABLE agent_tokens (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    token_hash    TEXT COLLATE "C" NOT NULL UNIQUE,
    end_user_id   TEXT COLLATE "C" NOT NULL,
    access        TEXT NOT NULL CHECK (access IN ('read', 'write')),
    -- JSON array of integration keys; NULL: every integration of the end user.
    integrations  TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    mcp_client_id TEXT COLLATE "C",
    grant_id      TEXT COLLATE "C"
);

CREATE INDEX agent_tokens_end_user ON agent_tokens (end_user_id);
CREATE INDEX agent_tokens_grant ON agent_tokens (grant_id);
