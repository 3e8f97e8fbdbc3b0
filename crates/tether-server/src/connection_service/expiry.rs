//! When a token is due for refresh, still usable, or held back by back-off; when a refresh
//! lease ends. Pure functions of the stored times and `now` (unix seconds, from the state's
//! [`Clock`](super::clock::Clock)), so that each boundary has a unit test of its own.

use std::time::Duration;

/// Seconds in `duration`, saturating: a window or margin too large for an `i64` means "always".
fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// The unix second `duration` after `now`, saturating: a configured TTL or lease too large
/// for an `i64` (a library user's `GatewayConfig` is not range-checked like `tether.toml`)
/// means "never", not an overflow.
pub fn after(now: i64, duration: Duration) -> i64 {
    now.saturating_add(secs(duration))
}

/// Whether a token expiring at `expires_at` expires within `within` of `now` (exactly at the
/// boundary counts). A token whose expiry is unknown never does: refreshing it on a timer
/// would be a guess, and a provider that rejects it gets it refreshed on the proxy's 401.
pub fn expires_within(expires_at: Option<i64>, now: i64, within: Duration) -> bool {
    expires_at.is_some_and(|at| at.saturating_sub(now) <= secs(within))
}

/// Whether a token expiring at `expires_at` still works at `now`: an unknown expiry is
/// taken to be valid, an expiry of exactly `now` is not.
pub fn still_valid(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// Whether a transient failure put the connection in back-off (until `next_refresh_at`) and
/// its token still works: then it is served as it is rather than refreshed again, so that a
/// provider outage does not turn reads into a refresh storm. An expired token is never held
/// back, as serving it is no use.
pub fn in_backoff(next_refresh_at: Option<i64>, expires_at: Option<i64>, now: i64) -> bool {
    next_refresh_at.is_some_and(|at| at > now) && still_valid(expires_at, now)
}

/// Whether a connection is due for refresh: its token expires within `ahead` (on read, the
/// refresh margin; for the background refresher, its window) and back-off does not hold it.
pub fn due_for_refresh(
    expires_at: Option<i64>,
    next_refresh_at: Option<i64>,
    now: i64,
    ahead: Duration,
) -> bool {
    expires_within(expires_at, now, ahead) && !in_backoff(next_refresh_at, expires_at, now)
}

/// `now` plus `ahead`, saturating: the end of the background refresher's window (the store
/// lists tokens expiring before it) or of its interval.
pub fn horizon(now: i64, ahead: Duration) -> i64 {
    now.saturating_add(secs(ahead))
}

/// When a refresh lease taken at `now` ends, for `lease` (at least a second, so that a zero in
/// the configuration does not hand out leases that are over as soon as they are taken).
pub fn lease_until(now: i64, lease: Duration) -> i64 {
    now.saturating_add(secs(lease).max(1))
}

/// Whether a lease ending at `lease_until` has less than half of a whole `lease` left at
/// `now`: a claimed connection whose turn came that late takes its lease again before the
/// token call, so that the lease cannot lapse (and another instance refresh too) during it.
pub fn lease_runs_short(lease_until: i64, now: i64, lease: Duration) -> bool {
    let whole = self::lease_until(now, lease).saturating_sub(now);
    // Half, rounded up: a one-second lease is short as soon as its second has begun.
    lease_until.saturating_sub(now) < whole / 2 + whole % 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const MARGIN: Duration = Duration::from_secs(300);

    #[test]
    fn expires_within_counts_the_boundary() {
        assert!(
            expires_within(Some(NOW + 300), NOW, MARGIN),
            "exactly at the margin"
        );
        assert!(
            expires_within(Some(NOW + 299), NOW, MARGIN),
            "one second inside"
        );
        assert!(
            !expires_within(Some(NOW + 301), NOW, MARGIN),
            "one second outside"
        );
        assert!(
            expires_within(Some(NOW - 10), NOW, MARGIN),
            "already expired"
        );
        assert!(!expires_within(None, NOW, MARGIN), "unknown expiry");
    }

    #[test]
    fn after_adds_and_saturates() {
        assert_eq!(after(NOW, MARGIN), NOW + 300);
        assert_eq!(after(NOW, Duration::MAX), i64::MAX);
        assert_eq!(after(NOW, Duration::from_secs(i64::MAX as u64)), i64::MAX);
    }

    #[test]
    fn a_zero_margin_means_at_or_after_expiry() {
        assert!(expires_within(Some(NOW), NOW, Duration::ZERO));
        assert!(!expires_within(Some(NOW + 1), NOW, Duration::ZERO));
    }

    #[test]
    fn huge_windows_and_far_expiries_do_not_overflow() {
        assert!(expires_within(Some(i64::MAX), NOW, Duration::MAX));
        assert!(!expires_within(Some(i64::MAX), i64::MIN, MARGIN));
        assert!(expires_within(Some(i64::MIN), NOW, MARGIN));
    }

    #[test]
    fn a_token_is_valid_until_its_expiry_second() {
        assert!(still_valid(Some(NOW + 1), NOW));
        assert!(!still_valid(Some(NOW), NOW), "expiring now is expired");
        assert!(!still_valid(Some(NOW - 1), NOW));
        assert!(still_valid(None, NOW), "unknown expiry is taken as valid");
    }

    #[test]
    fn back_off_holds_only_a_still_valid_token_until_its_deadline() {
        let valid = Some(NOW + 60);
        assert!(in_backoff(Some(NOW + 1), valid, NOW), "deadline ahead");
        assert!(!in_backoff(Some(NOW), valid, NOW), "deadline reached");
        assert!(!in_backoff(Some(NOW - 1), valid, NOW), "deadline passed");
        assert!(!in_backoff(None, valid, NOW), "never failed");
        assert!(!in_backoff(Some(NOW + 60), Some(NOW), NOW), "token expired");
        assert!(in_backoff(Some(NOW + 60), None, NOW), "unknown expiry");
    }

    #[test]
    fn a_read_refreshes_inside_the_margin_unless_backing_off() {
        assert!(due_for_refresh(Some(NOW + 300), None, NOW, MARGIN));
        assert!(!due_for_refresh(Some(NOW + 301), None, NOW, MARGIN));
        assert!(!due_for_refresh(None, None, NOW, MARGIN));
        // Backing off with a token that still works: served as is.
        assert!(!due_for_refresh(
            Some(NOW + 30),
            Some(NOW + 10),
            NOW,
            MARGIN
        ));
        // Backing off, but the token is expired: refreshing is the only way to serve.
        assert!(due_for_refresh(Some(NOW), Some(NOW + 10), NOW, MARGIN));
        assert!(due_for_refresh(Some(NOW - 1), Some(NOW + 10), NOW, MARGIN));
    }

    #[test]
    fn the_refresher_takes_what_expires_within_its_window() {
        let window = Duration::from_secs(600);
        assert!(
            due_for_refresh(Some(NOW + 600), None, NOW, window),
            "at the window"
        );
        assert!(due_for_refresh(Some(NOW + 599), None, NOW, window));
        assert!(
            !due_for_refresh(Some(NOW + 601), None, NOW, window),
            "one second beyond"
        );
        assert!(!due_for_refresh(None, None, NOW, window), "unknown expiry");
        assert!(
            !due_for_refresh(Some(NOW + 100), Some(NOW + 50), NOW, window),
            "backing off"
        );
        assert!(
            due_for_refresh(Some(NOW + 100), Some(NOW), NOW, window),
            "back-off ends at its deadline"
        );
    }

    #[test]
    fn the_horizon_is_now_plus_the_window() {
        assert_eq!(horizon(NOW, Duration::from_secs(600)), NOW + 600);
        assert_eq!(horizon(NOW, Duration::from_millis(1_999)), NOW + 1);
        assert_eq!(horizon(NOW, Duration::MAX), i64::MAX);
        // What expires within the window ends at or before the horizon.
        let window = Duration::from_secs(600);
        assert!(expires_within(Some(horizon(NOW, window)), NOW, window));
        assert!(!expires_within(Some(horizon(NOW, window) + 1), NOW, window));
    }

    #[test]
    fn a_lease_runs_short_with_less_than_half_of_it_left() {
        let lease = Duration::from_secs(30);
        assert!(!lease_runs_short(NOW + 30, NOW, lease), "just taken");
        assert!(!lease_runs_short(NOW + 15, NOW, lease), "half left");
        assert!(lease_runs_short(NOW + 14, NOW, lease));
        assert!(lease_runs_short(NOW - 1, NOW, lease), "lapsed");
        // A one-second lease is short as soon as its second has begun to pass.
        assert!(!lease_runs_short(NOW + 1, NOW, Duration::ZERO));
        assert!(lease_runs_short(NOW, NOW, Duration::ZERO));
        assert!(!lease_runs_short(i64::MAX, NOW, Duration::MAX));
    }

    #[test]
    fn a_lease_lasts_its_length_and_at_least_a_second() {
        assert_eq!(lease_until(NOW, Duration::from_secs(30)), NOW + 30);
        assert_eq!(lease_until(NOW, Duration::ZERO), NOW + 1);
        assert_eq!(lease_until(NOW, Duration::from_millis(900)), NOW + 1);
        assert_eq!(lease_until(NOW, Duration::MAX), i64::MAX);
    }
}
