//! Shared state of the gateway: the store, the vault, the integrations, the outbound clients.
//! Generic over the store (`AppState<S: Store>`); no global statics.

pub mod api_keys;
pub(crate) mod integrations;
pub(crate) mod key_revocation;
pub(crate) mod metrics;

use std::sync::Arc;

use tether_core::catalog::Catalog;
use tether_core::integration::Integration;
use tether_core::outbound::Outbound;
use tether_core::vault::Vault;
use tether_store::Store;

use crate::config::GatewayConfig;
use crate::connection_service::cache::CredentialCache;
use crate::connection_service::clock::Clock;
use crate::connection_service::locks::RefreshLocks;
use crate::connection_service::refresh_writes::RefreshWrites;
use crate::http::rate_limit::{FailureLimiter, ForwardedWarnings, client_address};
use crate::proxy::client::{ProxyClient, ProxyClientConfig};
use crate::state::api_keys::ApiKeys;
use crate::state::integrations::Integrations;
use crate::state::key_revocation::StoredKeyCheck;
use crate::state::metrics::Metrics;

/// Cheap to clone: everything sits behind one `Arc`.
pub struct AppState<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            inner: self.inner.clone(),
        }
    }
}

pub struct Inner<S: Store> {
    pub store: S,
    pub vault: Vault,
    pub config: GatewayConfig,
    pub catalog: Catalog,
    pub integrations: Integrations,
    pub api_keys: ApiKeys,
    /// Token endpoints, exchanges, probes: no redirects, capped responses.
    pub outbound: Outbound,
    /// The proxy's pooled client: no redirects, no overall timeout (bodies stream).
    pub proxy_client: ProxyClient,
    /// What each provider budget has left, as the providers last reported (per instance).
    pub provider_limits: crate::proxy::provider_limits::ProviderLimits,
    /// The operators' budgets per connection and integration (per instance).
    pub proxy_budgets: crate::proxy::budgets::Budgets,
    pub cache: CredentialCache,
    /// "Now" for the connection service's expiry, back-off, lease and cache decisions (the
    /// system clock, but for tests).
    pub clock: Arc<dyn Clock>,
    pub refresh_locks: RefreshLocks,
    /// Writes refreshed tokens, one transaction for those that finish together.
    pub refresh_writes: RefreshWrites<S>,
    /// Identifies this instance as a refresh-lease and webhook-claim owner.
    pub instance_id: String,
    /// The one metrics registry of this gateway (`GET /metrics`).
    pub metrics: Metrics,
    /// Wakes the webhook worker when an event was committed.
    pub webhook_wake: tokio::sync::Notify,
    /// Failed API-key attempts per client address and key prefix (counted in the store).
    pub api_key_limiter: FailureLimiter,
    /// Per-agent-token request rate and concurrency on `/mcp` (this instance's share).
    pub agent_limits: crate::agents::limits::AgentLimits,
    /// Forwarded headers from peers not trusted to send them (logged once per peer).
    pub forwarded_warnings: ForwardedWarnings,
    /// Whether the first-run key was revoked since this server started.
    pub stored_keys: StoredKeyCheck,
    /// Which background workers are running (for `GET /ready`).
    pub workers: Workers,
    /// The MCP authorization server's signing key and fetched client documents.
    pub mcp_auth: crate::mcp_auth::McpAuthState,
}

/// Liveness of the background workers, set by the workers themselves.
#[derive(Default)]
pub struct Workers {
    pub refresher: std::sync::atomic::AtomicBool,
    pub purge: std::sync::atomic::AtomicBool,
    pub webhooks: std::sync::atomic::AtomicBool,
    /// The task that follows other instances' changes (only with a store that has a feed).
    pub changes: std::sync::atomic::AtomicBool,
}

