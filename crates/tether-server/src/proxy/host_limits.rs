//! At most so many proxied requests in flight to one provider host per instance; more wait
//! for one to finish (within the proxy's read timeout, like any wait for the provider).
//!
//! Without a cap, every concurrent proxied request opens its own upstream connection: a burst
//! of a thousand calls from the app means a thousand connections to the provider, each with
//! hyper's buffers and dispatch queue (about 40 KiB here) and each counted by the provider's
//! own concurrency limits, which CRMs enforce per app. Envoy caps a cluster's connections the
//! same way by default; nginx leaves it to `max_conns`. The permit is held until the response
//! body has been read or dropped, when the connection is free for the next request.

use std::sync::Arc;

use http::uri::{Authority, Scheme};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Distinct hosts remembered; beyond this the least used lose their count (and a host seen
/// again starts a fresh one), which only matters for per-connection hosts in the thousands.
const HOSTS: usize = 4096;

pub struct HostLimits {
    per_host: usize,
    hosts: quick_cache::sync::Cache<(Scheme, Authority), Arc<Semaphore>>,
}

impl HostLimits {
    /// `per_host` requests in flight to one scheme and authority at once (0: no cap).
    pub fn new(per_host: usize) -> Self {
        HostLimits {
            per_host,
            hosts: quick_cache::sync::Cache::new(HOSTS),
        }
    }

    /// Waits for a turn to call `uri`'s host; `None` when there is no cap or no host.
    pub async fn acquire(&self, uri: &http::Uri) -> Option<OwnedSemaphorePermit> {
        if self.per_host == 0 {
            return None;
        }
        let key = (uri.scheme()?.clone(), uri.authority()?.clone());
        let semaphore = match self.hosts.get(&key) {
            Some(semaphore) => semaphore,
            None => self
                .hosts
                .get_or_insert_with(&key, || {
                    Ok::<_, std::convert::Infallible>(Arc::new(Semaphore::new(self.per_host)))
                })
                .ok()?,
        };
        semaphore.acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_host_has_its_own_count() {
        let limits = HostLimits::new(2);
        let a: http::Uri = "https://a.example/v1".parse().unwrap();
        let b: http::Uri = "https://b.example/v1".parse().unwrap();
        let first = limits.acquire(&a).await.expect("a permit");
        let _second = limits.acquire(&a).await.expect("a permit");
        // A third call to a waits; b is not affected.
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire(&a));
        assert!(third.await.is_err(), "a third request to a must wait");
        assert!(limits.acquire(&b).await.is_some());
        drop(first);
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire(&a));
        assert!(third.await.expect("a permit freed").is_some());
    }

    #[tokio::test]
    async fn zero_means_no_cap() {
        let limits = HostLimits::new(0);
        let a: http::Uri = "https://a.example/".parse().unwrap();
        assert!(limits.acquire(&a).await.is_none());
    }
}
