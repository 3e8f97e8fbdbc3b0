//! `GET /health` (liveness: the process answers and its database does) and `GET /ready`
//! (readiness: the database answers and the background workers run), both with the version.
//! For load balancers and orchestrators; neither needs a key nor says anything secret.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, extract::State};
use serde_json::{Value, json};
use tether_store::Store;

use crate::error::ApiError;
use crate::state::AppState;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/health", get(health::<S>))
        .route("/ready", get(ready::<S>))
}

async fn health<S: Store>(State(state): State<AppState<S>>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({"status": "ok", "version": VERSION})))
}

/// 200 when the database answers and every worker this gateway should run is running; 503
/// with the same body otherwise, saying which part is not.
async fn ready<S: Store>(State(state): State<AppState<S>>) -> Response {
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
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "version": VERSION,
        "database": if database { "ok" } else { "unavailable" },
        "workers": {
            "refresher": running(&workers.refresher),
            "purge": running(&workers.purge),
            "webhooks": webhooks,
            "changes": changes,
        },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
