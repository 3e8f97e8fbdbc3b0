//! Emulator of the OAuth 2.0 flow the two seed articles describe (`shared/providers/seed-oauth.md`):
//! authorize (auto-approve or a consent page), token (authorization_code and refresh_token
//! grants, PKCE S256, optional refresh-token rotation with reuse detection), revoke (RFC 7009)
//! and a small Bearer-protected API (`/v1/deals`, `/v1/echo`).
//!
//! Tests drive it through [`SeedOAuthControl`]: counters, injected token-endpoint faults,
//! forced expiry and revocation. It must never redirect to a `redirect_uri` it has not
//! validated, never echo a client secret, and never panic on request input.

mod api;
mod authorize;
mod pkce;
mod state;
mod token;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};

use crate::server;
use crate::server::Running;
use state::State;

/// How the authorize endpoint gets the end user's consent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consent {
    /// Redirect straight back with a code, as if the user had clicked "Approve".
    #[default]
    AutoApprove,
    /// Show an HTML consent page with "Approve" (`id="approve"`) and "Deny" (`id="deny"`).
    Page,
}

/// Configuration of one seed OAuth emulator. Start from [`Default`] and change what a test needs.
/// Its `Debug` output hides the client secret.
#[derive(Clone)]
pub struct SeedOAuthConfig {
    /// The only registered client's id.
    pub client_id: String,
    /// The only registered client's secret.
    pub client_secret: String,
    /// Auto-approve or consent page.
    pub consent: Consent,
    /// Lifetime of access tokens, sent as `expires_in` (whole seconds). Default 3600 s.
    pub access_token_ttl: Duration,
    /// When true each refresh issues a new refresh token, and reuse of an old one revokes the
    /// whole family (RFC 9700 4.14.2). Default false.
    pub rotate_refresh_tokens: bool,
    /// When true (default), an authorize request without an S256 `code_challenge` is refused
    /// with `error=invalid_request` (RFC 7636 4.4.1).
    pub require_pkce: bool,
    /// Send `"expires_in":"3600"` (a string, as some providers do) instead of a number.
    pub expires_in_as_string: bool,
    /// Reply to token requests with `application/x-www-form-urlencoded` instead of JSON.
    pub token_response_form: bool,
    /// Default true. When false (and not rotating), a refresh response carries no
    /// `refresh_token`; the client must keep the one it has.
    pub issue_refresh_token_on_refresh: bool,
    /// The `iss` sent on every authorization response, success or error (RFC 9207 2).
    /// Default: the emulator's own base URL.
    pub issuer: Issuer,
}

/// What the authorize endpoint sends as `iss` (RFC 9207 2), so tests can play a server that
/// predates RFC 9207 or one posing as another (a mix-up attack, RFC 9207 1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Issuer {
    /// The emulator's base URL (`http://127.0.0.1:PORT/`), as an RFC 9207 server does.
    #[default]
    BaseUrl,
    /// No `iss` parameter at all.
    Omitted,
    /// Exactly this value.
    Value(String),
}

impl std::fmt::Debug for SeedOAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedOAuthConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("consent", &self.consent)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field("require_pkce", &self.require_pkce)
            .field("expires_in_as_string", &self.expires_in_as_string)
            .field("token_response_form", &self.token_response_form)
            .field(
                "issue_refresh_token_on_refresh",
                &self.issue_refresh_token_on_refresh,
            )
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Default for SeedOAuthConfig {
    fn default() -> Self {
        Self {
            client_id: "seed-client".to_owned(),
            client_secret: "seed-secret".to_owned(),
            consent: Consent::AutoApprove,
            access_token_ttl: Duration::from_secs(3600),
            rotate_refresh_tokens: false,
            require_pkce: true,
            expires_in_as_string: false,
            token_response_form: false,
            issue_refresh_token_on_refresh: true,
            issuer: Issuer::BaseUrl,
        }
    }
}

/// A misbehaviour of `POST /oauth/token`, applied to every token call until cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenFault {
    /// 401 `{"error":"invalid_client"}`.
    InvalidClient,
    /// 400 `{"error":"invalid_grant"}`.
    InvalidGrant,
    /// 500 `{"error":"server_error"}`.
    ServerError,
    /// 502 with an HTML page, as a proxy in front of a dead backend sends.
    HtmlPage,
    /// 200 `{"token_type":"bearer"}`: success status, no token.
    OkWithoutAccessToken,
    /// 200 with 10 MiB of JSON-looking bytes, streamed without a `Content-Length`.
    HugeBody,
    /// Sleep this long, then answer normally.
    Delay(Duration),
    /// 429 with `Retry-After: retry_after_secs`.
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// 302 to another path of the emulator (`/oauth/elsewhere`), which hands out a token
    /// `"stolen-by-redirect"`: a client that follows redirects on the token endpoint shows it.
    Redirect,
}

/// How the client authenticated on a token request (RFC 6749 2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// `Authorization: Basic` (client_secret_basic).
    Basic,
    /// `client_id` and `client_secret` in the request body (client_secret_post).
    Body,
    /// Both at once (RFC 6749 2.3 forbids it; the emulator answers invalid_request).
    Both,
    /// No client authentication at all.
    None,
}

/// What the emulator saw of the last `POST /oauth/token`; no secret values are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedTokenRequest {
    /// The `Content-Type` header as sent, if any.
    pub content_type: Option<String>,
    /// Where the client credentials came from.
    pub client_auth: ClientAuthMethod,
    /// The `grant_type` parameter, if the body could be read.
    pub grant_type: Option<String>,
    /// The `scope` parameter, if any.
    pub scope: Option<String>,
    /// The names (not values) of the body parameters, sorted.
    pub body_fields: Vec<String>,
}

