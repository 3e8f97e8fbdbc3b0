//! The hot path's credential cache: opened credentials of recently used connections, so a
//! proxied call with a fresh token touches no database and opens no ciphertext.
//!
//! Bounded and sharded ([`quick_cache`]: S3-FIFO, O(1) eviction, one lock per shard, so
//! readers of different connections never wait for each other), short-lived (entries expire
//! after the configured TTL), and invalidated on refresh and delete, by this instance and
//! (through the store's change feed, see `coherence.rs`) by others. Evicted credentials are
//! zeroized when their last `Arc` drops: `SecretString` zeroizes itself, and the rendered
//! auth headers live in buffers that zeroize on drop (see `provider_auth`).
//!
//! A read that missed loads the row from the store and then caches it; a delete (or refresh)
//! commits and then invalidates. Between the two a reader could put back what was just
//! removed, serving a deleted connection for a whole TTL. So every value carries the
//! invalidation generation of its id's bucket as it was *before* the store read, and
//! [`CredentialCache::insert`] drops a value whose bucket was invalidated since. The cache
//! has no global lock to make "check, then insert" atomic, so the check is made again after
//! the insert: an invalidation bumps the generation *before* it removes, so either its
//! removal comes after our insert, or our second check sees its bump and removes the value.
//! And while the change feed is down (other instances' changes may go unheard) the cache is
//! bypassed altogether.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tether_core::credentials::Credentials;
use tether_store::ConnectionRow;

use super::clock::Clock;
use super::provider_auth::PreparedSlot;

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

#[derive(Clone)]
struct Entry {
    value: CachedConnection,
    inserted: Instant,
}

/// Invalidation counters, one per bucket of ids (a counter per id would have to outlive the
/// entry it guards).
const GENERATION_BUCKETS: usize = 64;

pub struct CredentialCache {
    entries: Option<quick_cache::sync::Cache<String, Entry>>,
    /// Bumped by every invalidation of an id in the bucket, before the entry is removed.
    generations: [AtomicU64; GENERATION_BUCKETS],
    ttl: Duration,
    /// Measures the TTL (the system's monotonic clock, but for tests).
    clock: Arc<dyn Clock>,
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
    /// A cache of at most `capacity` connections (0: no cache), each served for `ttl` as
    /// `clock` measures it.
    pub fn new(capacity: usize, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        CredentialCache {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            generations: std::array::from_fn(|_| AtomicU64::new(0)),
            ttl,
            clock,
            trusted: AtomicBool::new(true),
        }
    }

    pub fn get(&self, id: &str) -> Option<CachedConnection> {
        if !self.trusted.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries.as_ref()?;
        let entry = entries.get(id)?;
        if self
            .clock
            .instant()
            .saturating_duration_since(entry.inserted)
            < self.ttl
        {
            return Some(entry.value);
        }
        entries.remove(id);
        None
    }

