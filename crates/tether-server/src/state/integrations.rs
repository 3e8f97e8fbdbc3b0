//! The integrations this gateway serves: those of the configuration file, which are fixed for
//! the life of the process, and those created through the API (`PUT /v1/integrations/{key}`),
//! which are stored sealed, loaded at start, and loaded again when another instance changes
//! one (see `coherence.rs`).
//!
//! Readers get an `Arc` of the integration, so a replace never changes one under a request in
//! flight. The lock is held only to clone that `Arc`, never across an await.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use tether_core::catalog::Catalog;
use tether_core::integration::Integration;
use tether_core::vault::Vault;
use tether_store::Store;

/// Where an integration comes from, which decides whether the API may change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `[integrations.KEY]` in `tether.toml`: read-only through the API.
    Config,
    /// Created through the API.
    Api,
}

struct Entry {
    integration: Arc<Integration>,
    source: Source,
}

/// The registry. Sorted by key, as listings show it.
#[derive(Default)]
pub struct Integrations {
    entries: RwLock<BTreeMap<String, Entry>>,
}

impl Integrations {
    pub fn from_config(integrations: Vec<Integration>) -> Self {
        let entries = integrations
            .into_iter()
            .map(|mut i| {
                // The operator wrote these: their fixed addresses are used as written.
                i.trust_as_operator();
                let entry = Entry {
                    integration: Arc::new(i),
                    source: Source::Config,
                };
                (entry.integration.key.to_string(), entry)
            })
            .collect();
        Integrations {
            entries: RwLock::new(entries),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Integration>> {
        self.read().get(key).map(|e| e.integration.clone())
    }

    pub fn source(&self, key: &str) -> Option<Source> {
        self.read().get(key).map(|e| e.source)
    }

    /// Every integration, by key.
    pub fn all(&self) -> Vec<Arc<Integration>> {
        self.read()
            .values()
            .map(|e| e.integration.clone())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Adds or replaces an API-managed integration. A configured one is never replaced.
    pub fn put_api(&self, integration: Integration) -> bool {
        let mut entries = self.entries.write().expect("integrations lock poisoned");
        let key = integration.key.to_string();
        if entries
            .get(&key)
            .is_some_and(|e| e.source == Source::Config)
        {
            return false;
        }
        entries.insert(
            key,
            Entry {
                integration: Arc::new(integration),
                source: Source::Api,
            },
        );
        true
    }

    /// Removes every API-managed integration whose key is not in `keep`.
    pub fn retain_api(&self, keep: &BTreeSet<String>) {
        let mut entries = self.entries.write().expect("integrations lock poisoned");
        entries.retain(|key, e| e.source == Source::Config || keep.contains(key));
    }

    /// Removes an API-managed integration.
    pub fn remove_api(&self, key: &str) {
        let mut entries = self.entries.write().expect("integrations lock poisoned");
        if entries.get(key).is_some_and(|e| e.source == Source::Api) {
            entries.remove(key);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries.read().expect("integrations lock poisoned")
    }
}

/// Makes the API-managed integrations those of the store: each stored one is (re)loaded and
/// served, and one no longer stored is no longer served. One that no longer resolves (say,
/// its provider left the catalog) is skipped with an error in the log and kept in the store;
/// one whose key is now in the configuration file yields to it. Returns how many are served.
pub async fn sync_from_store<S: Store>(
    integrations: &Integrations,
    store: &S,
    vault: &Vault,
    catalog: &Catalog,
) -> anyhow::Result<usize> {
    let stored = store.list_integrations().await?;
    let mut served = BTreeSet::new();
    for (key, sealed) in stored {
        let resolved = open_config(vault, &key, &sealed)
            .and_then(|table| Ok(Integration::from_config(&key, &table, catalog)?));
        match resolved {
            Ok(integration) => {
                if integrations.put_api(integration) {
                    served.insert(key);
                } else {
                    tracing::warn!(
                        integration = %key,
                        "a stored integration has the key of a configured one; the configuration wins"
                    );
                }
            }
            Err(err) => tracing::error!(
                integration = %key,
                error = %err,
                "a stored integration could not be loaded; it is kept but not served"
            ),
        }
    }
    integrations.retain_api(&served);
    Ok(served.len())
}

/// Vault context of an API-managed integration's stored configuration.
pub(crate) fn config_context(key: &str) -> String {
    let mut ctx = String::from("integrations/");
    ctx.push_str(key);
    ctx.push_str("/config");
    ctx
}

/// Seals an integration's configuration table for the store; fails only when the vault does
/// not hold the sealing key the database announces.
pub fn seal_config(
    vault: &tether_core::vault::Vault,
    key: &str,
    table: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<u8>, tether_core::vault::VaultError> {
    let mut plain = serde_json::to_vec(table).expect("a JSON map serializes");
    let sealed = vault.seal(&config_context(key), &plain);
    zeroize::Zeroize::zeroize(&mut plain);
    sealed
}

/// Opens what [`seal_config`] sealed.
pub fn open_config(
    vault: &tether_core::vault::Vault,
    key: &str,
    sealed: &[u8],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut plain = vault.open(&config_context(key), sealed)?;
    let table = serde_json::from_slice(&plain);
    zeroize::Zeroize::zeroize(&mut plain);
    Ok(table?)
}
