//! The first-run key's revocation reaching servers already running.
//!
//! Configured keys live in the configuration, so removing one takes a restart anyway; the
//! first-run key lives in the store and `tether keys revoke-first-run` marks it there, while
//! every instance holds its hash in memory. So a request with that key has the store asked,
//! at most once per [`RECHECK`] for all such requests, whether it was revoked: revocation
//! reaches every instance within that time, and a key in use costs one small read per
//! interval, not one per request. A revoked key is remembered as such for good.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tether_store::AuthStore;

use crate::connection_service::clock::Clock;

/// How long the answer "not revoked" is trusted.
pub const RECHECK: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct StoredKeyCheck {
    state: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// When the store last said which stored keys are revoked.
    checked_at: Option<Instant>,
    /// Hex hashes of the stored keys the store said are revoked.
    revoked: HashSet<String>,
}

impl StoredKeyCheck {
    /// Whether the stored key of this hex hash may still be used. When the store cannot be
    /// read, the last answer stands (a database blip must not lock the app out; the requests
    /// that follow need the database anyway). `clock` (the state's) times the re-check.
    pub async fn live<S: AuthStore>(&self, store: &S, clock: &dyn Clock, key_hash: &str) -> bool {
        {
            let known = self.state.lock().expect("key check lock poisoned");
            if known.revoked.contains(key_hash) {
                return false;
            }
            if known
                .checked_at
                .is_some_and(|at| clock.instant().saturating_duration_since(at) < RECHECK)
            {
                return true;
            }
        }
        // Concurrent requests may each read once when the answer is due: harmless, and
        // simpler than making them wait for one another.
        match store.stored_api_keys().await {
            Ok(keys) => {
                let mut known = self.state.lock().expect("key check lock poisoned");
                known.checked_at = Some(clock.instant());
                for key in keys.into_iter().filter(|k| k.revoked_at.is_some()) {
                    known.revoked.insert(key.key_hash.as_str().to_owned());
                }
                !known.revoked.contains(key_hash)
            }
            Err(err) => {
                tracing::warn!(error = %err, "checking whether the first-run API key was revoked failed");
                true
            }
        }
    }
}
