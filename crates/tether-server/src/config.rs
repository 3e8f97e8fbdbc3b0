//! The gateway's own settings, already parsed and checked (loading files and environment
//! variables is the binary's job). The defaults are stated here only: the binary's settings
//! declarations read them, and docs/configuration.md's table is generated from those.

use std::time::Duration;

use tether_core::outbound::{AddressPolicy, ExtraRoots, OutboundLimits};
use tether_core::secret::SecretString;
use url::{Origin, Url};

/// The Connect page's accent colour when none is configured (white text on it: 5.2:1).
pub const DEFAULT_ACCENT: &str = "#2563eb";

/// Settings of one gateway instance.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where browsers reach Tether; the OAuth callback is `{public_url}/oauth/callback`.
    pub public_url: Url,
    /// Origins the app may send end users back to (and receive popup messages on).
    pub allowed_return_origins: Vec<Origin>,
    /// How long a connect session token is valid.
    pub connect_session_ttl: Duration,
    /// How long an OAuth flow may take between redirect and callback.
    pub flow_ttl: Duration,
    /// Refresh on read when the access token expires within this margin.
    pub refresh_margin: Duration,
    /// How long one instance may hold a connection's refresh lease.
    pub refresh_lease: Duration,
    /// The largest request body the proxy forwards; larger bodies are refused with 413.
    pub proxy_max_body_bytes: usize,
    /// Request bodies up to this size (and bodies with no declared length) are kept in
    /// memory, so the request can be sent again after a refresh on a provider 401; larger
    /// ones stream through once, and a 401 then goes back to the app after the refresh.
    pub proxy_retry_body_bytes: usize,
    /// The longest a proxied call may wait for the provider's next bytes (its answer, or the
    /// next part of a streamed body) before it fails with 503; bodies may stream for longer.
    pub proxy_read_timeout: Duration,
    /// The longest a proxied response may take in all, head and body (`[proxy]
    /// total_timeout`): a provider that trickles its body is cut off after it.
    pub proxy_total_timeout: Duration,
    /// Proxied requests in flight to one provider host at once (per instance); more wait for
    /// a turn within `proxy_read_timeout`. 0: no cap.
    pub proxy_max_in_flight_per_host: usize,
    /// Times an idempotent proxied call is sent again after a 429, 502, 503, 504 or a
    /// connect error (an app may ask for fewer per call). 0: never.
    pub proxy_retries: u32,
    /// The first back-off before a retry when the provider gives no `Retry-After`; each
    /// further one doubles, with jitter.
    pub proxy_retry_base_delay: Duration,
    /// The longest a proxied call is held waiting for a provider's budget to reset or a
    /// `Retry-After` to pass; a longer wait is answered 429 with `Retry-After` at once.
    pub proxy_max_wait: Duration,
    /// The total time a proxied call may spend on waits and retries.
    pub proxy_retry_within: Duration,
    /// Keep the integrations' budgets and the providers' "spent until" holds in the
    /// database (PostgreSQL), shared by every instance, instead of in this instance's memory.
    pub proxy_shared_budgets: bool,
    /// The app's name, shown on the Connect page.
    pub app_name: String,
    /// The Connect page's accent colour (`#rgb` or `#rrggbb`); set with
    /// [`GatewayConfig::set_accent_color`], which checks it, since it is written into CSS.
    accent_color: String,
    /// The app's logo, shown on the Connect page (https, or http on loopback); set with
    /// [`GatewayConfig::set_logo_url`]. The app serves it; the page's CSP allows its origin.
    logo_url: Option<Url>,
    /// Where and how to deliver webhooks; `None` writes no events and sends nothing.
    pub webhooks: Option<WebhookConfig>,
    /// The background refresher's schedule.
    pub refresher: RefresherConfig,
    /// The MCP server at `/mcp` and its agent tokens.
    pub mcp: crate::agents::McpConfig,
    /// Timeouts and response cap of Tether's own calls to providers (token endpoints,
    /// exchanges, probes, revocation); the proxy uses its connect timeout.
    pub outbound: OutboundLimits,
    /// CA certificates trusted, beside the platform's roots, for every call to a provider
    /// (Tether's own and the proxy's): for a provider behind a private CA
    /// (`[outbound] extra_ca_file`). Empty by default.
    pub extra_root_certificates: ExtraRoots,
    /// The non-public networks (loopback, private, link-local...) that addresses not written
    /// by the operator may reach (`[outbound] allowed_private_networks`); none by default.
    pub address_policy: AddressPolicy,
    /// The largest request body of every route but the proxy (which has its own), refused
    /// with 413 from its `Content-Length` before any other work.
    pub max_body_bytes: usize,
    /// Credential checks one connect session may make (each one calls the provider with the
    /// operator's keys, so without a limit the form is a password-guessing oracle).
    pub connect_attempts: RateLimit,
    /// Wrong API keys counted per client address, and per prefix of the presented key, in the
    /// store (shared by every instance): past `max` in a window, wrong keys get 429 instead of
    /// 401. A valid key is never refused.
    pub api_key_failures: RateLimit,
    /// Peers (load balancers) whose `X-Forwarded-For` names the client; for everyone else the
    /// client is the TCP peer. Only the rate limits use the client address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// OAuth flows one connect session may have in progress.
    pub max_flows_per_session: u32,
    /// How often expired connect sessions and flow states (and old history) are deleted.
    pub purge_interval: Duration,
    /// How long a connection's history is kept (`[console] history_days`, default 30 days).
    pub history_retention: Duration,
    /// When set, `GET /metrics` is served on the gateway's router to `Authorization: Bearer
    /// <token>` only; when not, the router has no `/metrics` (serve [`crate::Gateway::metrics_router`]
    /// on a private address instead).
    pub metrics_token: Option<SecretString>,
    /// Names this instance as the owner of refresh leases and webhook claims. Keep it stable
    /// across restarts and distinct between instances: a restarted instance then takes back
    /// at once what it held when it died, instead of waiting for its leases to expire.
    /// `None`: a random id per process.
    pub instance_id: Option<String>,
    /// The hot path's credential cache (`[cache]` in `tether.toml`).
    pub cache: CacheConfig,
    /// Health checks, keep-alive and the grant's end (`[checks]` in `tether.toml`).
    pub lifecycle: LifecycleConfig,
    /// Tether as the OAuth authorization server of its MCP server (`[mcp] sign_in_url`...).
    pub mcp_auth: crate::mcp_auth::McpAuthConfig,
}

