//! Tether's HTTP face: the JSON API for the app, the Connect pages and OAuth callback for end
//! users, and the authenticated proxy.
//!
//! [`Gateway`] is the entry point: build it from a store, a vault and the configuration, and
//! mount [`Gateway::router`] into any axum app (or serve it alone, as `tether serve` does).

mod api;
mod api_keys;
mod cache;
mod config;
mod connect;
mod error;
mod persist;
mod provider_auth;
mod reference;
mod refresh;
mod state;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use tether_core::catalog::Catalog;
use tether_core::integration::Integration;
use tether_core::outbound::OutboundLimits;
use tether_core::vault::Vault;
use tether_store::Store;

pub use api_keys::ApiKeys;
pub use config::GatewayConfig;
pub use error::ApiError;
pub use state::AppState;

/// A configured gateway.
pub struct Gateway<S: Store> {
    state: AppState<S>,
}

impl<S: Store> Gateway<S> {
    /// Builds a gateway. `integrations` are already resolved against `catalog`.
    pub fn new(
        store: S,
        vault: Vault,
        config: GatewayConfig,
        catalog: Catalog,
        integrations: Vec<Integration>,
        api_keys: ApiKeys,
    ) -> Self {
        let integrations: BTreeMap<String, Arc<Integration>> = integrations
            .into_iter()
            .map(|i| (i.key.to_string(), Arc::new(i)))
            .collect();
        let state = AppState::new(
            store,
            vault,
            config,
            catalog,
            integrations,
            api_keys,
            OutboundLimits::default(),
        );
        Gateway { state }
    }

    /// The complete router: API, Connect pages, callback, proxy.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(api::router())
            .merge(connect::router())
            .with_state(self.state.clone())
    }

    pub fn state(&self) -> &AppState<S> {
        &self.state
    }
}
