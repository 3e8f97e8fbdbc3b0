-- Coherence between instances (PostgreSQL only). Every instance caches opened credentials and
-- API-managed integrations in memory; these triggers tell the others, at commit, that a row
-- they may hold changed. NOTIFY is transactional: a rolled-back change notifies nobody.
--
-- The channel is `tether:` and the schema name, so that several Tether databases sharing one
-- server in different schemas (the test suites do) never hear each other. Payloads carry ids
-- and keys only, never a credential: `c:<connection id>` or `i:<integration key>`.
--
-- A connection notifies when what an instance caches changes: its credentials (refresh,
-- reconnect, re-seal), its status (needs_reauth), or its deletion. Refresh leases and back-off
-- bookkeeping touch other columns and stay quiet, or a refresh storm would notify twice over.

CREATE FUNCTION tether_notify_connection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tether:' || current_schema(), 'c:' || OLD.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER connections_changed
    AFTER UPDATE ON connections
    FOR EACH ROW
    WHEN (OLD.credentials_version IS DISTINCT FROM NEW.credentials_version
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tether_notify_connection();

CREATE TRIGGER connections_deleted
    AFTER DELETE ON connections
    FOR EACH ROW
    EXECUTE FUNCTION tether_notify_connection();

CREATE FUNCTION tether_notify_integration() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('tether:' || current_schema(), 'i:' || OLD.key);
    ELSE
        PERFORM pg_notify('tether:' || current_schema(), 'i:' || NEW.key);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER integrations_changed
    AFTER INSERT OR UPDATE OR DELETE ON integrations
    FOR EACH ROW
    EXECUTE FUNCTION tether_notify_integration();
