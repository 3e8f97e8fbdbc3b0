//! How long a connection waits after a transient refresh failure before it is refreshed again:
//! capped exponential back-off with jitter, never shorter than the provider's `Retry-After`.

use std::time::Duration;

/// The most doublings applied: 2^20 times any sane base is past any sane cap, and a bounded
/// shift cannot overflow however many failures a connection has piled up.
const MAX_DOUBLINGS: i64 = 20;

/// `[refresher] backoff_base` and `backoff_max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Seconds to wait before jitter, the connection having failed `failures_before` times in
    /// a row already: `base * 2^failures_before`, capped at `max`, at least one second (a zero
    /// base must not make a failing provider retried on every read).
    pub fn wait_secs(&self, failures_before: i64) -> u64 {
        let doublings = failures_before.clamp(0, MAX_DOUBLINGS) as u32;
        self.base
            .saturating_mul(1u32 << doublings)
            .min(self.max)
            .as_secs()
            .max(1)
    }

    /// Seconds until the next refresh: [`Backoff::wait_secs`] plus up to 25% jitter, so that
    /// connections failing together do not retry together, and never less than the provider's
    /// `retry_after`. `jitter` is given the most jitter allowed and returns the jitter to add
    /// (random in production, fixed in tests).
    pub fn delay_secs(
        &self,
        failures_before: i64,
        retry_after: Option<Duration>,
        jitter: impl FnOnce(u64) -> u64,
    ) -> i64 {
        let wait = self.wait_secs(failures_before);
        let most = wait / 4;
        let delay = wait
            .saturating_add(jitter(most).min(most))
            .max(retry_after.map_or(0, |after| after.as_secs()));
        i64::try_from(delay).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Backoff = Backoff {
        base: Duration::from_secs(30),
        max: Duration::from_secs(30 * 60),
    };

    #[test]
    fn doubles_from_the_base() {
        let waits: Vec<u64> = (0..6).map(|n| DEFAULT.wait_secs(n)).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960]);
    }

    #[test]
    fn stops_at_the_cap() {
        assert_eq!(DEFAULT.wait_secs(6), 1_800, "30 * 64 = 1920, capped");
        assert_eq!(DEFAULT.wait_secs(7), 1_800);
        assert_eq!(DEFAULT.wait_secs(20), 1_800);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        assert_eq!(DEFAULT.wait_secs(21), 1_800);
        assert_eq!(DEFAULT.wait_secs(64), 1_800);
        assert_eq!(DEFAULT.wait_secs(i64::MAX), 1_800);
        let huge = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
        };
        assert_eq!(huge.wait_secs(i64::MAX), u64::MAX);
        assert_eq!(huge.delay_secs(i64::MAX, None, |most| most), i64::MAX);
    }

    #[test]
    fn a_negative_count_is_the_first_failure() {
        assert_eq!(DEFAULT.wait_secs(-1), 30);
        assert_eq!(DEFAULT.wait_secs(i64::MIN), 30);
    }

    #[test]
    fn waits_at_least_a_second() {
        let zero = Backoff {
            base: Duration::ZERO,
            max: Duration::from_secs(60),
        };
        assert_eq!(zero.wait_secs(0), 1);
        assert_eq!(zero.wait_secs(10), 1);
        let sub_second = Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(60),
        };
        assert_eq!(sub_second.wait_secs(0), 1);
        assert_eq!(sub_second.wait_secs(3), 1, "1.6 s is one whole second");
        assert_eq!(sub_second.wait_secs(4), 3, "3.2 s");
    }

    #[test]
    fn jitter_adds_up_to_a_quarter() {
        assert_eq!(DEFAULT.delay_secs(2, None, |_| 0), 120);
        assert_eq!(DEFAULT.delay_secs(2, None, |most| most), 150);
        // A jitter source that overshoots is held to the quarter.
        assert_eq!(DEFAULT.delay_secs(2, None, |_| 1_000), 150);
        let mut offered = None;
        DEFAULT.delay_secs(6, None, |most| {
            offered = Some(most);
            0
        });
        assert_eq!(offered, Some(450), "a quarter of the capped wait");
    }

    #[test]
    fn the_providers_retry_after_wins_when_longer() {
        let after = Some(Duration::from_secs(3_600));
        assert_eq!(DEFAULT.delay_secs(0, after, |most| most), 3_600);
        let short = Some(Duration::from_secs(5));
        assert_eq!(DEFAULT.delay_secs(0, short, |_| 0), 30);
        assert_eq!(
            DEFAULT.delay_secs(0, Some(Duration::MAX), |_| 0),
            i64::MAX,
            "saturates rather than wrapping negative"
        );
    }
}
