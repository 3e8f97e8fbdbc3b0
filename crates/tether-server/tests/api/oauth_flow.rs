//! The OAuth connect flow end to end, and every way its callback can be abused or fail.

use std::sync::Arc;
use std::time::Duration;

use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tether_emulators::seed_oauth::{SeedOAuthConfig, TokenFault};
use url::Url;

use crate::helpers::*;

/// A browser that stops at every redirect, so each hop can be inspected or replayed.
fn step_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Starts a flow and walks it to the provider's redirect back; returns the callback URL.
async fn until_callback(app: &TestApp, browser: &reqwest::Client, end_user: &str) -> Url {
    let session = app.create_session(end_user, Some(RETURN_URL)).await;
    let start = browser
        .get(app.connect_start_url(&session, "crm"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "start redirects to the provider");
    assert!(start.headers().get("set-cookie").is_some());
    let authorize = location(&start);
    let params: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert!(
        params["state"].len() >= 43,
        "state carries at least 128 bits"
    );
    let provider = browser.get(authorize).send().await.unwrap();
    location(&provider)
}

async fn page_text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn full_flow_connects_and_the_api_lists_it() {
    let app = spawn_app().await;
    let id = app.connect("user-1").await;
    let connection = app.get_connection(&id).await;
    assert_eq!(connection["status"], "active");
    assert_eq!(connection["integration"], "crm");
    assert_eq!(connection["end_user"]["id"], "user-1");
    assert_eq!(connection["end_user"]["email"], "user@example.com");
    assert!(connection["expires_at"].is_string());
    let listed: Value = app
        .api(
            reqwest::Method::GET,
            "v1/connections?end_user_id=user-1&integration=crm&status=active",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["connections"][0]["id"], id.as_str());
    let text = listed.to_string();
    assert!(!text.contains("access_token") && !text.contains("refresh_token"));
    let last = app.seed.control.last_token_request().unwrap();
    assert!(
        last.body_fields.iter().any(|f| f == "code_verifier"),
        "PKCE verifier sent"
    );
}

#[tokio::test]
async fn tokens_are_sealed_in_the_database_file() {
    let app = spawn_app().await;
    let id = app.connect("sealed").await;
    let creds = app.credentials_json(&id, false).await;
    let token = creds["access_token"].as_str().unwrap().to_owned();
    // The database file and its WAL, read while the gateway still has them open.
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let found = bytes.windows(token.len()).any(|w| w == token.as_bytes());
        assert!(!found, "the access token appears in plaintext on disk");
    }
}

#[tokio::test]
async fn replayed_state_is_rejected_and_stores_nothing_more() {
    let app = spawn_app().await;
    let browser = step_browser();
    let callback = until_callback(&app, &browser, "replay").await;
    let first = browser.get(callback.clone()).send().await.unwrap();
    assert_eq!(first.status(), 303);
    assert_eq!(location(&first).path(), "/app/return");
    let (status, body) = page_text(browser.get(callback).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body.contains("already used"), "{body}");
    assert_eq!(app.connection_count().await, 1);
}

#[tokio::test]
async fn forged_state_is_rejected() {
    let app = spawn_app().await;
    let browser = step_browser();
    let mut url = app.url("oauth/callback");
    url.query_pairs_mut()
        .append_pair("state", "forged-state-value")
        .append_pair("code", "whatever");
    let (status, body) = page_text(browser.get(url).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body.contains("<h1>"), "a readable page");
    let (status, _) = page_text(browser.get(app.url("oauth/callback")).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(app.connection_count().await, 0);
    assert_eq!(app.seed.control.token_calls(), 0);
}

#[tokio::test]
async fn expired_state_is_rejected() {
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(|c| c.flow_ttl = Duration::ZERO)),
        ..AppOptions::default()
    })
    .await;
    let browser = step_browser();
    let callback = until_callback(&app, &browser, "late").await;
    let (status, body) = page_text(browser.get(callback).send().await.unwrap()).await;
    assert_eq!(status, 410);
    assert!(body.contains("expired"), "{body}");
    assert_eq!(app.connection_count().await, 0);
    assert_eq!(app.seed.control.token_calls(), 0);
}

#[tokio::test]
async fn state_from_another_browser_is_rejected_without_burning_it() {
    let app = spawn_app().await;
    let victim = step_browser();
    let callback = until_callback(&app, &victim, "victim").await;
    let attacker = step_browser();
    let (status, body) = page_text(attacker.get(callback.clone()).send().await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body.contains("started elsewhere"), "{body}");
    assert_eq!(app.connection_count().await, 0);
    // The rightful browser can still finish.
    let done = victim.get(callback).send().await.unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(app.connection_count().await, 1);
}

