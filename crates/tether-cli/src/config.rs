//! Loading `tether.toml`, then `TETHER_<SECTION>__<KEY>` environment variables over it (a
//! `.env` file is read first when present). Unknown keys are errors that name the file or the
//! variable; secrets may be given as `env:NAME` or `file:/path`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use tether_core::catalog::Catalog;

use crate::settings::settings;
use crate::tuning::{self, default_gateway};
use tether_core::integration::Integration;
use tether_core::outbound::{AddressPolicy, ExtraRoots};
use tether_core::secret::resolve_secret_ref;
use tether_server::{GatewayConfig, ServerLimits, WebhookConfig};
use url::Url;

/// The whole configuration file. No `Debug`: it holds literal secrets (API keys, client
/// secrets, the webhook secret, a database password) until they are resolved.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub connect: ConnectSection,
    #[serde(default)]
    pub integrations: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub webhooks: Option<WebhooksSection>,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub refresh: tuning::RefreshSection,
    #[serde(default)]
    pub outbound: tuning::OutboundSection,
    #[serde(default)]
    pub proxy: tuning::ProxySection,
    #[serde(default)]
    pub console: tuning::ConsoleSection,
    #[serde(default)]
    pub cache: tuning::CacheSection,
    #[serde(default)]
    pub checks: tuning::ChecksSection,
    #[serde(default)]
    pub mcp: crate::mcp_settings::McpSettings,
}

settings! {
    /// How logs are written (`[log]`).
    pub struct LogSection in "log" for _: () = () => {
        /// `text`, or `json` (one object a line, with the request id); the level comes from
        /// `RUST_LOG` (default `info`). Either way a logged value cannot break a line or drive a
        /// terminal: control, bidirectional and line-separator characters are written as escapes
        /// (`\n`, `\u{1b}` in text; `\u001b` in JSON, which reads back as the value)
        format: LogFormat => custom("`text`"),
    }
}

/// `text` (the default) or `json` (one object a line, for log pipelines).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The log format the configuration asks for; text when the configuration cannot be read (the
/// command then reports why, as one line).
pub fn log_format(path: &Path) -> LogFormat {
    load(path).map(|file| file.log.format).unwrap_or_default()
}

/// Where events go, and the key that signs them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    pub url: String,
    /// The signing secret, as a literal or an `env:`/`file:` reference.
    pub secret: String,
    #[serde(flatten)]
    pub tuning: tuning::WebhookTuning,
}

settings! {
    /// `[server]`: where and how the gateway serves HTTP.
    pub struct ServerSection in "server"
        for (limits, config): (ServerLimits, GatewayConfig) = (ServerLimits::default(), default_gateway()) =>
    {
        /// the address to serve on
        listen: SocketAddr = default_listen() => custom(format!("`{}`", default_listen())),
        /// where browsers reach Tether; the OAuth callback is `{public_url}/oauth/callback`;
        /// https makes cookies `Secure` and `__Host-`
        public_url: Option<String> => custom("`http://{listen}`"),
        /// a request's headers must arrive within this (also bounds a keep-alive connection
        /// waiting for its next request)
        header_read_timeout_secs: Option<u64> => secs(1, limits.header_read_timeout),
        /// a whole request, body upload and handler, before a 408
        request_timeout_secs: Option<u64> => secs(1, limits.request_timeout),
        /// a connection with no request in progress and no bytes moving is closed
        idle_timeout_secs: Option<u64> => secs(1, limits.idle_timeout),
        /// connections open at once; more wait in the listen backlog
        max_connections: Option<usize> => count(1, limits.max_connections),
        /// serving threads (1 to 1024), each with its own runtime and listening socket on
        /// `listen` (`SO_REUSEPORT`); a connection, its handler and its proxied upstream call
        /// stay on one thread
        threads: Option<usize> => custom("one per CPU"),
        /// the largest request body of every route but the proxy (413 at once from
        /// `Content-Length`)
        max_body_bytes: Option<usize> => count(1, config.max_body_bytes),
        /// the largest body the proxy forwards (413 beyond it)
        proxy_max_body_bytes: Option<usize> => count(1, config.proxy_max_body_bytes),
        /// exact addresses of load balancers whose `X-Forwarded-For` and `X-Request-Id` are
        /// believed; from any other peer those headers are ignored (when they come with a wrong
        /// API key or a console sign-in, a warning says so, once per peer per hour): list your
        /// TLS proxy here, or every client behind it shares its address for the wrong-key limit
        trusted_proxies: Vec<String> => custom("none"),
        /// a private address serving `GET /metrics` with no token
        metrics_listen: Option<SocketAddr> => custom("none"),
        /// a bearer token (at least 32 characters) for `GET /metrics` on `listen`; with
        /// neither, `/metrics` answers 404
        metrics_token: Option<String> => custom("none"),
    }
}

