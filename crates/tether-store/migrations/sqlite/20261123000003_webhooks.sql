-- The webhook outbox (SQLite). One row per event, written in the same transaction as the
-- change it reports, so an event exists if and only if its change committed. The worker
-- delivers pending rows in `seq` order per connection; the rows double as the delivery log
-- the app reads. Rows carry no foreign key to `connections`: a `connection.deleted` event
-- must outlive its connection. Timestamps are UTC unix seconds.
CREATE TABLE webhook_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    event_type       TEXT NOT NULL,
    connection_id    TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_attempt_at  INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    delivered_at     INTEGER,
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX webhook_events_due ON webhook_events (status, next_attempt_at);
CREATE INDEX webhook_events_connection ON webhook_events (connection_id, status, seq);
