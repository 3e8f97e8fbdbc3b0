//! The gateway's tuning settings in `tether.toml` (and `TETHER_<SECTION>__<KEY>`): the
//! defaults in `tether_server::GatewayConfig` suit most deployments, and each can be changed
//! here. Durations are whole seconds; a value that makes no sense (a zero timeout, a zero
//! concurrency, more than ten years) stops start-up with one line naming the key.
//!
//! The sections: `[refresh]` (when and how tokens are refreshed), `[outbound]` (Tether's own
//! calls to providers), `[proxy]` (proxied calls), and the limits added to `[connect]`,
//! `[api]` and `[webhooks]` (`ConnectTuning`, `ApiTuning`, `WebhookTuning`, flattened there).

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;
use tether_core::outbound::{AddressPolicy, ExtraRoots};
use tether_server::{GatewayConfig, RateLimit, WebhookConfig};

/// `[refresh]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshSection {
    /// Refresh on read when the access token expires within this many seconds (default 300).
    pub margin_secs: Option<u64>,
    /// How long one instance may hold a connection's refresh lease (default 30).
    pub lease_secs: Option<u64>,
    /// The background refresher refreshes tokens expiring within this many seconds (600).
    pub ahead_secs: Option<u64>,
    /// How often the background refresher looks for due tokens (30).
    pub interval_secs: Option<u64>,
    /// Background refreshes at once (8).
    pub concurrency: Option<usize>,
    /// Back-off after a transient failure, doubled per failure (30) up to a cap (1800).
    pub backoff_base_secs: Option<u64>,
    pub backoff_max_secs: Option<u64>,
}

/// `[outbound]`: token endpoints, exchanges, probes, revocation.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSection {
    /// Seconds to connect to a provider (5).
    pub connect_timeout_secs: Option<u64>,
    /// Seconds for a whole call (15).
    pub request_timeout_secs: Option<u64>,
    /// Largest response body read (262144).
    pub max_response_bytes: Option<usize>,
    /// A PEM file of CA certificates trusted beside the platform's roots, for Tether's own
    /// calls and the proxy's (a provider behind a private CA). None by default.
    pub extra_ca_file: Option<std::path::PathBuf>,
    /// Non-public networks (CIDR, or single addresses) that addresses not written in this
    /// file (API-made integrations, URLs from providers, imports, end users) may reach:
    /// loopback, private, link-local... are refused otherwise. None by default.
    pub allowed_private_networks: Option<Vec<String>>,
}

/// `[proxy]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Seconds a proxied call may wait for the provider's next bytes before a 503 (60).
    pub read_timeout_secs: Option<u64>,
    /// Seconds a whole proxied response (head and body) may take; a body still arriving then
    /// is cut off (300).
    pub total_timeout_secs: Option<u64>,
    /// Request bodies up to this many bytes are kept for the 401 retry; larger ones stream
    /// through once (1048576).
    pub retry_body_bytes: Option<usize>,
    /// Proxied requests in flight to one provider host at once; more wait for a turn (256;
    /// 0: no cap).
    pub max_in_flight_per_host: Option<usize>,
}

/// Limits in `[connect]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectTuning {
    /// How long a connect link works (1800).
    pub session_ttl_secs: Option<u64>,
    /// How long an OAuth sign-in may take between the redirect and the callback (600).
    pub flow_ttl_secs: Option<u64>,
    /// Credential checks one connect session may make per window (10 per 600 s).
    pub attempts_per_session: Option<u32>,
    pub attempts_window_secs: Option<u64>,
    /// OAuth flows one session may have in progress (20).
    pub max_flows_per_session: Option<u32>,
    /// How often expired sessions and flows are deleted (60).
    pub purge_interval_secs: Option<u64>,
}

/// Limits in `[api]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTuning {
    /// Wrong API keys one client address may send per window before it is refused (10 per 60 s).
    pub key_failures_max: Option<u32>,
    pub key_failures_window_secs: Option<u64>,
}

/// Delivery settings in `[webhooks]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTuning {
    /// Seconds per delivery attempt (10).
    pub request_timeout_secs: Option<u64>,
    /// Attempts before an event is marked failed (16).
    pub max_attempts: Option<u32>,
    /// Back-off after a failed attempt, doubled per attempt (5) up to a cap (3600).
    pub retry_base_secs: Option<u64>,
    pub retry_max_secs: Option<u64>,
    /// How often an idle worker looks for due retries (5).
    pub poll_interval_secs: Option<u64>,
}

/// The most seconds any setting may be: ten years. Larger values only come from typos, and
/// the server adds them to unix times and instants, which they would overflow.
pub const MAX_SECS: u64 = 10 * 365 * 86_400;

/// Sets `into` from `value` seconds when given; below `min` or above [`MAX_SECS`] is refused
/// naming `key`.
pub fn secs(key: &str, value: Option<u64>, min: u64, into: &mut Duration) -> anyhow::Result<()> {
    match value {
        Some(secs) if secs < min => bail!("{key} must be at least {min}"),
        Some(secs) if secs > MAX_SECS => bail!("{key} must be at most {MAX_SECS} (ten years)"),
        Some(secs) => *into = Duration::from_secs(secs),
        None => {}
    }
    Ok(())
}

