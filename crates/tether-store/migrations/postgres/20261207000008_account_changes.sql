-- A connection's provider account is read with its row and cached by every instance (the
-- proxy keys per-account provider limits by it), so a change of account notifies too, as a
-- change of credentials or status does (see 20261129000001_change_notifications.sql).
DROP TRIGGER connections_changed ON connections;

CREATE TRIGGER connections_changed
    AFTER UPDATE ON connections
    FOR EACH ROW
    WHEN (OLD.credentials_version IS DISTINCT FROM NEW.credentials_version
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.account_organization_id IS DISTINCT FROM NEW.account_organization_id
          OR OLD.account_user_id IS DISTINCT FROM NEW.account_user_id)
    EXECUTE FUNCTION tether_notify_connection();
