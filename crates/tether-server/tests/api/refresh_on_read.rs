//! Refresh on read: near expiry, on demand, with rotation, without a new refresh token, and
//! what a refused or failing refresh does to the connection.

use std::time::Duration;

use serde_json::Value;
use tether_emulators::seed_oauth::{SeedOAuthConfig, TokenFault};

use tether_test_support::eventually;

use crate::helpers::*;

async fn credentials(app: &TestApp, id: &str, force: bool) -> reqwest::Response {
    let mut path = format!("v1/connections/{id}/credentials");
    if force {
        path.push_str("?force_refresh=true");
    }
    app.api(reqwest::Method::GET, &path).send().await.unwrap()
}

async fn token_of(app: &TestApp, id: &str, force: bool) -> String {
    let body = app.credentials_json(id, force).await;
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn fresh_tokens_are_served_without_refresh() {
    let app = spawn_app().await;
    let id = app.connect("fresh").await;
    let response = credentials(&app, &id, false).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["auth_mode"], "oauth2");
    assert_eq!(body["token_type"], "Bearer");
    let expected = format!("Bearer {}", body["access_token"].as_str().unwrap());
    assert_eq!(body["headers"]["Authorization"], expected.as_str());
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 0);
}

#[tokio::test]
async fn a_token_expiring_within_the_margin_is_refreshed_on_read() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            access_token_ttl: Duration::from_secs(60),
            ..SeedOAuthConfig::default()
        },
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("expiring").await;
    let first = token_of(&app, &id, false).await;
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
    app.seed
        .control
        .set_access_token_ttl(Duration::from_secs(3600));
    let second = token_of(&app, &id, false).await;
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 2);
    let third = token_of(&app, &id, false).await;
    assert_eq!(second, third, "a fresh token is reused");
    assert_ne!(first, second);
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 2);
}

#[tokio::test]
async fn force_refresh_with_rotation_never_reuses_a_refresh_token() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            rotate_refresh_tokens: true,
            ..SeedOAuthConfig::default()
        },
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("rotating").await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        assert!(seen.insert(token_of(&app, &id, true).await));
    }
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 5);
    assert_eq!(app.seed.control.reuse_events(), 0);
    let response = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            issue_refresh_token_on_refresh: false,
            ..SeedOAuthConfig::default()
        },
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("keeper").await;
    let a = token_of(&app, &id, true).await;
    let b = token_of(&app, &id, true).await;
    assert_ne!(a, b);
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 2);
}

#[tokio::test]
async fn invalid_grant_marks_needs_reauth_and_the_proxy_stops_calling() {
    let app = spawn_app().await;
    let id = app.connect("revoked").await;
    app.seed
        .control
        .set_token_fault(Some(TokenFault::InvalidGrant));
    let response = credentials(&app, &id, true).await;
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "needs_reauth");
    assert_eq!(app.get_connection(&id).await["status"], "needs_reauth");
    let before = app.seed.control.api_calls();
    let response = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(response.status(), 409);
    assert_eq!(app.seed.control.api_calls(), before);
    // Reconnecting restores it under the same id.
    app.seed.control.set_token_fault(None);
    assert_eq!(app.connect("revoked").await, id);
    assert_eq!(app.get_connection(&id).await["status"], "active");
}

#[tokio::test]
async fn a_provider_outage_keeps_serving_a_valid_token() {
    let app = spawn_app().await;
    let id = app.connect("outage").await;
    let before = token_of(&app, &id, false).await;
    for fault in [
        TokenFault::ServerError,
        TokenFault::HtmlPage,
        TokenFault::TooManyRequests {
            retry_after_secs: 1,
        },
    ] {
        app.seed.control.set_token_fault(Some(fault));
        assert_eq!(token_of(&app, &id, true).await, before);
        assert_eq!(app.get_connection(&id).await["status"], "active");
    }
    app.seed.control.set_token_fault(None);
    assert_ne!(token_of(&app, &id, true).await, before);
}

#[tokio::test]
async fn delete_revokes_at_the_provider_then_forgets() {
    let app = spawn_app().await;
    let id = app.connect("leaving").await;
    let response = app
        .api(reqwest::Method::DELETE, &format!("v1/connections/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.seed.control.revoke_calls(), 1);
    let response = app
        .api(reqwest::Method::GET, &format!("v1/connections/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = credentials(&app, &id, false).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_gateway_refreshes_and_deletes_for_embedding_apps_and_the_cli() {
    let app = spawn_app().await;
    let id = app.connect("library").await;
    let gateway = app.gateway.clone().unwrap();
    let view = serde_json::to_value(gateway.refresh_connection(&id).await.unwrap()).unwrap();
    assert_eq!(view["status"], "active");
    assert!(
        !view.to_string().contains("token"),
        "no secrets in the view: {view}"
    );
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
    // The library reads credentials as the API does.
    let credentials = gateway.credentials(&id).await.unwrap();
    assert_eq!(credentials.connection_id, id);
    assert_eq!(
        credentials.headers["Authorization"],
        ["Bearer ", credentials.access_token.as_deref().unwrap()].concat()
    );
    let missing = gateway
        .refresh_connection("conn_0123456789abcdef0123456789abcdef")
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("no connection"), "{missing}");
    gateway.delete_connection(&id).await.unwrap();
    assert_eq!(app.seed.control.revoke_calls(), 1);
    assert_eq!(app.connection_count().await, 0);
    assert!(gateway.delete_connection(&id).await.is_err());
}

/// A refresh that the provider answers only after the connection was deleted: the delete
/// revoked the refresh token it had (rotated out by then, and this provider revokes single
/// tokens, not grants), so the new tokens would stay live at the provider, held by nobody.
/// They are revoked once the refresh finds the connection gone.
#[tokio::test]
async fn tokens_a_refresh_got_for_a_connection_deleted_meanwhile_are_revoked() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            rotate_refresh_tokens: true,
            revoke_single_tokens: true,
            ..SeedOAuthConfig::default()
        },
        ..AppOptions::default()
    })
    .await;
    let control = app.seed.control.clone();
    let id = app.connect("racing").await;
    assert_eq!(control.live_refresh_tokens(), 1);

    // The provider issues the new tokens and holds its answer.
    control.hold_token_responses(true);
    let request = app.api(
        reqwest::Method::GET,
        &format!("v1/connections/{id}/credentials?force_refresh=true"),
    );
    let refreshing = tokio::spawn(async move { request.send().await.unwrap().status() });
    eventually(LIMIT, "a refresh at the provider", || async {
        control.held_token_responses() > 0
    })
    .await;
    assert_eq!(control.live_refresh_tokens(), 1, "the new one, rotated in");

    // Meanwhile the app deletes the connection.
    let response = app
        .api(reqwest::Method::DELETE, &format!("v1/connections/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(control.revoke_calls(), 1);
    assert_eq!(
        control.live_refresh_tokens(),
        1,
        "the delete revoked the rotated-out token only"
    );

    // The provider answers; the refresh finds the connection gone.
    control.hold_token_responses(false);
    assert_eq!(refreshing.await.unwrap(), 404);
    assert_eq!(control.revoke_calls(), 2);
    assert_eq!(control.live_refresh_tokens(), 0, "nothing is left live");
    assert_eq!(app.connection_count().await, 0);
}
