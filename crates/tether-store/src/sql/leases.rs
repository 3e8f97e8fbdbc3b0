//! Refresh scheduling: which connections are due, who is refreshing one right now (a lease
//! with an expiry, so a crashed holder never blocks refresh forever), and back-off after a
//! transient failure. A lease is an optimisation against duplicate refreshes, not the guard
//! against lost updates: that is `replace_credentials`' compare-and-swap.
//!
//! The background refresher takes its leases a batch at a time (`claim_due`: one statement
//! picks the due connections and leases them, skipping on PostgreSQL the rows another instance
//! is claiming at that moment) and ends refreshes a batch at a time (`finish_many`: one
//! transaction with the credentials' compare-and-swap, the keep-alive deadline and the release
//! of the lease of every connection in one statement, and their history entries in another),
//! so that a storm of refreshes costs the database one commit per batch, not one per refresh.

use std::collections::{HashMap, HashSet};

use sqlx::QueryBuilder;

use super::{Db, Pool};

use crate::rows::{ConnectionRecord, connection_columns, into_connection_rows};
use crate::{ConnectionRow, NewWebhookEvent, RefreshClaim, RefreshFinish, StoreResult};

pub(super) async fn try_acquire(
    pool: &Pool,
    id: &str,
    owner: &str,
    until: i64,
    now: i64,
) -> StoreResult<bool> {
    // Free, expired, or already ours (a holder may extend its own lease); one statement, so
    // two contenders (on any instances) cannot both see it free: the second waits for the
    // first's row lock, then re-checks the condition against the row the first wrote.
    let result = sqlx::query(
        "UPDATE connections SET lease_owner = $1, lease_until = $2, refresh_started_at = $3, \
         updated_at = $4 \
         WHERE id = $5 AND (lease_owner IS NULL OR lease_until <= $3 OR lease_owner = $1)",
    )
    .bind(owner)
    .bind(until)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn release<'c>(
    db: impl sqlx::Executor<'c, Database = Db>,
    id: &str,
    owner: &str,
) -> StoreResult<()> {
    // Only the holder may release: a slow former holder whose lease expired and was taken
    // over must not free the new holder's lease.
    sqlx::query(
        "UPDATE connections SET lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .execute(db)
    .await?;
    Ok(())
}

pub(super) async fn due_for_refresh(
    pool: &Pool,
    before: i64,
    now: i64,
    limit: u32,
) -> StoreResult<Vec<ConnectionRow>> {
    let records: Vec<ConnectionRecord> = sqlx::query_as(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE status = 'active' AND access_expires_at IS NOT NULL \
         AND access_expires_at < $1 AND (next_refresh_at IS NULL OR next_refresh_at <= $2) \
         ORDER BY access_expires_at, id LIMIT $3"
    ))
    .bind(before)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    into_connection_rows(records)
}

pub(super) async fn claim_due(
    pool: &Pool,
    claim: &RefreshClaim,
) -> StoreResult<Vec<ConnectionRow>> {
    // One statement: the choice and the leases cannot be split by another claimer. The
    // subquery walks `connections_refresh_due` (status, access_expires_at, id) in its order,
    // so a claim costs its batch, not a sort of every due row (a storm has them all expiring
    // in the same second). On PostgreSQL rows locked by another claim or lease are skipped;
    // a row leased and committed since this statement's snapshot is re-checked under its
    // lock and dropped, since its lease is now live.
    let records: Vec<ConnectionRecord> = sqlx::query_as(concat!(
        "UPDATE connections SET lease_owner = $1, lease_until = $2, refresh_started_at = $3, \
         updated_at = $3 \
         WHERE id IN (\
           SELECT id FROM connections \
           WHERE status = 'active' AND access_expires_at IS NOT NULL AND access_expires_at < $4 \
             AND (next_refresh_at IS NULL OR next_refresh_at <= $3) \
             AND (lease_owner IS NULL OR lease_until <= $3) \
             AND (refresh_started_at IS NULL OR refresh_started_at < $5) \
           ORDER BY access_expires_at, id LIMIT $6",
        skip_locked!(),
        ") RETURNING ",
        connection_columns!()
    ))
    .bind(&claim.owner)
    .bind(claim.lease_until)
    .bind(claim.now)
    .bind(claim.before)
    .bind(claim.attempted_before)
    .bind(i64::from(claim.limit))
    .fetch_all(pool)
    .await?;
    let mut rows = into_connection_rows(records)?;
    // RETURNING promises no order.
    rows.sort_by(|a, b| (a.access_expires_at, &a.id).cmp(&(b.access_expires_at, &b.id)));
    Ok(rows)
}

/// The most rows one statement of [`finish_many`] writes (13 parameters each: far below
/// either backend's limit on parameters).
const FINISH_CHUNK: usize = 128;

