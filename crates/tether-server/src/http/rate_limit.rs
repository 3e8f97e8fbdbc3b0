//! Rate limiting of failed API-key attempts, and the client address itself.
//!
//! The limiter must not be a weapon against the app: the key is checked first, only a wrong
//! key is counted, and a right key always passes, whatever anyone else guessed (so neither ten
//! wrong keys from a shared address nor from anywhere else lock the app out). A wrong key
//! counts against two buckets, the client address (an IPv6 address by its /64, what one
//! client is given) and a prefix of the presented key (what guesses aimed at one key have in
//! common, from however many addresses); past the limit in either, wrong keys get 429.
//!
//! The windows live in the store (one conditional upsert per bucket), so on PostgreSQL every
//! instance counts the same guesses; SQLite takes the same path. Only failures reach the
//! store; a valid key costs nothing. Once an instance saw a bucket over the limit, it answers
//! that bucket's further wrong keys from memory until the window ends, without writing.
//!
//! Written here rather than taken from a crate such as `governor`: what is limited is
//! *failures*, counted after the key was checked, and in shared storage.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use tether_store::AuthStore;

use crate::config::RateLimit;
use crate::connection_service::clock::Clock;

/// Buckets remembered as over the limit at most (memory stays bounded under a flood).
const MAX_REMEMBERED: usize = 100_000;
/// Characters of the presented key that name its bucket.
const KEY_PREFIX_CHARS: usize = 8;

/// Failed API-key attempts per bucket in a fixed window, counted in the store.
pub struct FailureLimiter {
    limit: RateLimit,
    /// Buckets known to be over the limit, until their window ends.
    blocked: Mutex<HashMap<String, Instant>>,
}

impl FailureLimiter {
    pub fn new(limit: RateLimit) -> Self {
        FailureLimiter {
            limit,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a wrong key `presented` by `client`. `Some(seconds)` when one of its buckets is
    /// over the limit: the caller answers 429 with that wait instead of 401. A store that
    /// fails is logged and counts nothing (the key is refused either way). `clock` is the
    /// state's: the windows are in unix seconds, what is remembered in its monotonic instants.
    pub async fn record_failure<S: AuthStore>(
        &self,
        store: &S,
        clock: &dyn Clock,
        client: Option<IpAddr>,
        presented: &str,
    ) -> Option<u64> {
        let buckets = buckets(client, presented);
        if let Some(wait) = self.known_blocked(&buckets, clock.instant()) {
            return Some(wait);
        }
        let window_secs = i64::try_from(self.limit.window.as_secs().max(1)).unwrap_or(i64::MAX);
        let now = clock.now();
        let windows = match store.count_auth_failures(&buckets, now, window_secs).await {
            Ok(windows) => windows,
            Err(err) => {
                tracing::warn!(error = %err, "counting a wrong API key failed");
                return None;
            }
        };
        let mut wait = None;
        for (bucket, window) in buckets.iter().zip(windows) {
            if window.attempts <= self.limit.max {
                continue;
            }
            let left = u64::try_from(window.since.saturating_add(window_secs) - now)
                .unwrap_or(0)
                .max(1);
            self.remember(bucket, Duration::from_secs(left), clock.instant());
            wait = wait.max(Some(left));
        }
        wait
    }

    fn known_blocked(&self, buckets: &[String], now: Instant) -> Option<u64> {
        let mut blocked = self.blocked.lock().expect("limiter lock poisoned");
        if blocked.is_empty() {
            return None;
        }
        let mut wait = None;
        for bucket in buckets {
            match blocked.get(bucket) {
                Some(until) if *until > now => {
                    wait = wait.max(Some(seconds_left(
                        until.duration_since(now),
                        Duration::ZERO,
                    )));
                }
                Some(_) => {
                    blocked.remove(bucket);
                }
                None => {}
            }
        }
        wait
    }

    fn remember(&self, bucket: &str, left: Duration, now: Instant) {
        let mut blocked = self.blocked.lock().expect("limiter lock poisoned");
        if blocked.len() >= MAX_REMEMBERED {
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= MAX_REMEMBERED {
                // Not remembering only costs a store write per further guess.
                return;
            }
        }
        blocked.insert(bucket.to_owned(), now + left);
    }
}

/// The buckets a wrong key counts against: the client's address (when known) and the key's
/// prefix. The prefix is hashed, so the store never holds a part of a key that might be real.
fn buckets(client: Option<IpAddr>, presented: &str) -> Vec<String> {
    let prefix: String = presented.chars().take(KEY_PREFIX_CHARS).collect();
    let mut buckets = vec![
        [
            "key:",
            &tether_core::random::sha256_hex(&["tether-key-prefix\0", &prefix].concat())[..32],
        ]
        .concat(),
    ];
    if let Some(client) = client {
        buckets.push(["addr:", &address_bucket(client).to_string()].concat());
    }
    buckets
}

/// An IPv4 address as it is; an IPv6 address by its /64 (one client commonly has a whole /64,
/// so counting single addresses would give it 2^64 buckets).
pub(crate) fn address_bucket(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

/// Notes forwarded headers (`X-Forwarded-For`, `Forwarded`) from peers that are not trusted
/// proxies: a TLS proxy that was not listed in `trusted_proxies` makes every client look like
/// the proxy, so they share one address bucket. Logged once per peer per interval.
pub struct ForwardedWarnings {
    interval: Duration,
    last: Mutex<HashMap<IpAddr, Instant>>,
}

impl Default for ForwardedWarnings {
    fn default() -> Self {
        ForwardedWarnings {
            interval: Duration::from_secs(3600),
            last: Mutex::new(HashMap::new()),
        }
    }
}

impl ForwardedWarnings {
    /// Warns (at most once per peer per interval) when `parts` came from an untrusted peer
    /// with forwarded headers.
    pub fn check(&self, parts: &Parts, trusted: &[IpAddr]) {
        let Some(peer) = peer(parts) else { return };
        if trusted.contains(&peer) {
            return;
        }
        let headers = &parts.headers;
        if !headers.contains_key("x-forwarded-for") && !headers.contains_key("forwarded") {
            return;
        }
        let now = Instant::now();
        {
            let mut last = self.last.lock().expect("warning lock poisoned");
            if last
                .get(&peer)
                .is_some_and(|at| now.duration_since(*at) < self.interval)
            {
                return;
            }
            if last.len() >= MAX_REMEMBERED {
                last.clear();
            }
            last.insert(peer, now);
        }
        tracing::warn!(
            %peer,
            "a request carries X-Forwarded-For or Forwarded from a peer not in server.trusted_proxies: \
             the header is ignored and the peer is taken as the client; if it is your proxy, list it \
             (until then every client behind it shares one address for the API-key limit)"
        );
    }
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
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
    let peer = peer(parts)?;
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

    #[test]
    fn a_wrong_key_counts_against_its_prefix_and_its_address() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let one = buckets(Some(v4), "tether_sk_aaaa");
        let other = buckets(Some("192.0.2.2".parse().unwrap()), "tether_sk_bbbb");
        assert_eq!(one[0], other[0], "one prefix, one bucket");
        assert_ne!(one[1], other[1]);
        assert!(!one[0].contains("tether"), "no part of a key is stored");
        assert_eq!(buckets(None, "x").len(), 1);
        // Addresses of one IPv6 /64 share a bucket.
        let a = buckets(Some("2001:db8:1:2::1".parse().unwrap()), "k");
        let b = buckets(Some("2001:db8:1:2:ffff::9".parse().unwrap()), "k");
        assert_eq!(a, b);
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
