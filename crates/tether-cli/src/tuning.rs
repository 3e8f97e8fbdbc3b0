//! The gateway's tuning sections of `tether.toml` (and `TETHER_<SECTION>__<KEY>`):
//! `[refresh]`, `[checks]`, `[outbound]`, `[proxy]`, `[cache]`, `[console]`, and the delivery settings
//! flattened into `[webhooks]`. Each key is declared once here, with its reference text and the
//! rule that checks it (see [`crate::settings`]); the defaults are `GatewayConfig`'s. Durations
//! are whole seconds; a value that makes no sense (a zero timeout, a zero concurrency, more
//! than ten years) stops start-up with one line naming the key.

use tether_core::secret::SecretString;
use tether_server::{GatewayConfig, WebhookConfig};
use url::Url;

use crate::settings::settings;

/// The gateway's defaults, for the reference's default column.
pub fn default_gateway() -> GatewayConfig {
    GatewayConfig::new(Url::parse("http://127.0.0.1:3003/").expect("static URL"))
}

/// Webhook delivery's defaults, for the reference's default column.
#[cfg_attr(not(test), allow(dead_code))]
fn default_webhooks() -> WebhookConfig {
    WebhookConfig::new(
        Url::parse("https://app.example.com/").expect("static URL"),
        SecretString::new(String::new()),
    )
}

settings! {
    /// `[refresh]`: when and how tokens are refreshed.
    pub struct RefreshSection in "refresh" for config: GatewayConfig = default_gateway() => {
        /// a read refreshes an access token that expires within this
        margin_secs: Option<u64> => secs(0, config.refresh_margin),
        /// how long one instance may hold a connection's refresh lease
        lease_secs: Option<u64> => secs(1, config.refresh_lease),
        /// the background refresher refreshes tokens that expire within this
        ahead_secs: Option<u64> => secs(0, config.refresher.window),
        /// how often the background refresher looks (jittered)
        interval_secs: Option<u64> => secs(1, config.refresher.interval),
        /// token calls of background refreshes at once, per instance
        concurrency: Option<usize> => count(1, config.refresher.concurrency),
        /// back-off after a transient failure, doubled per failure ...
        backoff_base_secs: Option<u64> => secs(1, config.refresher.backoff_base),
        /// ... up to this
        backoff_max_secs: Option<u64> => secs(1, config.refresher.backoff_max),
    }
}

settings! {
    /// `[outbound]`: Tether's own calls to providers (token endpoints, exchanges, probes,
    /// revocation).
    pub struct OutboundSection in "outbound" for config: GatewayConfig = default_gateway() => {
        /// to connect
        connect_timeout_secs: Option<u64> => secs(1, config.outbound.connect_timeout),
        /// for a whole call
        request_timeout_secs: Option<u64> => secs(1, config.outbound.request_timeout),
        /// the largest response read (at least 1024)
        max_response_bytes: Option<usize> => count(1024, config.outbound.max_response_bytes),
        /// a PEM file of CA certificates trusted beside the platform's roots for every call to
        /// a provider, Tether's own and the proxy's: for a provider behind a private CA. Read
        /// at start-up; a file without a usable certificate stops it. Certificates are still
        /// verified, chain and name
        extra_ca_file: Option<std::path::PathBuf> => custom("none"),
        /// networks (CIDR such as `"127.0.0.0/8"`, `"10.20.0.0/16"`, `"fd00::/8"`, or single
        /// addresses) that addresses the operator did not write in this file may reach although
        /// they are not public. Applies to every outbound call (token, refresh, revocation,
        /// probes, proxy) of integrations made through the API, and to every URL learned from a
        /// provider's token response, an import or an end user: loopback, private, link-local,
        /// unique-local, unspecified, CGNAT (`100.64.0.0/10`), multicast and reserved addresses
        /// (and their IPv4-mapped forms) are refused otherwise, checked on the address connected
        /// to after DNS resolution. The endpoints of `[integrations.*]` and the webhook URL are
        /// used as written, and an integration whose `token_url` is on loopback may also follow
        /// loopback URLs from its own token responses. An entry that is not a network stops
        /// start-up
        allowed_private_networks: Option<Vec<String>> => custom("none"),
    }
}

settings! {
    /// `[proxy]`: proxied calls.
    pub struct ProxySection in "proxy" for config: GatewayConfig = default_gateway() => {
        /// a proxied call waiting this long for the provider's next bytes answers 503
        read_timeout_secs: Option<u64> => secs(1, config.proxy_read_timeout),
        /// the longest a whole proxied response (head and body) may take: a provider still
        /// sending after it (a body trickled a byte at a time) is cut off, and the app sees the
        /// body end with an error. The head must come within `read_timeout_secs` (else 503) and
        /// within this (else 504 `provider_timeout`)
        total_timeout_secs: Option<u64> => secs(1, config.proxy_total_timeout),
        /// request bodies up to this (or with no declared length) are kept to resend after a
        /// refresh on a 401; larger ones stream through once, and on a 401 the token is
        /// refreshed and the 401 goes back to the app, whose own retry succeeds
        retry_body_bytes: Option<usize> => count(0, config.proxy_retry_body_bytes),
        /// proxied requests in flight to one provider host at once (per instance); more wait
        /// for a turn within `read_timeout_secs`, so a burst from the app does not open a
        /// connection per request to the provider; 0: no cap
        max_in_flight_per_host: Option<usize> => count(0, config.proxy_max_in_flight_per_host),
        /// times an idempotent call (GET, HEAD, OPTIONS, PUT, DELETE; POST and PATCH only with
        /// an `Idempotency-Key` or `Tether-Retry-Non-Idempotent: true`) is sent again after a
        /// provider 429, 502, 503, 504 or a failed connection; an app may ask for fewer per
        /// call (`Tether-Retry-Limit`). Bodies kept under `retry_body_bytes` are sent again, a
        /// streamed one never; 0: no retries
        retries: Option<u32> => count(0, config.proxy_retries),
        /// the first back-off before a retry when the provider sends no `Retry-After`; each
        /// next one doubles (at most 10 s), half of it random
        retry_base_delay_ms: Option<u64> => millis(1, config.proxy_retry_base_delay),
        /// the longest a call waits for a provider's reported budget to reset, or for its
        /// `Retry-After` to pass, before it is sent; a longer wait is answered at once with
        /// 429 `provider_rate_limited` and `Retry-After`, and a longer `Retry-After` on a
        /// provider's answer is not waited for (the answer goes back to the app). 0: never wait
        max_wait_secs: Option<u64> => secs(0, config.proxy_max_wait),
        /// the total time one call may spend on waits and retries
        retry_within_secs: Option<u64> => secs(1, config.proxy_retry_within),
        /// keep the integrations' `budget`s and the providers' "spent until" holds in
        /// PostgreSQL, so all instances together allow each budget's rate (one statement per
        /// proxied call); false: each instance keeps its own in memory. PostgreSQL only:
        /// refused at start on SQLite
        shared_budgets: Option<bool> => custom("false"),
    }
}

