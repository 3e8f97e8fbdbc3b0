//! How many clients one address may register (`[mcp] registrations_per_hour`): registration
//! is open to anyone (RFC 7591), and every client is a stored row, so a loop of `POST`s must
//! not fill the database. Counted per client address as the API-key failure limit buckets it
//! (an IPv6 address by its /64), in a fixed window of an hour, in this instance's memory (no
//! database write per registration; N instances behind a balancer allow N times as many, and
//! unused clients are purged a day after they registered anyway). Only registrations that
//! pass validation count: a malformed request writes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::rate_limit::{address_bucket, seconds_left};

/// The window the limit counts in.
pub const WINDOW: Duration = Duration::from_secs(60 * 60);

/// Addresses tracked at most: past it, finished windows are swept out, and if every one is
/// still running an unknown address waits (memory stays bounded under a flood from many
/// addresses, which is when the limit matters).
const MAX_TRACKED: usize = 100_000;

/// Each address's window on this instance: when it started, and registrations in it.
#[derive(Default)]
pub struct RegistrationLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RegistrationLimiter {
    /// Counts one registration from `client` at `now`, or answers how many seconds to wait
    /// when it already made `per_hour` in its window. A request without a known address (a
    /// router mounted without the server's peer addresses) is not limited.
    pub fn admit(&self, client: Option<IpAddr>, per_hour: u32, now: Instant) -> Result<(), u64> {
        let Some(client) = client else {
            return Ok(());
        };
        let bucket = address_bucket(client);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&bucket) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                return Err(60);
            }
        }
        let (start, count) = windows.entry(bucket).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *count = 0;
        }
        if *count >= per_hour {
            return Err(seconds_left(WINDOW, now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_in_an_hour() {
        let limiter = RegistrationLimiter::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limiter.admit(Some(a), 3, t0).unwrap();
        }
        let later = t0 + Duration::from_secs(600);
        assert_eq!(limiter.admit(Some(a), 3, later), Err(3000));
        // Another address has its own count; one of the same IPv6 /64 shares it.
        limiter
            .admit(Some("192.0.2.2".parse().unwrap()), 3, later)
            .unwrap();
        let v6: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2::ff".parse().unwrap();
        limiter.admit(Some(v6), 1, t0).unwrap();
        assert!(limiter.admit(Some(same_64), 1, t0).is_err());
        // The window over: counted afresh.
        limiter.admit(Some(a), 3, t0 + WINDOW).unwrap();
        // Without an address, nothing to count by.
        limiter.admit(None, 0, t0).unwrap();
    }
}