impl ServerSection {
    /// The HTTP server's limits: defaults, overridden by what is set; zero is refused.
    pub fn limits(&self) -> anyhow::Result<ServerLimits> {
        let mut both = (ServerLimits::default(), default_gateway());
        self.apply(&mut both)?;
        Ok(both.0)
    }

    /// Serving threads: `threads`, else one per CPU the process may use.
    pub fn threads(&self) -> anyhow::Result<usize> {
        match self.threads {
            Some(0) => bail!("server.threads must be at least 1"),
            // Each is an OS thread with its own runtime and socket: a typo must not start
            // a hundred thousand of them.
            Some(n) if n > MAX_THREADS => bail!("server.threads must be at most {MAX_THREADS}"),
            Some(n) => Ok(n),
            None => Ok(std::thread::available_parallelism().map_or(1, usize::from)),
        }
    }
}

/// The most serving threads `[server] threads` may ask for.
const MAX_THREADS: usize = 1024;

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3003))
}

settings! {
    /// `[database]`: where the data lives. Every instance of one deployment has the same.
    pub struct DatabaseSection in "database" for _: () = () => {
        /// `sqlite://path`, or `postgres://user@host/db` for several instances
        url: String = default_database_url() => custom(format!("`{}`", default_database_url())),
        /// connections in this instance's pool (on a SQLite file, each serving thread also
        /// opens one connection of its own, to read connections on cache misses)
        pool_size: Option<u32> => custom("SQLite 8, PostgreSQL 10"),
        /// PostgreSQL cancels a statement that runs longer
        statement_timeout_ms: Option<u64> => custom("none"),
    }
}

impl DatabaseSection {
    /// The store's settings beside the URL.
    pub fn store_options(&self) -> tether_store::StoreOptions {
        tether_store::StoreOptions {
            pool_size: self.pool_size,
            statement_timeout: self
                .statement_timeout_ms
                .map(std::time::Duration::from_millis),
        }
    }
}

/// A database URL fit for messages and logs: its password, if any, replaced, whether in the
/// userinfo or in a `password` query parameter (which the PostgreSQL driver also reads).
pub fn redacted_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("redacted"));
            }
            if url.query_pairs().any(|(name, _)| name == "password") {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(name, value)| {
                        let value = if name == "password" {
                            "redacted".into()
                        } else {
                            value.into_owned()
                        };
                        (name.into_owned(), value)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        // Not a URL at all: show nothing of it, it might be a bare password.
        Err(_) => "(database.url is not a URL)".into(),
    }
}

fn default_database_url() -> String {
    "sqlite://tether.db".into()
}

settings! {
    /// `[api]`: the app's keys, and how wrong keys are limited.
    pub struct ApiSection in "api" for config: GatewayConfig = default_gateway() => {
        /// the app's API keys (at least 32 characters each), kept as hashes; `TETHER_API_KEY`
        /// adds one. Setting keys revokes the first-run key for good (a warning says so):
        /// removing them later does not bring it back, and `serve` then refuses to start until
        /// keys are set again. `tether keys revoke-first-run` revokes it without configuring
        /// keys (running servers refuse it within 5 seconds)
        keys: Vec<String> => custom("one made on first run"),
        /// wrong API keys counted per client address (IPv6 by /64) and per key prefix (the
        /// first 8 characters of the key sent) in each window; past it, wrong keys get 429 with
        /// `Retry-After`. Counted in the database, so shared by every instance. A right key is
        /// never refused
        key_failures_max: Option<u32> => count(1, config.api_key_failures.max),
        /// that window
        key_failures_window_secs: Option<u64> => secs(1, config.api_key_failures.window),
    }
}

