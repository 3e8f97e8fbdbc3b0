//! The request-body limit of every route but the proxy: a declared `Content-Length` over the
//! limit is refused before any other work (no key check, no database), and a body without one
//! is cut off at the same limit by axum's `DefaultBodyLimit` when a handler reads it.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tether_store::Store;

use crate::connect::too_large_page;
use crate::http::error::ApiError;
use crate::state::AppState;

/// Middleware: 413 for a declared body over `max_body_bytes` (a page for browser routes,
/// problem+json for the API).
pub async fn refuse_large_bodies<S: Store>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        let path = request.uri().path();
        if path.starts_with("/connect") || path.starts_with("/oauth") {
            return too_large_page(&state.config);
        }
        return ApiError::PayloadTooLarge(limit).into_response();
    }
    next.run(request).await
}
