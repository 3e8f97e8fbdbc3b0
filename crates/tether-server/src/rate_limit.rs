//! Rate limiting of failed API-key attempts per client address, and the client address itself.
//!
//! Written here rather than taken from a crate such as `governor`: what is limited is
//! *failures*, counted after the key was checked, while valid requests from a clean address
//! are never counted. A GCRA limiter consumes a cell on every check and has no "peek", so it
//! would charge every request or need a second structure anyway. This is a fixed window per
//! address in one bounded map (expired windows are swept when it is full); until the first
//! failure, the hot path reads one atomic flag and takes no lock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::RateLimit;

/// Addresses tracked at most; past that, expired windows are dropped, and if the map is still
/// full a new address is not tracked (a flood of addresses must not grow memory without bound).
const MAX_TRACKED: usize = 100_000;

/// Failures per client address in a fixed window.
pub struct FailureLimiter {
    limit: RateLimit,
    windows: Mutex<HashMap<IpAddr, Window>>,
    /// Set by the first failure: until then `windows` is empty and is never locked.
    tracking: AtomicBool,
}

struct Window {
    started: Instant,
    failures: u32,
}

impl FailureLimiter {
    pub fn new(limit: RateLimit) -> Self {
        FailureLimiter {
            limit,
            windows: Mutex::new(HashMap::new()),
            tracking: AtomicBool::new(false),
        }
    }

    /// `Some(seconds)` to wait when `client` used up its failures in the current window.
    pub fn blocked(&self, client: IpAddr) -> Option<u64> {
        if !self.tracking.load(Ordering::Relaxed) {
            return None;
        }
        let windows = self.windows.lock().expect("limiter lock poisoned");
        let window = windows.get(&client)?;
        let elapsed = window.started.elapsed();
        (window.failures >= self.limit.max && elapsed < self.limit.window)
            .then(|| seconds_left(self.limit.window, elapsed))
    }

    /// Counts a failure of `client`.
    pub fn record_failure(&self, client: IpAddr) {
        let mut windows = self.windows.lock().expect("limiter lock poisoned");
        let window_length = self.limit.window;
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&client) {
            windows.retain(|_, w| w.started.elapsed() < window_length);
            if windows.len() >= MAX_TRACKED {
                tracing::warn!("too many client addresses with failed API keys to track");
                return;
            }
        }
        let window = windows.entry(client).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if window.started.elapsed() >= window_length {
            *window = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
        self.tracking.store(true, Ordering::Relaxed);
    }
}

/// Whole seconds until a window of `length` that has run for `elapsed` ends (at least 1).
pub fn seconds_left(length: Duration, elapsed: Duration) -> u64 {
    let left = length.saturating_sub(elapsed);
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not one (the header's left part is the client's to
/// write, so only the entries the trusted proxies appended are believed). `None` when the
/// server did not record the peer (a router mounted without `ConnectInfo`).
pub fn client_address(parts: &Parts, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    Some(forwarded_client(&parts.headers, trusted).unwrap_or(peer))
}

fn forwarded_client(headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for item in value.to_str().ok()?.split(',') {
            hops.push(item.trim().parse().ok()?);
        }
    }
    hops.into_iter().rev().find(|hop| !trusted.contains(hop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(RateLimit {
            max: 3,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn blocks_after_the_limit_and_only_that_address() {
        let limiter = limiter();
        let bad: IpAddr = "192.0.2.1".parse().unwrap();
        let good: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            limiter.record_failure(bad);
            assert_eq!(limiter.blocked(bad), None);
        }
        limiter.record_failure(bad);
        let wait = limiter.blocked(bad).expect("blocked after three failures");
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(limiter.blocked(good), None);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
        let request = |peer: &str, xff: &str| {
            let mut request = axum::http::Request::builder()
                .header("x-forwarded-for", xff)
                .body(())
                .unwrap();
            let peer: SocketAddr = peer.parse().unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
            request.into_parts().0
        };
        // A trusted balancer appended the real client; the client's own claim is ignored.
        let parts = request("10.0.0.1:5000", "1.2.3.4, 198.51.100.7");
        assert_eq!(
            client_address(&parts, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        // An untrusted peer's header is not read at all.
        let parts = request("203.0.113.9:5000", "1.2.3.4");
        assert_eq!(
            client_address(&parts, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
    }

    #[test]
    fn seconds_left_rounds_up() {
        assert_eq!(
            seconds_left(Duration::from_secs(60), Duration::from_millis(59_500)),
            1
        );
        assert_eq!(seconds_left(Duration::from_secs(60), Duration::ZERO), 60);
        assert_eq!(
            seconds_left(Duration::from_secs(60), Duration::from_secs(90)),
            1
        );
    }
}
