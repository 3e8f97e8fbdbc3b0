//! The connect session a browser presents (`?session=T`), and the browser-binding cookie.
//!
//! A session belongs to the first browser that opens it: that browser gets a fresh random
//! cookie from Tether (never a value it brought along, so a planted cookie cannot fix the
//! binding), and the session keeps the cookie's hash. Any other browser presenting the same
//! link gets a page saying it was opened elsewhere, and nothing is stored for it: an app user
//! who forwards their own link to someone cannot collect that person's CRM account under
//! their id. The same cookie binds OAuth flows to the browser that started them (RFC 9700
//! 4.7.1). A session ends with its first successful connection; a second use gets a page
//! saying so.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use cookie::{Cookie, SameSite};
use tether_core::{SessionToken, random};
use tether_store::{ConnectSessionRow, Store, TokenHash};

use super::pages::Failure;
use crate::config::GatewayConfig;
use crate::http::rate_limit::seconds_left;
use crate::state::AppState;

/// Name of the browser-binding cookie over plain http (local development).
pub const BROWSER_COOKIE: &str = "tether_browser";
/// Name of the browser-binding cookie over https: the `__Host-` prefix makes browsers refuse
/// it unless it is `Secure`, has `Path=/` and no `Domain`, so a sibling subdomain cannot set it.
pub const BROWSER_COOKIE_HOST: &str = "__Host-tether_browser";

/// The cookie name for this deployment.
pub fn cookie_name(config: &GatewayConfig) -> &'static str {
    if config.secure_cookies() {
        BROWSER_COOKIE_HOST
    } else {
        BROWSER_COOKIE
    }
}

/// A live connect session, bound to the browser presenting it.
pub struct Session {
    /// The session's bearer token, as the link carried it (Connect links repeat it).
    pub token: SessionToken,
    pub row: ConnectSessionRow,
    /// The binding cookie's value as this browser holds it (hashed into flow states).
    pub browser: String,
    /// The `Set-Cookie` value when this request bound the session (send it back).
    pub set_cookie: Option<HeaderValue>,
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

    /// Whom the session connects, as the app described them (email, else display name).
    pub fn for_whom(&self) -> Option<String> {
        self.row
            .end_user_email
            .clone()
            .or_else(|| self.row.end_user_display_name.clone())
    }

    /// Adds the binding cookie (when this request set it) to a response.
    pub fn with_cookie(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.set_cookie {
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.clone());
        }
        response
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

pub fn used_failure() -> Failure {
    Failure::new(
        StatusCode::GONE,
        "session_used",
        "This link was already used",
        "An account was already connected with this link, and each link connects once. To \
         connect another account, start again from the app.",
    )
}

pub fn elsewhere_failure() -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        "session_elsewhere",
        "This link was opened elsewhere",
        "This connect link was already opened in another browser, and it only works there. \
         If you did not open it, someone may have sent you their link: start again from the \
         app, signed in as yourself.",
    )
}

/// The session named by `token`, checked (it exists, has not expired, is unused) and bound to
/// this browser: bound now when no browser holds it yet, refused when another one does.
pub async fn load<S: Store>(
    state: &AppState<S>,
    token: Option<&str>,
    headers: &HeaderMap,
) -> Result<Session, Failure> {
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= 128) else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "session_missing",
            "This link is incomplete",
            "The link you followed has no connect session. Go back to the app and start \
             connecting again.",
        ));
    };
    let token_hash = TokenHash::of(token);
    let row = state
        .store
        .get_connect_session(&token_hash)
        .await
        .map_err(|err| internal("loading connect session", &err))?;
    let row = match row {
        Some(row) if row.expires_at > state.clock.now() => row,
        _ => return Err(expired_failure()),
    };
    if row.completed_at.is_some() {
        return Err(used_failure());
    }
    let presented = read_cookie(headers, cookie_name(&state.config));
    let presented_hash = presented.as_deref().map(TokenHash::of);
    if let Some(bound) = &row.browser_hash {
        return match (presented, presented_hash) {
            (Some(browser), Some(hash)) if &hash == bound => Ok(Session {
                token: SessionToken::new(token),
                row,
                browser,
                set_cookie: None,
            }),
            _ => {
                tracing::warn!("connect link presented by a browser it is not bound to");
                Err(elsewhere_failure())
            }
        };
    }
    // Unbound: this browser takes it with a cookie Tether makes now.
    let browser = random::token();
    let hash = TokenHash::of(&browser);
    let bound = state
        .store
        .bind_connect_session(&token_hash, &hash, state.clock.now())
        .await
        .map_err(|err| internal("binding connect session", &err))?;
    if bound.as_ref() != Some(&hash) {
        // Another browser bound it a moment ago.
        tracing::warn!("connect link bound by another browser first");
        return Err(elsewhere_failure());
    }
    let mut row = row;
    row.browser_hash = Some(hash);
    Ok(Session {
        token: SessionToken::new(token),
        row,
        set_cookie: Some(binding_cookie(&state.config, &browser)),
        browser,
    })
}

