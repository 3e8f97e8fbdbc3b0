//! The hot path's credential cache: opened credentials of recently used connections, so a
//! proxied call with a fresh token touches no database and opens no ciphertext.
//!
//! Bounded (oldest entry evicted when full), short-lived (entries expire), and invalidated on
//! refresh and delete, by this instance and (through the store's change feed, see
//! `coherence.rs`) by others. Evicted credentials are zeroized when their last `Arc` drops,
//! since `SecretString` zeroizes itself.
//!
//! Two rules keep an invalidation from being undone by a read that was already in flight:
//! every entry records the cache's invalidation epoch from before its row was read, and is
//! not stored if any invalidation happened since; and while the change feed is down (changes
//! may go unheard) the cache is bypassed altogether.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_core::credentials::Credentials;
use tether_store::ConnectionRow;

use crate::provider_auth::PreparedSlot;

/// A connection's row and opened credentials, as last read.
#[derive(Clone)]
pub struct CachedConnection {
    pub row: Arc<ConnectionRow>,
    pub credentials: Arc<Credentials>,
    /// Base URL and auth headers rendered once for these credentials (the proxy's hot path
    /// then renders no template and parses no metadata); replaced with the entry on refresh.
    pub prepared: Arc<PreparedSlot>,
    /// [`CredentialCache::epoch`] from before the row was read: an entry whose read may
    /// predate an invalidation is not cached.
    pub epoch: u64,
}

struct Entry {
    value: CachedConnection,
    inserted: Instant,
}

pub struct CredentialCache {
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
    ttl: Duration,
    /// Bumped by every invalidation; see [`CachedConnection::epoch`].
    epoch: AtomicU64,
    /// False while changes made elsewhere may go unheard: then nothing is served or kept.
    trusted: AtomicBool,
}

impl CredentialCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        CredentialCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
            ttl,
            epoch: AtomicU64::new(0),
            trusted: AtomicBool::new(true),
        }
    }

    /// The invalidation epoch; read it before reading a row that may be cached.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn get(&self, id: &str) -> Option<CachedConnection> {
        if !self.trusted.load(Ordering::SeqCst) {
            return None;
        }
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        match entries.get(id) {
            Some(entry) if entry.inserted.elapsed() < self.ttl => Some(entry.value.clone()),
            Some(_) => {
                entries.remove(id);
                None
            }
            None => None,
        }
    }

    /// Keeps `value`, unless the cache is bypassed or something was invalidated since its
    /// row was read (checked under the lock that invalidations take).
    pub fn insert(&self, value: CachedConnection) {
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        if !self.trusted.load(Ordering::SeqCst) || value.epoch != self.epoch() {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&value.row.id) {
            let ttl = self.ttl;
            entries.retain(|_, e| e.inserted.elapsed() < ttl);
            if entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.inserted)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            value.row.id.clone(),
            Entry {
                value,
                inserted: Instant::now(),
            },
        );
    }

    pub fn invalidate(&self, id: &str) {
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        entries.remove(id);
    }

    /// Forgets everything; with `trusted` false, also stops serving and keeping entries until
    /// called again with `trusted` true.
    pub fn reset(&self, trusted: bool) {
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.trusted.store(trusted, Ordering::SeqCst);
        entries.clear();
    }
}
