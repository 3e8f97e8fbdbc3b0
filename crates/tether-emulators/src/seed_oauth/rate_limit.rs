//! The seed provider's API rate limit, off until a test sets one: a fixed window per access
//! token, or per organisation (as HubSpot limits a portal and Salesforce an org, whatever
//! the user or token) when `per_organization` is set (the first call opens it for `window`,
//! `limit` calls fit in it), reported on every
//! API answer in the IETF draft's fields (`RateLimit-Limit`, `RateLimit-Remaining`,
//! `RateLimit-Reset` in delta-seconds, rounded up), and a call over the limit answered 429
//! with `Retry-After`, as real providers do, and counted as a violation: what a client that
//! respects the reported budget never causes.
//!
//! Tests can also queue answers for the next API calls (a 503 with or without `Retry-After`,
//! in seconds or as an HTTP-date), and read when each API call arrived, to see retries and
//! their spacing from the provider's side.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{SeedOAuthControl, Shared, lock};

/// `limit` calls per `window` for each access token, or for each organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiRateLimit {
    pub limit: u64,
    pub window: Duration,
    /// Counted per organisation (of the account the token's grant signed in as) instead of
    /// per token.
    pub per_organization: bool,
}

/// An answer queued for one coming API call, instead of the real one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiFault {
    pub status: u16,
    /// `Retry-After` as sent (delta-seconds, or an HTTP-date).
    pub retry_after: Option<RetryAfter>,
}

/// How a queued answer writes its `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    Seconds(u64),
    /// An HTTP-date this far from the moment the answer is sent (rounded to the second the
    /// date format can say).
    DateIn(Duration),
}

/// One API call as it arrived.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub method: String,
    pub at: Instant,
    /// The answer's status.
    pub status: u16,
}

/// The limiter's memory, part of the emulator's state.
#[derive(Debug, Default)]
pub(crate) struct ApiLimits {
    limit: Option<ApiRateLimit>,
    /// Per `Authorization` value (or per organisation): when its window opened, and calls
    /// in it.
    windows: HashMap<String, (Instant, u64)>,
    violations: u64,
    faults: VecDeque<ApiFault>,
    arrivals: Vec<Arrival>,
}

/// Most arrivals remembered (a burst test sends a thousand).
const ARRIVALS: usize = 100_000;

impl SeedOAuthControl {
    /// Limits every access token to `limit.limit` API calls per window (`None`: no limit,
    /// and no rate-limit headers).
    pub fn set_api_rate_limit(&self, limit: Option<ApiRateLimit>) {
        let mut state = self.lock();
        state.api_limits.limit = limit;
        state.api_limits.windows.clear();
    }

    /// API calls that arrived while their token's window was already full.
    pub fn rate_limit_violations(&self) -> u64 {
        self.lock().api_limits.violations
    }

    /// The next API calls get these answers, in order, whatever their token.
    pub fn queue_api_faults(&self, faults: impl IntoIterator<Item = ApiFault>) {
        self.lock().api_limits.faults.extend(faults);
    }

    /// Every API call so far, in order of arrival.
    pub fn api_arrivals(&self) -> Vec<Arrival> {
        self.lock().api_limits.arrivals.clone()
    }
}

/// The middleware in front of the API routes (`/v1/...`, also under `/x/{segment}/`).
pub(crate) async fn enforce(
    State(shared): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map(|uri| uri.path().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let is_api = path.starts_with("/v1/")
        || path
            .strip_prefix("/x/")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(_, rest)| rest.starts_with("v1/"));
    if !is_api {
        return next.run(request).await;
    }
    let method = request.method().as_str().to_owned();
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let now = Instant::now();
    let decision = {
        let mut state = lock(&shared);
        if let Some(fault) = state.api_limits.faults.pop_front() {
            Decision::Fault(fault)
        } else if let Some(limit) = state.api_limits.limit {
            let counted = if limit.per_organization {
                let organization =
                    crate::http_util::authorization(request.headers(), &state.config.token_scheme)
                        .and_then(|t| state.access_token_family(t))
                        .and_then(|family| state.accounts.of_family(family))
                        .map(|account| account.organization_id.clone())
                        .unwrap_or_default();
                ["org:", &organization].concat()
            } else {
                token
            };
            let limits = &mut state.api_limits;
            let (opened, count) = limits.windows.entry(counted).or_insert((now, 0));
            if now.duration_since(*opened) >= limit.window {
                *opened = now;
                *count = 0;
            }
            let reset = limit.window.saturating_sub(now.duration_since(*opened));
            if *count >= limit.limit {
                limits.violations += 1;
                Decision::Over { limit, reset }
            } else {
                *count += 1;
                Decision::Pass(Some((limit, limit.limit - *count, reset)))
            }
        } else {
            Decision::Pass(None)
        }
    };
    let response = match decision {
        Decision::Fault(fault) => fault_response(&fault),
        Decision::Over { limit, reset } => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(serde_json::json!({"error": "rate_limited"})),
            )
                .into_response();
            budget_headers(&mut response, limit, 0, reset);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(ceil_secs(reset)));
            response
        }
        Decision::Pass(budget) => {
            let mut response = next.run(request).await;
            if let Some((limit, remaining, reset)) = budget {
                budget_headers(&mut response, limit, remaining, reset);
            }
            response
        }
    };
    let mut state = lock(&shared);
    let arrivals = &mut state.api_limits.arrivals;
    if arrivals.len() < ARRIVALS {
        arrivals.push(Arrival {
            method,
            at: now,
            status: response.status().as_u16(),
        });
    }
    response
}

enum Decision {
    Fault(ApiFault),
    Over {
        limit: ApiRateLimit,
        reset: Duration,
    },
    Pass(Option<(ApiRateLimit, u64, Duration)>),
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn budget_headers(response: &mut Response, limit: ApiRateLimit, remaining: u64, reset: Duration) {
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(limit.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(ceil_secs(reset)));
}

fn fault_response(fault: &ApiFault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = (
        status,
        axum::Json(serde_json::json!({"error": "temporarily_unavailable"})),
    )
        .into_response();
    let value = match &fault.retry_after {
        None => return response,
        Some(RetryAfter::Seconds(secs)) => HeaderValue::from(*secs),
        Some(RetryAfter::DateIn(after)) => {
            let date = httpdate::fmt_http_date(SystemTime::now() + *after);
            HeaderValue::from_str(&date).expect("an HTTP-date is a valid header value")
        }
    };
    response.headers_mut().insert(header::RETRY_AFTER, value);
    response
}
