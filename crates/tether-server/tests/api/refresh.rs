//! Refresh that never loses a connection: single flight under a burst, rotation under
//! concurrency, outages that back off and recover, `invalid_grant` told to the app exactly
//! once, and the background refresher.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tether_emulators::seed_oauth::{SeedOAuthConfig, TokenFault};
use tether_server::GatewayConfig;
use tokio::sync::watch;

use tether_test_support::eventually;

use crate::helpers::*;
use crate::webhooks::{deliveries, spawn_with_receiver, wait_until};

/// Tokens that live 60 s: always inside the 5 min refresh margin, so every read wants one.
fn short_lived() -> SeedOAuthConfig {
    SeedOAuthConfig {
        access_token_ttl: Duration::from_secs(60),
        ..SeedOAuthConfig::default()
    }
}

/// Clears the token endpoint's fault and waits (bounded) until a read has refreshed the
/// connection, i.e. its back-off ended and `last_error` is gone; proxied reads keep working.
async fn recovers(app: &TestApp, id: &str, after: &str) {
    app.seed.control.set_token_fault(None);
    eventually(LIMIT, &format!("a refresh after {after}"), || async {
        assert_eq!(app.proxy_get(id, "v1/deals").await.status(), 200);
        app.get_connection(id).await["last_error"].is_null()
    })
    .await;
}

