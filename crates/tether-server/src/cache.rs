//! The hot path's credential cache: opened credentials of recently used connections, so a
//! proxied call with a fresh token touches no database and opens no ciphertext.
//!
//! Bounded (oldest entry evicted when full), short-lived (entries expire), and invalidated on
//! refresh and delete, by this instance and (through the store's change feed, see
//! `coherence.rs`) by others. Evicted credentials are zeroized when their last `Arc` drops,
//! since `SecretString` zeroizes itself.
//!
//! A read that missed loads the row from the store and then caches it; a delete (or refresh)
//! commits and then invalidates. Between the two a reader could put back what was just
//! removed, serving a deleted connection for a whole TTL. So every value carries the
//! invalidation generation of its id's bucket as it was *before* the store read, and
//! [`CredentialCache::insert`] drops a value whose bucket was invalidated since. And while
//! the change feed is down (other instances' changes may go unheard) the cache is bypassed
//! altogether.

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
    /// [`CredentialCache::generation`] of this id, read before the store was.
    pub generation: u64,
}

struct Entry {
    value: CachedConnection,
    inserted: Instant,
}

/// Invalidation counters, one per bucket of ids (a counter per id would have to outlive the
/// entry it guards).
const GENERATION_BUCKETS: usize = 64;

pub struct CredentialCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Bumped (under the `entries` lock) by every invalidation of an id in the bucket.
    generations: [AtomicU64; GENERATION_BUCKETS],
    capacity: usize,
    ttl: Duration,
    /// False while changes made elsewhere may go unheard: then nothing is served or kept.
    trusted: AtomicBool,
}

fn bucket(id: &str) -> usize {
    // FNV-1a: ids are random, any spread will do; this only picks a counter.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (hash % GENERATION_BUCKETS as u64) as usize
}

impl CredentialCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        CredentialCache {
            entries: Mutex::new(HashMap::new()),
            generations: std::array::from_fn(|_| AtomicU64::new(0)),
            capacity,
            ttl,
            trusted: AtomicBool::new(true),
        }
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

    /// Whether entries are served and kept (false while other instances' changes may go
    /// unheard).
    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::SeqCst)
    }

    /// The invalidation generation of `id`; read it before reading the store, and give it to
    /// the value that read produces.
    pub fn generation(&self, id: &str) -> u64 {
        self.generations[bucket(id)].load(Ordering::Acquire)
    }

    /// Caches `value`, unless the cache is bypassed or its id was invalidated after the value
    /// was read.
    pub fn insert(&self, value: CachedConnection) {
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        if !self.trusted.load(Ordering::SeqCst)
            || self.generation(&value.row.id) != value.generation
        {
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
        entries.remove(id);
        self.generations[bucket(id)].fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets everything (reads in flight included); with `trusted` false, also stops
    /// serving and keeping entries until called again with `trusted` true.
    pub fn reset(&self, trusted: bool) {
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        for generation in &self.generations {
            generation.fetch_add(1, Ordering::AcqRel);
        }
        self.trusted.store(trusted, Ordering::SeqCst);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::SecretString;
    use tether_core::credentials::OAuth2Tokens;
    use tether_store::ConnectionStatus;

    fn value(cache: &CredentialCache, id: &str, generation: Option<u64>) -> CachedConnection {
        CachedConnection {
            row: Arc::new(ConnectionRow {
                id: id.to_owned(),
                integration: "crm".into(),
                end_user_id: "u".into(),
                end_user_email: None,
                end_user_display_name: None,
                status: ConnectionStatus::Active,
                credentials: Vec::new(),
                credentials_version: 1,
                access_expires_at: None,
                metadata: "{}".into(),
                last_error: None,
                refresh_failures: 0,
                next_refresh_at: None,
                created_at: 0,
                updated_at: 0,
            }),
            credentials: Arc::new(Credentials::Oauth2(OAuth2Tokens {
                access_token: SecretString::new("a"),
                refresh_token: None,
                token_type: "Bearer".into(),
                scope: None,
                expires_at: None,
                extra: Default::default(),
            })),
            prepared: Arc::default(),
            generation: generation.unwrap_or_else(|| cache.generation(id)),
        }
    }

    #[test]
    fn a_read_from_before_an_invalidation_is_not_cached() {
        let cache = CredentialCache::new(10, Duration::from_secs(60));
        // A reader notes the generation and reads the row; meanwhile the row is deleted and
        // the cache invalidated; then the reader's insert arrives.
        let seen = cache.generation("conn_a");
        cache.invalidate("conn_a");
        cache.insert(value(&cache, "conn_a", Some(seen)));
        assert!(
            cache.get("conn_a").is_none(),
            "a deleted connection came back"
        );
        // A read that began after the invalidation is cached as usual.
        cache.insert(value(&cache, "conn_a", None));
        assert!(cache.get("conn_a").is_some());
    }

    #[test]
    fn evicts_the_oldest_when_full() {
        let cache = CredentialCache::new(2, Duration::from_secs(60));
        for id in ["a", "b", "c"] {
            cache.insert(value(&cache, id, None));
        }
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
    }

    #[test]
    fn a_distrusted_cache_serves_and_keeps_nothing() {
        let cache = CredentialCache::new(10, Duration::from_secs(60));
        cache.insert(value(&cache, "conn_a", None));
        let seen = cache.generation("conn_b");
        cache.reset(false);
        assert!(cache.get("conn_a").is_none(), "emptied");
        cache.insert(value(&cache, "conn_a", None));
        assert!(
            cache.get("conn_a").is_none(),
            "nothing kept while distrusted"
        );
        cache.reset(true);
        cache.insert(value(&cache, "conn_b", Some(seen)));
        assert!(
            cache.get("conn_b").is_none(),
            "a read from before the reset is dropped"
        );
        cache.insert(value(&cache, "conn_b", None));
        assert!(cache.get("conn_b").is_some());
    }
}
