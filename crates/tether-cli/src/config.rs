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

use crate::tuning;
use tether_core::integration::Integration;
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
    pub console: ConsoleSection,
    #[serde(default)]
    pub cache: CacheSection,
}

/// The credential cache (`[cache]`): how many connections' opened credentials stay in
/// memory, and for how long.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Connections kept (default 10,000; 0 turns the cache off).
    pub capacity: Option<usize>,
    /// Seconds an entry is served before the row is read again (default 300).
    pub ttl_secs: Option<u64>,
}

/// The operator console and the connection history it shows (`[console]`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Days a connection's history is kept before the purge deletes it (default 30).
    #[serde(default)]
    pub history_days: Option<u32>,
}

/// How logs are written (`[log]`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    #[serde(default)]
    pub format: LogFormat,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub public_url: Option<String>,
    /// Seconds a client has to send a request's headers.
    #[serde(default)]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a whole request may take, body upload included, before it is answered 408.
    #[serde(default)]
    pub request_timeout_secs: Option<u64>,
    /// Seconds an idle connection is kept open.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Connections open at once.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Serving threads, each with its own runtime and listening socket (default: one per CPU).
    #[serde(default)]
    pub threads: Option<usize>,
    /// The largest request body of every route but the proxy.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// The largest request body the proxy forwards.
    #[serde(default)]
    pub proxy_max_body_bytes: Option<usize>,
    /// Load balancers whose `X-Forwarded-For` names the client (exact addresses).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// A private address serving `GET /metrics` with no token.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// A bearer token for `GET /metrics` on the main listener (literal or `env:`/`file:`).
    #[serde(default)]
    pub metrics_token: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            public_url: None,
            header_read_timeout_secs: None,
            request_timeout_secs: None,
            idle_timeout_secs: None,
            max_connections: None,
            threads: None,
            max_body_bytes: None,
            proxy_max_body_bytes: None,
            trusted_proxies: Vec::new(),
            metrics_listen: None,
            metrics_token: None,
        }
    }
}

impl ServerSection {
    /// The HTTP server's limits: defaults, overridden by what is set; zero is refused.
    pub fn limits(&self) -> anyhow::Result<ServerLimits> {
        let mut limits = ServerLimits::default();
        tuning::secs(
            "server.header_read_timeout_secs",
            self.header_read_timeout_secs,
            1,
            &mut limits.header_read_timeout,
        )?;
        tuning::secs(
            "server.request_timeout_secs",
            self.request_timeout_secs,
            1,
            &mut limits.request_timeout,
        )?;
        tuning::secs(
            "server.idle_timeout_secs",
            self.idle_timeout_secs,
            1,
            &mut limits.idle_timeout,
        )?;
        match self.max_connections {
            Some(0) => bail!("server.max_connections must be at least 1"),
            Some(n) => limits.max_connections = n,
            None => {}
        }
        Ok(limits)
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

/// `[database]`: where the data lives. Every instance of one deployment has the same.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `sqlite://path` (one instance) or `postgres://user@host/db` (several instances).
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Connections in this instance's pool (PostgreSQL default 10, SQLite default 8).
    #[serde(default)]
    pub pool_size: Option<u32>,
    /// Longest a statement may run before PostgreSQL cancels it, in milliseconds (default
    /// 30000); the request then answers 503. SQLite ignores it.
    #[serde(default)]
    pub statement_timeout_ms: Option<u64>,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: default_database_url(),
            pool_size: None,
            statement_timeout_ms: None,
        }
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

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// The app's keys, as literals or `env:`/`file:` references.
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(flatten)]
    pub tuning: tuning::ApiTuning,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectSection {
    #[serde(default)]
    pub allowed_return_origins: Vec<String>,
    #[serde(default)]
    pub app_name: Option<String>,
    /// The Connect page's accent colour, `#rgb` or `#rrggbb`.
    #[serde(default)]
    pub accent_color: Option<String>,
    /// The app's logo on the Connect page: https (http only on loopback), served by the app.
    #[serde(default)]
    pub logo_url: Option<String>,
    #[serde(flatten)]
    pub tuning: tuning::ConnectTuning,
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
        for (name, value, into) in [
            (
                "max_body_bytes",
                self.server.max_body_bytes,
                &mut config.max_body_bytes,
            ),
            (
                "proxy_max_body_bytes",
                self.server.proxy_max_body_bytes,
                &mut config.proxy_max_body_bytes,
            ),
        ] {
            match value {
                Some(0) => bail!("server.{name} must be at least 1"),
                Some(bytes) => *into = bytes,
                None => {}
            }
        }
        match self.console.history_days {
            Some(0) => bail!("console.history_days must be at least 1"),
            Some(days) => {
                config.history_retention = std::time::Duration::from_secs(u64::from(days) * 86_400)
            }
            None => {}
        }
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
        tuning::apply(
            &mut config,
            &self.refresh,
            &self.outbound,
            &self.proxy,
            &self.connect.tuning,
            &self.api.tuning,
        )?;
        if let Some(capacity) = self.cache.capacity {
            config.cache.capacity = capacity;
        }
        if self.cache.ttl_secs == Some(0) {
            bail!("cache.ttl_secs must be at least 1 (capacity = 0 turns the cache off)")
        }
        tuning::secs(
            "cache.ttl_secs",
            self.cache.ttl_secs,
            1,
            &mut config.cache.ttl,
        )?;
        if let Some(webhooks) = &self.webhooks {
            let url = tether_core::integration::parse_endpoint(&webhooks.url)
                .map_err(|m| anyhow::anyhow!("webhooks.url: {m}"))?;
            let secret = resolve_secret_ref(&webhooks.secret).context("webhooks.secret")?;
            let mut webhook_config = WebhookConfig::new(url, secret);
            tuning::apply_webhooks(&mut webhook_config, &webhooks.tuning)?;
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