#[tokio::test]
async fn two_hundred_calls_after_expiry_make_one_refresh() {
    let app = spawn_app_with(AppOptions {
        seed: short_lived(),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("burst").await;
    // The provider now rejects the old token, and the next one lives long.
    app.seed.control.expire_access_tokens();
    app.seed
        .control
        .set_access_token_ttl(Duration::from_secs(3600));
    let app = Arc::new(app);
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let app = app.clone();
            let id = id.clone();
            tokio::spawn(async move { app.proxy_get(&id, "v1/deals").await.status() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
}

#[tokio::test]
async fn rotation_under_concurrency_never_reuses_a_refresh_token() {
    const TASKS: usize = 20;
    const CALLS_PER_TASK: usize = 50;
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            rotate_refresh_tokens: true,
            ..SeedOAuthConfig::default()
        },
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("rotating-storm").await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let app = app.clone();
            let id = id.clone();
            tokio::spawn(async move {
                for _ in 0..CALLS_PER_TASK {
                    app.credentials_json(&id, true).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(app.seed.control.reuse_events(), 0);
    // Concurrent forced refreshes share one refresh, but each task's calls are sequential.
    let refreshes = app.seed.control.token_calls_by_grant("refresh_token");
    assert!(refreshes >= CALLS_PER_TASK as u64, "{refreshes} refreshes");
    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    assert_eq!(app.get_connection(&id).await["status"], "active");
}

#[tokio::test]
async fn an_outage_backs_off_keeps_the_connection_and_recovers() {
    let app = spawn_app_with(AppOptions {
        seed: short_lived(),
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.refresher.backoff_base = Duration::from_secs(1);
            config.refresher.backoff_max = Duration::from_secs(1);
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("outage-reads").await;
    for fault in [
        TokenFault::ServerError,
        TokenFault::HtmlPage,
        TokenFault::TooManyRequests {
            retry_after_secs: 1,
        },
    ] {
        app.seed.control.set_token_fault(Some(fault.clone()));
        let before = app.seed.control.token_calls_by_grant("refresh_token");
        // Reads during the outage are served with the still valid token, and back-off keeps
        // them from hammering the token endpoint.
        for _ in 0..10 {
            assert_eq!(
                app.proxy_get(&id, "v1/deals").await.status(),
                200,
                "{fault:?}"
            );
        }
        let during = app.seed.control.token_calls_by_grant("refresh_token") - before;
        assert!(
            (1..=3).contains(&during),
            "{during} token calls for {fault:?}"
        );
        let connection = app.get_connection(&id).await;
        assert_eq!(connection["status"], "active");
        assert!(connection["last_error"].is_string(), "{connection}");

        // The provider recovers: once the back-off ends a read refreshes.
        recovers(&app, &id, &format!("{fault:?}")).await;
    }
}

#[tokio::test]
async fn invalid_grant_marks_needs_reauth_and_tells_the_app_once() {
    let (app, receiver, _stop) = spawn_with_receiver(AppOptions {
        seed: short_lived(),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("refused").await;
    app.seed
        .control
        .set_token_fault(Some(TokenFault::InvalidGrant));
    let app = Arc::new(app);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let response = app.proxy_get(&id, "v1/deals").await;
                let status = response.status();
                let content_type = response.headers()["content-type"].clone();
                let problem: Value = response.json().await.unwrap();
                (status, content_type, problem)
            })
        })
        .collect();
    for call in calls {
        let (status, content_type, problem) = call.await.unwrap();
        assert_eq!(status, 409);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["code"], "needs_reauth");
    }
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["status"], "needs_reauth");
    assert_eq!(connection["last_error"], "invalid_grant");

    // The proxy answers without calling the provider.
    let api_calls = app.seed.control.api_calls();
    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 409);
    assert_eq!(app.seed.control.api_calls(), api_calls);

    wait_until(&receiver, "refresh_failed", |events| {
        events
            .iter()
            .any(|e| e.body["type"] == "connection.refresh_failed")
    })
    .await;
    let failed: Vec<Value> = deliveries(&app, &format!("?connection_id={id}"))
        .await
        .into_iter()
        .filter(|d| d["type"] == "connection.refresh_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let body = &failed[0]["payload"];
    assert_eq!(body["reason"], "invalid_grant");
    assert_eq!(body["status"], "needs_reauth");
    assert_eq!(body["end_user_id"], "refused");
}

#[tokio::test]
async fn the_background_refresher_refreshes_ahead_of_expiry() {
    let app = spawn_app_with(AppOptions {
        // Expires within the 10 min window, but outside the 5 min read margin.
        seed: SeedOAuthConfig {
            access_token_ttl: Duration::from_secs(8 * 60),
            ..SeedOAuthConfig::default()
        },
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.refresher.interval = Duration::from_millis(100);
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("ahead").await;
    app.seed
        .control
        .set_access_token_ttl(Duration::from_secs(3600));
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);

    let (stop, rx) = watch::channel(false);
    let handles = app.gateway.as_ref().unwrap().spawn_background(rx);
    // The token call is counted before the new token set is written: wait for the write.
    eventually(LIMIT, "a background refresh, stored", || async {
        let Some(expires_at) = app.get_connection(&id).await["expires_at"]
            .as_str()
            .map(str::to_owned)
        else {
            return false;
        };
        let expires_at = time::OffsetDateTime::parse(
            &expires_at,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        expires_at - time::OffsetDateTime::now_utc() > time::Duration::minutes(30)
    })
    .await;
    assert!(app.seed.control.token_calls_by_grant("refresh_token") > 0);

    stop.send(true).unwrap();
    for handle in handles {
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("background tasks stop on shutdown")
            .unwrap();
    }
    // Refreshed once: the new token is outside the window.
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
}

#[tokio::test]
async fn a_token_endpoint_slower_than_the_timeout_is_an_outage_not_a_lost_connection() {
    let app = spawn_app_with(AppOptions {
        seed: short_lived(),
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.outbound.request_timeout = Duration::from_millis(300);
            config.refresher.backoff_base = Duration::from_secs(1);
            config.refresher.backoff_max = Duration::from_secs(1);
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("slow-provider").await;
    app.seed
        .control
        .set_token_fault(Some(TokenFault::Delay(Duration::from_secs(1))));

    // Every read wants a refresh (the token is inside the margin), the refresh times out,
    // and the still valid token is served; back-off keeps reads from waiting on each try.
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "reads waited on the slow provider: {:?}",
        started.elapsed()
    );
    let tries = app.seed.control.token_calls_by_grant("refresh_token");
    assert!((1..=3).contains(&tries), "{tries} token calls");
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["status"], "active");
    assert!(connection["last_error"].is_string(), "{connection}");

    // The provider answers in time again: once the back-off ends a read refreshes.
    recovers(&app, &id, "the timeouts").await;
    assert_eq!(app.get_connection(&id).await["status"], "active");
}

#[tokio::test]
async fn a_lease_held_elsewhere_does_not_stall_reads_of_a_valid_token() {
    use tether_store::Store as _;

    let app = spawn_app_with(AppOptions {
        seed: short_lived(),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("leased").await;
    // Another instance (or one that was killed mid-refresh) holds the lease for 30 s.
    let store = app.gateway.as_ref().unwrap().store();
    let now = tether_core::unix_time::now();
    assert!(
        store
            .try_acquire_refresh_lease(&id, "inst_elsewhere", now + 30, now)
            .await
            .unwrap()
    );
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "reads waited for the lease: {:?}",
        started.elapsed()
    );
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);

    // Once the holder lets go, the next read refreshes.
    store
        .release_refresh_lease(&id, "inst_elsewhere")
        .await
        .unwrap();
    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
}

#[tokio::test]
async fn a_huge_retry_after_backs_off_without_overflowing() {
    let app = spawn_app_with(AppOptions {
        seed: short_lived(),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("huge-retry-after").await;
    app.seed
        .control
        .set_token_fault(Some(TokenFault::TooManyRequests {
            retry_after_secs: u64::MAX,
        }));
    // The provider's wait is past any clock: the still valid token is served all the same,
    // and the failure is recorded as a back-off.
    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["status"], "active");
    assert!(connection["last_error"].is_string(), "{connection}");
}
