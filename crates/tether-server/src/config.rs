//! The gateway's own settings, already parsed and checked (loading files and environment
//! variables is the binary's job). Defaults are what API.md promises.

use std::time::Duration;

use tether_core::secret::SecretString;
use url::{Origin, Url};

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
    /// The largest request body the proxy buffers (so a request can be sent again after a
    /// refresh); larger bodies are refused with 413.
    pub proxy_max_body_bytes: usize,
    /// The app's name, shown on the Connect page.
    pub app_name: String,
    /// Where and how to deliver webhooks; `None` writes no events and sends nothing.
    pub webhooks: Option<WebhookConfig>,
    /// The background refresher's schedule.
    pub refresher: RefresherConfig,
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

/// The background refresher: refreshes tokens ahead of expiry so reads rarely wait.
#[derive(Clone, Debug)]
pub struct RefresherConfig {
    /// Refresh connections whose access token expires within this window.
    pub window: Duration,
    /// At most this many refreshes at once.
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
            app_name: "Tether".into(),
            webhooks: None,
            refresher: RefresherConfig::default(),
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
}
