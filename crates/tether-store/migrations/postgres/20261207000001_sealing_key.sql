-- The sealing key every instance must use (key rotation). One row at most: the id of the vault
-- key that seals new values. `tether keys rotate` replaces it before re-sealing anything, so no
-- instance keeps sealing under a key that a finished rotation leaves behind. Only the key's id
-- is stored, never key material. Mirrors the SQLite migration of the same version.
CREATE TABLE sealing_key (
    singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
    key_id       TEXT NOT NULL,
    announced_at BIGINT NOT NULL
);

-- Every instance hears a new sealing key at commit, on the change channel of
-- 20261129000001_change_notifications.sql: `k:<key id>` (an id, never key material).
CREATE FUNCTION tether_notify_sealing_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tether:' || current_schema(), 'k:' || NEW.key_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER sealing_key_announced
    AFTER INSERT OR UPDATE ON sealing_key
    FOR EACH ROW
    EXECUTE FUNCTION tether_notify_sealing_key();
