//! The gateway's metrics: one `prometheus-client` registry owned by [`crate::AppState`] (no
//! global recorder, so two gateways in one process, as in tests, never share counts), served
//! as Prometheus/OpenMetrics text at `GET /metrics`.
//!
//! Label values are always from a small fixed set: never a connection id, an end user or a
//! provider's free-text error, which would make the series count grow without bound.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tether_core::oauth2::TokenError;

/// `reason` label of a failed refresh.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Labels of an HTTP request: the route pattern (never the raw path, which holds ids) and the
/// status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: Cow<'static, str>,
    pub status: u16,
}

/// `route` label of an HTTP request's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Cow<'static, str>,
}

/// Labels of a proxied call to a provider: the integration key (configured, so a small set)
/// and the status class of the provider's answer (`2xx` .. `5xx`, or `unreachable` /
/// `failed` when there was none).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyLabels {
    pub integration: String,
    pub class: &'static str,
}

/// `integration` label of a proxied call's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabel {
    pub integration: String,
}

/// Labels of the proxy's rate-limit work: the integration key and what happened
/// (`provider_429`: the provider said too many; `retry`: a call sent again; `wait`: a call
/// held until the provider's budget reset; `refused_provider`: answered 429 at once because
/// the provider's budget is spent; `refused_budget`: over the operator's budget).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    pub integration: String,
    pub event: &'static str,
}

/// Labels of an MCP tool call: the tool (`list_connections`, `crm_request`, or `unknown`)
/// and how it ended (`ok`, `provider_error`: the provider answered 4xx/5xx, `refused`:
/// out of scope or not allowed by the token, `failed`, `timeout`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub tool: &'static str,
    pub outcome: &'static str,
}

/// `outcome` label of a webhook delivery attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Every metric the gateway records, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    /// Calls to a token endpoint to refresh (on read, on a 401, ahead of expiry).
    pub refresh_attempts: Counter,
    /// Failed refreshes by reason (`invalid_grant`, `timeout`, `http_500`, ...).
    pub refresh_failures: Family<ReasonLabel, Counter>,
    /// Seconds per token-endpoint call.
    pub refresh_duration: Histogram,
    /// Webhook delivery attempts by outcome: `delivered`, `retry`, `gave_up`.
    pub webhook_deliveries: Family<OutcomeLabel, Counter>,
    /// Seconds per webhook delivery attempt.
    pub webhook_duration: Histogram,
    /// HTTP requests answered, by route pattern and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Seconds from a request's arrival to its response's head, by route pattern.
    pub http_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    /// Calls the proxy made to providers (a 401 retry is a second call), by integration and
    /// status class.
    pub proxy_requests: Family<ProxyLabels, Counter>,
    /// Seconds from sending a proxied call to the provider's response head, by integration:
    /// the provider's share of the proxy's latency (`http_request_duration_seconds` is the
    /// whole).
    pub proxy_duration: Family<IntegrationLabel, Histogram, fn() -> Histogram>,
    /// The proxy's rate-limit events by integration: provider 429s, retries, waits, refusals.
    pub proxy_rate_limit: Family<RateLimitLabels, Counter>,
    /// MCP tool calls by tool and outcome.
    pub mcp_tool_calls: Family<ToolLabels, Counter>,
    /// The two proxy families' series of each integration, found by its key (see
    /// [`ProxySeries`]).
    proxy_series: RwLock<HashMap<Box<str>, ProxySeries>>,
}

/// The status classes of [`ProxyLabels`], in the order of [`ProxySeries::requests`].
const PROXY_CLASSES: [&str; 9] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "unreachable",
    "failed",
    "refused",
    "timeout",
];

