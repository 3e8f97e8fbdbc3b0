//! Loading the connect session a browser presents (`?session=T`), and the browser-binding
//! cookie that ties an OAuth flow to the browser that started it (RFC 9700 4.7.1).

use axum::http::{HeaderMap, StatusCode, header};
use cookie::{Cookie, SameSite};
use tether_core::{random, unix_time};
use tether_store::{ConnectSessionRow, Store};

use super::pages::Failure;
use crate::state::AppState;

/// Name of the browser-binding cookie.
pub const BROWSER_COOKIE: &str = "tether_browser";

/// A live connect session.
pub struct Session {
    pub token: String,
    pub row: ConnectSessionRow,
}

impl Session {
    /// Whether this session lets the end user connect `integration`.
    pub fn allows(&self, integration: &str) -> bool {
        match &self.row.integrations {
            None => true,
            Some(json) => serde_json::from_str::<Vec<String>>(json)
                .map(|keys| keys.iter().any(|k| k == integration))
                .unwrap_or(false),
        }
    }
}

pub fn expired_failure() -> Failure {
    Failure::new(
        StatusCode::GONE,
        "session_expired",
        "This link has expired",
        "For your security, connect links only work for a short time. Go back to the app and \
         start connecting again.",
    )
}

/// The session named by `token`, if it exists and has not expired.
pub async fn load<S: Store>(state: &AppState<S>, token: Option<&str>) -> Result<Session, Failure> {
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 128) else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "session_missing",
            "This link is incomplete",
            "The link you followed has no connect session. Go back to the app and start \
             connecting again.",
        ));
    };
    let row = state
        .store
        .get_connect_session(&random::sha256_hex(token))
        .await
        .map_err(|err| {
            let reference = crate::reference::new();
            tracing::error!(reference = %reference, error = ?err, "loading connect session");
            let mut f = Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Something went wrong",
                "We could not load this page. Try again in a moment.",
            );
            f.reference = Some(reference);
            f
        })?;
    match row {
        Some(row) if row.expires_at > unix_time::now() => Ok(Session {
            token: token.to_owned(),
            row,
        }),
        _ => Err(expired_failure()),
    }
}

/// The browser's binding value, reusing the cookie when present so several tabs can run
/// flows side by side. Returns the value and, when new, the `Set-Cookie` header to send.
pub fn browser_binding(headers: &HeaderMap, secure: bool) -> (String, Option<String>) {
    if let Some(existing) = read_cookie(headers, BROWSER_COOKIE).filter(|v| v.len() == 43) {
        return (existing, None);
    }
    let value = random::token();
    let cookie = Cookie::build((BROWSER_COOKIE, value.clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .path("/")
        .build();
    (value, Some(cookie.to_string()))
}

/// A cookie's value from the request's `Cookie` headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}
