//! Emulator of the OAuth 2.0 flow the two seed articles describe (RFC 6749 with PKCE):
//! authorize (auto-approve or a consent page), token (authorization_code and refresh_token
//! grants, PKCE S256, optional refresh-token rotation with reuse detection), revoke (RFC 7009)
//! and a small Bearer-protected API (`/v1/deals`, `/v1/echo`).
//!
//! Tests drive it through [`SeedOAuthControl`]: counters, injected token-endpoint faults,
//! forced expiry and revocation.
//!
//! Profiles reproduce the quirk classes of real CRMs (see [`SeedOAuthConfig::salesforce_like`]
//! and its siblings): an instance URL in the token response without `expires_in`, an
//! `api_domain`, a per-account or per-tenant path (`/x/{segment}/...`, standing in for a
//! subdomain or a tenant in the URL), a scope that must be present or joined by commas, JSON
//! token bodies with `redirect_uri` on refresh, the client-credentials grant, an authorization
//! endpoint that knows only a provider's documented parameters, and a provider's own token
//! and revocation paths (HubSpot's `/oauth/2026-03/token`, monday's `/oauth_ms/oauth/token`). Every route
//! is served both at the root and under `/x/{segment}/`. It must never redirect to a `redirect_uri` it has not
//! validated, never echo a client secret, and never panic on request input.

mod account;
mod api;
mod authorize;
mod jwt;
mod pkce;
mod rate_limit;
mod state;

pub use rate_limit::{ApiFault, ApiRateLimit, Arrival, RetryAfter};
mod token;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};

use crate::server;
use crate::server::Running;
pub use account::{CheckFault, SeedAccount};
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
    /// Token responses carry no `expires_in` (Salesforce: the lifetime is an org setting).
    pub omit_expires_in: bool,
    /// The code exchange issues no refresh token (tokens meant never to expire).
    pub no_refresh_token: bool,
    /// Extra parameters on the redirect back after approval (Kommo's `referer`, naming the
    /// account the user picked).
    pub callback_params: Vec<(String, String)>,
    /// Token responses carry this field naming where the account's API lives
    /// (`instance_url`, `api_domain`, `client_endpoint`): `http://localhost:PORT/x/{instance}/`,
    /// another host name than the emulator's own base URL, served by the same emulator.
    pub instance_field: Option<String>,
    /// The segment of the instance URL above. Default `instance-1`.
    pub instance: String,
    /// When set, every request must come under `/x/{segment}/` with this segment (an account
    /// subdomain or a tenant in the URL); anything else gets 404.
    pub required_segment: Option<String>,
    /// When set, authorization (and client-credentials) requests must ask for this scope.
    pub required_scope: Option<String>,
    /// How requested scopes are separated. Default a space.
    pub scope_separator: String,
    /// When not empty, every requested scope must be one of these (`invalid_scope` otherwise):
    /// a list joined with the wrong separator reads as one unknown scope.
    pub known_scopes: Vec<String>,
    /// Token requests must have a JSON body.
    pub require_json_body: bool,
    /// Refresh requests must carry the `redirect_uri` the code was issued for.
    pub require_redirect_uri_on_refresh: bool,
    /// Accept `grant_type=client_credentials` (RFC 6749 4.4): an access token, no refresh token.
    pub client_credentials: bool,
    /// The `Authorization` scheme the API accepts. Default `Bearer`; Zoho says
    /// `Zoho-oauthtoken`.
    pub token_scheme: String,
    /// When set, the API also accepts the token in this header with no scheme (SugarCRM's
    /// `OAuth-Token`).
    pub token_header: Option<String>,
    /// When set, the API also accepts the token as this query parameter (Bitrix24's `auth`).
    pub token_query_param: Option<String>,
    /// Accept `grant_type=password` (RFC 6749 4.3) for this one username and password.
    pub password_login: Option<(String, String)>,
    /// Every token request must carry this parameter with this value (SugarCRM's `platform`).
    pub required_token_param: Option<(String, String)>,
    /// The `iss` sent on every authorization response, success or error (RFC 9207 2).
    /// Default: the emulator's own base URL.
    pub issuer: Issuer,
    /// When true, revoking a refresh token revokes that token only, as a provider without
    /// grant families does (RFC 7009 allows it); by default it revokes its whole family.
    pub revoke_single_tokens: bool,
    /// When set, an authorization request with any parameter outside this list is refused
    /// (`invalid_request`), as a provider that documents only these may do.
    pub authorize_params: Option<Vec<String>>,
    /// Where the token endpoint is served. Default `/oauth/token`; a provider's own path
    /// (`/oauth/2026-03/token`) makes a client that uses another path fail with 404.
    pub token_path: String,
    /// Where the revocation endpoint is served. Default `/oauth/revoke`.
    pub revoke_path: String,
    /// Accept the JWT bearer grant (RFC 7523) for assertions this profile admits.
    pub jwt_bearer: Option<JwtBearerProfile>,
    /// Extra fields in every token response (HighLevel's `locationId`, `companyId`,
    /// `userType`).
    pub extra_token_fields: Vec<(String, serde_json::Value)>,
    /// A refresh token unused this long is refused (`invalid_grant`), as providers whose
    /// refresh tokens expire when idle do. Default: never.
    pub refresh_token_idle: Option<Duration>,
}

