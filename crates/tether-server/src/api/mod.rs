//! The JSON API for the app (`/v1/...`), `/health` and `/metrics`. Each module exports `router()`.

pub(crate) mod catalog;
mod connections;
mod end_user;
pub(crate) mod events;
mod health;
mod import;
mod integrations;
mod metadata_bounds;
mod metrics;
pub mod openapi;
mod sessions;
mod verify;
mod webhooks;

use axum::Router;
use tether_store::Store;

use crate::state::AppState;

pub use catalog::{IntegrationView, ProviderView};
pub use connections::{ConnectionView, CredentialsView, EndUserView};
pub(crate) use connections::{
    parse_id as parse_connection_id, read_credentials, view as connection_view,
};

/// Every API route but the proxy, which has its own body limit (see `crate::proxy`).
pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .merge(health::router())
        .merge(catalog::router())
        .merge(sessions::router())
        .merge(connections::router())
        .merge(events::router())
        .merge(import::router())
        .merge(integrations::router())
        .merge(webhooks::router())
        .merge(metrics::guarded_router())
        .merge(openapi::router())
}

/// `/metrics` without a token, for a private listener.
pub fn open_metrics_router<S: Store>() -> Router<AppState<S>> {
    metrics::open_router()
}

/// Any path no route matches: a problem, like every other API error.
pub async fn not_found() -> crate::http::error::ApiError {
    crate::http::error::ApiError::NotFound {
        code: "not_found",
        detail: "no such route".into(),
    }
}
