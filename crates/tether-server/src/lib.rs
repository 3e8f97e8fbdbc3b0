//! Tether's HTTP face: the JSON API for the app, the Connect pages and OAuth callback for end
//! users, and the authenticated proxy.
//!
//! [`Gateway`] is the entry point: build it with [`Gateway::builder`] from a store, a vault and
//! the configuration, mount [`Gateway::router`] into any axum app (or serve it alone with
//! [`serve`], as `tether serve` does), start its background work (refresher, purge, webhook
//! delivery) with [`Gateway::spawn_background`], and read a connection's credentials in the
//! app's own handlers with [`Gateway::credentials`]. `examples/embedded` in the workspace is an
//! app that does all of this.

#![forbid(unsafe_code)]

mod agents;
mod api;
mod config;
mod connect;
mod connection_service;
mod console;
mod http;
mod jobs;
mod mcp_auth;
mod proxy;
mod state;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use tether_core::catalog::Catalog;
use tether_core::integration::Integration;
use tether_core::vault::Vault;
use tether_store::Store;

use crate::connection_service::{checker, refresh, refresher, removal};
use crate::http::{body_limit, request_id};
use crate::jobs::{coherence, purge};
use crate::state::AppState;
use crate::state::integrations::Integrations;

pub use agents::McpConfig;
pub use api::{ConnectionView, CredentialsView, EndUserView, IntegrationView, ProviderView};
pub use config::{
    CacheConfig, GatewayConfig, LifecycleConfig, RateLimit, RefresherConfig, ServerLimits,
    WebhookConfig,
};
pub use connection_service::clock::{Clock, SystemClock};
pub use http::error::ApiError;
pub use http::fast_path::GatewayService;
pub use http::per_core::{ServingThreads, bind_listeners, serve_per_core};
pub use http::server::{Served, serve};
pub use jobs::{rotation, sealing_key};
pub use mcp_auth::McpAuthConfig;
pub use state::api_keys::ApiKeys;

/// The OpenAPI 3.1 description of the HTTP API, as pretty JSON (what `GET /openapi.json`
/// serves and `docs/openapi.json` holds).
pub fn openapi_document() -> String {
    api::openapi::render()
}

/// A configured gateway: the router to serve or mount, the background work to start, and the
/// library calls an embedding app needs. Cheap to clone (the state is shared).
#[derive(Clone)]
pub struct Gateway<S: Store> {
    state: AppState<S>,
}

/// Builds a [`Gateway`]: the store, the vault and the configuration are required; the
/// catalog defaults to the one built in, and integrations and API keys to none.
///
/// ```no_run
/// # async fn example() -> anyhow::Result<()> {
/// use tether_server::{Gateway, GatewayConfig};
/// let store = tether_store::SqliteStore::connect("sqlite://tether.db").await?;
/// let vault = tether_core::vault::Vault::load_or_create_key_file("tether.keys".as_ref())?;
/// let config = GatewayConfig::new("https://tether.example.com".parse()?);
/// let gateway = Gateway::builder(store, vault, config)
///     .integration_tables([("crm", serde_json::json!({"provider": "redtail", "api_key": "..."}))])?
///     .api_keys(tether_server::ApiKeys::from_keys([&tether_core::SecretString::new("...")]))
///     .build()?;
/// # Ok(()) }
/// ```
pub struct GatewayBuilder<S: Store> {
    store: S,
    vault: Vault,
    config: GatewayConfig,
    catalog: Option<Catalog>,
    integrations: Vec<Integration>,
    api_keys: ApiKeys,
    clock: Arc<dyn Clock>,
}

impl<S: Store> GatewayBuilder<S> {
    /// Another catalog than the built-in one (set it before `integration_tables`).
    pub fn catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Integrations already resolved against the catalog.
    pub fn integrations(mut self, integrations: impl IntoIterator<Item = Integration>) -> Self {
        self.integrations.extend(integrations);
        self
    }

