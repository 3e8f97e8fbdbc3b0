//! The hot path's credential cache: opened credentials of recently used connections, so a
//! proxied call with a fresh token touches no database and opens no ciphertext.
//!
//! Bounded (oldest entry evicted when full), short-lived (entries expire), and invalidated on
//! refresh and delete. Evicted credentials are zeroized when their last `Arc` drops, since
//! `SecretString` zeroizes itself.

use std::collections::HashMap;
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
}

struct Entry {
    value: CachedConnection,
    inserted: Instant,
}

pub struct CredentialCache {
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
    ttl: Duration,
}

impl CredentialCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        CredentialCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
            ttl,
        }
    }

    pub fn get(&self, id: &str) -> Option<CachedConnection> {
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

    pub fn insert(&self, value: CachedConnection) {
        let mut entries = self.entries.lock().expect("cache lock poisoned");
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
        self.entries.lock().expect("cache lock poisoned").remove(id);
    }
}