pub(super) async fn finish_many(
    pool: &Pool,
    batch: &[RefreshFinish<'_>],
) -> StoreResult<Vec<Option<ConnectionRow>>> {
    let mut written: Vec<Option<ConnectionRow>> = vec![None; batch.len()];
    if batch.is_empty() {
        return Ok(written);
    }
    let mut tx = pool.begin().await?;
    // Rows of the same connection are written one after the other, in the batch's order (a
    // second one sees the first one's version, as two calls would); distinct connections
    // share one statement each for the swap, the history and the webhooks.
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    while !pending.is_empty() {
        let (round, later) = distinct_ids(batch, pending);
        pending = later;
        for chunk in round.chunks(FINISH_CHUNK) {
            swap_credentials(&mut tx, batch, chunk, &mut written).await?;
        }
    }
    let winners: Vec<&NewWebhookEvent> = batch
        .iter()
        .zip(&written)
        .filter(|(_, row)| row.is_some())
        .filter_map(|(finish, _)| finish.event)
        .collect();
    for chunk in winners.chunks(FINISH_CHUNK) {
        super::webhooks::insert_events(&mut tx, chunk).await?;
    }
    // A swap that lost (another writer got there first, or the connection is gone) still
    // gives the lease back; the winners gave theirs back in the swap. Rare: one at a time.
    for (finish, _) in batch.iter().zip(&written).filter(|(_, row)| row.is_none()) {
        let refreshed = finish.refreshed;
        release(&mut *tx, &refreshed.update.id, &refreshed.lease_owner).await?;
    }
    tx.commit().await?;
    Ok(written)
}

/// Splits `pending` (indexes into `batch`) into the first of each connection id, in order,
/// and the rest.
fn distinct_ids(batch: &[RefreshFinish<'_>], pending: Vec<usize>) -> (Vec<usize>, Vec<usize>) {
    let mut seen = HashSet::new();
    pending
        .into_iter()
        .partition(|&i| seen.insert(batch[i].refreshed.update.id.as_str()))
}

/// The compare-and-swap of `connections::replace_credentials` for the rows `chunk` (indexes
/// into `batch`, distinct connections), plus each one's keep-alive deadline and the release of
/// its lease (only by its holder: the right-hand sides see the row as it was, so both CASEs
/// test the old owner), in one statement; records each row written at its index.
async fn swap_credentials(
    tx: &mut sqlx::Transaction<'_, Db>,
    batch: &[RefreshFinish<'_>],
    chunk: &[usize],
    written: &mut [Option<ConnectionRow>],
) -> StoreResult<()> {
    // The new values travel as a table (`WITH v(...) AS (VALUES ...)`, which both backends
    // read), its columns named apart from the connection's so that nothing is ambiguous.
    let mut query: QueryBuilder<'_, Db> = QueryBuilder::new(
        "WITH v (v_id, v_version, v_credentials, v_expires_at, v_metadata, v_status, v_email, \
         v_display_name, v_now, v_keepalive_at, v_owner) AS (",
    );
    query.push_values(chunk, |mut values, &i| {
        let refreshed = batch[i].refreshed;
        let u = &refreshed.update;
        values
            .push_bind(&u.id)
            .push_bind(u.expected_version)
            .push_bind(u.credentials.as_bytes())
            .push_bind(u.access_expires_at)
            .push_bind(&u.metadata)
            .push_bind(u.status.as_str())
            .push_bind(&u.end_user_email)
            .push_bind(&u.end_user_display_name)
            .push_bind(u.now)
            .push_bind(refreshed.keepalive_at)
            .push_bind(&refreshed.lease_owner);
    });
    query.push(concat!(
        ") UPDATE connections SET credentials = v.v_credentials, \
         credentials_version = credentials_version + 1, access_expires_at = v.v_expires_at, \
         metadata = v.v_metadata, status = v.v_status, \
         end_user_email = COALESCE(v.v_email, end_user_email), \
         end_user_display_name = COALESCE(v.v_display_name, end_user_display_name), \
         last_error = NULL, refresh_failures = 0, next_refresh_at = NULL, updated_at = v.v_now, \
         keepalive_at = v.v_keepalive_at, \
         lease_until = CASE WHEN lease_owner = v.v_owner THEN NULL ELSE lease_until END, \
         lease_owner = CASE WHEN lease_owner = v.v_owner THEN NULL ELSE lease_owner END \
         FROM v WHERE connections.id = v.v_id AND connections.credentials_version = v.v_version \
         RETURNING ",
        connection_columns!()
    ));
    let records: Vec<ConnectionRecord> = query.build_query_as().fetch_all(&mut **tx).await?;
    // Each id once in `chunk`, so each returned row has exactly one place.
    let places: HashMap<&str, usize> = chunk
        .iter()
        .map(|&i| (batch[i].refreshed.update.id.as_str(), i))
        .collect();
    for row in into_connection_rows(records)? {
        if let Some(&i) = places.get(row.id.as_str()) {
            written[i] = Some(row);
        }
    }
    Ok(())
}

pub(super) async fn record_refresh_failure(
    pool: &Pool,
    id: &str,
    next_refresh_at: i64,
    last_error: &str,
    now: i64,
    event: Option<&crate::NewWebhookEvent>,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let result = sqlx::query(
        "UPDATE connections SET refresh_failures = refresh_failures + 1, next_refresh_at = $1, \
         last_error = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(next_refresh_at)
    .bind(last_error)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if result.rows_affected() == 1
        && let Some(event) = event
    {
        super::webhooks::insert_event(&mut tx, event).await?;
    }
    tx.commit().await?;
    Ok(())
}
