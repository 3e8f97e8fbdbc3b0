//! `GET /metrics`: the gateway's metrics as OpenMetrics text, which Prometheus scrapes. For
//! the operator, like `/health`; it holds counts and durations, never an id or a secret.
//!
//! Never open on the public listener: either the operator serves [`open_router`] on a private
//! address (`[server] metrics_listen`), or the gateway's router carries [`guarded_router`],
//! which answers only to `Authorization: Bearer <metrics token>`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tether_core::random::constant_time_eq;
use tether_store::Store;

use crate::http::error::ApiError;
use crate::state::AppState;

/// `/metrics` with no check, for a listener only the operator reaches.
pub fn open_router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/metrics", get(metrics::<S>))
}

/// `/metrics` behind the metrics token, for the public router.
pub fn guarded_router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/metrics", get(guarded::<S>))
}

async fn guarded<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(token) = &state.config.metrics_token else {
        return Err(ApiError::NotFound {
            code: "not_found",
            detail: "no such route".into(),
        });
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = tether_core::random::sha256_hex(token.expose());
    let presented = tether_core::random::sha256_hex(presented);
    if !constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(metrics(State(state)).await.into_response())
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