/// The `Set-Cookie` header binding this browser: HttpOnly, SameSite=Lax (the provider's
/// redirect back to the callback is a top-level navigation, which Lax lets through), `Secure`
/// and `__Host-` over https.
fn binding_cookie(config: &GatewayConfig, value: &str) -> HeaderValue {
    let cookie = Cookie::build((cookie_name(config), value.to_owned()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(config.secure_cookies())
        .path("/")
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a random token makes a valid cookie")
}

/// Counts one credential check against the session; `Err` with a page once the session has
/// used up its checks for the window.
pub async fn count_attempt<S: Store>(
    state: &AppState<S>,
    session: &Session,
) -> Result<(), Failure> {
    let limit = state.config.connect_attempts;
    let now = state.clock.now();
    let window_secs = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
    let counted = state
        .store
        .count_session_attempt(&session.row.token_hash, now, window_secs)
        .await
        .map_err(|err| internal("counting a credential check", &err))?;
    let Some(counted) = counted else {
        return Err(expired_failure());
    };
    if counted.attempts <= limit.max {
        return Ok(());
    }
    let elapsed = std::time::Duration::from_secs(u64::try_from(now - counted.since).unwrap_or(0));
    let wait = seconds_left(limit.window, elapsed);
    tracing::warn!(
        attempts = counted.attempts,
        "connect session over its credential-check limit"
    );
    let mut failure = Failure::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many attempts",
        [
            "Too many sign-in attempts were made with this link. Wait ",
            &minutes(wait),
            " and try again, or start again from the app.",
        ]
        .concat(),
    );
    failure.retry_after = Some(wait);
    Err(failure)
}

/// "1 minute", "7 minutes" (rounded up).
fn minutes(seconds: u64) -> String {
    match seconds.div_ceil(60) {
        1 => "1 minute".into(),
        n => [n.to_string().as_str(), " minutes"].concat(),
    }
}

/// Marks the session used by the connection about to be stored; `Err` with a page when it
/// was used meanwhile (a concurrent connect won), so the caller stores nothing.
pub async fn complete<S: Store>(
    state: &AppState<S>,
    token_hash: &TokenHash,
) -> Result<(), Failure> {
    let won = state
        .store
        .complete_connect_session(token_hash, state.clock.now())
        .await
        .map_err(|err| internal("completing connect session", &err))?;
    if won { Ok(()) } else { Err(used_failure()) }
}

/// Hands a session back after the save that followed [`complete`] failed.
pub async fn reopen<S: Store>(state: &AppState<S>, token_hash: &TokenHash) {
    if let Err(err) = state
        .store
        .reopen_connect_session(token_hash, state.clock.now())
        .await
    {
        tracing::error!(error = ?err, "reopening connect session after a failed save");
    }
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

fn internal<E: std::fmt::Debug + std::any::Any>(what: &str, err: &E) -> Failure {
    Failure::internal(
        what,
        err,
        "We could not load this page. Try again in a moment.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_up() {
        assert_eq!(minutes(1), "1 minute");
        assert_eq!(minutes(60), "1 minute");
        assert_eq!(minutes(61), "2 minutes");
        assert_eq!(minutes(600), "10 minutes");
    }
}
