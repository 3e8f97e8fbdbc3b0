//! RFC 9207 end to end: when an integration declares its authorization server's issuer, the
//! callback requires the same `iss` on the authorization response (success or error) and
//! redeems no code otherwise; without a declared issuer, `iss` is ignored. The seed emulator
//! plays a compliant server, one that predates RFC 9207, and one posing as another.

use reqwest::redirect::Policy;
use serde_json::{Map, Value, json};
use tether_emulators::seed_oauth::{Issuer, SeedOAuthConfig};
use url::Url;

use crate::helpers::*;

const DECLARED: &str = "https://seed.example/";

async fn app_with(declared: Option<&str>, sent: Issuer) -> TestApp {
    let mut crm = Map::new();
    if let Some(issuer) = declared {
        crm.insert("issuer".into(), json!(issuer));
    }
    spawn_app_with(AppOptions {
        seed: SeedOAuthConfig {
            issuer: sent,
            ..SeedOAuthConfig::default()
        },
        crm,
        ..AppOptions::default()
    })
    .await
}

/// A browser that stops at every redirect, so the provider's response can be inspected.
fn step_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Walks a flow to the provider's redirect back to Tether; `tweak` may alter the authorize
/// request first. Returns the callback URL as the provider sent it.
async fn callback_url(
    app: &TestApp,
    browser: &reqwest::Client,
    tweak: impl FnOnce(&mut Url),
) -> Url {
    let session = app.create_session("issuer-user", Some(RETURN_URL)).await;
    let start = browser
        .get(app.connect_start_url(&session, "crm"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "start redirects to the provider");
    let mut authorize = location(&start);
    tweak(&mut authorize);
    let provider = browser.get(authorize).send().await.unwrap();
    let callback = location(&provider);
    assert_eq!(callback.path(), "/oauth/callback");
    callback
}

fn iss_of(url: &Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "iss")
        .map(|(_, v)| v.into_owned())
}

/// The callback refuses with `issuer_mismatch`, stores nothing and never calls the token
/// endpoint.
async fn assert_refused(app: &TestApp, browser: &reqwest::Client, callback: Url) {
    let response = browser.get(callback).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("issuer_mismatch"), "{body}");
    assert!(body.contains("could not be trusted"), "{body}");
    assert_eq!(app.seed.control.token_calls(), 0, "no code was redeemed");
    assert_eq!(app.connection_count().await, 0);
}

#[tokio::test]
async fn a_declared_issuer_that_matches_connects() {
    let app = app_with(Some(DECLARED), Issuer::Value(DECLARED.into())).await;
    let browser = step_browser();
    let callback = callback_url(&app, &browser, |_| {}).await;
    assert_eq!(iss_of(&callback).as_deref(), Some(DECLARED));
    let done = browser.get(callback).send().await.unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done).path(), "/app/return");
    assert_eq!(app.seed.control.token_calls(), 1);
    assert_eq!(app.connection_count().await, 1);
}

#[tokio::test]
async fn a_declared_issuer_without_iss_is_refused_before_any_token_call() {
    let app = app_with(Some(DECLARED), Issuer::Omitted).await;
    let browser = step_browser();
    let callback = callback_url(&app, &browser, |_| {}).await;
    assert_eq!(iss_of(&callback), None);
    assert_refused(&app, &browser, callback).await;
}

#[tokio::test]
async fn another_issuer_is_refused_before_any_token_call() {
    let app = app_with(
        Some(DECLARED),
        Issuer::Value("https://evil.example/".into()),
    )
    .await;
    let browser = step_browser();
    let callback = callback_url(&app, &browser, |_| {}).await;
    assert_eq!(iss_of(&callback).as_deref(), Some("https://evil.example/"));
    assert_refused(&app, &browser, callback).await;
}

#[tokio::test]
async fn an_issuer_that_differs_only_by_a_trailing_slash_is_refused() {
    // RFC 9207 2.4: simple string comparison, no normalisation.
    let app = app_with(Some(DECLARED), Issuer::Value("https://seed.example".into())).await;
    let browser = step_browser();
    let callback = callback_url(&app, &browser, |_| {}).await;
    assert_refused(&app, &browser, callback).await;
}

#[tokio::test]
async fn an_error_response_from_another_issuer_is_refused_too() {
    let app = app_with(
        Some(DECLARED),
        Issuer::Value("https://evil.example/".into()),
    )
    .await;
    let browser = step_browser();
    // An unsupported response_type makes the emulator answer with `error=` (and its `iss`).
    let callback = callback_url(&app, &browser, |url| set_response_type(url, "token")).await;
    assert!(
        callback.query_pairs().any(|(k, _)| k == "error"),
        "{callback}"
    );
    assert_refused(&app, &browser, callback).await;
}

#[tokio::test]
async fn an_error_response_from_the_declared_issuer_is_the_providers_error() {
    let app = app_with(Some(DECLARED), Issuer::Value(DECLARED.into())).await;
    let browser = step_browser();
    let callback = callback_url(&app, &browser, |url| set_response_type(url, "token")).await;
    let response = browser.get(callback).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("provider_error"), "{body}");
    assert!(!body.contains("issuer_mismatch"), "{body}");
    assert_eq!(app.seed.control.token_calls(), 0);
}

#[tokio::test]
async fn without_a_declared_issuer_iss_is_ignored() {
    let app = app_with(None, Issuer::Value("https://other.example/".into())).await;
    let browser = step_browser();
    let callback = callback_url(&app, &browser, |_| {}).await;
    assert_eq!(iss_of(&callback).as_deref(), Some("https://other.example/"));
    let done = browser.get(callback).send().await.unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(app.connection_count().await, 1);

    // And a server that sends no `iss` at all connects as before.
    let app = app_with(None, Issuer::Omitted).await;
    let id = app.connect("no-iss").await;
    assert_eq!(
        app.get_connection(&id).await["status"],
        Value::from("active")
    );
}

fn set_response_type(url: &mut Url, value: &str) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "response_type" {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
}