/// Marks a worker running while alive; dropped when its task ends (or panics).
pub struct Running<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Running<'a> {
    pub fn mark(flag: &'a std::sync::atomic::AtomicBool) -> Self {
        flag.store(true, std::sync::atomic::Ordering::Release);
        Running(flag)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl<S: Store> std::ops::Deref for AppState<S> {
    type Target = Inner<S>;
    fn deref(&self) -> &Inner<S> {
        &self.inner
    }
}

impl<S: Store> AppState<S> {
    /// A state for unit tests: `store`, a fresh key, defaults for a gateway at
    /// `https://tether.example.com`, the embedded catalog, no integrations, no API keys.
    #[cfg(test)]
    pub(crate) fn for_tests(store: S, clock: Arc<dyn Clock>) -> Self {
        let vault = Vault::from_spec(&Vault::generate_key_entry()).expect("a generated key");
        AppState::new(
            store,
            vault,
            GatewayConfig::new("https://tether.example.com".parse().expect("a URL")),
            Catalog::embedded().expect("the embedded catalog"),
            Integrations::from_config(Vec::new()),
            ApiKeys::default(),
            clock,
        )
    }

    pub(crate) fn new(
        store: S,
        vault: Vault,
        config: GatewayConfig,
        catalog: Catalog,
        integrations: Integrations,
        api_keys: ApiKeys,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let limits = config.outbound.clone();
        let config_limit = config.api_key_failures;
        let cache = config.cache;
        let roots = &config.extra_root_certificates;
        let policy = config.address_policy.clone();
        let outbound = Outbound::with_policy(limits.clone(), roots, policy.clone());
        // A provider that accepts and then says nothing must not hold the app forever.
        let proxy_client = ProxyClient::new(ProxyClientConfig {
            connect_timeout: limits.connect_timeout,
            read_timeout: config.proxy_read_timeout,
            total_timeout: config.proxy_total_timeout,
            per_host: config.proxy_max_in_flight_per_host,
            roots,
            policy,
        });
        let instance_id = config
            .instance_id
            .clone()
            .unwrap_or_else(|| tether_core::random::prefixed_token("inst_"));
        AppState {
            inner: Arc::new(Inner {
                refresh_writes: RefreshWrites::new(store.clone()),
                store,
                vault,
                config,
                catalog,
                integrations,
                api_keys,
                outbound,
                proxy_client,
                provider_limits: crate::proxy::provider_limits::ProviderLimits::new(),
                proxy_budgets: crate::proxy::budgets::Budgets::new(clock.instant()),
                cache: CredentialCache::new(cache.capacity, cache.ttl, clock.clone()),
                clock,
                refresh_locks: RefreshLocks::default(),
                instance_id,
                metrics: Metrics::new(),
                webhook_wake: tokio::sync::Notify::new(),
                api_key_limiter: FailureLimiter::new(config_limit),
                agent_limits: Default::default(),
                forwarded_warnings: ForwardedWarnings::default(),
                stored_keys: StoredKeyCheck::default(),
                workers: Workers::default(),
                mcp_auth: crate::mcp_auth::McpAuthState::default(),
            }),
        }
    }

    /// The client address of a request for the API-key limit (see [`client_address`]),
    /// warning when an untrusted peer sends forwarded headers.
    pub fn client_of(&self, parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
        self.forwarded_warnings
            .check(parts, &self.config.trusted_proxies);
        client_address(parts, &self.config.trusted_proxies)
    }

    /// Whether `presented` is an API key of this gateway, and not a stored (first-run) key
    /// revoked since start-up.
    pub async fn key_accepted(&self, presented: &str) -> bool {
        if !self.api_keys.verify(presented) {
            return false;
        }
        match self.api_keys.stored_hash(presented) {
            Some(hash) => {
                self.stored_keys
                    .live(&self.store, self.clock.as_ref(), &hash)
                    .await
            }
            None => true,
        }
    }

    /// Makes the served API-managed integrations those of the store (see
    /// [`integrations::sync_from_store`]).
    pub async fn sync_integrations(&self) -> anyhow::Result<usize> {
        integrations::sync_from_store(&self.integrations, &self.store, &self.vault, &self.catalog)
            .await
    }

    pub fn integration(&self, key: &str) -> Option<Arc<Integration>> {
        self.integrations.get(key)
    }
}
