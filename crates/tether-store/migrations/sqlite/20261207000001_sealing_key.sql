-- The sealing key every instance must use (key rotation). One row at most: the id of the vault
-- key that seals new values. `tether keys rotate` replaces it before re-sealing anything, so no
-- instance keeps sealing under a key that a finished rotation leaves behind; instances re-read
-- it on a short poll. Only the key's id is stored, never key material.
CREATE TABLE sealing_key (
    singleton    INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    key_id       TEXT NOT NULL,
    announced_at INTEGER NOT NULL
);
