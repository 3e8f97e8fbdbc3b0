//! Connections: one end user's sealed credentials for one integration, on either backend.
//! Credentials change only through a compare-and-swap on `credentials_version`: one `UPDATE ...
//! WHERE credentials_version = $n`, so two writers (a refresh and a reconnect, say) can never
//! silently overwrite each other; PostgreSQL re-checks the condition against the latest row
//! version when a concurrent writer committed first (READ COMMITTED), so of several instances
//! racing one wins and the others match no row.

use sqlx::QueryBuilder;

use super::{Db, Pool};

use super::webhooks::insert_event;
use crate::rows::{
    ConnectionRecord, connection_columns, connection_insert_columns, into_connection_rows,
};
use crate::{
    ConnectionFilter, ConnectionRow, ConnectionStatus, CredentialsUpdate, NewWebhookEvent,
    StatusChange, StoreResult,
};

/// Inserts a new connection.
pub(super) async fn insert(
    pool: &Pool,
    c: &ConnectionRow,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    // A duplicate (integration, end_user_id) or id breaks a UNIQUE constraint, which
    // `From<sqlx::Error>` turns into `StoreError::Conflict`.
    sqlx::query(concat!(
        "INSERT INTO connections (",
        connection_insert_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&c.id)
    .bind(&c.integration)
    .bind(&c.end_user_id)
    .bind(&c.end_user_email)
    .bind(&c.end_user_display_name)
    .bind(c.status.as_str())
    .bind(c.credentials.as_bytes())
    .bind(c.credentials_version)
    .bind(c.access_expires_at)
    .bind(&c.metadata)
    .bind(&c.last_error)
    .bind(c.refresh_failures)
    .bind(c.next_refresh_at)
    .bind(c.created_at)
    .bind(c.updated_at)
    .execute(&mut *tx)
    .await?;
    if let Some(event) = event {
        insert_event(&mut tx, event).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Rows per INSERT statement in `insert_many`: 15 parameters each stays far below both
/// backends' limit on bound parameters (SQLite 32,766; PostgreSQL 65,535).
const INSERT_CHUNK: usize = 500;

/// Inserts many new connections in one transaction, a few hundred per statement.
pub(super) async fn insert_many(pool: &Pool, rows: &[ConnectionRow]) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut query: QueryBuilder<'_, Db> = QueryBuilder::new(concat!(
            "INSERT INTO connections (",
            connection_insert_columns!(),
            ") "
        ));
        query.push_values(chunk, |mut values, c| {
            values
                .push_bind(&c.id)
                .push_bind(&c.integration)
                .push_bind(&c.end_user_id)
                .push_bind(&c.end_user_email)
                .push_bind(&c.end_user_display_name)
                .push_bind(c.status.as_str())
                .push_bind(c.credentials.as_bytes())
                .push_bind(c.credentials_version)
                .push_bind(c.access_expires_at)
                .push_bind(&c.metadata)
                .push_bind(&c.last_error)
                .push_bind(c.refresh_failures)
                .push_bind(c.next_refresh_at)
                .push_bind(c.created_at)
                .push_bind(c.updated_at);
        });
        // A conflict (`StoreError::Conflict`) returns before the commit: nothing is kept.
        query.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn find(
    pool: &Pool,
    integration: &str,
    end_user_id: &str,
) -> StoreResult<Option<ConnectionRow>> {
    let record: Option<ConnectionRecord> = sqlx::query_as(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE integration = $1 AND end_user_id = $2"
    ))
    .bind(integration)
    .bind(end_user_id)
    .fetch_optional(pool)
    .await?;
    record.map(ConnectionRow::try_from).transpose()
}