/// One integration's series in `proxy_upstream_duration_seconds` and `proxy_requests`
/// (handles on the families' own, which share their counts), found by the integration's key
/// as a `&str`: [`Metrics::proxied`] is called for every proxied call, and building its two
/// label sets cost a `String` and a lookup in each family every time.
struct ProxySeries {
    duration: Histogram,
    /// By status class, each made on its first call (a class never seen stays out of
    /// `/metrics`, as before).
    requests: [Option<Counter>; PROXY_CLASSES.len()],
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tether");
        let refresh_attempts = Counter::default();
        registry.register(
            "refresh_attempts",
            "Token refresh calls to providers",
            refresh_attempts.clone(),
        );
        let refresh_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "refresh_failures",
            "Failed token refreshes, by reason",
            refresh_failures.clone(),
        );
        // 5 ms .. ~20 s.
        let refresh_duration = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register(
            "refresh_duration_seconds",
            "Duration of token refresh calls",
            refresh_duration.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            webhook_deliveries.clone(),
        );
        let webhook_duration = Histogram::new(exponential_buckets(0.005, 2.0, 13));
        registry.register(
            "webhook_delivery_duration_seconds",
            "Duration of webhook delivery attempts",
            webhook_duration.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http_requests.clone(),
        );
        // 0.1 ms .. ~6.5 s: the proxy's own overhead is well under a millisecond.
        let http_duration: Family<RouteLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 17)));
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route",
            http_duration.clone(),
        );
        let proxy_requests = Family::<ProxyLabels, Counter>::default();
        registry.register(
            "proxy_requests",
            "Proxied calls to providers, by integration and status class",
            proxy_requests.clone(),
        );
        let proxy_duration: Family<IntegrationLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 17)));
        registry.register(
            "proxy_upstream_duration_seconds",
            "Time from a proxied call to the provider's response head, by integration",
            proxy_duration.clone(),
        );
        let proxy_rate_limit = Family::<RateLimitLabels, Counter>::default();
        registry.register(
            "proxy_rate_limit_events",
            "Provider 429s, retries, waits and refusals of proxied calls, by integration",
            proxy_rate_limit.clone(),
        );
        let mcp_tool_calls = Family::<ToolLabels, Counter>::default();
        registry.register(
            "mcp_tool_calls",
            "MCP tool calls, by tool and outcome",
            mcp_tool_calls.clone(),
        );
        Metrics {
            registry,
            proxy_series: RwLock::default(),
            mcp_tool_calls,
            proxy_rate_limit,
            proxy_requests,
            proxy_duration,
            http_requests,
            http_duration,
            refresh_attempts,
            refresh_failures,
            refresh_duration,
            webhook_deliveries,
            webhook_duration,
        }
    }

    /// Counts one rate-limit event of a proxied call (see [`RateLimitLabels`]).
    pub fn rate_limit_event(&self, integration: &str, event: &'static str) {
        self.proxy_rate_limit
            .get_or_create(&RateLimitLabels {
                integration: integration.to_owned(),
                event,
            })
            .inc();
    }

    /// Counts one MCP tool call (see [`ToolLabels`]).
    pub fn mcp_tool_call(&self, tool: &'static str, outcome: &'static str) {
        self.mcp_tool_calls
            .get_or_create(&ToolLabels { tool, outcome })
            .inc();
    }

    /// Counts a failed refresh under a bounded reason.
    pub fn refresh_failed(&self, err: &TokenError) {
        self.refresh_failures
            .get_or_create(&ReasonLabel {
                reason: failure_reason(err),
            })
            .inc();
    }

    /// Counts one webhook attempt.
    pub fn webhook_attempt(&self, outcome: &'static str, seconds: f64) {
        self.webhook_deliveries
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.webhook_duration.observe(seconds);
    }

    /// Counts one proxied call to a provider of `integration`.
    pub fn proxied(&self, integration: &str, class: &'static str, seconds: f64) {
        let index = PROXY_CLASSES.iter().position(|known| *known == class);
        if let Some(index) = index
            && let Ok(series) = self.proxy_series.read()
            && let Some(series) = series.get(integration)
            && let Some(requests) = &series.requests[index]
        {
            series.duration.observe(seconds);
            requests.inc();
            return;
        }
        // The first call of this integration and class: through the families, then kept.
        let label = IntegrationLabel {
            integration: integration.to_owned(),
        };
        let duration = self.proxy_duration.get_or_create(&label).clone();
        let requests = self
            .proxy_requests
            .get_or_create(&ProxyLabels {
                integration: label.integration,
                class,
            })
            .clone();
        duration.observe(seconds);
        requests.inc();
        if let Some(index) = index
            && let Ok(mut all) = self.proxy_series.write()
        {
            let series = all
                .entry(integration.into())
                .or_insert_with(|| ProxySeries {
                    duration,
                    requests: Default::default(),
                });
            series.requests[index] = Some(requests);
        }
    }

    /// Counts one answered request; `route` is the matched pattern (borrowed when it is a
    /// constant, as the proxy's are), `None` for no route.
    pub fn http_request(&self, route: Option<Cow<'static, str>>, status: u16, seconds: f64) {
        let label = RouteLabel {
            route: route.unwrap_or(Cow::Borrowed("unmatched")),
        };
        self.http_duration.get_or_create(&label).observe(seconds);
        self.http_requests
            .get_or_create(&HttpLabels {
                route: label.route,
                status,
            })
            .inc();
    }

    /// The registry as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A failure reason from a fixed set: RFC 6749 5.2 codes as they are, any other provider code