    /// Integrations from their tables, as `[integrations.KEY]` in `tether.toml` holds them;
    /// each is checked against the catalog now (an error names the integration and the key).
    pub fn integration_tables<K: AsRef<str>>(
        mut self,
        tables: impl IntoIterator<Item = (K, serde_json::Value)>,
    ) -> anyhow::Result<Self> {
        if self.catalog.is_none() {
            self.catalog = Some(Catalog::embedded()?);
        }
        let catalog = self.catalog.as_ref().expect("set just above");
        for (key, table) in tables {
            let key = key.as_ref();
            let table = table.as_object().ok_or_else(|| {
                anyhow::anyhow!("integrations.{key}: the table must be an object")
            })?;
            self.integrations
                .push(Integration::from_config(key, table, catalog)?);
        }
        Ok(self)
    }

    /// The app's API keys (only their hashes are kept).
    pub fn api_keys(mut self, api_keys: ApiKeys) -> Self {
        self.api_keys = api_keys;
        self
    }

    /// Another clock than the system's [`SystemClock`]. Every time decision of the gateway
    /// reads it: token expiry and refresh-ahead, back-off, refresh leases, cache lifetimes,
    /// sessions, purges and rate-limit windows. An embedding application that runs the
    /// gateway under a time it controls (a simulation, its own tests) supplies one here.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The gateway. Fails only when the built-in catalog does not load.
    pub fn build(self) -> anyhow::Result<Gateway<S>> {
        let catalog = match self.catalog {
            Some(catalog) => catalog,
            None => Catalog::embedded()?,
        };
        let integrations = Integrations::from_config(self.integrations);
        let state = AppState::new(
            self.store,
            self.vault,
            self.config,
            catalog,
            integrations,
            self.api_keys,
            self.clock,
        );
        Ok(Gateway { state })
    }
}

