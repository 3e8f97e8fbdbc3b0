//! The proxy as a good API citizen, end to end against the seed emulator with a rate limit
//! that counts violations: a burst never goes over the provider's reported budget, safe calls
//! are retried on 503 (and unsafe ones are not), `Retry-After` in both forms is honoured and
//! capped, one connection's spent budget does not hold back another (but does hold back
//! another connection of the same provider account, where the provider limits per account),
//! and the operator's budgets answer 429 with `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tether_core::catalog::Catalog;
use tether_emulators::seed_oauth::{ApiFault, ApiRateLimit, RetryAfter, SeedAccount};
use tether_server::GatewayConfig;

use crate::helpers::*;

/// A gateway that waits at most `max_wait` for a provider budget, and backs off briefly.
async fn spawn(max_wait: Duration, crm: serde_json::Map<String, Value>) -> TestApp {
    spawn_app_with(AppOptions {
        crm,
        configure: Some(Arc::new(move |config: &mut GatewayConfig| {
            config.proxy_max_wait = max_wait;
            config.proxy_retry_base_delay = Duration::from_millis(10);
        })),
        ..AppOptions::default()
    })
    .await
}

fn retries(response: &reqwest::Response) -> u32 {
    response.headers()["tether-retries"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The value of `tether_proxy_rate_limit_events_total` for `event` on `crm`.
fn events(app: &TestApp, event: &str) -> u64 {
    let text = app.gateway.as_ref().unwrap().metrics_text();
    let wanted =
        format!("tether_proxy_rate_limit_events_total{{integration=\"crm\",event=\"{event}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .map_or(0, |n| n.trim().parse().unwrap())
}

async fn post_deal(app: &TestApp, id: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/v1/deals"))
        .json(&json!({"title": "Acme renewal"}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_burst_never_goes_over_the_providers_reported_limit() {
    let app = spawn(Duration::from_millis(1500), Default::default()).await;
    let id = app.connect("burst").await;
    app.seed.control.set_api_rate_limit(Some(ApiRateLimit {
        limit: 25,
        window: Duration::from_secs(1),
        per_organization: false,
    }));
    // The first answer reports the budget.
    let first = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["ratelimit-limit"], "25");

    let statuses: Vec<(u16, Option<u64>)> = futures_util::stream::iter(0..1000)
        .map(|_| async {
            let response = app.proxy_get(&id, "v1/deals").await;
            (response.status().as_u16(), retry_after(&response))
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    for (status, after) in &statuses {
        assert!(
            *status == 200 || (*status == 429 && after.is_some_and(|a| a >= 1)),
            "the app gets 2xx or 429 with Retry-After, not {status} ({after:?})"
        );
    }
    assert_eq!(
        app.seed.control.rate_limit_violations(),
        0,
        "no call went over the reported limit"
    );
    eprintln!(
        "burst of 1000: {ok} answered 200, {} refused with 429; {} waits, {} provider calls",
        statuses.len() - ok,
        events(&app, "wait"),
        app.seed.control.api_arrivals().len()
    );
    assert!(
        ok > 25,
        "calls waited for the next window instead of failing: {ok} ok"
    );
    assert!(events(&app, "wait") > 0);
    assert!(events(&app, "refused_provider") > 0);
    assert_eq!(events(&app, "provider_429"), 0);
    // The provider saw only what its budget allowed.
    let arrivals = app.seed.control.api_arrivals();
    assert!(arrivals.iter().all(|a| a.status == 200));
}

#[tokio::test]
async fn a_503_then_200_is_one_200_for_a_get_and_a_503_for_a_post() {
    let app = spawn(Duration::from_secs(5), Default::default()).await;
    let id = app.connect("flaky").await;
    let fault = ApiFault {
        status: 503,
        retry_after: None,
    };

    app.seed.control.queue_api_faults([fault.clone()]);
    let get = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(get.status(), 200);
    assert_eq!(retries(&get), 1);

    let before = app.seed.control.api_arrivals().len();
    app.seed.control.queue_api_faults([fault.clone()]);
    let post = post_deal(&app, &id, &[]).await;
    assert_eq!(
        post.status(),
        503,
        "a POST without an idempotency key is not repeated"
    );
    assert_eq!(retries(&post), 0);
    assert_eq!(app.seed.control.api_arrivals().len(), before + 1);

    // With an Idempotency-Key (forwarded to the provider), or asked for, it is.
    for headers in [
        [("idempotency-key", "deal-42")],
        [("tether-retry-non-idempotent", "true")],
    ] {
        app.seed.control.queue_api_faults([fault.clone()]);
        let post = post_deal(&app, &id, &headers).await;
        assert_eq!(post.status(), 201, "{headers:?}");
        assert_eq!(retries(&post), 1);
    }

    // The app may lower the retry count for one call, and a bad value is a 400.
    app.seed.control.queue_api_faults([fault.clone()]);
    let once = app
        .api(reqwest::Method::GET, &format!("v1/proxy/{id}/v1/deals"))
        .header("tether-retry-limit", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(once.status(), 503);
    assert_eq!(retries(&once), 0);
    let bad = app
        .api(reqwest::Method::GET, &format!("v1/proxy/{id}/v1/deals"))
        .header("tether-retry-limit", "many")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_retry_limit");
    assert!(events(&app, "retry") >= 3);
}

#[tokio::test]
async fn retry_after_in_both_forms_is_honoured_and_capped() {
    let app = spawn(Duration::from_secs(5), Default::default()).await;
    let id = app.connect("patient").await;
    for (after, at_least) in [
        (RetryAfter::Seconds(1), Duration::from_secs(1)),
        // An HTTP-date says whole seconds: two seconds ahead is at least one from now.
        (
            RetryAfter::DateIn(Duration::from_secs(2)),
            Duration::from_secs(1),
        ),
    ] {
        let before = app.seed.control.api_arrivals().len();
        app.seed.control.queue_api_faults([ApiFault {
            status: 503,
            retry_after: Some(after.clone()),
        }]);
        let response = app.proxy_get(&id, "v1/deals").await;
        assert_eq!(response.status(), 200, "{after:?}");
        assert_eq!(retries(&response), 1);
        let arrivals = app.seed.control.api_arrivals();
        let [first, second] = &arrivals[before..] else {
            panic!("two calls expected: {arrivals:?}");
        };
        assert!(
            second.at.duration_since(first.at) >= at_least,
            "{after:?}: the retry came {:?} after the 503",
            second.at.duration_since(first.at)
        );
    }

    // Longer than the proxy waits: the 429 goes back to the app with its Retry-After, and
    // the connection's next call is answered by Tether without calling the provider.
    app.seed.control.queue_api_faults([ApiFault {
        status: 429,
        retry_after: Some(RetryAfter::Seconds(3600)),
    }]);
    let throttled = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(retry_after(&throttled), Some(3600));
    assert_eq!(retries(&throttled), 0);
    let before = app.seed.control.api_arrivals().len();
    let held = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(held.status(), 429);
    assert!(retry_after(&held).is_some_and(|s| (3590..=3600).contains(&s)));
    assert_eq!(held.headers()["content-type"], "application/problem+json");
    let problem: Value = held.json().await.unwrap();
    assert_eq!(problem["code"], "provider_rate_limited");
    assert_eq!(
        app.seed.control.api_arrivals().len(),
        before,
        "the provider was not called"
    );
    assert_eq!(events(&app, "provider_429"), 1);
    assert_eq!(events(&app, "refused_provider"), 1);

    // The history says when the provider held the connection back (written after the
    // answer went back).
    let path = format!("v1/connections/{id}/events");
    tether_test_support::eventually(LIMIT, "a rate_limited history entry", async || {
        let history: Value = app
            .api(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "rate_limited")
            .map(|e| e["detail"].as_str().unwrap().to_owned())
    })
    .await;
}

#[tokio::test]
async fn one_connection_spending_its_budget_does_not_hold_back_another() {
    let app = spawn(Duration::from_secs(2), Default::default()).await;
    let spender = app.connect("spender").await;
    let other = app.connect("other").await;
    app.seed.control.set_api_rate_limit(Some(ApiRateLimit {
        limit: 5,
        window: Duration::from_secs(60),
        per_organization: false,
    }));
    for _ in 0..5 {
        assert_eq!(app.proxy_get(&spender, "v1/deals").await.status(), 200);
    }
    let spent = app.proxy_get(&spender, "v1/deals").await;
    assert_eq!(spent.status(), 429);
    assert!(retry_after(&spent).is_some_and(|s| s > 50));
    for _ in 0..5 {
        let response = app.proxy_get(&other, "v1/deals").await;
        assert_eq!(response.status(), 200);
        assert_eq!(retries(&response), 0);
    }
    assert_eq!(app.seed.control.rate_limit_violations(), 0);
    assert_eq!(events(&app, "wait"), 0, "nobody was held waiting");
}

/// The catalog's generic provider, and a copy of it whose limits are per provider account
/// (as HubSpot limits a portal and Salesforce an org).
fn per_account_catalog() -> Catalog {
    let generic = include_str!("../../../../providers/oauth2.toml");
    let per_account = generic
        .replace("id = \"oauth2\"", "id = \"oauth2-per-account\"")
        .replace("scope = \"connection\"", "scope = \"account\"");
    assert_ne!(generic, per_account);
    Catalog::from_files([
        ("providers/oauth2.toml", generic),
        ("providers/oauth2-per-account.toml", per_account.as_str()),
    ])
    .unwrap()
}

#[tokio::test]
async fn connections_of_one_account_share_its_budget_and_another_account_does_not() {
    let mut crm = serde_json::Map::new();
    crm.insert("provider".into(), json!("oauth2-per-account"));
    // The seed emulator's who-am-I call: how Tether learns each connection's account.
    crm.insert(
        "check".into(),
        json!({"path": "/v1/me", "account": {"user_id": "/id", "organization_id": "/company/id"}}),
    );
    let app = spawn_app_with(AppOptions {
        crm,
        catalog: Some(per_account_catalog()),
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.proxy_max_wait = Duration::from_secs(2);
        })),
        ..AppOptions::default()
    })
    .await;
    let user = |user_id, organization_id: &str, email: &str| SeedAccount {
        user_id,
        organization_id: organization_id.into(),
        email: email.into(),
    };
    app.seed
        .control
        .sign_in_as(user(1001, "org-1", "ada@example.com"));
    let ada = app.connect("ada").await;
    app.seed
        .control
        .sign_in_as(user(2002, "org-1", "grace@example.com"));
    let grace = app.connect("grace").await;
    app.seed
        .control
        .sign_in_as(user(3003, "org-2", "alan@example.com"));
    let alan = app.connect("alan").await;
    // The provider counts per organisation, whoever calls.
    app.seed.control.set_api_rate_limit(Some(ApiRateLimit {
        limit: 5,
        window: Duration::from_secs(60),
        per_organization: true,
    }));
    for _ in 0..5 {
        assert_eq!(app.proxy_get(&ada, "v1/deals").await.status(), 200);
    }
    // Ada spent org-1's budget: Grace's call is held back by Tether, the provider not called.
    let before = app.seed.control.api_arrivals().len();
    let held = app.proxy_get(&grace, "v1/deals").await;
    assert_eq!(held.status(), 429);
    assert!(
        retry_after(&held).is_some_and(|s| s > 50),
        "{:?}",
        retry_after(&held)
    );
    let problem: Value = held.json().await.unwrap();
    assert_eq!(problem["code"], "provider_rate_limited");
    assert_eq!(
        app.seed.control.api_arrivals().len(),
        before,
        "the provider was not called"
    );
    // Alan's organisation has a budget of its own.
    for _ in 0..5 {
        let response = app.proxy_get(&alan, "v1/deals").await;
        assert_eq!(response.status(), 200);
        assert_eq!(retries(&response), 0);
    }
    assert_eq!(app.seed.control.rate_limit_violations(), 0);
    assert_eq!(events(&app, "refused_provider"), 1);
}

#[tokio::test]
async fn the_operators_budgets_answer_429_with_retry_after() {
    let mut crm = serde_json::Map::new();
    crm.insert(
        "budget".into(),
        json!({"per_connection": 2, "per_integration": 3, "per_secs": 60}),
    );
    let app = spawn(Duration::from_secs(2), crm).await;
    let a = app.connect("budget-a").await;
    let b = app.connect("budget-b").await;
    let calls_before = app.seed.control.api_arrivals().len();
    for _ in 0..2 {
        assert_eq!(app.proxy_get(&a, "v1/deals").await.status(), 200);
    }
    let over = app.proxy_get(&a, "v1/deals").await;
    assert_eq!(over.status(), 429);
    assert!(retry_after(&over).is_some_and(|s| (1..=30).contains(&s)));
    let problem: Value = over.json().await.unwrap();
    assert_eq!(problem["code"], "budget_exceeded");
    // b has its own share, up to what is left of the integration's three.
    assert_eq!(app.proxy_get(&b, "v1/deals").await.status(), 200);
    let over = app.proxy_get(&b, "v1/deals").await;
    assert_eq!(over.status(), 429);
    assert_eq!(app.seed.control.api_arrivals().len(), calls_before + 3);
    assert_eq!(events(&app, "refused_budget"), 2);

    // A budget that makes no sense is refused when the integration is written.
    let bad = app
        .api(reqwest::Method::PUT, "v1/integrations/crm2")
        .json(&json!({
            "provider": "oauth2", "client_id": "c", "client_secret": "s",
            "authorization_url": "https://crm.example.com/oauth/authorize",
            "token_url": "https://crm.example.com/oauth/token",
            "api_base_url": "https://crm.example.com",
            "budget": {"per_connection": 0},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_integration");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("budget.per_connection")
    );
}

#[tokio::test]
async fn a_streamed_body_is_never_sent_twice() {
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.proxy_retry_base_delay = Duration::from_millis(10);
            // Bodies over 64 bytes stream through instead of being kept.
            config.proxy_retry_body_bytes = 64;
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("streamer").await;
    let long_title = "x".repeat(200);
    app.seed.control.queue_api_faults([ApiFault {
        status: 503,
        retry_after: None,
    }]);
    let before = app.seed.control.api_arrivals().len();
    let response = app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/v1/deals"))
        .header("idempotency-key", "deal-streamed")
        .json(&json!({"title": long_title}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        503,
        "the body is gone after the first attempt"
    );
    assert_eq!(retries(&response), 0);
    assert_eq!(app.seed.control.api_arrivals().len(), before + 1);
    // A kept one is retried (the same key, the same body).
    app.seed.control.queue_api_faults([ApiFault {
        status: 503,
        retry_after: None,
    }]);
    let response = post_deal(&app, &id, &[("idempotency-key", "deal-kept")]).await;
    assert_eq!(response.status(), 201);
    assert_eq!(retries(&response), 1);
}

#[tokio::test]
async fn a_failed_connection_is_retried_and_the_error_says_how_often() {
    // Nothing listens on this port: every attempt fails to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let mut crm = serde_json::Map::new();
    crm.insert("api_base_url".into(), json!(dead));
    let app = spawn(Duration::from_secs(2), crm).await;
    let id = app.connect("unreachable").await;
    let response = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(response.status(), 503);
    assert_eq!(retries(&response), 2, "the default [proxy] retries");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "provider_unavailable");
    // Not for a POST without an idempotency key.
    let post = post_deal(&app, &id, &[]).await;
    assert_eq!(post.status(), 503);
    assert_eq!(retries(&post), 0);
}