settings! {
    /// `[connect]`: the Connect pages and their limits.
    pub struct ConnectSection in "connect" for config: GatewayConfig = default_gateway() => {
        /// origins the app's return URLs and popup messages may use
        allowed_return_origins: Vec<String> => custom("none"),
        /// shown on the Connect pages
        app_name: Option<String> => custom(format!("`{}`", config.app_name)),
        /// buttons and focus ring (`#rgb` or `#rrggbb`)
        accent_color: Option<String> => custom(format!("`{}`", config.accent_color())),
        /// the app's logo (https, or http on loopback)
        logo_url: Option<String> => custom("none"),
        /// how long a connect link works (at least 60)
        session_ttl_secs: Option<u64> => secs(60, config.connect_session_ttl),
        /// how long an OAuth sign-in may take from the redirect to the callback (at least 60)
        flow_ttl_secs: Option<u64> => secs(60, config.flow_ttl),
        /// credential checks one connect session may make per window
        attempts_per_session: Option<u32> => count(1, config.connect_attempts.max),
        /// that window
        attempts_window_secs: Option<u64> => secs(1, config.connect_attempts.window),
        /// OAuth flows one session may have in progress
        max_flows_per_session: Option<u32> => count(1, config.max_flows_per_session),
        /// how often expired sessions and flows are deleted
        purge_interval_secs: Option<u64> => secs(1, config.purge_interval),
    }
}

/// Reads `.env` (if any), the TOML file (if it exists) and the environment.
pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(err) if err.not_found() => {}
        Err(err) => return Err(err).context("reading .env"),
    }
    let mut figment = Figment::new();
    if path.exists() {
        figment = figment.merge(Toml::file_exact(path));
    }
    // Only `SECTION__KEY` variables are configuration; TETHER_API_KEY and
    // TETHER_ENCRYPTION_KEYS are read on their own.
    figment = figment.merge(
        Env::prefixed("TETHER_")
            .filter(|key| key.as_str().contains("__"))
            .split("__"),
    );
    figment.extract().map_err(|err| {
        let mut message = String::new();
        for e in err {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&e.to_string());
        }
        anyhow::anyhow!("configuration: {message}")
    })
}

