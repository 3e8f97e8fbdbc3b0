//! Refresh scheduling: which connections are due, who is refreshing one right now (a lease
//! with an expiry, so a crashed holder never blocks refresh forever), and back-off after a
//! transient failure. A lease is an optimisation against duplicate refreshes, not the guard
//! against lost updates: that is `replace_credentials`' compare-and-swap.

use super::Pool;

use crate::rows::{ConnectionRecord, connection_columns, into_connection_rows};
use crate::{ConnectionRow, StoreResult};

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
