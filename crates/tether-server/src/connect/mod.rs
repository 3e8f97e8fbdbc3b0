//! What the end user's browser touches: the Connect page, the start of each connect flow, the
//! credential forms, and the OAuth callback. Every failure here is a readable page, never a
//! JSON error or a blank screen.

mod callback;
mod form;
pub(crate) mod pages;
mod reconnect;
mod session;
mod start;

pub(crate) use start::verifier_context;

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

/// The page for a request whose body is over the limit (see `body_limit`).
pub fn too_large_page(config: &crate::config::GatewayConfig) -> axum::response::Response {
    pages::Failure::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "That was too much to send",
        "The form sent more than this page accepts. Go back, check what you entered and try \
         again.",
    )
    .into_page(config)
}
