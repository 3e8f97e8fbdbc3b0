-- Request budgets in the database (SQLite): the same table as on PostgreSQL, so the store's
-- methods behave the same on both backends. With one instance on SQLite the server keeps its
-- budgets in memory; `[proxy] shared_budgets` is refused there at start.
CREATE TABLE proxy_budgets (
    key         TEXT PRIMARY KEY NOT NULL,
    tat         INTEGER NOT NULL,
    refused_for INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX proxy_budgets_tat ON proxy_budgets (tat);
