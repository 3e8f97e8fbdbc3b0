//! Tether's HTTP face: the JSON API for the app, the Connect pages and OAuth callback for end
//! users, and the authenticated proxy.
//!
//! [`Gateway`] is the entry point: build it from a store, a vault and the configuration, and
//! mount [`Gateway::router`] into any axum app (or serve it alone, as `tether serve` does),
//! and start its background work (refresher, purge, webhook delivery) with
//! [`Gateway::spawn_background`].

mod api;
mod api_keys;
mod body_limit;
mod cache;
mod coherence;
mod config;
mod connect;
mod console;
mod error;
mod http_server;
mod integrations;
mod metrics;
mod persist;
mod provider_auth;
mod purge;
mod rate_limit;
mod reference;
mod refresh;
mod refresher;
mod removal;
mod request_id;
pub mod rotation;
mod state;
pub mod webhooks;

use axum::Router;
use tether_core::catalog::Catalog;
use tether_core::integration::Integration;
use tether_core::vault::Vault;
use tether_store::Store;

use crate::integrations::Integrations;

pub use api_keys::ApiKeys;
pub use config::{GatewayConfig, RateLimit, RefresherConfig, ServerLimits, WebhookConfig};
pub use error::ApiError;
pub use http_server::serve;
pub use state::AppState;

/// The OpenAPI 3.1 description of the HTTP API, as pretty JSON (what `GET /openapi.json`
/// serves and `docs/openapi.json` holds).
pub fn openapi_document() -> String {
    api::openapi::render()
}

/// A configured gateway.
pub struct Gateway<S: Store> {
    state: AppState<S>,
}

impl<S: Store> Gateway<S> {
    /// Refreshes a connection's tokens now (what `?force_refresh=true` does) and returns its
    /// public view (no secrets). For the CLI and for apps that embed the gateway.
    pub async fn refresh_connection(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        let id = api::parse_connection_id(id)?;
        let live = refresh::live(&self.state, id.as_str(), refresh::Freshness::Force).await?;
        Ok(serde_json::to_value(api::connection_view(&live.row)).expect("a view serializes"))
    }

    /// Revokes at the provider where possible, then deletes (as `DELETE /v1/connections/{id}`).
    pub async fn delete_connection(&self, id: &str) -> Result<(), ApiError> {
        let id = api::parse_connection_id(id)?;
        removal::delete_connection(&self.state, id.as_str()).await
    }

    /// Builds a gateway. `integrations` are already resolved against `catalog`.
    pub fn new(
        store: S,
        vault: Vault,
        config: GatewayConfig,
        catalog: Catalog,
        integrations: Vec<Integration>,
        api_keys: ApiKeys,
    ) -> Self {
        let integrations = Integrations::from_config(integrations);
        let state = AppState::new(store, vault, config, catalog, integrations, api_keys);
        Gateway { state }
    }

    /// Loads the integrations created earlier through the API. One that no longer resolves
    /// (say, its provider left the catalog) is skipped with an error in the log and kept in
    /// the store; one whose key is now in the configuration file yields to it.
    pub async fn load_stored_integrations(&self) -> anyhow::Result<usize> {
        integrations::sync_from_store(&self.state).await
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
            .merge(connect::router())
            .merge(console::router())
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                body_limit::refuse_large_bodies::<S>,
            ))
            .layer(axum::extract::DefaultBodyLimit::max(max_body));
        Router::new()
            .merge(limited)
            .merge(api::proxy_router())
            .fallback(api::not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                request_id::track::<S>,
            ))
            .with_state(self.state.clone())
    }

    /// `GET /metrics` with no token, to serve on an address only the operator reaches
    /// (`[server] metrics_listen`).
    pub fn metrics_router(&self) -> Router {
        api::open_metrics_router().with_state(self.state.clone())
    }

    pub fn state(&self) -> &AppState<S> {
        &self.state
    }

    /// Starts the background work: the ahead-of-expiry refresher, the purge of expired
    /// connect sessions and flow states, when webhooks are configured the webhook delivery
    /// worker, and when the store tells of other instances' changes the task that keeps this
    /// instance's caches coherent with them. Each task stops when `shutdown` turns true
    /// (or its sender is dropped); await the handles to wait for them.
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
            tokio::spawn(purge::run(self.clone(), shutdown.clone())),
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
