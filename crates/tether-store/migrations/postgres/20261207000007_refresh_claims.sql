-- The background refresher claims due connections a batch at a time, soonest expiry first,
-- ties by id. With the id in the index the claim reads its batch in index order; without it,
-- every claim sorted all the due rows of one expiry second (a refresh storm has them all in
-- one), which made a storm of n connections cost n squared. The old index is this one's
-- prefix, so it goes.
DROP INDEX connections_access_expires_at;
CREATE INDEX connections_refresh_due ON connections (status, access_expires_at, id);