/// as `rejected`, transient failures by their own short reason (`timeout`, `http_503`, ...).
fn failure_reason(err: &TokenError) -> String {
    const RFC6749_ERRORS: [&str; 6] = [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ];
    match err {
        TokenError::Rejected { error, .. } if RFC6749_ERRORS.contains(&error.as_str()) => {
            error.clone()
        }
        TokenError::Rejected { .. } => "rejected".into(),
        TokenError::Unavailable { reason, .. } => {
            let known = reason == "timeout"
                || reason == "network_error"
                || reason == "rate_limited"
                || (reason.len() == 8
                    && reason.starts_with("http_")
                    && reason[5..].bytes().all(|b| b.is_ascii_digit()));
            if known {
                reason.clone()
            } else {
                "unavailable".into()
            }
        }
        TokenError::InvalidResponse(_) => "invalid_response".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_calls_count_through_the_kept_series_as_through_the_families() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.proxied("crm", "2xx", 0.001);
        }
        metrics.proxied("crm", "5xx", 0.001);
        metrics.proxied("other", "2xx", 0.001);
        let text = metrics.render();
        for line in [
            r#"tether_proxy_requests_total{integration="crm",class="2xx"} 3"#,
            r#"tether_proxy_requests_total{integration="crm",class="5xx"} 1"#,
            r#"tether_proxy_requests_total{integration="other",class="2xx"} 1"#,
            r#"tether_proxy_upstream_duration_seconds_count{integration="crm"} 4"#,
            r#"tether_proxy_upstream_duration_seconds_count{integration="other"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains(r#"class="4xx""#), "{text}");
    }

    #[test]
    fn reasons_are_bounded() {
        let rejected = |error: &str| TokenError::Rejected {
            status: 400,
            error: error.into(),
            description: None,
        };
        let unavailable = |reason: &str| TokenError::Unavailable {
            reason: reason.into(),
            retry_after: None,
        };
        assert_eq!(failure_reason(&rejected("invalid_grant")), "invalid_grant");
        assert_eq!(failure_reason(&rejected("made up by provider")), "rejected");
        assert_eq!(failure_reason(&unavailable("http_503")), "http_503");
        assert_eq!(failure_reason(&unavailable("timeout")), "timeout");
        assert_eq!(failure_reason(&unavailable("http_5000000")), "unavailable");
    }

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        metrics.refresh_attempts.inc();
        metrics.refresh_failed(&TokenError::InvalidResponse("x".into()));
        metrics.webhook_attempt("delivered", 0.01);
        let text = metrics.render();
        assert!(text.contains("tether_refresh_attempts_total 1"), "{text}");
        assert!(
            text.contains(r#"tether_refresh_failures_total{reason="invalid_response"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tether_webhook_deliveries_total{outcome="delivered"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("tether_refresh_duration_seconds_bucket"),
            "{text}"
        );
    }
}