settings! {
    /// `[checks]`: health checks, keep-alive refreshes and the notice of a grant's end.
    pub struct ChecksSection in "checks" for config: GatewayConfig = default_gateway() => {
        /// each connection's check call (the provider's `[check]`, or an integration's
        /// `check`) runs this often in the background; the first check of a connection falls
        /// at a point of the interval picked by its id, so checks spread over it (at least 60)
        interval_secs: Option<u64> => secs(60, config.lifecycle.check_interval),
        /// each next check moves by up to this percentage of the interval, at random, either
        /// way (0 to 50)
        jitter_percent: Option<usize> => custom("10"),
        /// checks at once, per instance
        concurrency: Option<usize> => count(1, config.lifecycle.check_concurrency),
        /// consecutive refusals of the check (the provider refused the credentials) before a
        /// connection is marked `needs_reauth` (`connection.needs_reauth`); timeouts, 5xx, HTML
        /// pages and 429s never count
        failures_before_reauth: Option<usize> => count(1, config.lifecycle.check_failures_before_reauth),
        /// after a check the provider could not answer, the next try waits this long (never
        /// more often than an integration's minimum below)
        retry_secs: Option<u64> => secs(1, config.lifecycle.check_retry),
        /// per integration key, the shortest time between two checks of one connection, for
        /// providers whose limits the checks must spare (a table such as
        /// `{ hubspot = 86400 }`, seconds); the longer of this and `interval_secs` applies
        min_interval_secs: Option<std::collections::BTreeMap<String, u64>> => custom("none"),
        /// how often the background work looks for due checks, keep-alive refreshes and ending
        /// grants
        tick_secs: Option<u64> => secs(1, config.lifecycle.tick),
        /// how far ahead the app is told that a grant's fixed lifetime
        /// (`refresh_token_max_days`) ends (`connection.expiring`, once)
        expiring_notice_days: Option<u32> => days(1, config.lifecycle.expiring_notice),
    }
}

impl ChecksSection {
    /// The keys the `settings!` rules do not cover: the jitter's bound and the table of
    /// minimum intervals.
    pub fn apply_custom(&self, config: &mut GatewayConfig) -> anyhow::Result<()> {
        if let Some(percent) = self.jitter_percent {
            if percent > 50 {
                anyhow::bail!("checks.jitter_percent must be at most 50");
            }
            config.lifecycle.check_jitter_percent = percent;
        }
        if let Some(table) = &self.min_interval_secs {
            for (key, secs) in table {
                let mut interval = std::time::Duration::ZERO;
                crate::settings::secs(
                    &format!("checks.min_interval_secs.{key}"),
                    Some(*secs),
                    1,
                    &mut interval,
                )?;
                config
                    .lifecycle
                    .check_min_interval
                    .insert(key.clone(), interval);
            }
        }
        Ok(())
    }
}

settings! {
    /// `[cache]`: how many connections' opened credentials stay in memory, and for how long.
    pub struct CacheSection in "cache" for config: GatewayConfig = default_gateway() => {
        /// connections kept (sharded, O(1) eviction; about 3 KiB each with their rendered
        /// headers); 0 turns the cache off
        capacity: Option<usize> => count(0, config.cache.capacity),
        /// an entry is served this long before the row is read again (at least 1)
        ttl_secs: Option<u64> => secs(1, config.cache.ttl),
    }
}

settings! {
    /// `[console]`: the operator console and the connection history it shows.
    pub struct ConsoleSection in "console" for config: GatewayConfig = default_gateway() => {
        /// each connection's history (the console's timeline,
        /// `GET /v1/connections/{id}/events`) is kept this many days, then purged (at least 1)
        history_days: Option<u32> => days(1, config.history_retention),
    }
}

settings! {
    /// Delivery settings in `[webhooks]`.
    pub struct WebhookTuning in "webhooks" for config: WebhookConfig = default_webhooks() => {
        /// per delivery attempt
        request_timeout_secs: Option<u64> => secs(1, config.request_timeout),
        /// attempts before an event is marked `failed` (redeliver to try again)
        max_attempts: Option<u32> => count(1, config.max_attempts),
        /// back-off after a failed attempt, doubled per attempt ...
        retry_base_secs: Option<u64> => secs(1, config.retry_base),
        /// ... up to this
        retry_max_secs: Option<u64> => secs(1, config.retry_max),
        /// how often an idle worker looks for due retries
        poll_interval_secs: Option<u64> => secs(1, config.poll_interval),
    }
}