/// What the JWT bearer grant admits: the app's public key as uploaded to the provider, and
/// the claims its assertions must carry.
#[derive(Clone, Debug)]
pub struct JwtBearerProfile {
    /// DER `RSAPublicKey` (PKCS#1) of the app's signing key.
    pub public_key: Vec<u8>,
    /// `iss`: the client id (Salesforce's consumer key).
    pub issuer: String,
    /// `sub`: the user the token acts for.
    pub subject: String,
    /// `aud`: this authorization server (`https://login.salesforce.com`).
    pub audience: String,
    /// How far ahead `exp` may be; Salesforce allows 3 minutes (plus clock skew).
    pub max_lifetime_secs: i64,
}

impl SeedOAuthConfig {
    /// Salesforce-like: `instance_url` in token responses, no `expires_in`, no new refresh
    /// token on refresh.
    pub fn salesforce_like() -> Self {
        Self {
            omit_expires_in: true,
            instance_field: Some("instance_url".into()),
            issue_refresh_token_on_refresh: false,
            ..Self::default()
        }
    }

    /// monday.com-like: a token that never expires (no `expires_in`, no refresh token), sent
    /// as the whole `Authorization` value without a scheme.
    pub fn never_expiring() -> Self {
        Self {
            omit_expires_in: true,
            no_refresh_token: true,
            token_header: Some("authorization".into()),
            require_pkce: false,
            ..Self::default()
        }
    }

    /// Pipedrive- and Zoho-like: `api_domain` in token responses.
    pub fn api_domain() -> Self {
        Self {
            instance_field: Some("api_domain".into()),
            ..Self::default()
        }
    }

    /// Kommo-like: the account's subdomain (here a path segment) in the token and API URLs,
    /// named in the redirect back as `referer` (`ACCOUNT.kommo.com`), JSON token bodies, and
    /// `redirect_uri` required on refresh; refresh tokens rotate.
    pub fn per_account(account: &str) -> Self {
        Self {
            required_segment: Some(account.into()),
            callback_params: vec![("referer".into(), [account, ".kommo.com"].concat())],
            require_json_body: true,
            require_redirect_uri_on_refresh: true,
            rotate_refresh_tokens: true,
            require_pkce: false,
            ..Self::default()
        }
    }

    /// Dynamics-365-like: a tenant in the endpoint URLs, and a scope naming the organisation.
    pub fn tenant(tenant: &str, required_scope: &str) -> Self {
        Self {
            required_segment: Some(tenant.into()),
            required_scope: Some(required_scope.into()),
            ..Self::default()
        }
    }

