//! The checks in front of every Salesmate route, in the order the real service appears to
//! apply them: count the call, injected fault, account by `x-linkname`, hourly rate limit
//! per link, then the `accessToken` (or legacy `sessionToken`) header.
//!
//! On success the request carries a [`Link`] extension naming the account; handlers must
//! only ever touch that account's records.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{SalesmateFault, Shared, lock, reply};
use crate::html;
use crate::http_util::header_text;

/// The rate-limit window (real API: 1500 calls an hour per link).
const WINDOW: Duration = Duration::from_secs(3600);

/// The account a request was authenticated for (normalised, lowercase link name).
#[derive(Clone, Debug)]
pub(crate) struct Link(pub String);

/// `acme.salesmate.io` or, leniently, `acme` → `acme`.
pub(crate) fn link_name(headers: &HeaderMap) -> Option<String> {
    let raw = header_text(headers, "x-linkname")?
        .trim()
        .to_ascii_lowercase();
    let name = raw.strip_suffix(".salesmate.io").unwrap_or(&raw);
    (!name.is_empty()).then(|| name.to_owned())
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    header_text(headers, "accesstoken").or_else(|| header_text(headers, "sessiontoken"))
}

/// The middleware itself.
pub(crate) async fn gate(
    State(shared): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let link = {
        let mut state = lock(&shared);
        state.calls += 1;
        match state.fault {
            Some(SalesmateFault::ServerError) => {
                return reply::failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "5000",
                    "InternalServerError",
                    "Something went wrong",
                );
            }
            Some(SalesmateFault::HtmlPage) => return html::bad_gateway_page(),
            Some(SalesmateFault::OkWithFailure) => {
                return reply::failure(
                    StatusCode::OK,
                    "5000",
                    "InternalServerError",
                    "Something went wrong",
                );
            }
            None => {}
        }
        let headers = request.headers();
        let limit = state.hourly_limit;
        let Some((link, account)) = link_name(headers)
            .and_then(|link| state.accounts.get_mut(&link).map(|account| (link, account)))
        else {
            return reply::lowercase_failure(StatusCode::NOT_FOUND, "NoSuchLinkExist");
        };
        let now = Instant::now();
        if now.duration_since(account.window_start) >= WINDOW {
            account.window_start = now;
            account.window_calls = 0;
        }
        account.window_calls = account.window_calls.saturating_add(1);
        if account.window_calls > limit {
            return reply::failure(
                StatusCode::TOO_MANY_REQUESTS,
                "429",
                "RateLimitExceeded",
                "API rate limit exceeded, try again later",
            );
        }
        if presented_key(headers) != Some(account.access_key.as_str()) {
            return reply::lowercase_failure(StatusCode::FORBIDDEN, "AuthorizationFailed");
        }
        link
    };
    request.extensions_mut().insert(Link(link));
    next.run(request).await
}
