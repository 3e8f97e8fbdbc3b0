//! Connections: one end user's sealed credentials for one integration. Credentials change
//! only through a compare-and-swap on `credentials_version`, so two writers (a refresh and a
//! reconnect, say) can never silently overwrite each other.

use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::webhooks::insert_event;
use crate::rows::{ConnectionRecord, connection_columns, into_connection_rows};
use crate::{
    ConnectionFilter, ConnectionRow, ConnectionStatus, CredentialsUpdate, NewWebhookEvent,
    StatusChange, StoreResult,
};

/// Inserts a new connection.
pub(super) async fn insert(
    pool: &SqlitePool,
    c: &ConnectionRow,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    // A duplicate (integration, end_user_id) or id breaks a UNIQUE constraint, which
    // `From<sqlx::Error>` turns into `StoreError::Conflict`.
    sqlx::query(concat!(
        "INSERT INTO connections (",
        connection_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&c.id)
    .bind(&c.integration)
    .bind(&c.end_user_id)
    .bind(&c.end_user_email)
    .bind(&c.end_user_display_name)
    .bind(c.status.as_str())
    .bind(&c.credentials)
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

pub(super) async fn find(
    pool: &SqlitePool,
    integration: &str,
    end_user_id: &str,
) -> StoreResult<Option<ConnectionRow>> {
    let record: Option<ConnectionRecord> = sqlx::query_as(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE integration = ? AND end_user_id = ?"
    ))
    .bind(integration)
    .bind(end_user_id)
    .fetch_optional(pool)
    .await?;
    record.map(ConnectionRow::try_from).transpose()
}

pub(super) async fn get(pool: &SqlitePool, id: &str) -> StoreResult<Option<ConnectionRow>> {
    let record: Option<ConnectionRecord> = sqlx::query_as(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    record.map(ConnectionRow::try_from).transpose()
}

pub(super) async fn page_after(
    pool: &SqlitePool,
    after_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<ConnectionRow>> {
    let records: Vec<ConnectionRecord> = sqlx::query_as(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE id > ? ORDER BY id LIMIT ?"
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
    pool: &SqlitePool,
    id: &str,
    expected_version: i64,
    credentials: &[u8],
    now: i64,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE connections SET credentials = ?, credentials_version = credentials_version + 1, \
         updated_at = ? WHERE id = ? AND credentials_version = ?",
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
    pool: &SqlitePool,
    filter: &ConnectionFilter,
) -> StoreResult<Vec<ConnectionRow>> {
    // `WHERE 1 = 1` lets every optional filter start with AND.
    let mut query: QueryBuilder<'_, Sqlite> = QueryBuilder::new(concat!(
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
    pool: &SqlitePool,
    u: &CredentialsUpdate,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    // One statement, guarded by the version: a stale writer matches no row. New credentials
    // also end any back-off and clear the last error, since they are known good.
    let result = sqlx::query(
        "UPDATE connections SET credentials = ?, \
         credentials_version = credentials_version + 1, access_expires_at = ?, metadata = ?, \
         status = ?, end_user_email = COALESCE(?, end_user_email), \
         end_user_display_name = COALESCE(?, end_user_display_name), last_error = NULL, \
         refresh_failures = 0, next_refresh_at = NULL, updated_at = ? \
         WHERE id = ? AND credentials_version = ?",
    )
    .bind(&u.credentials)
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
    pool: &SqlitePool,
    id: &str,
    status: ConnectionStatus,
    last_error: Option<&str>,
    now: i64,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE connections SET status = ?, last_error = ?, updated_at = ? WHERE id = ?",
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
    pool: &SqlitePool,
    change: &StatusChange,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    // One conditional statement: of several writers making the same change, one matches.
    let result = sqlx::query(
        "UPDATE connections SET status = ?, last_error = ?, updated_at = ? \
         WHERE id = ? AND status <> ? AND (? IS NULL OR credentials_version = ?)",
    )
    .bind(change.status.as_str())
    .bind(&change.last_error)
    .bind(change.now)
    .bind(&change.id)
    .bind(change.status.as_str())
    .bind(change.expected_version)
    .bind(change.expected_version)
    .execute(&mut *tx)
    .await?;
    let changed = result.rows_affected() == 1;
    if changed && let Some(event) = event {
        insert_event(&mut tx, event).await?;
    }
    tx.commit().await?;
    Ok(changed)
}

pub(super) async fn delete(
    pool: &SqlitePool,
    id: &str,
    event: Option<&NewWebhookEvent>,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let result = sqlx::query("DELETE FROM connections WHERE id = ?")
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