    /// Whether entries are served and kept (false while other instances' changes may go
    /// unheard).
    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::SeqCst)
    }

    /// The invalidation generation of `id`; read it before reading the store, and give it to
    /// the value that read produces.
    pub fn generation(&self, id: &str) -> u64 {
        self.generations[bucket(id)].load(Ordering::SeqCst)
    }

    /// Caches `value`, unless the cache is bypassed or its id was invalidated after the value
    /// was read.
    pub fn insert(&self, value: CachedConnection) {
        let Some(entries) = &self.entries else {
            return;
        };
        let generation = value.generation;
        if !self.is_trusted() || self.generation(&value.row.id) != generation {
            return;
        }
        let id = value.row.id.clone();
        entries.insert(
            id.clone(),
            Entry {
                value,
                inserted: self.clock.instant(),
            },
        );
        // An invalidation (or reset) between the check and the insert has bumped the
        // generation by now (it bumps before it removes): take back what may be stale. At
        // worst this removes a newer entry too, which costs one more store read.
        if !self.is_trusted() || self.generation(&id) != generation {
            entries.remove(id.as_str());
        }
    }

    pub fn invalidate(&self, id: &str) {
        self.generations[bucket(id)].fetch_add(1, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.remove(id);
        }
    }

    /// Forgets everything (reads in flight included); with `trusted` false, also stops
    /// serving and keeping entries until called again with `trusted` true. Generations are
    /// bumped before the entries are cleared, so an insert racing the reset takes itself back
    /// (see [`CredentialCache::insert`]).
    pub fn reset(&self, trusted: bool) {
        for generation in &self.generations {
            generation.fetch_add(1, Ordering::SeqCst);
        }
        self.trusted.store(trusted, Ordering::SeqCst);
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection_service::clock::{FakeClock, SystemClock};
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
                credentials: tether_store::Sealed::default(),
                credentials_version: 1,
                access_expires_at: None,
                metadata: "{}".into(),
                last_error: None,
                refresh_failures: 0,
                next_refresh_at: None,
                created_at: 0,
                updated_at: 0,
                provider_account: None,
            }),
            credentials: Arc::new(Credentials::Oauth2(OAuth2Tokens {
                access_token: tether_core::AccessToken::new("a"),
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
        let cache = CredentialCache::new(10, Duration::from_secs(60), Arc::new(SystemClock));
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
    fn stays_within_its_capacity() {
        let cache = CredentialCache::new(100, Duration::from_secs(60), Arc::new(SystemClock));
        let ids: Vec<String> = (0..1_000).map(|i| format!("conn_{i}")).collect();
        for id in &ids {
            cache.insert(value(&cache, id, None));
        }
        let kept = ids.iter().filter(|id| cache.get(id).is_some()).count();
        assert!(kept > 0 && kept <= 100, "{kept} entries kept");
        // The last one inserted is there (S3-FIFO admits new entries).
        assert!(cache.get("conn_999").is_some());
    }

    #[test]
    fn entries_are_served_for_their_ttl_by_the_clock() {
        let clock = Arc::new(FakeClock::at(1_700_000_000));
        let cache = CredentialCache::new(10, Duration::from_secs(60), clock.clone());
        cache.insert(value(&cache, "conn_a", None));
        clock.advance(Duration::from_millis(59_999));
        assert!(
            cache.get("conn_a").is_some(),
            "a millisecond before the TTL"
        );
        clock.advance(Duration::from_millis(1));
        assert!(cache.get("conn_a").is_none(), "at the TTL");
        // A new insert starts a new lifetime.
        cache.insert(value(&cache, "conn_a", None));
        clock.advance(Duration::from_secs(30));
        assert!(cache.get("conn_a").is_some());
    }

    #[test]
    fn expired_entries_are_not_served() {
        let cache = CredentialCache::new(10, Duration::ZERO, Arc::new(SystemClock));
        cache.insert(value(&cache, "conn_a", None));
        assert!(cache.get("conn_a").is_none());
    }

    #[test]
    fn a_zero_capacity_keeps_nothing() {
        let cache = CredentialCache::new(0, Duration::from_secs(60), Arc::new(SystemClock));
        cache.insert(value(&cache, "conn_a", None));
        assert!(cache.get("conn_a").is_none());
        cache.invalidate("conn_a");
    }

    #[test]
    fn racing_invalidations_never_leave_a_stale_entry() {
        // Readers insert values read before an invalidation while the invalidations run on
        // another thread; after each round the invalidated id must not be served from a
        // read that began before its invalidation.
        let cache = Arc::new(CredentialCache::new(
            1_000,
            Duration::from_secs(60),
            Arc::new(SystemClock),
        ));
        for round in 0..200 {
            let id = format!("conn_{round}");
            let seen = cache.generation(&id);
            let invalidator = {
                let cache = cache.clone();
                let id = id.clone();
                std::thread::spawn(move || cache.invalidate(&id))
            };
            cache.insert(value(&cache, &id, Some(seen)));
            invalidator.join().unwrap();
            assert!(
                cache.get(&id).is_none(),
                "round {round}: a stale read was kept"
            );
        }
    }

    #[test]
    fn a_distrusted_cache_serves_and_keeps_nothing() {
        let cache = CredentialCache::new(10, Duration::from_secs(60), Arc::new(SystemClock));
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
