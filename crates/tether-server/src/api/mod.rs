//! The JSON API for the app (`/v1/...`) and `/health`. Each module exports `router()`.

mod connections;
mod health;
mod proxy;
mod sessions;

use axum::Router;
use tether_store::Store;

use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .merge(health::router())
        .merge(sessions::router())
        .merge(connections::router())
        .merge(proxy::router())
}
