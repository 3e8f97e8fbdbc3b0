//! How the authorization server says no, in the three forms the specifications ask for: a JSON
//! error body at the token, revocation and registration endpoints (RFC 6749 section 5.2,
//! RFC 7591 section 3.2.2), a redirect back to the client with `error` and `iss` once its
//! redirect URI is trusted (RFC 6749 section 4.1.2.1, RFC 9207), and a readable page before
//! that (never a redirect to an unchecked URI).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use url::Url;

use crate::config::GatewayConfig;
use crate::connect::pages::Failure;

/// An OAuth error answered as JSON, never cached.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    /// The registered error code (`invalid_request`, `invalid_grant`, ...).
    pub error: &'static str,
    /// A human-readable sentence; never a secret, never an internal error's text.
    pub description: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = match error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError::new("invalid_request", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        OAuthError::new("invalid_grant", description)
    }

    /// A store failure: logged with a reference; the client learns only to try again.
    pub fn store(err: tether_store::StoreError) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = ?err, "database unavailable");
            return OAuthError::new(
                "temporarily_unavailable",
                "the database is unavailable; try again shortly",
            );
        }
        internal(&err)
    }
}

/// An internal failure, logged under a reference that the answer quotes.
pub fn internal<E: std::fmt::Debug>(err: &E) -> OAuthError {
    let reference = crate::http::reference::new();
    tracing::error!(reference = %reference, error = ?err, "mcp authorization: internal error");
    OAuthError::new(
        "server_error",
        format!("something went wrong on our side (reference {reference})"),
    )
}

impl From<tether_store::StoreError> for OAuthError {
    fn from(err: tether_store::StoreError) -> Self {
        OAuthError::store(err)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.error,
            error_description: &self.description,
        };
        no_store((self.status, Json(body)).into_response())
    }
}

/// Marks a response as never to be cached (RFC 6749 section 5.1).
pub fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The client's redirect URI with the authorization response's parameters added: `code` or
/// `error`, the client's `state` when it sent one, and `iss` (RFC 9207).
pub fn redirect_uri_with(
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> Option<Url> {
    let mut url = Url::parse(redirect_uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    Some(url)
}

/// A page for the person in the browser when the request cannot go back to the client.
pub fn page(
    config: &GatewayConfig,
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> Response {
    Failure::new(status, code, "This sign-in link cannot be used", message).into_page(config)
}

/// A `302 Found` to `url`: the authorization endpoint's redirects (RFC 6749 section 4.1.1).
pub fn found(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            no_store(response)
        }
        Err(_) => internal(&"a redirect URL is not a header value").into_response(),
    }
}
