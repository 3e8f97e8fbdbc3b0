//! When a proxied call is sent again, and after how long.
//!
//! Only what is safe to repeat is repeated (RFC 9110 9.2.2): GET, HEAD, OPTIONS, PUT and
//! DELETE; POST and PATCH only when the app sends an `Idempotency-Key` (which the provider
//! then sees on every attempt) or asks with `Tether-Retry-Non-Idempotent: true`. Only answers
//! that say "not now" are retried: 429, 502, 503, 504, and no connection at all. The wait is
//! the provider's `Retry-After` when it gives one (a longer one than `[proxy] max_wait_secs`
//! is not waited for: the answer goes back to the app), else an exponential back-off with
//! jitter (half fixed, half random, so a crowd of callers spreads out). A streamed body is
//! gone after the first attempt and is never replayed; a kept one (up to `[proxy]
//! retry_body_bytes`) is.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use rand::Rng as _;

use crate::config::GatewayConfig;
use crate::http::error::ApiError;

/// Request: at most this many retries for this call (lower than the default only).
pub const RETRY_LIMIT: HeaderName = HeaderName::from_static("tether-retry-limit");
/// Request: `true` lets a POST or PATCH be retried without an `Idempotency-Key`.
pub const RETRY_NON_IDEMPOTENT: HeaderName = HeaderName::from_static("tether-retry-non-idempotent");
/// Response: how many times the call was sent again.
pub const RETRIES: HeaderName = HeaderName::from_static("tether-retries");
/// The app's key making a POST safe to repeat (draft-ietf-httpapi-idempotency-key-header).
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest back-off between two attempts, whatever the attempt number.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What this call allows.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Retries this call may make.
    pub max: u32,
    base: Duration,
    max_wait: Duration,
}

impl Policy {
    /// Reads the app's per-call controls (and removes them: they are for Tether, not the
    /// provider). A value that does not parse is a 400.
    pub fn read(
        headers: &mut HeaderMap,
        method: &Method,
        config: &GatewayConfig,
    ) -> Result<Self, ApiError> {
        let limit = match headers.remove(RETRY_LIMIT) {
            None => config.proxy_retries,
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_retry_limit",
                        "Tether-Retry-Limit must be a whole number of retries (0 for none)",
                    )
                })?
                // An app may ask for fewer retries, never for more than the operator allows.
                .min(config.proxy_retries),
        };
        let opted_in = match headers.remove(RETRY_NON_IDEMPOTENT) {
            None => false,
            Some(value) => match value.to_str().map(str::trim) {
                Ok(v) if v.eq_ignore_ascii_case("true") => true,
                Ok(v) if v.eq_ignore_ascii_case("false") => false,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_retry_non_idempotent",
                        "Tether-Retry-Non-Idempotent must be true or false",
                    ));
                }
            },
        };
        let safe = match *method {
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE => true,
            Method::POST | Method::PATCH => opted_in || headers.contains_key(IDEMPOTENCY_KEY),
            _ => false,
        };
        Ok(Policy {
            max: if safe { limit } else { 0 },
            base: config.proxy_retry_base_delay,
            max_wait: config.proxy_max_wait,
        })
    }

    /// How long to wait before retry number `done + 1`, or `None` when this answer goes back
    /// to the app: no retries left, a `Retry-After` longer than the proxy waits, or a wait
    /// that would end after `deadline`.
    pub fn next_delay(
        &self,
        done: u32,
        retry_after: Option<Duration>,
        now: Instant,
        deadline: Instant,
    ) -> Option<Duration> {
        if done >= self.max {
            return None;
        }
        let delay = match retry_after {
            Some(after) if after > self.max_wait => return None,
            Some(after) => after,
            None => {
                let full = self
                    .base
                    .saturating_mul(1u32 << done.min(16))
                    .min(MAX_BACKOFF);
                let half = full / 2;
                half + rand::rng().random_range(Duration::ZERO..=half)
            }
        };
        (now + delay <= deadline).then_some(delay)
    }
}

/// The `Tether-Retries` value for `n`, without formatting (or allocating) for the usual few.
pub fn count_value(n: u32) -> HeaderValue {
    const SMALL: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];
    match SMALL.get(n as usize) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(n),
    }
}

/// Whether an answer with this status says "try again later".
pub fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(method: Method, headers: &[(&str, &str)]) -> Result<Policy, ApiError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let mut config = GatewayConfig::new(url::Url::parse("http://127.0.0.1:1/").unwrap());
        config.proxy_retries = 3;
        let policy = Policy::read(&mut map, &method, &config)?;
        assert!(!map.contains_key(RETRY_LIMIT) && !map.contains_key(RETRY_NON_IDEMPOTENT));
        Ok(policy)
    }

    #[test]
    fn only_what_is_safe_to_repeat() {
        assert_eq!(policy(Method::GET, &[]).unwrap().max, 3);
        assert_eq!(policy(Method::DELETE, &[]).unwrap().max, 3);
        assert_eq!(policy(Method::POST, &[]).unwrap().max, 0);
        assert_eq!(policy(Method::PATCH, &[]).unwrap().max, 0);
        assert_eq!(
            policy(Method::POST, &[("idempotency-key", "k1")])
                .unwrap()
                .max,
            3
        );
        assert_eq!(
            policy(Method::POST, &[("tether-retry-non-idempotent", "true")])
                .unwrap()
                .max,
            3
        );
        assert_eq!(
            policy(Method::GET, &[("tether-retry-limit", "1")])
                .unwrap()
                .max,
            1
        );
        assert_eq!(
            policy(Method::GET, &[("tether-retry-limit", "99")])
                .unwrap()
                .max,
            3
        );
        assert_eq!(
            policy(Method::GET, &[("tether-retry-limit", "-1")])
                .unwrap_err()
                .code(),
            "invalid_retry_limit"
        );
        assert_eq!(
            policy(Method::POST, &[("tether-retry-non-idempotent", "yes")])
                .unwrap_err()
                .code(),
            "invalid_retry_non_idempotent"
        );
    }

    #[test]
    fn delays_honour_retry_after_caps_and_deadline() {
        let p = Policy {
            max: 3,
            base: Duration::from_millis(200),
            max_wait: Duration::from_secs(5),
        };
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        assert_eq!(
            p.next_delay(0, Some(Duration::from_secs(2)), now, far),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.next_delay(0, Some(Duration::from_secs(6)), now, far),
            None
        );
        assert_eq!(
            p.next_delay(
                0,
                Some(Duration::from_secs(2)),
                now,
                now + Duration::from_secs(1)
            ),
            None
        );
        assert_eq!(p.next_delay(3, None, now, far), None);
        for done in 0..3 {
            let d = p.next_delay(done, None, now, far).unwrap();
            let full = Duration::from_millis(200) * (1 << done);
            assert!(d >= full / 2 && d <= full, "{d:?} for attempt {done}");
        }
    }
}
