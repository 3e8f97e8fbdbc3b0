-- The operator console: each connection's history, and the indexes its views need.

-- Every event that changes or concerns a connection, written in the transaction of the change.
-- No foreign key: the history outlives a deleted connection until it is purged by age.
CREATE TABLE connection_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id    TEXT    NOT NULL,
    integration      TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    detail           TEXT,
    reference        TEXT,
    webhook_event_id TEXT,
    created_at       INTEGER NOT NULL
);
-- One connection's timeline, newest first, by keyset on seq.
CREATE INDEX connection_events_connection ON connection_events (connection_id, seq);
-- The purge by age and the charts' time window.
CREATE INDEX connection_events_created_at ON connection_events (created_at, integration, kind);
-- Webhook outcomes find the history entry of their event.
CREATE INDEX connection_events_webhook ON connection_events (webhook_event_id);

-- Counts by status (a covering index: the count never reads a row), and status filters.
CREATE INDEX connections_integration_status ON connections (integration, status, id);
CREATE INDEX connections_status ON connections (status, id);
-- Search by email, case-insensitively.
CREATE INDEX connections_email ON connections (lower(end_user_email));
