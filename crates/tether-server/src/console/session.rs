//! The console's sign-in session and its CSRF defences.
//!
//! The session is a cookie holding a value sealed by the vault (AES-GCM, so it can be neither
//! read nor forged without the vault key, and every instance sharing the vault accepts it):
//! its expiry, a random nonce, and a fingerprint of the API key that signed in, never the key.
//! Removing that key from the configuration ends its sessions. Each sign-in is also a row in
//! the store, named by the hash of the nonce and checked on every console request: signing
//! out deletes it, so a copied cookie stops working at once on every instance, and an operator
//! can end every session (the "End all sessions" button, `tether console sign-out-all`). The cookie is
//! `HttpOnly;
//! SameSite=Strict; Path=/`, and `Secure` with the `__Host-` prefix on https. A new value is
//! minted at every sign-in and nothing a browser brings before signing in is ever upgraded
//! (no session fixation).
//!
//! Every state-changing form carries a CSRF token derived from the session value (a browser
//! that cannot read the HttpOnly cookie cannot compute it), checked in constant time; and a
//! POST whose `Origin` or `Sec-Fetch-Site` says it came from another site is refused before
//! anything else, the sign-in form included (login CSRF).

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tether_core::SessionToken;
use tether_core::random::constant_time_eq;
use tether_store::{ConsoleSessionRow, Store, TokenHash};

use crate::config::GatewayConfig;
use crate::state::AppState;

/// Cookie name over plain http (local use).
pub const COOKIE: &str = "tether_console";
/// Cookie name over https: `__Host-` makes browsers require `Secure`, `Path=/`, no `Domain`.
pub const COOKIE_HOST: &str = "__Host-tether_console";
/// How long a sign-in lasts.
pub const SESSION_SECS: i64 = 8 * 60 * 60;
/// The vault context of session values, so no other sealed value can pass for one.
const CONTEXT: &str = "tether-console-session";

/// What the sealed cookie holds.
#[derive(Serialize, Deserialize)]
struct Claims {
    /// Expiry, unix seconds.
    exp: i64,
    /// Fingerprint of the API key that signed in.
    key: String,
    /// Makes every session value distinct; the store keeps only its hash.
    nonce: SessionToken,
}

/// A signed-in operator.
pub struct Operator {
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    /// The session's row in the store (the hash of the cookie's nonce).
    pub session_id: TokenHash,
}

pub fn cookie_name(config: &GatewayConfig) -> &'static str {
    if config.secure_cookies() {
        COOKIE_HOST
    } else {
        COOKIE
    }
}

/// Mints a new session for a key fingerprint and records it in the store: the `Set-Cookie`
/// header value. `None` when it could not be recorded or built.
pub async fn issue<S: Store>(state: &AppState<S>, key_fingerprint: String) -> Option<HeaderValue> {
    let now = state.clock.now();
    let claims = Claims {
        exp: now + SESSION_SECS,
        key: key_fingerprint,
        nonce: SessionToken::new(tether_core::random::token()),
    };
    let row = ConsoleSessionRow {
        id_hash: session_id(&claims.nonce),
        key_fingerprint: claims.key.clone(),
        created_at: now,
        expires_at: claims.exp,
    };
    if let Err(err) = state.store.insert_console_session(&row).await {
        tracing::error!(error = %err, "recording a console session failed");
        return None;
    }
    let plaintext = serde_json::to_vec(&claims).ok()?;
    let value = URL_SAFE_NO_PAD.encode(state.vault.seal(CONTEXT, &plaintext).ok()?);
    set_cookie(&state.config, value, SESSION_SECS)
}

/// The store's name of a session: the hash of its nonce, so the table holds nothing a cookie
/// could be rebuilt from.
fn session_id(nonce: &SessionToken) -> TokenHash {
    TokenHash::of(nonce.expose())
}

/// The `Set-Cookie` value that removes the session (sign-out).
pub fn clear(config: &GatewayConfig) -> Option<HeaderValue> {
    set_cookie(config, String::new(), 0)
}

fn set_cookie(config: &GatewayConfig, value: String, max_age: i64) -> Option<HeaderValue> {
    let cookie = Cookie::build((cookie_name(config), value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(config.secure_cookies())
        .max_age(time::Duration::seconds(max_age))
        .build();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

/// The session value the request presents, if any.
fn presented<'a>(config: &GatewayConfig, headers: &'a HeaderMap) -> Option<&'a str> {
    let name = cookie_name(config);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The operator signed in on this request: a cookie that opens, has not expired, names a key
/// still configured, and whose session the store still holds (not signed out).
pub async fn operator<S: Store>(state: &AppState<S>, headers: &HeaderMap) -> Option<Operator> {
    let value = presented(&state.config, headers)?;
    let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
    let plaintext = state.vault.open(CONTEXT, &sealed).ok()?;
    let claims: Claims = serde_json::from_slice(&plaintext).ok()?;
    let now = state.clock.now();
    if claims.exp <= now || !state.api_keys.has_fingerprint(&claims.key) {
        return None;
    }
    let session_id = session_id(&claims.nonce);
    match state.store.console_session_active(&session_id, now).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(err) => {
            // Refused rather than trusted: a session that cannot be checked may have ended.
            tracing::warn!(error = %err, "checking a console session failed");
            return None;
        }
    }
    Some(Operator {
        csrf: csrf_token(value),
        session_id,
    })
}

/// The CSRF token of a session value: derived, so nothing is stored, and unknowable to a page
/// that cannot read the HttpOnly cookie.
fn csrf_token(session_value: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"tether-console-csrf\0");
    digest.update(session_value.as_bytes());
    hex::encode(digest.finalize())
}

impl Operator {
    /// Whether a form's token is this session's.
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| constant_time_eq(p.as_bytes(), self.csrf.as_bytes()))
    }
}