impl<S: Store> Gateway<S> {
    /// Starts building a gateway on `store`, sealing with `vault`, configured by `config`.
    pub fn builder(store: S, vault: Vault, config: GatewayConfig) -> GatewayBuilder<S> {
        GatewayBuilder {
            store,
            vault,
            config,
            catalog: None,
            integrations: Vec::new(),
            api_keys: ApiKeys::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// A connection's fresh credentials, as `GET /v1/connections/{id}/credentials` returns
    /// them: for an embedding app's own handlers.
    pub async fn credentials(&self, id: &str) -> Result<CredentialsView, ApiError> {
        api::read_credentials(&self.state, id, false).await
    }

    /// Refreshes a connection's tokens now (what `?force_refresh=true` does) and returns its
    /// public view (no secrets). For the CLI and for apps that embed the gateway.
    pub async fn refresh_connection(&self, id: &str) -> Result<ConnectionView, ApiError> {
        let id = api::parse_connection_id(id)?;
        let live = refresh::live(&self.state, id.as_str(), refresh::Freshness::Force).await?;
        Ok(api::connection_view(&live.row))
    }

    /// Revokes at the provider where possible, then deletes (as `DELETE /v1/connections/{id}`).
    pub async fn delete_connection(&self, id: &str) -> Result<(), ApiError> {
        let id = api::parse_connection_id(id)?;
        Ok(removal::delete_connection(&self.state, id.as_str()).await?)
    }

    /// Re-reads the vault's key file (what `tether serve` does on SIGHUP); returns the key ids
    /// now in use. Fails for keys given inline, which only a restart changes.
    pub fn reload_keys(&self) -> Result<Vec<String>, tether_core::vault::VaultError> {
        self.state.vault.reload()
    }

    /// Reads the sealing key the database announces (announcing this vault's primary key on a
    /// first start) and seals under it from now on; the background work keeps following it.
    /// Returns the announced key id. `tether serve` and the maintenance commands call it
    /// before their first seal.
    pub async fn follow_sealing_key(&self) -> anyhow::Result<String> {
        sealing_key::follow_once(&self.state).await
    }

    /// The store, for maintenance that goes beyond the API (the CLI's commands, tests). An
    /// app that only serves and proxies never needs it.
    pub fn store(&self) -> &S {
        &self.state.store
    }

    /// Loads the integrations created earlier through the API. One that no longer resolves
    /// (say, its provider left the catalog) is skipped with an error in the log and kept in
    /// the store; one whose key is now in the configuration file yields to it.
    pub async fn load_stored_integrations(&self) -> anyhow::Result<usize> {
        self.state.sync_integrations().await
    }

    /// The complete router: API, Connect pages, callback, proxy; `/metrics` only behind
    /// [`GatewayConfig::metrics_token`]. Every route but the proxy refuses bodies over
    /// [`GatewayConfig::max_body_bytes`] before any other work; the proxy has its own limit.
    ///
    /// Connection-level limits (header and request deadlines, idle connections, the
    /// connection cap) belong to the server: [`serve`] applies them, and records the peer
    /// address that the rate limits need.
    pub fn router(&self) -> Router {
        let max_body = self.state.config.max_body_bytes;
        let limited = Router::new()
            .merge(api::router())
            .merge(agents::api_router())
            .merge(connect::router())
            .merge(console::router())
            .merge(mcp_auth::router())
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                body_limit::refuse_large_bodies::<S>,
            ))
            .layer(axum::extract::DefaultBodyLimit::max(max_body));
        Router::new()
            .merge(limited)
            .merge(proxy::router())
            .merge(agents::mcp_router(&self.state))
            .fallback(api::not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                request_id::track::<S>,
            ))
            .with_state(self.state.clone())
    }

    /// The complete router with the proxy route (`/v1/proxy/{id}/...`) answered ahead of it,
    /// without axum's routing and middleware on that path, and the same answers: what
    /// [`serve`] and [`serve_per_core`] should be given to serve the gateway alone (as
    /// `tether serve` does). To mount the gateway into another axum app, use
    /// [`Gateway::router`].
    pub fn service(&self) -> GatewayService<S> {
        GatewayService::new(self.state.clone(), self.router())
    }

    /// `GET /metrics` with no token, to serve on an address only the operator reaches
    /// (`[server] metrics_listen`).
    pub fn metrics_router(&self) -> Router {
        api::open_metrics_router().with_state(self.state.clone())
    }

    /// The gateway's metrics in the Prometheus text format (what `GET /metrics` answers), for
    /// an app that serves or scrapes them its own way.
    pub fn metrics_text(&self) -> String {
        self.state.metrics.render()
    }

    /// Whether this gateway's vault holds the encryption key `key_id`: `tether serve` checks
    /// the key the database announces (see [`Gateway::follow_sealing_key`]) before serving.
    pub fn holds_key(&self, key_id: &str) -> bool {
        self.state.vault.holds(key_id)
    }

    /// Starts the background work: the ahead-of-expiry refresher, the health checks with their
    /// keep-alive refreshes and grant-end notices, the purge of expired connect sessions and
    /// flow states, the poll of the announced sealing key, when webhooks are configured the
    /// webhook delivery worker, and when the store tells of other instances' changes the task
    /// that keeps this instance's caches coherent with them. Each task stops when `shutdown`
    /// turns true (or its sender is dropped); await the handles to wait for them.
    pub fn spawn_background(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.state.spawn_background(shutdown)
    }
}

impl<S: Store> AppState<S> {
    /// See [`Gateway::spawn_background`]; here for callers that only hold the state.
    pub fn spawn_background(
        &self,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = vec![
            tokio::spawn(refresher::run(self.clone(), shutdown.clone())),
            tokio::spawn(checker::run(self.clone(), shutdown.clone())),
            tokio::spawn(purge::run(self.clone(), shutdown.clone())),
            tokio::spawn(sealing_key::run(self.clone(), shutdown.clone())),
        ];
        if let Some(feed) = self.store.changes() {
            // Nothing is cached until the feed hears every change (its first item says so).
            self.cache.reset(false);
            handles.push(tokio::spawn(coherence::run(
                self.clone(),
                feed,
                shutdown.clone(),
            )));
        }
        if self.config.webhooks.is_some() {
            handles.push(tokio::spawn(webhooks::run_worker(self.clone(), shutdown)));
        }
        handles
    }
}
