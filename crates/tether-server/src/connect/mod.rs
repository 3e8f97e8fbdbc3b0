//! What the end user's browser touches: the Connect page, the start of each connect flow, the
//! credential forms, and the OAuth callback. Every failure here is a readable page, never a
//! JSON error or a blank screen.

mod callback;
mod form;
mod pages;
mod session;
mod start;

use axum::Router;
use axum::routing::get;
use tether_store::Store;

use crate::state::AppState;

/// The browser-facing routes.
pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/connect", get(start::connect_page::<S>))
        .route(
            "/connect/{integration}",
            get(start::start::<S>).post(form::submit::<S>),
        )
        .route("/oauth/callback", get(callback::callback::<S>))
}