/// Health checks, keep-alive refreshes and the grant's end: what keeps connections alive and
/// their status true after the connect.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// How often each connection's check runs in the background (spread over the interval).
    pub check_interval: Duration,
    /// Each check's time moves by up to this percentage of the interval, at random, so that
    /// connections made together do not stay together.
    pub check_jitter_percent: usize,
    /// Checks at once, per instance.
    pub check_concurrency: usize,
    /// Consecutive definite check failures (the provider refused the credentials) before a
    /// connection is marked `needs_reauth`; transient errors never count.
    pub check_failures_before_reauth: usize,
    /// How long a check waits after a transient error before trying again (doubled by
    /// nothing: one retry per this interval, never more often than the interval allows).
    pub check_retry: Duration,
    /// Per integration key: checks never run more often than this, whatever the interval.
    pub check_min_interval: std::collections::BTreeMap<String, Duration>,
    /// How often the background work looks for due checks, keep-alives and ending grants.
    pub tick: Duration,
    /// How far ahead the app is told that a grant's fixed lifetime ends (`connection.expiring`).
    pub expiring_notice: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            check_interval: Duration::from_secs(12 * 60 * 60),
            check_jitter_percent: 10,
            check_concurrency: 4,
            check_failures_before_reauth: 3,
            check_retry: Duration::from_secs(15 * 60),
            check_min_interval: std::collections::BTreeMap::new(),
            tick: Duration::from_secs(30),
            expiring_notice: Duration::from_secs(14 * 86_400),
        }
    }
}

impl LifecycleConfig {
    /// The interval between one integration's checks: the configured one, or the operator's
    /// minimum for that integration when it is longer.
    pub fn interval_for(&self, integration: &str) -> Duration {
        self.check_min_interval
            .get(integration)
            .map_or(self.check_interval, |min| (*min).max(self.check_interval))
    }
}

/// How many connections' opened credentials are kept in memory, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// Connections kept (about 1.5 KiB each); past it the least useful entry is evicted in
    /// O(1) and its rendered headers zeroized. 0 turns the cache off.
    pub capacity: usize,
    /// How long an entry is served before the row is read again (a change made by another
    /// process without a change feed is seen after at most this long).
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: 10_000,
            ttl: Duration::from_secs(300),
        }
    }
}

/// Webhook delivery (`[webhooks]` in `tether.toml`). `Debug` never shows the secret.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The app's endpoint; every event is POSTed here.
    pub url: Url,
    /// The HMAC-SHA256 key of the `Tether-Signature` header.
    pub secret: SecretString,
    /// Connect timeout and whole-request timeout of one delivery attempt.
    pub request_timeout: Duration,
    /// After this many failed attempts an event is marked `failed` (redeliver to retry).
    pub max_attempts: u32,
    /// Back-off after the first failed attempt; doubled per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often an idle worker looks for due retries (new events wake it at once).
    pub poll_interval: Duration,
}

impl WebhookConfig {
    /// Defaults: 10 s per attempt, 16 attempts from 5 s doubling to 1 h (about 12 h in all).
    pub fn new(url: Url, secret: SecretString) -> Self {
        WebhookConfig {
            url,
            secret,
            request_timeout: Duration::from_secs(10),
            max_attempts: 16,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60 * 60),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// At most `max` events per fixed `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub window: Duration,
}

/// Limits of the HTTP server in front of the gateway (`[server]` in `tether.toml`); see
/// [`crate::serve`].
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// A request's headers must arrive within this time of the server starting to wait for
    /// them (hyper starts that clock as soon as a connection waits for its next request).
    pub header_read_timeout: Duration,
    /// A whole request, from its headers to the start of the response (the body upload and
    /// the handler's work), must fit in this time; then it is answered 408.
    pub request_timeout: Duration,
    /// A connection with no request in progress and no bytes moving is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; at the cap new ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// The background refresher: refreshes tokens ahead of expiry so reads rarely wait.
#[derive(Clone, Debug)]
pub struct RefresherConfig {
    /// Refresh connections whose access token expires within this window.
    pub window: Duration,
    /// At most this many token calls of background refreshes at once (per instance); the
    /// refreshes past their call only wait for their write, shared with the others.
    pub concurrency: usize,
    /// How often to look for due connections.
    pub interval: Duration,
    /// Back-off after a transient failure; doubled per consecutive failure up to
    /// `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RefresherConfig {
    fn default() -> Self {
        RefresherConfig {
            window: Duration::from_secs(10 * 60),
            concurrency: 8,
            interval: Duration::from_secs(30),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30 * 60),
        }
    }
}

