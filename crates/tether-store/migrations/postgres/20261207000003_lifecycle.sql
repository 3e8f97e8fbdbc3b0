-- Connections that stay alive and tell the truth: whose account a connection is, its health
-- checks, and the deadlines of its grant. Same columns on SQLite and PostgreSQL.

-- The provider's ids for the signed-in user and organisation, and a label (email, company);
-- NULL until known (learned at connect from the catalog's check call).
ALTER TABLE connections ADD COLUMN account_user_id TEXT;
ALTER TABLE connections ADD COLUMN account_organization_id TEXT;
ALTER TABLE connections ADD COLUMN account_label TEXT;

-- Health checks: consecutive definite failures (a transient error never counts), when the
-- last check ran and what it said, and when the next one is due (NULL: not scheduled yet).
ALTER TABLE connections ADD COLUMN check_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN last_checked_at BIGINT;
ALTER TABLE connections ADD COLUMN last_check TEXT;
ALTER TABLE connections ADD COLUMN next_check_at BIGINT;

-- Keep-alive: when the refresher must use the refresh token so that it does not expire
-- unused; the fixed end of the grant, and when the app was told it is coming.
ALTER TABLE connections ADD COLUMN keepalive_at BIGINT;
ALTER TABLE connections ADD COLUMN grant_expires_at BIGINT;
ALTER TABLE connections ADD COLUMN expiring_notified_at BIGINT;

CREATE INDEX connections_next_check ON connections (status, next_check_at);
CREATE INDEX connections_keepalive ON connections (keepalive_at);
CREATE INDEX connections_grant_expires ON connections (grant_expires_at);

-- A connect session that reconnects one connection (`reconnect_connection_id`): finishing it
-- replaces that connection's credentials, and only for the same account. Goes with its
-- session; the connection is looked up at the finish (deleted meanwhile: nothing connects).
CREATE TABLE connect_session_reconnects (
    token_hash    TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES connect_sessions (token_hash) ON DELETE CASCADE,
    connection_id TEXT COLLATE "C" NOT NULL
);