/// Sets `into` from `value` when given; below `min` is refused naming `key`.
fn count<T: Copy + PartialOrd + std::fmt::Display>(
    key: &str,
    value: Option<T>,
    min: T,
    into: &mut T,
) -> anyhow::Result<()> {
    match value {
        Some(n) if n < min => bail!("{key} must be at least {min}"),
        Some(n) => *into = n,
        None => {}
    }
    Ok(())
}

/// Applies every tuning section to `config`.
pub fn apply(
    config: &mut GatewayConfig,
    refresh: &RefreshSection,
    outbound: &OutboundSection,
    proxy: &ProxySection,
    connect: &ConnectTuning,
    api: &ApiTuning,
) -> anyhow::Result<()> {
    secs(
        "refresh.margin_secs",
        refresh.margin_secs,
        0,
        &mut config.refresh_margin,
    )?;
    secs(
        "refresh.lease_secs",
        refresh.lease_secs,
        1,
        &mut config.refresh_lease,
    )?;
    let r = &mut config.refresher;
    secs("refresh.ahead_secs", refresh.ahead_secs, 0, &mut r.window)?;
    secs(
        "refresh.interval_secs",
        refresh.interval_secs,
        1,
        &mut r.interval,
    )?;
    count(
        "refresh.concurrency",
        refresh.concurrency,
        1,
        &mut r.concurrency,
    )?;
    secs(
        "refresh.backoff_base_secs",
        refresh.backoff_base_secs,
        1,
        &mut r.backoff_base,
    )?;
    secs(
        "refresh.backoff_max_secs",
        refresh.backoff_max_secs,
        1,
        &mut r.backoff_max,
    )?;
    let o = &mut config.outbound;
    secs(
        "outbound.connect_timeout_secs",
        outbound.connect_timeout_secs,
        1,
        &mut o.connect_timeout,
    )?;
    secs(
        "outbound.request_timeout_secs",
        outbound.request_timeout_secs,
        1,
        &mut o.request_timeout,
    )?;
    count(
        "outbound.max_response_bytes",
        outbound.max_response_bytes,
        1024,
        &mut o.max_response_bytes,
    )?;
    if let Some(path) = &outbound.extra_ca_file {
        // Read once at start-up: a wrong file stops start-up rather than failing every call.
        let pem = std::fs::read(path)
            .map_err(|err| anyhow::anyhow!("outbound.extra_ca_file {}: {err}", path.display()))?;
        config.extra_root_certificates = ExtraRoots::from_pem(&pem)
            .map_err(|m| anyhow::anyhow!("outbound.extra_ca_file {}: {m}", path.display()))?;
    }
    if let Some(networks) = &outbound.allowed_private_networks {
        config.address_policy = AddressPolicy::parse(networks)
            .map_err(|m| anyhow::anyhow!("outbound.allowed_private_networks: {m}"))?;
    }
    secs(
        "proxy.read_timeout_secs",
        proxy.read_timeout_secs,
        1,
        &mut config.proxy_read_timeout,
    )?;
    secs(
        "proxy.total_timeout_secs",
        proxy.total_timeout_secs,
        1,
        &mut config.proxy_total_timeout,
    )?;
    if let Some(bytes) = proxy.retry_body_bytes {
        config.proxy_retry_body_bytes = bytes;
    }
    if let Some(requests) = proxy.max_in_flight_per_host {
        config.proxy_max_in_flight_per_host = requests;
    }
    secs(
        "connect.session_ttl_secs",
        connect.session_ttl_secs,
        60,
        &mut config.connect_session_ttl,
    )?;
    secs(
        "connect.flow_ttl_secs",
        connect.flow_ttl_secs,
        60,
        &mut config.flow_ttl,
    )?;
    rate_limit(
        "connect.attempts_per_session",
        "connect.attempts_window_secs",
        connect.attempts_per_session,
        connect.attempts_window_secs,
        &mut config.connect_attempts,
    )?;
    count(
        "connect.max_flows_per_session",
        connect.max_flows_per_session,
        1,
        &mut config.max_flows_per_session,
    )?;
    secs(
        "connect.purge_interval_secs",
        connect.purge_interval_secs,
        1,
        &mut config.purge_interval,
    )?;
    rate_limit(
        "api.key_failures_max",
        "api.key_failures_window_secs",
        api.key_failures_max,
        api.key_failures_window_secs,
        &mut config.api_key_failures,
    )?;
    Ok(())
}

fn rate_limit(
    max_key: &str,
    window_key: &str,
    max: Option<u32>,
    window: Option<u64>,
    into: &mut RateLimit,
) -> anyhow::Result<()> {
    count(max_key, max, 1, &mut into.max)?;
    secs(window_key, window, 1, &mut into.window)
}

/// Applies `[webhooks]`' delivery settings.
pub fn apply_webhooks(config: &mut WebhookConfig, tuning: &WebhookTuning) -> anyhow::Result<()> {
    secs(
        "webhooks.request_timeout_secs",
        tuning.request_timeout_secs,
        1,
        &mut config.request_timeout,
    )?;
    count(
        "webhooks.max_attempts",
        tuning.max_attempts,
        1,
        &mut config.max_attempts,
    )?;
    secs(
        "webhooks.retry_base_secs",
        tuning.retry_base_secs,
        1,
        &mut config.retry_base,
    )?;
    secs(
        "webhooks.retry_max_secs",
        tuning.retry_max_secs,
        1,
        &mut config.retry_max,
    )?;
    secs(
        "webhooks.poll_interval_secs",
        tuning.poll_interval_secs,
        1,
        &mut config.poll_interval,
    )
}
