-- Integrations created through the API (PUT /v1/integrations/{key}). The configuration table
-- (which may hold a client secret) is sealed by the vault; the store never sees it in clear.
CREATE TABLE integrations (
    key        TEXT PRIMARY KEY NOT NULL,
    config     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
