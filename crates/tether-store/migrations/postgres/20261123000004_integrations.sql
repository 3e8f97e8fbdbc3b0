-- Integrations created through the API (PUT /v1/integrations/{key}). The configuration table
-- (which may hold a client secret) is sealed by the vault; the store never sees it in clear.
CREATE TABLE integrations (
    key        TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    config     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
