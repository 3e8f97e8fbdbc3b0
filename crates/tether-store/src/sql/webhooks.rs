//! The webhook outbox and delivery log, on either backend. Events are inserted by the
//! connection writes in `connections.rs`, inside their transaction; the workers claim due
//! events with one `UPDATE ... WHERE seq IN (SELECT ...) RETURNING` (a lease, so two workers
//! never hold the same event and a crashed worker's claims expire; on PostgreSQL the subquery
//! skips rows another instance is claiming, `FOR UPDATE SKIP LOCKED`, so a worker never waits
//! on them), and record each attempt only while their claim holds.

use sqlx::{QueryBuilder, Transaction};

use super::{Db, Pool};

use crate::rows::{EventRecord, event_columns, into_event_rows};
use crate::{
    AttemptOutcome, NewWebhookEvent, StoreResult, WebhookAttempt, WebhookEventFilter,
    WebhookEventRow, WebhookStatus,
};

/// Records an event in its connection's history and, when it is to be delivered, puts it in
/// the outbox (due at once), inside the caller's transaction.
pub(super) async fn insert_event(
    tx: &mut Transaction<'_, Db>,
    e: &NewWebhookEvent,
) -> StoreResult<()> {
    insert_events(tx, &[e]).await
}

/// [`insert_event`] for several events: one statement for their history entries and one for
/// those to deliver.
pub(super) async fn insert_events(
    tx: &mut Transaction<'_, Db>,
    events: &[&NewWebhookEvent],
) -> StoreResult<()> {
    super::history::insert_for_events(tx, events).await?;
    let deliveries: Vec<&NewWebhookEvent> = events.iter().copied().filter(|e| e.deliver).collect();
    insert_deliveries(tx, &deliveries).await
}

/// Queues the webhook of an event whose history entry is written elsewhere (or not at all:
/// a further webhook about a change already in the history).
pub(super) async fn insert_delivery(
    tx: &mut Transaction<'_, Db>,
    e: &NewWebhookEvent,
) -> StoreResult<()> {
    insert_deliveries(tx, &[e]).await
}

/// Puts `events` in the outbox, due at once, in one statement.
async fn insert_deliveries(
    tx: &mut Transaction<'_, Db>,
    events: &[&NewWebhookEvent],
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut outbox: QueryBuilder<'_, Db> = QueryBuilder::new(
        "INSERT INTO webhook_events (id, event_type, connection_id, payload, status, \
         attempts, next_attempt_at, created_at, updated_at) ",
    );
    outbox.push_values(events, |mut values, e| {
        values
            .push_bind(&e.id)
            .push_bind(&e.event_type)
            .push_bind(&e.connection_id)
            .push_bind(&e.payload)
            .push("'pending', 0")
            .push_bind(e.created_at)
            .push_bind(e.created_at)
            .push_bind(e.created_at);
    });
    outbox.build().execute(&mut **tx).await?;
    Ok(())
}

pub(super) async fn claim(
    pool: &Pool,
    owner: &str,
    lease_until: i64,
    now: i64,
    limit: u32,
) -> StoreResult<Vec<WebhookEventRow>> {
    // One statement: the choice and the claim cannot be split by another worker. Rows another
    // instance is claiming right now are skipped rather than waited for (SKIP LOCKED); a row
    // claimed and committed since this statement's snapshot is re-checked under its lock and
    // dropped, since its lease is now live. An event waits while an older event of its
    // connection is still pending (in back-off or claimed by someone), which is what keeps
    // each connection's events in order. An owner may take back its own claims: that is a
    // restarted instance picking up where it died.
    let records: Vec<EventRecord> = sqlx::query_as(concat!(
        "UPDATE webhook_events SET lease_owner = $1, lease_until = $2, updated_at = $3 \
         WHERE seq IN (\
           SELECT e.seq FROM webhook_events e \
           WHERE e.status = 'pending' AND e.next_attempt_at <= $3 \
             AND (e.lease_until IS NULL OR e.lease_until <= $3 OR e.lease_owner = $1) \
             AND NOT EXISTS (SELECT 1 FROM webhook_events p \
               WHERE p.connection_id = e.connection_id AND p.status = 'pending' \
                 AND p.seq < e.seq) \
           ORDER BY e.seq LIMIT $4 \
           ",
        skip_locked!(),
        ") \
         RETURNING ",
        event_columns!()
    ))
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut rows = into_event_rows(records)?;
    // RETURNING promises no order.
    rows.sort_by_key(|row| row.seq);
    Ok(rows)
}

