//! Every request gets an id: taken from `X-Request-Id` when a trusted proxy (a peer listed in
//! `trusted_proxies`) sent a well-formed one, generated otherwise. It is returned on the
//! response, and every log line written while the request is handled carries it (the handler
//! runs inside a span that holds it), so an app's support ticket, a page's reference and
//! Tether's log meet. The same middleware counts the request by route and status.
//!
//! A client's own `X-Request-Id` is not trusted from untrusted peers: it would let anyone
//! write arbitrary text into the operator's logs, or make their requests look like another's.

use std::borrow::Cow;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tether_store::Store;
use tracing::Instrument;

use crate::state::AppState;

/// The header that carries the id, both ways.
pub const HEADER: &str = "x-request-id";

/// Middleware: the request's span, id header and metrics.
pub async fn track<S: Store>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let (tracked, span) = begin(&state, &request, route.as_deref().unwrap_or("unmatched"));
    let mut response = next.run(request).instrument(span).await;
    finish(&state, tracked, route.map(Cow::Owned), &mut response);
    response
}

/// A request being answered: its id and when it started.
pub(crate) struct Tracked {
    id: String,
    started: Instant,
}

/// The request's id and its span (`route`: the matched pattern, or `unmatched`), for
/// [`track`] and for the proxy route served ahead of the router (`fast_path`).
pub(crate) fn begin<S: Store>(
    state: &AppState<S>,
    request: &Request,
    route: &str,
) -> (Tracked, tracing::Span) {
    let id = accepted_id(state, request).unwrap_or_else(generate);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route,
    );
    let started = Instant::now();
    (Tracked { id, started }, span)
}

/// Counts the answered request by route (`None`: no route matched) and status, and gives
/// the response its id.
pub(crate) fn finish<S: Store>(
    state: &AppState<S>,
    tracked: Tracked,
    route: Option<Cow<'static, str>>,
    response: &mut Response,
) {
    state.metrics.http_request(
        route,
        response.status().as_u16(),
        tracked.started.elapsed().as_secs_f64(),
    );
    if let Ok(value) = HeaderValue::try_from(tracked.id) {
        response.headers_mut().insert(HEADER, value);
    }
}

/// A new id: `req_` and 22 base64url characters, 128 random bits (plenty to tell requests
/// apart). Written straight into the one string: an id is made for every request.
pub fn generate() -> String {
    tether_core::random::prefixed_random::<16>("req_")
}

/// The proxy's id, when the peer is trusted and the id is short and plain.
fn accepted_id<S: Store>(state: &AppState<S>, request: &Request) -> Option<String> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()?
        .0
        .ip();
    if !state.config.trusted_proxies.contains(&peer) {
        return None;
    }
    let value = request.headers().get(HEADER)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    plain.then(|| value.to_owned())
}
