-- The webhook outbox (PostgreSQL). One row per event, written in the same transaction as the
-- change it reports, so an event exists if and only if its change committed. Workers of every
-- instance claim due rows with FOR UPDATE SKIP LOCKED and deliver them in `seq` order per
-- connection; the rows double as the delivery log the app reads. Rows carry no foreign key to
-- `connections`: a `connection.deleted` event must outlive its connection.
CREATE TABLE webhook_events (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               TEXT COLLATE "C" NOT NULL UNIQUE,
    event_type       TEXT NOT NULL,
    connection_id    TEXT COLLATE "C" NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_attempt_at  BIGINT,
    last_status_code BIGINT,
    last_error       TEXT,
    delivered_at     BIGINT,
    lease_owner      TEXT,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhook_events_due ON webhook_events (status, next_attempt_at);
CREATE INDEX webhook_events_connection ON webhook_events (connection_id, status, seq);
