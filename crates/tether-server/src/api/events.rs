//! `GET /v1/connections/{id}/events`: a connection's history, newest first, so apps can show
//! it (created, reconnected, refreshed, refresh failed with the provider's reason and the
//! reference code that is also in the log, needs_reauth, deleted, webhook delivered/failed).
//! Keyset-paginated with an opaque `cursor`. History outlives a deleted connection until the
//! purge removes it by age. Entries hold facts and ids, never a secret.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tether_core::unix_time::rfc3339;
use tether_store::{ConnectionEventRow, Store};
use utoipa::{IntoParams, ToSchema};

use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

/// Page size when the query names none.
const DEFAULT_LIMIT: u32 = 50;
/// Largest page.
const MAX_LIMIT: u32 = 500;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/v1/connections/{id}/events", get(list::<S>))
}

/// One entry of a connection's history. Never a secret.
#[derive(Serialize, ToSchema)]
pub struct ConnectionEventView {
    /// `created`, `reconnected`, `refreshed`, `refresh_failed` (transient; retried),
    /// `needs_reauth`, `recovered`, `check_failed` (one refused check), `expiring`,
    /// `revocation` (what revoking at the provider on delete gave), `deleted`,
    /// `webhook_delivered`, `webhook_failed` or `rate_limited` (the provider's request budget
    /// was spent; the proxy held calls back until it reset).
    #[serde(rename = "type")]
    pub kind: String,
    pub connection_id: String,
    pub integration: String,
    /// The provider's reason of a failure, or the webhook's event type and last answer.
    pub detail: Option<String>,
    /// A failure's reference code, also in the log line of that failure.
    pub reference: Option<String>,
    /// The webhook event (`evt_...`) reporting this entry, when one was queued.
    pub webhook_event_id: Option<String>,
    /// When it happened (RFC 3339).
    pub occurred_at: String,
}

fn view(row: &ConnectionEventRow) -> ConnectionEventView {
    ConnectionEventView {
        kind: row.kind.clone(),
        connection_id: row.connection_id.clone(),
        integration: row.integration.clone(),
        detail: row.detail.clone(),
        reference: row.reference.clone(),
        webhook_event_id: row.webhook_event_id.clone(),
        occurred_at: rfc3339(row.created_at),
    }
}

/// A page of a connection's history, newest first.
#[derive(Serialize, ToSchema)]
pub struct ConnectionEventList {
    pub events: Vec<ConnectionEventView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// At most this many (default 50, 1 to 500).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A connection's history, newest first, kept after the connection is deleted until it is
/// purged by age (`[console] history_days`, default 30).
#[utoipa::path(get, path = "/v1/connections/{id}/events", tag = "connections",
    params(("id" = String, Path, description = "The connection's id"), EventsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of the history", body = ConnectionEventList),
        (status = 400, description = "`invalid_limit`, `invalid_cursor` or `invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`connection_not_found`: no such connection and no history of one", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<ConnectionEventList>, ApiError> {
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
    Ok(Json(ConnectionEventList {
        events: rows.iter().map(view).collect(),
        next_cursor,
    }))
}