impl FileConfig {
    /// The gateway settings; `bound` is the address actually listened on (the default public
    /// URL points there, so port 0 works).
    pub fn gateway(&self, bound: SocketAddr) -> anyhow::Result<GatewayConfig> {
        let public_url = match &self.server.public_url {
            Some(text) => Url::parse(text)
                .with_context(|| format!("server.public_url {text:?} is not an absolute URL"))?,
            None => {
                let mut url = Url::parse("http://127.0.0.1/").expect("static URL");
                url.set_ip_host(bound.ip())
                    .map_err(|_| anyhow::anyhow!("server.listen has no usable address"))?;
                url.set_port(Some(bound.port()))
                    .map_err(|_| anyhow::anyhow!("server.listen has no usable port"))?;
                url
            }
        };
        if !matches!(public_url.scheme(), "http" | "https") {
            bail!("server.public_url must be http or https");
        }
        let mut config = GatewayConfig::new(public_url);
        for origin in &self.connect.allowed_return_origins {
            let url = Url::parse(origin).with_context(|| {
                format!("connect.allowed_return_origins: {origin:?} is not a URL such as https://app.example.com")
            })?;
            config.allowed_return_origins.push(url.origin());
        }
        if let Some(name) = &self.connect.app_name {
            config.app_name = name.clone();
        }
        if let Some(color) = &self.connect.accent_color {
            config
                .set_accent_color(color)
                .map_err(|m| anyhow::anyhow!("connect.accent_color: {m}"))?;
        }
        if let Some(logo) = &self.connect.logo_url {
            config
                .set_logo_url(logo)
                .map_err(|m| anyhow::anyhow!("connect.logo_url: {m}"))?;
        }
        // The server's limits are checked here too, so one call checks the whole section.
        let mut server = (ServerLimits::default(), config);
        self.server.apply(&mut server)?;
        let mut config = server.1;
        for proxy in &self.server.trusted_proxies {
            let ip = proxy.parse().with_context(|| {
                format!("server.trusted_proxies: {proxy:?} is not an IP address such as 10.0.0.2")
            })?;
            config.trusted_proxies.push(ip);
        }
        if let Some(token) = &self.server.metrics_token {
            let token = resolve_secret_ref(token).context("server.metrics_token")?;
            if token.expose().len() < MIN_SECRET_LEN {
                bail!("server.metrics_token must be at least {MIN_SECRET_LEN} characters");
            }
            config.metrics_token = Some(token);
        }
        let outbound = &self.outbound;
        if let Some(path) = &outbound.extra_ca_file {
            // Read once at start-up: a wrong file stops start-up rather than failing every call.
            let pem = std::fs::read(path).map_err(|err| {
                anyhow::anyhow!("outbound.extra_ca_file {}: {err}", path.display())
            })?;
            config.extra_root_certificates = ExtraRoots::from_pem(&pem)
                .map_err(|m| anyhow::anyhow!("outbound.extra_ca_file {}: {m}", path.display()))?;
        }
        if let Some(networks) = &outbound.allowed_private_networks {
            config.address_policy = AddressPolicy::parse(networks)
                .map_err(|m| anyhow::anyhow!("outbound.allowed_private_networks: {m}"))?;
        }
        if self.cache.ttl_secs == Some(0) {
            bail!("cache.ttl_secs must be at least 1 (capacity = 0 turns the cache off)")
        }
        self.connect.apply(&mut config)?;
        self.api.apply(&mut config)?;
        self.console.apply(&mut config)?;
        self.refresh.apply(&mut config)?;
        self.outbound.apply(&mut config)?;
        self.proxy.apply(&mut config)?;
        config.proxy_shared_budgets = self.proxy.shared_budgets.unwrap_or(false);
        self.cache.apply(&mut config)?;
        self.checks.apply(&mut config)?;
        self.checks.apply_custom(&mut config)?;
        self.mcp.apply(&mut config)?;
        self.mcp.apply_custom(&mut config)?;
        if let Some(webhooks) = &self.webhooks {
            let url = tether_core::integration::parse_endpoint(&webhooks.url)
                .map_err(|m| anyhow::anyhow!("webhooks.url: {m}"))?;
            let secret = resolve_secret_ref(&webhooks.secret).context("webhooks.secret")?;
            let mut webhook_config = WebhookConfig::new(url, secret);
            webhooks.tuning.apply(&mut webhook_config)?;
            config.webhooks = Some(webhook_config);
        }
        Ok(config)
    }

    /// The integrations, resolved against the catalog (secrets read now).
    pub fn integrations(&self, catalog: &Catalog) -> anyhow::Result<Vec<Integration>> {
        self.integrations
            .iter()
            .map(|(key, table)| Integration::from_config(key, table, catalog).map_err(Into::into))
            .collect()
    }

    /// The API keys given by configuration: `TETHER_API_KEY`, then `[api] keys`. A key
    /// shorter than [`MIN_SECRET_LEN`] stops start-up: a short key can be guessed.
    pub fn api_keys(&self) -> anyhow::Result<Vec<tether_core::SecretString>> {
        let mut keys = Vec::new();
        if let Ok(key) = std::env::var("TETHER_API_KEY")
            && !key.is_empty()
        {
            check_key_length("TETHER_API_KEY", &key)?;
            keys.push(tether_core::SecretString::new(key));
        }
        for (index, value) in self.api.keys.iter().enumerate() {
            let key = resolve_secret_ref(value).with_context(|| format!("api.keys[{index}]"))?;
            check_key_length(&format!("api.keys[{index}]"), key.expose())?;
            keys.push(key);
        }
        Ok(keys)
    }
}

/// The shortest API key (or metrics token) accepted: 32 characters, as many as 192 random bits
/// in base64 even when the characters are letters and digits only.
pub const MIN_SECRET_LEN: usize = 32;

fn check_key_length(name: &str, key: &str) -> anyhow::Result<()> {
    if key.chars().count() < MIN_SECRET_LEN {
        bail!(
            "{name} is {} characters long; API keys must be at least {MIN_SECRET_LEN} (make one with `openssl rand -hex 32`)",
            key.chars().count()
        );
    }
    Ok(())
}
