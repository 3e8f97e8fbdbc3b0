//! "Now", for the whole gateway: one [`Clock`] carried by the gateway state, so that expiry,
//! back-off, lease, cache-lifetime, session, purge and rate-limit decisions can be tested by
//! moving a fake clock instead of waiting (or only through HTTP tests). Production uses
//! [`SystemClock`]. Only what runs without a state (one-shot CLI commands, the store's own
//! defaults) reads `tether_core::unix_time::now()` directly.

use std::time::Instant;

/// Where the connection service reads the time.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch: what token expiries, back-off deadlines and leases (all
    /// stored as unix seconds, shared with other instances) are compared with.
    fn now(&self) -> i64;

    /// A monotonic instant, for lifetimes that stay inside this process (the cache's TTL):
    /// unlike the wall clock, it never jumps back when the system time is set.
    fn instant(&self) -> Instant;
}

/// The system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        tether_core::unix_time::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told, for unit tests.
#[cfg(test)]
pub(crate) struct FakeClock {
    unix_start: i64,
    instant_start: Instant,
    elapsed: std::sync::Mutex<std::time::Duration>,
}

#[cfg(test)]
impl FakeClock {
    /// A clock reading `unix_start` seconds (and some fixed instant) until advanced.
    pub(crate) fn at(unix_start: i64) -> Self {
        FakeClock {
            unix_start,
            instant_start: Instant::now(),
            elapsed: std::sync::Mutex::new(std::time::Duration::ZERO),
        }
    }

    /// Moves both readings forward by `by`.
    pub(crate) fn advance(&self, by: std::time::Duration) {
        *self.elapsed.lock().expect("fake clock poisoned") += by;
    }

    fn elapsed(&self) -> std::time::Duration {
        *self.elapsed.lock().expect("fake clock poisoned")
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.unix_start + self.elapsed().as_secs() as i64
    }

    fn instant(&self) -> Instant {
        self.instant_start + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fake_clock_moves_only_when_advanced() {
        let clock = FakeClock::at(1_000);
        let first = clock.instant();
        assert_eq!(clock.now(), 1_000);
        assert_eq!(clock.instant(), first);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now(), 1_001, "whole seconds only");
        assert_eq!(clock.instant() - first, Duration::from_millis(1_500));
        clock.advance(Duration::from_millis(500));
        assert_eq!(clock.now(), 1_002);
    }

    #[test]
    fn the_system_clock_reads_the_unix_time() {
        let before = tether_core::unix_time::now();
        let read = SystemClock.now();
        let after = tether_core::unix_time::now();
        assert!(
            (before..=after).contains(&read),
            "{before} <= {read} <= {after}"
        );
    }
}
