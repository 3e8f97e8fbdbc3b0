//! `/v1/webhooks/deliveries`: the delivery log the app reads (every event, its status,
//! attempts and last error) and redelivery of one event. App API key required; errors are
//! problem+json like the rest of the API. Payloads are shown as sent: they hold no secrets.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_core::unix_time::rfc3339;
use tether_store::{Store, WebhookEventFilter, WebhookEventRow, WebhookStatus};
use utoipa::{IntoParams, ToSchema};

use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/v1/webhooks/deliveries", get(list::<S>))
        .route("/v1/webhooks/deliveries/{id}", get(show::<S>))
        .route(
            "/v1/webhooks/deliveries/{id}/redeliver",
            post(redeliver::<S>),
        )
}

/// One webhook event and the state of its delivery.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// `evt_...`; also the `id` in the payload.
    pub id: String,
    /// `connection.created`, `connection.refreshed`, `connection.refresh_failed` or
    /// `connection.deleted`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub connection_id: String,
    /// `pending`, `delivered` or `failed` (gave up; redeliver to try again).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
    /// The body as sent to the webhook URL.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// A page of deliveries, newest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// The public view of one event and its delivery.
fn view(row: &WebhookEventRow) -> DeliveryView {
    // Stored by us as JSON; should it ever not parse, show it as text rather than fail.
    let payload = serde_json::from_str::<Value>(&row.payload)
        .unwrap_or_else(|_| Value::String(row.payload.clone()));
    DeliveryView {
        id: row.id.clone(),
        event_type: row.event_type.clone(),
        connection_id: row.connection_id.clone(),
        status: row.status.as_str().to_owned(),
        attempts: row.attempts,
        next_attempt_at: (row.status == WebhookStatus::Pending)
            .then(|| rfc3339(row.next_attempt_at)),
        last_attempt_at: row.last_attempt_at.map(rfc3339),
        last_status_code: row.last_status_code,
        last_error: row.last_error.clone(),
        delivered_at: row.delivered_at.map(rfc3339),
        created_at: rfc3339(row.created_at),
        payload,
    }
}

fn delivery_not_found() -> ApiError {
    ApiError::NotFound {
        code: "delivery_not_found",
        detail: "no webhook delivery has this id".into(),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this connection's events.
    connection_id: Option<String>,
    /// Only events in this state: `pending`, `delivered` or `failed`.
    status: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// The delivery log, newest first.
#[utoipa::path(get, path = "/v1/webhooks/deliveries", tag = "webhooks", params(ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Matching deliveries", body = DeliveryList),
        (status = 400, description = "`invalid_status`, `invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Query(query) = query?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            WebhookStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_status",
                    "status is one of pending, delivered, failed",
                )
            })
        })
        .transpose()?;
    let rows = state
        .store
        .list_webhook_events(&WebhookEventFilter {
            connection_id: query.connection_id,
            status,
            limit: query.limit.unwrap_or(100).min(1000),
        })
        .await?;
    Ok(Json(DeliveryList {
        deliveries: rows.iter().map(view).collect(),
    }))
}

/// One event and its delivery state.
#[utoipa::path(get, path = "/v1/webhooks/deliveries/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The event's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The event", body = DeliveryView),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`delivery_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn show<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let row = state
        .store
        .get_webhook_event(&id)
        .await?
        .ok_or_else(delivery_not_found)?;
    Ok(Json(view(&row)))
}

/// Queues an event for delivery again, whatever its state (attempts start over).
///
/// A `delivered` or `failed` event is sent once more. An event that is `pending` already
/// (queued, in back-off, or being sent) is not queued a second time: it is made due now with
/// its attempts started over. So any number of redeliveries while one is pending make one
/// delivery, not one each.
#[utoipa::path(post, path = "/v1/webhooks/deliveries/{id}/redeliver", tag = "webhooks",
    params(("id" = String, Path, description = "The event's id")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Queued", body = DeliveryView),
        (status = 400, description = "`webhooks_not_configured`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`delivery_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn redeliver<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    if state.config.webhooks.is_none() {
        return Err(ApiError::bad_request(
            "webhooks_not_configured",
            "no webhook URL is configured, so nothing can be delivered",
        ));
    }
    if !state
        .store
        .redeliver_webhook_event(&id, state.clock.now())
        .await?
    {
        return Err(delivery_not_found());
    }
    state.webhook_wake.notify_one();
    let row = state
        .store
        .get_webhook_event(&id)
        .await?
        .ok_or_else(delivery_not_found)?;
    Ok((StatusCode::ACCEPTED, Json(view(&row))))
}