#[tokio::test]
async fn access_denied_at_the_provider_shows_a_clear_page() {
    let app = spawn_app().await;
    let browser = step_browser();
    let callback = until_callback(&app, &browser, "denier").await;
    let state = callback
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut denied = app.url("oauth/callback");
    denied
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("state", &state);
    let (status, body) = page_text(browser.get(denied).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(body.contains("Access was not granted"), "{body}");
    assert_eq!(app.connection_count().await, 0);
    assert_eq!(app.seed.control.token_calls(), 0);
}

#[tokio::test]
async fn token_endpoint_failures_store_nothing() {
    let app = spawn_app().await;
    let faults = [
        TokenFault::InvalidClient,
        TokenFault::ServerError,
        TokenFault::HtmlPage,
        TokenFault::OkWithoutAccessToken,
        TokenFault::HugeBody,
        TokenFault::Redirect,
    ];
    for (n, fault) in faults.into_iter().enumerate() {
        let browser = step_browser();
        let callback = until_callback(&app, &browser, &format!("fault-{n}")).await;
        app.seed.control.set_token_fault(Some(fault.clone()));
        let response = browser.get(callback).send().await.unwrap();
        app.seed.control.set_token_fault(None);
        let (status, body) = page_text(response).await;
        assert_eq!(status, 502, "{fault:?}");
        assert!(body.contains("Reference"), "{fault:?}: {body}");
        assert_eq!(
            app.connection_count().await,
            0,
            "{fault:?} stored a connection"
        );
    }
}

#[tokio::test]
async fn a_restart_between_start_and_callback_loses_nothing() {
    let mut app = spawn_app().await;
    let browser = step_browser();
    let callback = until_callback(&app, &browser, "restart").await;
    app.restart().await;
    let done = browser.get(callback).send().await.unwrap();
    assert_eq!(done.status(), 303);
    let target = location(&done);
    let id = target
        .query_pairs()
        .find(|(k, _)| k == "connection_id")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(app.get_connection(&id).await["status"], "active");
}

#[tokio::test]
async fn client_secret_post_json_requests_and_form_responses() {
    let app = spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            token_response_form: true,
            expires_in_as_string: true,
            ..SeedOAuthConfig::default()
        },
        crm: json!({"client_auth": "client_secret_post", "token_request_format": "json"})
            .as_object()
            .unwrap()
            .clone(),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("post-user").await;
    let last = app.seed.control.last_token_request().unwrap();
    assert!(last.content_type.unwrap().starts_with("application/json"));
    assert_eq!(
        last.client_auth,
        tether_emulators::seed_oauth::ClientAuthMethod::Body
    );
    assert!(app.get_connection(&id).await["expires_at"].is_string());
}

#[tokio::test]
async fn reconnect_keeps_the_connection_id() {
    let app = spawn_app().await;
    let first = app.connect("again").await;
    let second = app.connect("again").await;
    assert_eq!(first, second);
    assert_eq!(app.connection_count().await, 1);
}

#[tokio::test]
async fn connect_page_lists_integrations_with_security_headers() {
    let app = spawn_app().await;
    let session = app.create_session("page-user", None).await;
    let url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors http://app.localhost:9")
    );
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let body = response.text().await.unwrap();
    assert!(body.contains("Connect to OAuth 2.0"), "{body}");
    // An unknown or missing session is a readable page, not JSON.
    let response = app
        .http
        .get(app.url("connect?session=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 410);
    assert!(response.text().await.unwrap().contains("expired"));
}

#[tokio::test]
async fn connect_session_api_errors_are_problem_json() {
    let app = spawn_app().await;
    let unauthenticated = app
        .http
        .post(app.url("v1/connect/sessions"))
        .json(&json!({"end_user": {"id": "u"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let cases = [
        (
            json!({"end_user": {"id": "u"}, "return_url": "https://evil.example/x"}),
            "return_url_not_allowed",
        ),
        (
            json!({"end_user": {"id": "u"}, "integrations": ["nope"]}),
            "integration_not_found",
        ),
        (json!({"end_user": {"id": ""}}), "invalid_end_user"),
        (json!({"end_user": {}}), "invalid_body"),
        (
            json!({"end_user": {"id": "u"}, "surprise": 1}),
            "invalid_body",
        ),
    ];
    for (body, code) in cases {
        let response = app
            .api(reqwest::Method::POST, "v1/connect/sessions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{body}");
        assert_eq!(problem["status"], 400);
    }
}
