//! The Connect pages' headers and markup, checked over HTTP: the CSP's nonces and sources,
//! branding from configuration, the popup result page, and `Secure` cookies on https. What a
//! browser does with them is tested in a real browser by `e2e/`.

use std::sync::Arc;

use tether_server::GatewayConfig;
use url::Url;

use crate::helpers::{AppOptions, Browser, spawn_app, spawn_app_with};

/// The value of `nonce-...` in a CSP directive.
fn csp_nonce(csp: &str, directive: &str) -> String {
    let part = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with(directive))
        .unwrap_or_else(|| panic!("no {directive} in {csp}"));
    part.split('\'')
        .find_map(|s| s.strip_prefix("nonce-"))
        .unwrap_or_else(|| panic!("no nonce in {part}"))
        .to_owned()
}

fn directive<'a>(csp: &'a str, name: &str) -> &'a str {
    csp.split(';')
        .map(str::trim)
        .find(|d| d.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {csp}"))
}

#[tokio::test]
async fn every_page_has_a_fresh_nonce_used_by_its_own_script_and_style() {
    let app = spawn_app().await;
    let session = app.create_session("nonce-user", None).await;
    let url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = app.http.get(url.clone()).send().await.unwrap();
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body = response.text().await.unwrap();
        let nonce = csp_nonce(&csp, "script-src");
        assert_eq!(nonce, csp_nonce(&csp, "style-src"));
        assert!(nonce.len() >= 32, "{nonce}");
        let attr = ["nonce=\"", &nonce, "\""].concat();
        assert_eq!(
            body.matches("<script").count(),
            body.matches(&["<script ", &attr].concat()).count(),
            "every script carries the nonce"
        );
        assert!(body.contains(&["<style ", &attr].concat()));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(directive(&csp, "img-src"), "img-src 'none'");
        assert_eq!(directive(&csp, "base-uri"), "base-uri 'none'");
        // The form's redirect to the return URL is checked against form-action by Chromium.
        assert_eq!(
            directive(&csp, "form-action"),
            "form-action 'self' http://app.localhost:9"
        );
        seen.push(nonce);
    }
    assert_ne!(seen[0], seen[1], "a nonce is never reused");
}

#[tokio::test]
async fn branding_comes_from_configuration() {
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.app_name = "Acme <Sales>".into();
            config.set_accent_color("#FC0").unwrap();
            config
                .set_logo_url("https://cdn.acme.example/brand/logo.svg")
                .unwrap();
        })),
        ..AppOptions::default()
    })
    .await;
    let session = app.create_session("brand-user", None).await;
    let url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    let response = app.http.get(url).send().await.unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        directive(&csp, "img-src"),
        "img-src https://cdn.acme.example"
    );
    let body = response.text().await.unwrap();
    assert!(
        body.contains("Acme &") && !body.contains("<Sales>"),
        "the name is escaped"
    );
    assert!(body.contains("<img src=\"https://cdn.acme.example/brand/logo.svg\""));
    assert!(body.contains("--accent: #fc0;"));
    // A pale accent gets dark text on it and a dark focus ring (contrast).
    assert!(body.contains("--accent-ink: #111827;"), "{body}");
    assert!(body.contains("--focus: #111827;"));
}

#[test]
fn branding_values_are_checked() {
    let mut config = GatewayConfig::new(Url::parse("http://127.0.0.1:3003/").unwrap());
    for bad in ["red", "#12345", "2563eb", "#2563eb;}", "#ggg", ""] {
        assert!(config.set_accent_color(bad).is_err(), "{bad}");
    }
    assert_eq!(config.accent_color(), "#2563eb");
    config.set_accent_color("#0F766E").unwrap();
    assert_eq!(config.accent_color(), "#0f766e");
    for bad in [
        "http://cdn.example.com/logo.png",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "https://user:pw@cdn.example.com/logo.png",
        "/logo.png",
    ] {
        assert!(config.set_logo_url(bad).is_err(), "{bad}");
    }
    for good in [
        "https://cdn.example.com/logo.png",
        "http://127.0.0.1:3000/logo.svg",
        "http://localhost:3000/logo.svg",
        "http://[::1]:3000/logo.svg",
    ] {
        config.set_logo_url(good).unwrap();
    }
}

