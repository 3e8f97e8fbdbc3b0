-- The purge of agent tokens and of unused MCP clients: what it looks rows up by, so that it
-- does not scan every table per client. Mirrors migrations/sqlite/20261207000009_mcp_client_purge.sql.
CREATE INDEX agent_tokens_expires_at ON agent_tokens (expires_at);
CREATE INDEX agent_tokens_revoked_at ON agent_tokens (revoked_at);
CREATE INDEX agent_tokens_mcp_client ON agent_tokens (mcp_client_id);
CREATE INDEX mcp_oauth_clients_created_at ON mcp_oauth_clients (created_at);
CREATE INDEX mcp_oauth_requests_client ON mcp_oauth_requests (client_id);
CREATE INDEX mcp_oauth_grants_client ON mcp_oauth_grants (client_id);
CREATE INDEX mcp_oauth_codes_grant ON mcp_oauth_codes (grant_id);
