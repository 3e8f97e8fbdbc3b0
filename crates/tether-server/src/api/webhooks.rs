//! `/v1/webhooks/deliveries`: the delivery log the app reads (every event, its status,
//! attempts and last error) and redelivery of one event. App API key required; errors are
//! problem+json like the rest of the API. Payloads are shown as sent: they hold no secrets.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tether_core::unix_time::{self, rfc3339};
use tether_store::{Store, WebhookEventFilter, WebhookEventRow, WebhookStatus};

use crate::api_keys::App;
use crate::error::ApiError;
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

/// The public view of one event and its delivery.
fn view(row: &WebhookEventRow) -> Value {
    // Stored by us as JSON; should it ever not parse, show it as text rather than fail.
    let payload = serde_json::from_str::<Value>(&row.payload)
        .unwrap_or_else(|_| Value::String(row.payload.clone()));
    json!({
        "id": row.id,
        "type": row.event_type,
        "connection_id": row.connection_id,
        "status": row.status.as_str(),
        "attempts": row.attempts,
        "next_attempt_at": (row.status == WebhookStatus::Pending).then(|| rfc3339(row.next_attempt_at)),
        "last_attempt_at": row.last_attempt_at.map(rfc3339),
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "delivered_at": row.delivered_at.map(rfc3339),
        "created_at": rfc3339(row.created_at),
        "payload": payload,
    })
}

fn delivery_not_found() -> ApiError {
    ApiError::NotFound {
        code: "delivery_not_found",
        detail: "no webhook delivery has this id".into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    connection_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

async fn list<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(
        json!({ "deliveries": rows.iter().map(view).collect::<Vec<_>>() }),
    ))
}

async fn show<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = state
        .store
        .get_webhook_event(&id)
        .await?
        .ok_or_else(delivery_not_found)?;
    Ok(Json(view(&row)))
}

async fn redeliver<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if state.config.webhooks.is_none() {
        return Err(ApiError::bad_request(
            "webhooks_not_configured",
            "no webhook URL is configured, so nothing can be delivered",
        ));
    }
    if !state
        .store
        .redeliver_webhook_event(&id, unix_time::now())
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
