//! The `Origin` check the Streamable HTTP transport asks of every MCP server ("servers MUST
//! validate the Origin header on all incoming connections"; a present, invalid one gets 403).
//! It stops DNS rebinding and other browser pages from talking to `/mcp`: a page sends its own
//! origin, which is neither Tether's public URL nor one the operator listed in
//! `[mcp] allowed_origins` (a web app whose own page acts as the MCP client). Requests without
//! `Origin` (MCP clients that are not browsers) pass; they still need a token.
//!
//! Written here rather than taken from `rmcp`'s own check so the refusal is problem+json like
//! every other error of Tether's, and comes before the token is looked up.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Response, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tether_store::Store;
use url::{Origin, Url};

use crate::http::error::ApiError;
use crate::state::AppState;

/// Whether `value` (an `Origin` header) is Tether's own origin or one listed in `allowed`.
/// `null` and anything that is not a tuple origin never match.
pub fn origin_allowed(value: &[u8], public_url: &Url, allowed: &[Origin]) -> bool {
    let Some(origin) = std::str::from_utf8(value)
        .ok()
        .and_then(|text| Url::parse(text).ok())
        .map(|url| url.origin())
        .filter(Origin::is_tuple)
    else {
        return false;
    };
    origin == public_url.origin() || allowed.contains(&origin)
}

/// Middleware of `/mcp`: a request whose `Origin` is present and not accepted gets 403.
pub async fn require_allowed_origin<S: Store>(
    State(state): State<AppState<S>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    if let Some(value) = request.headers().get(header::ORIGIN)
        && !origin_allowed(
            value.as_bytes(),
            &state.config.public_url,
            &state.config.mcp.allowed_origins,
        )
    {
        return ApiError::Forbidden {
            code: "origin_not_allowed",
            detail: "requests to /mcp from this Origin are not accepted; an operator may list \
                     a web app's origin in [mcp] allowed_origins"
                .into(),
        }
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> Url {
        Url::parse("https://tether.example.com/base/").unwrap()
    }

    #[test]
    fn tethers_own_origin_is_accepted_with_or_without_the_default_port() {
        assert!(origin_allowed(
            b"https://tether.example.com",
            &public(),
            &[]
        ));
        assert!(origin_allowed(
            b"https://tether.example.com:443",
            &public(),
            &[]
        ));
    }

    #[test]
    fn other_origins_are_refused_unless_listed() {
        let listed = Url::parse("https://app.example.com").unwrap().origin();
        assert!(!origin_allowed(b"http://evil.example.com", &public(), &[]));
        assert!(!origin_allowed(
            b"http://tether.example.com",
            &public(),
            &[]
        ));
        assert!(!origin_allowed(
            b"https://tether.example.com:8443",
            &public(),
            &[]
        ));
        assert!(origin_allowed(
            b"https://app.example.com",
            &public(),
            std::slice::from_ref(&listed)
        ));
        assert!(!origin_allowed(
            b"https://app.example.com.evil.net",
            &public(),
            &[listed]
        ));
    }

    #[test]
    fn null_and_garbage_are_refused() {
        assert!(!origin_allowed(b"null", &public(), &[]));
        assert!(!origin_allowed(b"", &public(), &[]));
        assert!(!origin_allowed(b"not a url", &public(), &[]));
        assert!(!origin_allowed(&[0xff, 0xfe], &public(), &[]));
    }
}
