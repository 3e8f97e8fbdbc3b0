//! `GET /health`: ok when the database answers.

use axum::routing::get;
use axum::{Json, Router, extract::State};
use serde_json::{Value, json};
use tether_store::Store;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/health", get(health::<S>))
}

async fn health<S: Store>(State(state): State<AppState<S>>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({"status": "ok"})))
}
