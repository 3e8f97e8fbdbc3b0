//! `GET /v1/connections/{id}/events`: a connection's history, newest first, so apps can show
//! it (created, reconnected, refreshed, refresh failed with the provider's reason and the
//! reference code that is also in the log, needs_reauth, deleted, webhook delivered/failed).
//! Keyset-paginated with an opaque `cursor`. History outlives a deleted connection until the
//! purge removes it by age. Entries hold facts and ids, never a secret.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tether_core::unix_time::rfc3339;
use tether_store::{ConnectionEventRow, Store};

use crate::api_keys::App;
use crate::error::ApiError;
use crate::state::AppState;

/// Page size when the query names none.
const DEFAULT_LIMIT: u32 = 50;
/// Largest page.
const MAX_LIMIT: u32 = 500;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/v1/connections/{id}/events", get(list::<S>))
}

/// The public view of one history entry.
pub(crate) fn view(row: &ConnectionEventRow) -> Value {
    json!({
        "type": row.kind,
        "connection_id": row.connection_id,
        "integration": row.integration,
        "detail": row.detail,
        "reference": row.reference,
        "webhook_event_id": row.webhook_event_id,
        "occurred_at": rfc3339(row.created_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let id = super::parse_connection_id(&id)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit is between 1 and 500",
        ));
    }
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "cursor is the next_cursor of a previous page",
                )
            })
        })
        .transpose()?;
    let rows = state
        .store
        .list_connection_events(id.as_str(), before, limit)
        .await?;
    // No history and no connection: the id is unknown (or its history was purged).
    if rows.is_empty()
        && before.is_none()
        && state.store.get_connection(id.as_str()).await?.is_none()
    {
        return Err(ApiError::connection_not_found());
    }
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(Json(json!({
        "events": rows.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}
