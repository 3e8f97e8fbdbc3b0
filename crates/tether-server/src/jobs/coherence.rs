//! Coherence between instances sharing one database: this instance's in-memory copies (opened
//! credentials in the cache, API-managed integrations in the registry) follow what other
//! instances change, through the store's change feed ([`Store::changes`]).
//!
//! A changed connection is dropped from the cache (the next use reads the store); a changed
//! integration is loaded again. When the feed says changes may have gone unheard (its
//! database connection dropped), the cache is emptied and bypassed until the feed is back; then
//! integrations are reloaded too. A newly announced sealing key (key rotation) is taken at
//! once (see `sealing_key`). This task never reads a credential and never logs one. With a
//! backend that has no feed (SQLite: one instance), it is not started.

use tether_store::{Change, ChangeFeed, Store};
use tokio::sync::watch;

use crate::state::AppState;

/// Follows `feed` until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn run<S: Store>(
    state: AppState<S>,
    mut feed: ChangeFeed,
    mut shutdown: watch::Receiver<bool>,
) {
    let _running = crate::state::Running::mark(&state.workers.changes);
    loop {
        let change = tokio::select! {
            change = feed.next() => change,
            _ = shutdown.changed() => break,
        };
        match change {
            Some(Change::Connection(id)) => state.cache.invalidate(&id),
            Some(Change::Integration(key)) => {
                tracing::debug!(integration = %key, "an integration changed elsewhere");
                sync_integrations(&state).await;
            }
            Some(Change::SealingKey(key_id)) => state.vault.announce(&key_id),
            Some(Change::Lost) => state.cache.reset(false),
            Some(Change::Resync) => {
                // Integrations first: a request must not find a connection's integration
                // missing because the reload had not happened yet.
                sync_integrations(&state).await;
                state.cache.reset(true);
                tracing::info!("hearing other instances' changes; caches emptied");
            }
            None => {
                // The backend's listener ended for good: keep serving, without a cache.
                state.cache.reset(false);
                tracing::error!("the change feed stopped; credential cache disabled");
                break;
            }
        }
    }
}

/// Loads the API-managed integrations again; on a store error, keeps what it has (the next
/// change or resync tries again).
async fn sync_integrations<S: Store>(state: &AppState<S>) {
    if let Err(err) = state.sync_integrations().await {
        tracing::warn!(error = ?err, "could not reload integrations after a change elsewhere");
    }
}