pub(super) async fn record_attempt(pool: &Pool, a: &WebhookAttempt) -> StoreResult<bool> {
    let (status, next_attempt_at, delivered_at) = match a.outcome {
        AttemptOutcome::Delivered => (WebhookStatus::Delivered, None, Some(a.at)),
        AttemptOutcome::Retry { next_attempt_at } => {
            (WebhookStatus::Pending, Some(next_attempt_at), None)
        }
        AttemptOutcome::GiveUp => (WebhookStatus::Failed, None, None),
    };
    let mut tx = pool.begin().await?;
    let result = sqlx::query(
        "UPDATE webhook_events SET status = $1, attempts = attempts + 1, \
         next_attempt_at = COALESCE($2, next_attempt_at), last_attempt_at = $3, \
         last_status_code = $4, last_error = $5, delivered_at = COALESCE($6, delivered_at), \
         lease_owner = NULL, lease_until = NULL, updated_at = $7 \
         WHERE id = $8 AND lease_owner = $9 AND status = 'pending'",
    )
    .bind(status.as_str())
    .bind(next_attempt_at)
    .bind(a.at)
    .bind(a.status_code)
    .bind(&a.error)
    .bind(delivered_at)
    .bind(a.at)
    .bind(&a.id)
    .bind(&a.owner)
    .execute(&mut *tx)
    .await?;
    let recorded = result.rows_affected() == 1;
    // A concluded delivery (delivered, or given up) joins the connection's history in the
    // same transaction; retries in between do not, the delivery log shows them.
    let kind = match a.outcome {
        AttemptOutcome::Delivered => Some(crate::history_kind::WEBHOOK_DELIVERED),
        AttemptOutcome::GiveUp => Some(crate::history_kind::WEBHOOK_FAILED),
        AttemptOutcome::Retry { .. } => None,
    };
    if recorded && let Some(kind) = kind {
        let outcome = match (a.status_code, &a.error) {
            (Some(code), _) => format!(" (HTTP {code})"),
            (None, Some(error)) => format!(" ({error})"),
            (None, None) => String::new(),
        };
        // The integration comes from the history entry of the event's own change.
        sqlx::query(
            "INSERT INTO connection_events (connection_id, integration, kind, detail, \
             reference, webhook_event_id, created_at) \
             SELECT e.connection_id, COALESCE((SELECT h.integration FROM connection_events h \
               WHERE h.webhook_event_id = e.id LIMIT 1), ''), $1, e.event_type || $2, NULL, \
               e.id, $3 FROM webhook_events e WHERE e.id = $4",
        )
        .bind(kind)
        .bind(outcome)
        .bind(a.at)
        .bind(&a.id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(recorded)
}

pub(super) async fn list(
    pool: &Pool,
    filter: &WebhookEventFilter,
) -> StoreResult<Vec<WebhookEventRow>> {
    // `WHERE 1 = 1` lets every optional filter start with AND.
    let mut query: QueryBuilder<'_, Db> = QueryBuilder::new(concat!(
        "SELECT ",
        event_columns!(),
        " FROM webhook_events WHERE 1 = 1"
    ));
    if let Some(connection_id) = &filter.connection_id {
        query
            .push(" AND connection_id = ")
            .push_bind(connection_id.as_str());
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
    let limit = crate::paging::LISTS.limit(filter.limit);
    query.push(" ORDER BY seq DESC LIMIT ").push_bind(limit);
    let records: Vec<EventRecord> = query.build_query_as().fetch_all(pool).await?;
    into_event_rows(records)
}

pub(super) async fn get(pool: &Pool, id: &str) -> StoreResult<Option<WebhookEventRow>> {
    let record: Option<EventRecord> = sqlx::query_as(concat!(
        "SELECT ",
        event_columns!(),
        " FROM webhook_events WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    record.map(WebhookEventRow::try_from).transpose()
}

pub(super) async fn redeliver(pool: &Pool, id: &str, now: i64) -> StoreResult<bool> {
    // A claim is kept: an event being sent now is not sent a second time. A redelivery of a
    // pending event (queued, in back-off, or being sent) only makes it due now with its
    // attempts started over, so a burst of redeliveries queues one delivery, not one each;
    // a delivered or failed event is queued again.
    let result = sqlx::query(
        "UPDATE webhook_events SET status = 'pending', attempts = 0, next_attempt_at = $1, \
         updated_at = $2 WHERE id = $3",
    )
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}
