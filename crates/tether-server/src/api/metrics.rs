//! `GET /metrics`: the gateway's metrics as OpenMetrics text, which Prometheus scrapes. For
//! the operator, like `/health`; it holds counts and durations, never an id or a secret.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tether_store::Store;

use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/metrics", get(metrics::<S>))
}

async fn metrics<S: Store>(State(state): State<AppState<S>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