    /// Zoho-like: scopes joined by commas, each one known, the user's data centre named in
    /// the redirect back (`accounts-server=https://accounts.zoho.eu`, `location=eu`),
    /// `api_domain` in token responses, and the `Zoho-oauthtoken` scheme on API calls.
    pub fn zoho_like(known: &[&str]) -> Self {
        Self {
            callback_params: vec![
                ("accounts-server".into(), "https://accounts.zoho.eu".into()),
                ("location".into(), "eu".into()),
            ],
            scope_separator: ",".into(),
            known_scopes: known.iter().map(|s| (*s).to_owned()).collect(),
            instance_field: Some("api_domain".into()),
            token_scheme: "Zoho-oauthtoken".into(),
            ..Self::default()
        }
    }

    /// Bitrix24-like: `client_endpoint` in token responses and the token as the `auth` query
    /// parameter of API calls (not a header).
    pub fn bitrix24_like() -> Self {
        Self {
            instance_field: Some("client_endpoint".into()),
            token_query_param: Some("auth".into()),
            require_pkce: false,
            ..Self::default()
        }
    }

    /// SugarCRM-like: the password grant for one user, a `platform` parameter on every token
    /// request, JSON bodies, and the token in an `OAuth-Token` header.
    pub fn password_grant(username: &str, password: &str, platform: &str) -> Self {
        Self {
            password_login: Some((username.into(), password.into())),
            required_token_param: Some(("platform".into(), platform.into())),
            require_json_body: true,
            token_header: Some("oauth-token".into()),
            rotate_refresh_tokens: true,
            ..Self::default()
        }
    }