pub(super) async fn get(pool: &Pool, id: &str) -> StoreResult<Option<ConnectionRow>> {
    let record: Option<ConnectionRecord> = sqlx::query_as(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    record.map(ConnectionRow::try_from).transpose()
}

pub(super) async fn page_after(
    pool: &Pool,
    after_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<ConnectionRow>> {
    let records: Vec<ConnectionRecord> = sqlx::query_as(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after_id.unwrap_or(""))
    .bind(crate::paging::LISTS.at_least_one(limit))
    .fetch_all(pool)
    .await?;
    records.into_iter().map(ConnectionRow::try_from).collect()
}

/// Swaps the sealed bytes only (same plaintext, new key): nothing else about the connection
/// changes, but the version moves so a concurrent refresh cannot overwrite with a stale read.
pub(super) async fn reseal(
    pool: &Pool,
    id: &str,
    expected_version: i64,
    credentials: &[u8],
    now: i64,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE connections SET credentials = $1, credentials_version = credentials_version + 1, \
         updated_at = $2 WHERE id = $3 AND credentials_version = $4",
    )
    .bind(credentials)
    .bind(now)
    .bind(id)
    .bind(expected_version)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn list(
    pool: &Pool,
    filter: &ConnectionFilter,
) -> StoreResult<Vec<ConnectionRow>> {
    // `WHERE 1 = 1` lets every optional filter start with AND.
    let mut query: QueryBuilder<'_, Db> = QueryBuilder::new(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE 1 = 1"
    ));
    if let Some(end_user_id) = &filter.end_user_id {
        query
            .push(" AND end_user_id = ")
            .push_bind(end_user_id.as_str());
    }
    if let Some(integration) = &filter.integration {
        query
            .push(" AND integration = ")
            .push_bind(integration.as_str());
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    let limit = crate::paging::LISTS.limit(filter.limit);
    query
        .push(" ORDER BY created_at, id LIMIT ")
        .push_bind(limit);

    let records: Vec<ConnectionRecord> = query.build_query_as().fetch_all(pool).await?;
    into_connection_rows(records)
}

pub(super) async fn replace_credentials(
    pool: &Pool,
    u: &CredentialsUpdate,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    // One statement, guarded by the version: a stale writer matches no row. New credentials
    // also end any back-off and clear the last error, since they are known good.
    let result = sqlx::query(
        "UPDATE connections SET credentials = $1, \
         credentials_version = credentials_version + 1, access_expires_at = $2, metadata = $3, \
         status = $4, end_user_email = COALESCE($5, end_user_email), \
         end_user_display_name = COALESCE($6, end_user_display_name), last_error = NULL, \
         refresh_failures = 0, next_refresh_at = NULL, updated_at = $7 \
         WHERE id = $8 AND credentials_version = $9",
    )
    .bind(u.credentials.as_bytes())
    .bind(u.access_expires_at)
    .bind(&u.metadata)
    .bind(u.status.as_str())
    .bind(&u.end_user_email)
    .bind(&u.end_user_display_name)
    .bind(u.now)
    .bind(&u.id)
    .bind(u.expected_version)
    .execute(&mut *tx)
    .await?;
    let written = result.rows_affected() == 1;
    if written && let Some(event) = event {
        insert_event(&mut tx, event).await?;
    }
    tx.commit().await?;
    Ok(written)
}

pub(super) async fn set_status(
    pool: &Pool,
    id: &str,
    status: ConnectionStatus,
    last_error: Option<&str>,
    now: i64,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE connections SET status = $1, last_error = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(status.as_str())
    .bind(last_error)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn change_status(
    pool: &Pool,
    change: &StatusChange,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let changed = update_status(&mut tx, change).await?;
    if changed && let Some(event) = event {
        insert_event(&mut tx, event).await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// The status change itself, in the caller's transaction; whether this writer made it. One
/// conditional statement: of several writers making the same change, one matches.
pub(super) async fn update_status(
    tx: &mut sqlx::Transaction<'_, Db>,
    change: &StatusChange,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE connections SET status = $1, last_error = $2, updated_at = $3 \
         WHERE id = $4 AND status <> $5 \
         AND (CAST($6 AS BIGINT) IS NULL OR credentials_version = $6)",
    )
    .bind(change.status.as_str())
    .bind(&change.last_error)
    .bind(change.now)
    .bind(&change.id)
    .bind(change.status.as_str())
    .bind(change.expected_version)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn delete(
    pool: &Pool,
    id: &str,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let result = sqlx::query("DELETE FROM connections WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let deleted = result.rows_affected() == 1;
    if deleted && let Some(event) = event {
        insert_event(&mut tx, event).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}