impl GatewayConfig {
    /// Defaults for a gateway reachable at `public_url`.
    pub fn new(public_url: Url) -> Self {
        GatewayConfig {
            public_url,
            allowed_return_origins: Vec::new(),
            connect_session_ttl: Duration::from_secs(30 * 60),
            flow_ttl: Duration::from_secs(10 * 60),
            refresh_margin: Duration::from_secs(5 * 60),
            refresh_lease: Duration::from_secs(30),
            proxy_max_body_bytes: 10 * 1024 * 1024,
            proxy_read_timeout: Duration::from_secs(60),
            proxy_total_timeout: Duration::from_secs(300),
            proxy_retry_body_bytes: 1024 * 1024,
            proxy_max_in_flight_per_host: 256,
            proxy_retries: 2,
            proxy_retry_base_delay: Duration::from_millis(200),
            proxy_max_wait: Duration::from_secs(5),
            proxy_retry_within: Duration::from_secs(15),
            proxy_shared_budgets: false,
            app_name: "Tether".into(),
            accent_color: DEFAULT_ACCENT.into(),
            logo_url: None,
            webhooks: None,
            refresher: RefresherConfig::default(),
            mcp: crate::agents::McpConfig::default(),
            lifecycle: LifecycleConfig::default(),
            mcp_auth: crate::mcp_auth::McpAuthConfig::default(),
            outbound: OutboundLimits::default(),
            extra_root_certificates: ExtraRoots::default(),
            address_policy: AddressPolicy::default(),
            max_body_bytes: 1024 * 1024,
            connect_attempts: RateLimit {
                max: 10,
                window: Duration::from_secs(10 * 60),
            },
            api_key_failures: RateLimit {
                max: 10,
                window: Duration::from_secs(60),
            },
            trusted_proxies: Vec::new(),
            max_flows_per_session: 20,
            purge_interval: Duration::from_secs(60),
            history_retention: Duration::from_secs(30 * 86_400),
            metrics_token: None,
            instance_id: None,
            cache: CacheConfig::default(),
        }
    }

    /// `{public_url}/oauth/callback`, built with `url`, keeping any path prefix.
    pub fn callback_url(&self) -> Url {
        self.public_path(&["oauth", "callback"])
    }

    /// A URL under the public URL, from path segments (percent-encoded by `url`).
    pub fn public_path(&self, segments: &[&str]) -> Url {
        let mut url = self.public_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Whether a return URL is on the allow-list (same scheme, host and port).
    pub fn return_url_allowed(&self, url: &Url) -> bool {
        matches!(url.scheme(), "http" | "https")
            && self.allowed_return_origins.contains(&url.origin())
    }

    /// Whether cookies must carry `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// Sets the accent colour; only `#rgb` or `#rrggbb`, because it is written into CSS.
    pub fn set_accent_color(&mut self, color: &str) -> Result<(), String> {
        if !is_hex_color(color) {
            return Err(format!(
                "{color:?} is not a colour such as #2563eb (# and 3 or 6 hex digits)"
            ));
        }
        self.accent_color = color.to_ascii_lowercase();
        Ok(())
    }

    /// The accent colour, always `#rgb` or `#rrggbb`.
    pub fn accent_color(&self) -> &str {
        &self.accent_color
    }

    /// Sets the logo URL: https, or http on a loopback host (for local development); never a
    /// `data:` or `javascript:` URL, and no credentials in it.
    pub fn set_logo_url(&mut self, text: &str) -> Result<(), String> {
        let url = Url::parse(text).map_err(|_| format!("{text:?} is not an absolute URL"))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(host)) => host == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        if !scheme_ok || url.host().is_none() {
            return Err(format!(
                "{text:?} must be an https URL (http only on localhost or 127.0.0.1)"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a logo URL must not carry a user name or password".into());
        }
        self.logo_url = Some(url);
        Ok(())
    }

    /// The logo URL, if one is configured (already checked by `set_logo_url`).
    pub fn logo_url(&self) -> Option<&Url> {
        self.logo_url.as_ref()
    }
}

/// Whether `color` is `#rgb` or `#rrggbb`.
pub fn is_hex_color(color: &str) -> bool {
    color.starts_with('#')
        && matches!(color.len(), 4 | 7)
        && color[1..].bytes().all(|b| b.is_ascii_hexdigit())
}
