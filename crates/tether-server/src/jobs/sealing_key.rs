//! Following the sealing key the database announces, so that a key rotation reaches every
//! instance at once and nothing is sealed under a key the rotation is retiring.
//!
//! `tether keys rotate` announces the new key in the store before it re-seals anything. An
//! instance hears it through the change feed at commit (PostgreSQL NOTIFY, see `coherence`),
//! and in any case, on every backend, on a poll every [`POLL`]: a maintenance command on a
//! SQLite file is another process, with no feed to tell. The vault then seals under the
//! announced key only, or refuses to seal when it does not hold it. A rotation waits
//! [`ANNOUNCE_GRACE`] after announcing, so every instance has heard before it re-seals, and
//! counts again after its pass, so a value sealed in that moment is still moved.

use std::time::Duration;

use tether_store::Store;
use tokio::sync::watch;

use crate::state::AppState;

/// How often every instance re-reads the announced sealing key.
pub const POLL: Duration = Duration::from_secs(1);

/// How long a rotation waits after announcing a key before it re-seals: two polls and a
/// margin, so an instance that missed the notification has polled since.
pub const ANNOUNCE_GRACE: Duration = Duration::from_secs(3);

/// Reads the announced key (announcing `vault`'s primary key when none is announced yet: a
/// first start) and seals under it from now on. Returns the announced key id.
pub async fn follow_once<S: Store>(state: &AppState<S>) -> anyhow::Result<String> {
    let primary = state.vault.primary_key_id();
    let announced = state
        .store
        .announce_sealing_key_if_none(&primary, state.clock.now())
        .await?;
    state.vault.announce(&announced);
    Ok(announced)
}

/// Polls the announced key every [`POLL`] until `shutdown` turns true; a failed read keeps
/// the key it has (the next poll tries again).
pub(crate) async fn run<S: Store>(state: AppState<S>, mut shutdown: watch::Receiver<bool>) {
    if let Err(err) = follow_once(&state).await {
        tracing::warn!(error = ?err, "could not read the announced sealing key; retrying");
    }
    let mut ticks = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => break,
        }
        match state.store.sealing_key().await {
            Ok(Some(key_id)) => state.vault.announce(&key_id),
            Ok(None) => {}
            Err(err) => tracing::debug!(error = ?err, "could not read the announced sealing key"),
        }
    }
}
