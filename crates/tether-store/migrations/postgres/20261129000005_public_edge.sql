-- The public edge (PostgreSQL; mirrors migrations/sqlite/20261129000005_public_edge.sql): a
-- connect session belongs to the first browser that opens it, ends with its first successful
-- connection, and counts credential checks for rate limiting. Flow states are counted per
-- session, so that lookup gets an index.

ALTER TABLE connect_sessions ADD COLUMN browser_hash TEXT;
ALTER TABLE connect_sessions ADD COLUMN completed_at BIGINT;
ALTER TABLE connect_sessions ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connect_sessions ADD COLUMN attempts_since BIGINT;

CREATE INDEX flow_states_session ON flow_states (session_token_hash);
