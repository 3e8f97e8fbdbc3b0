//! `GET /health` (liveness: the process answers and its database does) and `GET /ready`
//! (readiness: the database answers and the background workers run), both with the version.
//! For load balancers and orchestrators; neither needs a key nor says anything secret.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, extract::State};
use serde::Serialize;
use serde_json::{Value, json};
use tether_store::Store;
use utoipa::ToSchema;

use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/health", get(health::<S>))
        .route("/ready", get(ready::<S>))
}

/// Liveness.
#[derive(Serialize, ToSchema)]
pub struct HealthView {
    /// `ok`.
    pub status: String,
    /// This build's version.
    pub version: String,
}

/// Liveness: the process answers and its database does.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Alive", body = HealthView),
        (status = 500, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn health<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<HealthView>, ApiError> {
    state.store.ping().await?;
    Ok(Json(HealthView {
        status: "ok".into(),
        version: VERSION.into(),
    }))
}

/// Readiness, and what it depends on.
#[derive(Serialize, ToSchema)]
pub struct ReadyView {
    /// `ready` or `not_ready`.
    pub status: String,
    pub version: String,
    /// `ok` or `unavailable`.
    pub database: String,
    /// Each background worker: `running`, `stopped`, or `off` when not configured.
    #[schema(value_type = Object)]
    pub workers: Value,
}

/// 200 when the database answers and every worker this gateway should run is running; 503
/// with the same body otherwise, saying which part is not.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ReadyView),
        (status = 503, description = "Not ready; the body says what is not", body = ReadyView),
    ))]
pub async fn ready<S: Store>(State(state): State<AppState<S>>) -> Response {
    let database = state.store.ping().await.is_ok();
    let workers = &state.workers;
    let running = |flag: &std::sync::atomic::AtomicBool| {
        if flag.load(Ordering::Acquire) {
            "running"
        } else {
            "stopped"
        }
    };
    let webhooks = if state.config.webhooks.is_some() {
        running(&workers.webhooks)
    } else {
        "off"
    };
    // Other instances' changes: heard ("listening"), possibly missed while the listening
    // connection is re-established ("reconnecting": the credential cache is bypassed, which
    // is slower but correct, so it does not make the instance unready), or nothing to hear
    // ("off": SQLite).
    let changes = if !workers.changes.load(Ordering::Acquire) {
        "off"
    } else if state.cache.is_trusted() {
        "listening"
    } else {
        "reconnecting"
    };
    let ready = database
        && workers.refresher.load(Ordering::Acquire)
        && workers.purge.load(Ordering::Acquire)
        && webhooks != "stopped";
    let body = ReadyView {
        status: if ready { "ready" } else { "not_ready" }.into(),
        version: VERSION.into(),
        database: if database { "ok" } else { "unavailable" }.into(),
        workers: json!({
            "refresher": running(&workers.refresher),
            "purge": running(&workers.purge),
            "webhooks": webhooks,
            "changes": changes,
        }),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
