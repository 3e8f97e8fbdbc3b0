-- Request budgets shared by every instance (`[proxy] shared_budgets = true`): the operator's
-- budgets per connection and per integration, kept as a GCRA "theoretical arrival time" per
-- key, and the provider's "spent until" holds, in one table. Each proxied call updates its
-- rows in one statement (INSERT .. ON CONFLICT DO UPDATE .. RETURNING): no lock is held
-- across the call to the provider.
--
-- `tat`: microseconds since the Unix epoch. For a budget, the theoretical arrival time of
-- the next call; for a hold (key `h:...`), when the provider's budget is back. Either way a
-- row whose `tat` is past says nothing any more (a full budget, an ended hold), so the purge
-- deletes those. `refused_for`: how long the last call had to wait (0: it was taken), so the
-- statement can say which of its budgets refused.
--
-- UNLOGGED: budgets are seconds-long bookkeeping; after a crash (or on a standby) they start
-- full, which costs nothing but one window's burst, and no write goes through the WAL.
CREATE UNLOGGED TABLE proxy_budgets (
    key         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    tat         BIGINT NOT NULL,
    refused_for BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX proxy_budgets_tat ON proxy_budgets (tat);