    /// Pipedrive-like: `api_domain` in token responses, and an authorization endpoint that
    /// knows only the RFC 6749 core Pipedrive documents (no `code_challenge`, no `scope`).
    pub fn pipedrive_like() -> Self {
        Self {
            instance_field: Some("api_domain".into()),
            require_pkce: false,
            authorize_params: Some(
                ["response_type", "client_id", "redirect_uri", "state"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            ..Self::default()
        }
    }

    /// monday.com OAuth 2.1-like: PKCE required, the token endpoint at `/oauth_ms/oauth/token`
    /// (nothing at `/oauth/token`), access tokens that expire, refresh tokens that rotate, and
    /// the token as the whole `Authorization` value without a scheme.
    pub fn monday_oauth21() -> Self {
        Self {
            token_path: "/oauth_ms/oauth/token".into(),
            rotate_refresh_tokens: true,
            token_header: Some("authorization".into()),
            ..Self::default()
        }
    }

    /// HubSpot-like: the date-versioned token and revocation endpoints
    /// (`/oauth/2026-03/token`, `/oauth/2026-03/token/revoke`; nothing at the v1 paths), no
    /// PKCE, and the same refresh token returned on every refresh.
    pub fn hubspot_2026_03() -> Self {
        Self {
            token_path: "/oauth/2026-03/token".into(),
            revoke_path: "/oauth/2026-03/token/revoke".into(),
            require_pkce: false,
            issue_refresh_token_on_refresh: false,
            ..Self::default()
        }
    }

    /// HighLevel-like: `user_type` on every token request (`Location` for a sub-account,
    /// `Company` for an agency), the account named in the token response (`locationId` or
    /// `companyId`, and `userType`), rotating refresh tokens, no PKCE.
    pub fn highlevel_like(user_type: &str) -> Self {
        let mut fields = vec![
            ("userType".to_owned(), user_type.into()),
            ("companyId".to_owned(), "comp-1".into()),
            ("userId".to_owned(), "user-1".into()),
        ];
        if user_type == "Location" {
            fields.push(("locationId".to_owned(), "loc-1".into()));
        }
        Self {
            required_token_param: Some(("user_type".into(), user_type.into())),
            extra_token_fields: fields,
            rotate_refresh_tokens: true,
            require_pkce: false,
            ..Self::default()
        }
    }

    /// Salesforce's server-to-server flows: the client-credentials grant (no scope asked,
    /// the connected app's policy decides) and, when `jwt` is given, the JWT bearer grant;
    /// `instance_url` in token responses, no `expires_in`.
    pub fn salesforce_server(jwt: Option<JwtBearerProfile>) -> Self {
        Self {
            client_credentials: jwt.is_none(),
            jwt_bearer: jwt,
            ..Self::salesforce_like()
        }
    }

    /// A server-to-server client: the client-credentials grant.
    pub fn client_credentials(required_scope: &str) -> Self {
        Self {
            client_credentials: true,
            required_scope: Some(required_scope.into()),
            ..Self::default()
        }
    }
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
            .field("omit_expires_in", &self.omit_expires_in)
            .field("no_refresh_token", &self.no_refresh_token)
            .field("callback_params", &self.callback_params)
            .field("instance_field", &self.instance_field)
            .field("required_segment", &self.required_segment)
            .field("required_scope", &self.required_scope)
            .field("scope_separator", &self.scope_separator)
            .field("require_json_body", &self.require_json_body)
            .field(
                "require_redirect_uri_on_refresh",
                &self.require_redirect_uri_on_refresh,
            )
            .field("client_credentials", &self.client_credentials)
            .field("token_header", &self.token_header)
            .field("token_query_param", &self.token_query_param)
            .field(
                "password_login",
                &self.password_login.as_ref().map(|(u, _)| u),
            )
            .field("required_token_param", &self.required_token_param)
            .field("issuer", &self.issuer)
            .field("revoke_single_tokens", &self.revoke_single_tokens)
            .field("authorize_params", &self.authorize_params)
            .field("token_path", &self.token_path)
            .field("revoke_path", &self.revoke_path)
            .field("jwt_bearer", &self.jwt_bearer)
            .field("extra_token_fields", &self.extra_token_fields)
            .field("refresh_token_idle", &self.refresh_token_idle)
            .finish_non_exhaustive()
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
            omit_expires_in: false,
            no_refresh_token: false,
            callback_params: Vec::new(),
            instance_field: None,
            instance: "instance-1".to_owned(),
            required_segment: None,
            required_scope: None,
            scope_separator: " ".to_owned(),
            known_scopes: Vec::new(),
            require_json_body: false,
            require_redirect_uri_on_refresh: false,
            client_credentials: false,
            token_scheme: "Bearer".to_owned(),
            token_header: None,
            token_query_param: None,
            password_login: None,
            required_token_param: None,
            issuer: Issuer::BaseUrl,
            revoke_single_tokens: false,
            authorize_params: None,
            token_path: "/oauth/token".to_owned(),
            revoke_path: "/oauth/revoke".to_owned(),
            jwt_bearer: None,
            extra_token_fields: Vec::new(),
            refresh_token_idle: None,
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

    /// While `hold` is true, token responses are held after their tokens were issued, until it
    /// is set back to false: the tokens exist at the provider, and the client has not got
    /// them yet (for races between a refresh and what the client does meanwhile).
    pub fn hold_token_responses(&self, hold: bool) {
        self.lock().hold_responses.send_replace(hold);
    }

    /// Token responses issued and being held by [`Self::hold_token_responses`] right now.
    pub fn held_token_responses(&self) -> usize {
        self.lock().held_responses
    }

    /// Refresh tokens that would still be accepted: current, and neither revoked nor of a
    /// revoked family.
    pub fn live_refresh_tokens(&self) -> usize {
        self.lock().live_refresh_tokens()
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

    /// Makes token responses name `url` as the instance (`instance_field`) from now on, as a
    /// provider that moved an account would, or a malicious one; `None` restores the default.
    pub fn set_instance_url(&self, url: Option<&str>) {
        self.lock().instance_url_override = url.map(|u| serde_json::Value::String(u.to_owned()));
    }

    /// Makes token responses carry `value` as the instance field, whatever its JSON type (a
    /// number, an object, null: what a broken or hostile provider might send); `None`
    /// restores the default.
    pub fn set_instance_value(&self, value: Option<serde_json::Value>) {
        self.lock().instance_url_override = value;
    }

    /// Every authorization code, access token and refresh token issued so far (revoked ones
    /// too), for tests that check these secrets never show up in logs or responses.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// The parameters of the last authorization request, as the browser brought them.
    pub fn last_authorize_params(&self) -> Vec<(String, String)> {
        self.lock().last_authorize_params.clone()
    }

    /// What the last token request looked like (content type, client auth, grant).
    pub fn last_token_request(&self) -> Option<RecordedTokenRequest> {
        self.lock().last_token_request.clone()
    }

    /// Authorizations from now on sign in as `account` (earlier grants keep theirs).
    pub fn sign_in_as(&self, account: SeedAccount) {
        self.lock().accounts.signing_in = account;
    }

    /// Makes `GET /v1/me` misbehave as `fault` (`None` clears it).
    pub fn set_check_fault(&self, fault: Option<CheckFault>) {
        self.lock().accounts.fault = fault;
    }

    /// Requests to `GET /v1/me`, whatever the outcome.
    pub fn me_calls(&self) -> u64 {
        self.lock().accounts.me_calls
    }

    /// The most `GET /v1/me` requests answered at once so far.
    pub fn me_peak_in_flight(&self) -> u64 {
        self.lock().accounts.me_peak
    }

    /// Mints an access token valid for `ttl` in a grant family of its own, signed in as the
    /// current account, without a token call (for benchmarks of calls made with it).
    pub fn issue_access_token(&self, scope: &str, ttl: Duration) -> String {
        let mut state = self.lock();
        let family = state.new_family();
        let client_id = state.config.client_id.clone();
        let saved = state.access_token_ttl;
        state.access_token_ttl = ttl;
        let issued = state.issue_tokens(family, &client_id, scope, false);
        state.access_token_ttl = saved;
        issued.access_token
    }

    /// Every refresh token looks unused for `by` longer than it was (idle expiry without
    /// waiting).
    pub fn age_refresh_tokens(&self, by: Duration) {
        self.lock().accounts.age(by);
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

fn routes(config: &SeedOAuthConfig) -> Router<Shared> {
    Router::new()
        .route("/oauth/authorize", get(authorize::authorize))
        .route("/oauth/authorize/decision", post(authorize::decision))
        .route(&config.token_path, post(token::token))
        .route(&config.revoke_path, post(token::revoke))
        .route("/oauth/elsewhere", any(token::elsewhere))
        .route("/v1/deals", get(api::list_deals).post(api::create_deal))
        .route("/v1/echo", any(api::echo))
        .route("/v1/me", get(account::me))
        .route("/v1/graphql", post(account::graphql_me))
}

fn router(state: Shared) -> Router {
    let config = lock(&state).config.clone();
    Router::new()
        .merge(routes(&config))
        // An account subdomain or a tenant, as a path segment: one emulator on loopback
        // stands in for `acme.kommo.com` or `login.microsoftonline.com/{tenant}`.
        .nest("/x/{segment}", routes(&config))
        // Inside the segment guard: a call for the wrong account is not the API's.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            segment_guard,
        ))
        .with_state(state)
}

/// Refuses requests outside the required `/x/{segment}/` (a wrong account or tenant).
async fn segment_guard(
    axum::extract::State(shared): axum::extract::State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let required = lock(&shared).config.required_segment.clone();
    if let Some(required) = required {
        let path = request
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map(|uri| uri.path().to_owned())
            .unwrap_or_else(|| request.uri().path().to_owned());
        let segment = path
            .strip_prefix("/x/")
            .and_then(|rest| rest.split('/').next());
        if segment != Some(required.as_str()) {
            return (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": "unknown_account"})),
            )
                .into_response();
        }
    }
    next.run(request).await
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
