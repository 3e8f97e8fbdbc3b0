//! Each connection's history (`connection_events`), and the console's read models: a keyset
//! page of connections, counts by status, and event counts per time bucket. History rows are
//! written only inside the transaction of the change they report (see `webhooks::insert_event`)
//! or of the webhook attempt that concluded (see `webhooks::record_attempt`), except the few
//! that report no change (`record`: the proxy held back by the provider).

use sqlx::{QueryBuilder, Transaction};

use super::{Db, Pool};

use crate::rows::{ConnectionRecord, connection_columns, into_connection_rows};
use crate::{
    ConnectionEventRow, ConnectionPage, ConnectionRow, ConnectionStatus, EventBucket, HistoryEntry,
    NewWebhookEvent, StatusCount, StoreError, StoreResult,
};

/// Writes the history entries of `events` inside the caller's transaction, in one statement;
/// an entry names its event when the event is to be delivered.
pub(super) async fn insert_for_events(
    tx: &mut Transaction<'_, Db>,
    events: &[&NewWebhookEvent],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut query: QueryBuilder<'_, Db> = QueryBuilder::new(
        "INSERT INTO connection_events (connection_id, integration, kind, detail, reference, \
         webhook_event_id, created_at) ",
    );
    query.push_values(events, |mut values, e| {
        values
            .push_bind(&e.connection_id)
            .push_bind(&e.history.integration)
            .push_bind(&e.history.kind)
            .push_bind(&e.history.detail)
            .push_bind(&e.history.reference)
            .push_bind(e.deliver.then_some(e.id.as_str()))
            .push_bind(e.created_at);
    });
    query.build().execute(&mut **tx).await?;
    Ok(())
}

pub(super) async fn list(
    pool: &Pool,
    connection_id: &str,
    before_seq: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<ConnectionEventRow>> {
    Ok(sqlx::query_as(
        "SELECT seq, connection_id, integration, kind, detail, reference, webhook_event_id, \
         created_at FROM connection_events WHERE connection_id = $1 AND seq < $2 \
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(connection_id)
    .bind(before_seq.unwrap_or(i64::MAX))
    .bind(crate::paging::HISTORY.at_least_one(limit))
    .fetch_all(pool)
    .await?)
}

/// One history entry on its own, for a connection that exists.
pub(super) async fn record(
    pool: &Pool,
    connection_id: &str,
    entry: &HistoryEntry,
    at: i64,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "INSERT INTO connection_events (connection_id, integration, kind, detail, reference, \
         created_at) SELECT id, CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), \
         CAST($5 AS TEXT), CAST($6 AS BIGINT) FROM connections WHERE id = $1",
    )
    .bind(connection_id)
    .bind(&entry.integration)
    .bind(&entry.kind)
    .bind(&entry.detail)
    .bind(&entry.reference)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn purge(pool: &Pool, before: i64) -> StoreResult<u64> {
    let result = sqlx::query("DELETE FROM connection_events WHERE created_at < $1")
        .bind(before)
        .execute(pool)
        .await?;
    Ok(result.rows_affected())
}

pub(super) async fn page(pool: &Pool, q: &ConnectionPage) -> StoreResult<Vec<ConnectionRow>> {
    let mut query: QueryBuilder<'_, Db> = QueryBuilder::new(concat!(
        "SELECT ",
        connection_columns!(),
        " FROM connections WHERE id > "
    ));
    query.push_bind(q.after_id.clone().unwrap_or_default());
    if let Some(integration) = &q.integration {
        query
            .push(" AND integration = ")
            .push_bind(integration.clone());
    }
    if let Some(status) = q.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(search) = &q.search {
        // Two indexed equalities (a BitmapOr of both indexes), never a LIKE that would scan
        // every row.
        query
            .push(" AND (end_user_id = ")
            .push_bind(search.clone())
            .push(" OR lower(end_user_email) = lower(")
            .push_bind(search.clone())
            .push("))");
    }
    let limit = crate::paging::HISTORY.limit(q.limit);
    query.push(" ORDER BY id LIMIT ").push_bind(limit);
    let records: Vec<ConnectionRecord> = query.build_query_as().fetch_all(pool).await?;
    into_connection_rows(records)
}

pub(super) async fn status_counts(pool: &Pool) -> StoreResult<Vec<StatusCount>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT integration, status, COUNT(*) FROM connections \
         GROUP BY integration, status ORDER BY integration, status",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(integration, status, count)| {
            let status = ConnectionStatus::parse(&status).ok_or_else(|| {
                StoreError::Corrupt(format!("connections: unknown status {status:?}"))
            })?;
            Ok(StatusCount {
                integration,
                status,
                count,
            })
        })
        .collect()
}

pub(super) async fn buckets(
    pool: &Pool,
    since: i64,
    bucket_secs: i64,
    kinds: &[&str],
) -> StoreResult<Vec<EventBucket>> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let mut query: QueryBuilder<'_, Db> = QueryBuilder::new("SELECT integration, kind, ");
    query
        .push_bind(since)
        .push(" + ((created_at - ")
        .push_bind(since)
        .push(") / ")
        .push_bind(bucket_secs.max(1))
        .push(") * ")
        .push_bind(bucket_secs.max(1))
        .push(" AS bucket_start, COUNT(*) AS count FROM connection_events WHERE created_at >= ")
        .push_bind(since)
        .push(" AND kind IN (");
    let mut separated = query.separated(", ");
    for kind in kinds {
        separated.push_bind(kind.to_string());
    }
    query.push(") GROUP BY integration, kind, bucket_start ORDER BY bucket_start");
    Ok(query.build_query_as().fetch_all(pool).await?)
}