/// Control handle of a running seed OAuth emulator. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct SeedOAuthControl {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SeedOAuthControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedOAuthControl").finish_non_exhaustive()
    }
}

impl SeedOAuthControl {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Every `POST /oauth/token`, whatever the outcome.
    pub fn token_calls(&self) -> u64 {
        self.lock().token_calls
    }

    /// Token calls whose `grant_type` was `grant` (e.g. `"refresh_token"`).
    pub fn token_calls_by_grant(&self, grant: &str) -> u64 {
        self.lock()
            .token_calls_by_grant
            .get(grant)
            .copied()
            .unwrap_or(0)
    }

    /// How many times a rotated-out refresh token was presented again (each one revoked its
    /// family).
    pub fn reuse_events(&self) -> u64 {
        self.lock().reuse_events
    }

    /// Makes every following token call misbehave as `fault` (`None` clears it).
    pub fn set_token_fault(&self, fault: Option<TokenFault>) {
        self.lock().fault = fault;
    }

    /// Every access token issued so far becomes expired: `GET /v1/deals` answers 401 to them.
    /// Refresh tokens stay valid.
    pub fn expire_access_tokens(&self) {
        self.lock().expire_access_tokens();
    }

    /// Every access and refresh token issued so far becomes invalid (a refresh then gets
    /// `invalid_grant`), as when the user revokes the app at the provider.
    pub fn revoke_all(&self) {
        self.lock().revoke_all();
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.lock().access_token_ttl = ttl;
    }

    /// Requests to `/v1/deals` (GET or POST), whatever the outcome.
    pub fn api_calls(&self) -> u64 {
        self.lock().api_calls
    }

    /// Requests to `POST /oauth/revoke`, whatever the outcome.
    pub fn revoke_calls(&self) -> u64 {
        self.lock().revoke_calls
    }

    /// Every authorization code, access token and refresh token issued so far (revoked ones
    /// too), for tests that check these secrets never show up in logs or responses.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// What the last token request looked like (content type, client auth, grant).
    pub fn last_token_request(&self) -> Option<RecordedTokenRequest> {
        self.lock().last_token_request.clone()
    }

    /// Mints a refresh token for the registered client with `scope`, in a grant family of
    /// its own, as if a user had just authorized the client; no token endpoint call is
    /// counted. For benchmarks and tests that need many connections without running the
    /// authorization flow for each. The token behaves like any other: it refreshes, rotates
    /// (when configured) and can be revoked.
    pub fn issue_refresh_token(&self, scope: &str) -> String {
        let mut state = self.lock();
        let family = state.new_family();
        let client_id = state.config.client_id.clone();
        state
            .issue_tokens(family, &client_id, scope, true)
            .refresh_token
            .expect("asked for a refresh token")
    }
}

/// Locks the shared state; a poisoned lock (a panicking test thread) still yields the data,
/// because the emulator's invariants hold between statements.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Shared handle given to every handler.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Starts a seed OAuth emulator on `127.0.0.1:0`.
pub async fn spawn(config: SeedOAuthConfig) -> std::io::Result<Running<SeedOAuthControl>> {
    spawn_on(config, 0).await
}

/// Like [`spawn`], on a chosen loopback port (for walkthroughs; tests use [`spawn`]).
pub async fn spawn_on(
    config: SeedOAuthConfig,
    port: u16,
) -> std::io::Result<Running<SeedOAuthControl>> {
    let (listener, base_url) = server::bind_port(port).await?;
    let state: Shared = Arc::new(Mutex::new(State::new(config, base_url.clone())));
    let router = router(state.clone());
    Ok(server::start(
        listener,
        base_url,
        router,
        SeedOAuthControl { state },
    ))
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/oauth/authorize", get(authorize::authorize))
        .route("/oauth/authorize/decision", post(authorize::decision))
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke))
        .route("/oauth/elsewhere", any(token::elsewhere))
        .route("/v1/deals", get(api::list_deals).post(api::create_deal))
        .route("/v1/echo", any(api::echo))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refresh(base: &url::Url, refresh_token: &str) -> serde_json::Value {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::Client::new()
            .post(base.join("oauth/token").unwrap())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", "seed-client"),
                ("client_secret", "seed-secret"),
            ])
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    #[tokio::test]
    async fn a_minted_refresh_token_refreshes_rotates_and_detects_reuse() {
        let emu = spawn(SeedOAuthConfig {
            rotate_refresh_tokens: true,
            ..SeedOAuthConfig::default()
        })
        .await
        .unwrap();
        let minted = emu.control.issue_refresh_token("read write");
        let other = emu.control.issue_refresh_token("read");
        assert_ne!(minted, other);
        assert_eq!(emu.control.token_calls(), 0, "minting calls no endpoint");

        let body = refresh(&emu.base_url, &minted).await;
        assert_eq!(body["scope"], "read write");
        assert!(body["access_token"].is_string());
        let rotated = body["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(rotated, minted);

        // The old token is now reuse: its family (and only its family) is revoked.
        assert_eq!(
            refresh(&emu.base_url, &minted).await["error"],
            "invalid_grant"
        );
        assert_eq!(
            refresh(&emu.base_url, &rotated).await["error"],
            "invalid_grant"
        );
        assert_eq!(emu.control.reuse_events(), 1);
        assert!(refresh(&emu.base_url, &other).await["access_token"].is_string());
    }
}
