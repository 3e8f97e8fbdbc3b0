-- API keys created by Tether itself (the first-run key). Only the SHA-256 of a key is kept.
CREATE TABLE api_keys (
    key_hash   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    label      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
