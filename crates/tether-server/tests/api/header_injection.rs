//! Credential values that would split a header (CR/LF and other control characters) are
//! refused where they enter, whether the app imports them, the end user types them, or a
//! provider answers with them: a clear error, nothing stored, and never a connection whose
//! every later call fails.

use serde_json::{Value, json};
use tether_emulators::redtail::{self, RedtailConfig, RedtailUser};

use crate::helpers::*;
use crate::providers;

const INJECTED: &str = "SECRETPART\r\nX-Injected: yes";

async fn import(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .api(reqwest::Method::POST, "v1/connections")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A 400 `invalid_credentials` naming `field`, never echoing the value.
fn assert_refused(status: u16, problem: &Value, field: &str) {
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "invalid_credentials", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(field), "{problem}");
    assert!(!problem.to_string().contains("SECRETPART"), "{problem}");
}

#[tokio::test]
async fn imported_oauth_tokens_with_line_breaks_are_refused() {
    let app = spawn_app().await;
    for (field, credentials) in [
        ("access_token", json!({"access_token": INJECTED})),
        (
            "refresh_token",
            json!({"access_token": "a", "refresh_token": INJECTED}),
        ),
        (
            "token_type",
            json!({"access_token": "a", "token_type": "Bearer\nX: y"}),
        ),
    ] {
        let (status, problem) = import(
            &app,
            json!({"integration": "crm", "end_user": {"id": "u"}, "credentials": credentials}),
        )
        .await;
        assert_refused(status, &problem, field);
    }
    assert_eq!(app.connection_count().await, 0);
}

#[tokio::test]
async fn api_keys_with_line_breaks_are_refused_before_any_provider_call() {
    let p = providers::spawn().await;
    let (status, problem) = import(
        &p.app,
        json!({"integration": "salesmate", "end_user": {"id": "u"},
               "credentials": {"access_key": INJECTED}, "metadata": {"link_name": "acme"}}),
    )
    .await;
    assert_refused(status, &problem, "access_key");

    let session = p.app.create_session("u", Some(RETURN_URL)).await;
    let form = p.app.connect_start_url(&session, "salesmate");
    let response = p
        .app
        .http
        .post(form)
        .form(&[("access_key", INJECTED), ("link_name", "acme")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"id="error-access_key""#), "{page}");
    assert!(
        !page.contains("SECRETPART"),
        "the page does not echo the key"
    );

    assert_eq!(
        p.salesmate.control.calls(),
        0,
        "the provider was never asked"
    );
    assert_eq!(p.app.connection_count().await, 0);
}

#[tokio::test]
async fn a_provider_answer_with_a_line_break_in_the_key_stores_nothing() {
    // A Redtail whose exchange answers a user key that would split the UserKeyAuth header.
    let redtail = redtail::spawn(RedtailConfig {
        users: vec![RedtailUser {
            username: "demo".into(),
            password: "demo-password".into(),
            user_key: INJECTED.into(),
            database_id: 1,
            user_id: 2,
        }],
        ..RedtailConfig::default()
    })
    .await
    .unwrap();
    let api_base = redtail.base_url().join("api/public/v1").unwrap();
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "redtail".into(),
            json!({"provider": "redtail", "api_key": RedtailConfig::default().api_key,
                   "api_base_url": api_base.as_str()}),
        )],
        ..AppOptions::default()
    })
    .await;
    let session = app.create_session("u", Some(RETURN_URL)).await;
    let form = app.connect_start_url(&session, "redtail");
    let response = app
        .http
        .post(form)
        .form(&[("username", "demo"), ("password", "demo-password")])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let page = response.text().await.unwrap();
    assert!(!status.is_redirection() && !status.is_success(), "{status}");
    assert!(
        page.contains("Reference"),
        "a page with a reference: {page}"
    );
    assert!(!page.contains("SECRETPART"), "{page}");
    assert!(redtail.control.calls() >= 1, "the exchange was made");
    assert_eq!(app.connection_count().await, 0);
}
