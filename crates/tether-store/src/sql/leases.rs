//! Refresh scheduling: which connections are due, who is refreshing one right now (a lease
//! with an expiry, so a crashed holder never blocks refresh forever), and back-off after a
//! transient failure. A lease is an optimisation against duplicate refreshes, not the guard
//! against lost updates: that is `replace_credentials`' compare-and-swap.
//!
//! The background refresher takes its leases a batch at a time (`claim_due`: one statement
//! picks the due connections and leases them, skipping on PostgreSQL the rows another instance
//! is claiming at that moment) and ends each refresh with one transaction (`finish`: the
//! credentials' compare-and-swap, their history entry, the keep-alive deadline and the release
//! of the lease), so that a refresh costs the database two round trips, not eight.

use super::Pool;

use crate::rows::{ConnectionRecord, connection_columns, into_connection_rows};
use crate::{ConnectionRow, NewWebhookEvent, RefreshClaim, RefreshedCredentials, StoreResult};

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

pub(super) async fn release(pool: &Pool, id: &str, owner: &str) -> StoreResult<()> {
    // Only the holder may release: a slow former holder whose lease expired and was taken
    // over must not free the new holder's lease.
    sqlx::query(
        "UPDATE connections SET lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .execute(pool)
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

pub(super) async fn finish(
    pool: &Pool,
    refreshed: &RefreshedCredentials,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<Option<ConnectionRow>> {
    let u = &refreshed.update;
    let mut tx = pool.begin().await?;
    // The compare-and-swap of `connections::replace_credentials`, plus the keep-alive deadline
    // and the lease (given back only by its holder: the right-hand sides see the row as it
    // was, so both CASEs test the old owner).
    let record: Option<ConnectionRecord> = sqlx::query_as(concat!(
        "UPDATE connections SET credentials = $1, \
         credentials_version = credentials_version + 1, access_expires_at = $2, metadata = $3, \
         status = $4, end_user_email = COALESCE($5, end_user_email), \
         end_user_display_name = COALESCE($6, end_user_display_name), last_error = NULL, \
         refresh_failures = 0, next_refresh_at = NULL, updated_at = $7, keepalive_at = $8, \
         lease_until = CASE WHEN lease_owner = $9 THEN NULL ELSE lease_until END, \
         lease_owner = CASE WHEN lease_owner = $9 THEN NULL ELSE lease_owner END \
         WHERE id = $10 AND credentials_version = $11 RETURNING ",
        connection_columns!()
    ))
    .bind(u.credentials.as_bytes())
    .bind(u.access_expires_at)
    .bind(&u.metadata)
    .bind(u.status.as_str())
    .bind(&u.end_user_email)
    .bind(&u.end_user_display_name)
    .bind(u.now)
    .bind(refreshed.keepalive_at)
    .bind(&refreshed.lease_owner)
    .bind(&u.id)
    .bind(u.expected_version)
    .fetch_optional(&mut *tx)
    .await?;
    match &record {
        Some(_) => {
            if let Some(event) = event {
                super::webhooks::insert_event(&mut tx, event).await?;
            }
        }
        None => {
            sqlx::query(
                "UPDATE connections SET lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(&u.id)
            .bind(&refreshed.lease_owner)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    record.map(ConnectionRow::try_from).transpose()
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