#[tokio::test]
async fn popup_result_posts_only_to_allowed_origins_and_does_not_redirect() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let session = app
        .create_session("popup-user", Some(crate::helpers::RETURN_URL))
        .await;
    let mut start = app.connect_start_url(&session, "crm");
    start.query_pairs_mut().append_pair("display", "popup");
    let response = browser.get(start).await;
    assert_eq!(response.status(), 200, "a page, not the return URL");
    let body = response.text().await.unwrap();
    assert!(body.contains(r#""type":"tether:connected""#), "{body}");
    assert!(body.contains(r#""integration":"crm""#));
    assert!(body.contains(r#"var origins = ["http://app.localhost:9"];"#));
    assert!(body.contains("window.opener.postMessage(message, origin)"));
}

#[tokio::test]
async fn browser_cookie_is_secure_when_the_public_url_is_https() {
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.public_url = Url::parse("https://tether.example.com/").unwrap();
        })),
        ..AppOptions::default()
    })
    .await;
    let session = app.create_session("secure-user", None).await;
    let start = app.connect_start_url(&session, "crm");
    let response = app.http.get(start).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[tokio::test]
async fn failure_pages_tell_an_opener_what_went_wrong() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("connect?session=cs_unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 410);
    let body = response.text().await.unwrap();
    assert!(
        body.contains(r#""type":"tether:error""#) && body.contains(r#""code":"session_expired""#),
        "{body}"
    );
    // Posted only when there is an opener, and only to the app's origins.
    assert!(body.contains("if (window.opener && origins.length)"));
}

/// U+202E (right-to-left override) and the other bidirectional controls in an end user's
/// name or email would make the Connect page's "for <who>" line read as someone else: they
/// are refused where the app sends them, naming the field, and what is shown is isolated.
#[tokio::test]
async fn bidi_controls_cannot_spoof_whom_a_link_connects() {
    use serde_json::{Value, json};

    let app = spawn_app().await;
    for control in [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
    ] {
        let spoof = format!("ada{control}moc.elpmaxe@evil");
        for (field, end_user, path, body) in [
            (
                "end_user.display_name",
                json!({"id": "u", "display_name": spoof}),
                "v1/connect/sessions",
                json!({}),
            ),
            (
                "end_user.email",
                json!({"id": "u", "email": spoof}),
                "v1/connect/sessions",
                json!({}),
            ),
            (
                "end_user.id",
                json!({"id": spoof}),
                "v1/connect/sessions",
                json!({}),
            ),
            (
                "end_user.display_name",
                json!({"id": "u", "display_name": spoof}),
                "v1/connections",
                json!({"integration": "crm", "credentials": {"access_token": "a"}}),
            ),
        ] {
            let mut body = body;
            body["end_user"] = end_user;
            let response = app
                .api(reqwest::Method::POST, path)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{field} with {control:?}");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["code"], "invalid_end_user", "{problem}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.starts_with(field), "{problem}");
        }
    }
    assert_eq!(app.connection_count().await, 0);

    // Right-to-left text itself is fine, and is shown isolated from the text around it.
    let response = app
        .api(reqwest::Method::POST, "v1/connect/sessions")
        .json(&json!({"end_user": {"id": "u", "display_name": "עדה לאבלייס"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session: Value = response.json().await.unwrap();
    let url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    let page = Browser::new().get(url).await.text().await.unwrap();
    assert!(
        page.contains("for <strong><bdi>עדה לאבלייס</bdi></strong>"),
        "{page}"
    );
}
