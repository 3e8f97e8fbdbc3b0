//! The seed OAuth emulator: authorize, token, revoke, the Bearer API and the control handle.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tether_emulators::Running;
use tether_emulators::seed_oauth::{
    self, ClientAuthMethod, Consent, SeedOAuthConfig, SeedOAuthControl, TokenFault,
};
use url::Url;

use super::helpers::{at, client, location_pairs, param, pkce};

const REDIRECT: &str = "http://127.0.0.1:9/callback?app=1";

async fn spawn(config: SeedOAuthConfig) -> Running<SeedOAuthControl> {
    seed_oauth::spawn(config).await.expect("spawn seed oauth")
}

fn authorize_url(base: &Url, extra: &[(&str, &str)]) -> Url {
    let (_, challenge) = pkce();
    let mut url = at(base, "oauth/authorize");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "seed-client")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "read write")
        .append_pair("state", "st-123")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    // Later duplicates would be refused, so extra pairs replace defaults instead.
    if !extra.is_empty() {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| !extra.iter().any(|(name, _)| name == k))
            .collect();
        let mut rebuilt = url.clone();
        rebuilt.set_query(None);
        {
            let mut q = rebuilt.query_pairs_mut();
            for (k, v) in &kept {
                q.append_pair(k, v);
            }
            for (k, v) in extra.iter().filter(|(_, v)| !v.is_empty()) {
                q.append_pair(k, v);
            }
        }
        url = rebuilt;
    }
    url
}

/// Runs authorize (auto-approve) and returns the code.
async fn get_code(base: &Url) -> String {
    let response = client().get(authorize_url(base, &[])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let (_, pairs) = location_pairs(&response);
    param(&pairs, "code").expect("code").to_owned()
}

async fn exchange(base: &Url, code: &str) -> reqwest::Response {
    let (verifier, _) = pkce();
    client()
        .post(at(base, "oauth/token"))
        .basic_auth("seed-client", Some("seed-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
}

/// authorize + exchange, returning the token response body.
async fn tokens(base: &Url) -> Value {
    let code = get_code(base).await;
    let response = exchange(base, &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn refresh(base: &Url, refresh_token: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", "seed-client"),
        ("client_secret", "seed-secret"),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    client()
        .post(at(base, "oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn deals(base: &Url, token: &str) -> reqwest::Response {
    client()
        .get(at(base, "v1/deals"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn s<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, s(&body, "error").to_owned())
}

#[tokio::test]
async fn code_flow_with_basic_auth_issues_tokens_that_open_the_api() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let response = client()
        .get(authorize_url(&emu.base_url, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let (location, pairs) = location_pairs(&response);
    assert_eq!(location.path(), "/callback");
    assert_eq!(param(&pairs, "app"), Some("1"), "existing query kept");
    assert_eq!(param(&pairs, "state"), Some("st-123"));
    assert_eq!(param(&pairs, "iss"), Some(emu.base_url.as_str()));
    let code = param(&pairs, "code").unwrap().to_owned();

    let response = exchange(&emu.base_url, &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["account_id"], "acct_1");
    assert!(body["refresh_token"].is_string());

    let response = deals(&emu.base_url, s(&body, "access_token")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = response.json().await.unwrap();
    let first = &listed["deals"][0];
    assert_eq!(listed["deals"].as_array().unwrap().len(), 5);
    assert!(first["id"].is_u64() && first["title"].is_string() && first["stage"].is_string());

    let control = &emu.control;
    assert_eq!(control.token_calls(), 1);
    assert_eq!(control.token_calls_by_grant("authorization_code"), 1);
    assert_eq!(control.api_calls(), 1);
    let recorded = control.last_token_request().unwrap();
    assert_eq!(recorded.client_auth, ClientAuthMethod::Basic);
    assert_eq!(recorded.grant_type.as_deref(), Some("authorization_code"));
    assert_eq!(
        recorded.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert!(recorded.body_fields.contains(&"code_verifier".to_owned()));
    emu.shutdown().await;
}

#[tokio::test]
async fn json_body_with_client_secret_post_is_accepted() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let code = get_code(&emu.base_url).await;
    let (verifier, _) = pkce();
    let response = client()
        .post(at(&emu.base_url, "oauth/token"))
        .json(&json!({
            "grant_type": "authorization_code",
            "client_id": "seed-client",
            "client_secret": "seed-secret",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let recorded = emu.control.last_token_request().unwrap();
    assert_eq!(recorded.client_auth, ClientAuthMethod::Body);
    assert_eq!(recorded.content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn authorize_errors_show_a_page_or_redirect_as_rfc_6749_says() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let base = &emu.base_url;
    // Untrusted client or redirect URI: an HTML page, never a redirect.
    for extra in [
        [("client_id", "someone-else")],
        [("redirect_uri", "")],
        [("redirect_uri", "not a url")],
    ] {
        let response = client()
            .get(authorize_url(base, &extra))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(response.headers().get("location").is_none());
        assert!(
            response.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    // Everything else goes back to the client with the state.
    for (extra, error) in [
        (
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", "too-short")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
    ] {
        let response = client()
            .get(authorize_url(base, &extra))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FOUND, "{extra:?}");
        let (_, pairs) = location_pairs(&response);
        assert_eq!(param(&pairs, "error"), Some(error), "{extra:?}");
        assert_eq!(param(&pairs, "state"), Some("st-123"));
        assert!(param(&pairs, "code").is_none());
    }
}

#[tokio::test]
async fn pkce_can_be_optional() {
    let emu = spawn(SeedOAuthConfig {
        require_pkce: false,
        ..SeedOAuthConfig::default()
    })
    .await;
    let url = authorize_url(
        &emu.base_url,
        &[("code_challenge", ""), ("code_challenge_method", "")],
    );
    let response = client().get(url).send().await.unwrap();
    let (_, pairs) = location_pairs(&response);
    let code = param(&pairs, "code").expect("code without PKCE");
    let response = client()
        .post(at(&emu.base_url, "oauth/token"))
        .basic_auth("seed-client", Some("seed-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn codes_are_single_use_and_reuse_revokes_their_tokens() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let code = get_code(&emu.base_url).await;
    let first: Value = exchange(&emu.base_url, &code).await.json().await.unwrap();
    let access = s(&first, "access_token");
    assert_eq!(deals(&emu.base_url, access).await.status(), StatusCode::OK);

    let (status, error) = error_of(exchange(&emu.base_url, &code).await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(
        deals(&emu.base_url, access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, error) = error_of(refresh(&emu.base_url, s(&first, "refresh_token"), None).await).await;
    assert_eq!(error, "invalid_grant");
}

#[tokio::test]
async fn codes_are_bound_to_redirect_uri_and_verifier() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let code = get_code(&emu.base_url).await;
    let (verifier, _) = pkce();
    let attempt = |redirect: &'static str, verifier: String| {
        let code = code.clone();
        let url = at(&emu.base_url, "oauth/token");
        async move {
            client()
                .post(url)
                .basic_auth("seed-client", Some("seed-secret"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", &verifier),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong_verifier = "another-verifier-0123456789-abcdefghijklmnopqrstuvwxyz".to_owned();
    let (_, error) = error_of(attempt(REDIRECT, wrong_verifier).await).await;
    assert_eq!(error, "invalid_grant");
    let (_, error) = error_of(attempt("http://127.0.0.1:9/other", verifier.clone()).await).await;
    assert_eq!(error, "invalid_grant");
    // Failed attempts do not burn the code.
    assert_eq!(attempt(REDIRECT, verifier).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn client_authentication_and_grant_errors_follow_rfc_6749_5_2() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let url = at(&emu.base_url, "oauth/token");
    let form = [("grant_type", "refresh_token"), ("refresh_token", "nope")];

    let response = client()
        .post(url.clone())
        .basic_auth("seed-client", Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let (status, error) = error_of(response).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    let (status, error) =
        error_of(client().post(url.clone()).form(&form).send().await.unwrap()).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("client_secret", "seed-secret"),
                ("grant_type", "refresh_token"),
            ],
            "invalid_request",
        ),
        (&[("grant_type", "password")], "unsupported_grant_type"),
        (&[("scope", "read")], "invalid_request"),
        (
            &[("grant_type", "refresh_token"), ("refresh_token", "nope")],
            "invalid_grant",
        ),
    ];
    for (form, expected) in cases {
        let response = client()
            .post(url.clone())
            .basic_auth("seed-client", Some("seed-secret"))
            .form(form)
            .send()
            .await
            .unwrap();
        let (status, error) = error_of(response).await;
        assert_eq!(
            (status, error.as_str()),
            (StatusCode::BAD_REQUEST, expected),
            "{form:?}"
        );
    }
    let response = client()
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "invalid_request");
    assert_eq!(
        emu.control.token_calls(),
        7,
        "every call counts, whatever the outcome"
    );
}

#[tokio::test]
async fn refresh_without_rotation_keeps_the_refresh_token_and_checks_scope() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let issued = tokens(&emu.base_url).await;
    let rt = s(&issued, "refresh_token");

    let response = refresh(&emu.base_url, rt, Some("read")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["refresh_token"], rt);
    assert_eq!(body["scope"], "read");
    assert_ne!(body["access_token"], issued["access_token"]);
    assert_eq!(
        deals(&emu.base_url, s(&body, "access_token"))
            .await
            .status(),
        StatusCode::OK
    );

    let (status, error) = error_of(refresh(&emu.base_url, rt, Some("read admin")).await).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_scope")
    );
    assert_eq!(emu.control.token_calls_by_grant("refresh_token"), 2);
    assert_eq!(
        emu.control.last_token_request().unwrap().client_auth,
        ClientAuthMethod::Body
    );
}

#[tokio::test]
async fn refresh_can_omit_the_refresh_token_and_answer_as_a_form() {
    let emu = spawn(SeedOAuthConfig {
        issue_refresh_token_on_refresh: false,
        token_response_form: true,
        expires_in_as_string: true,
        access_token_ttl: Duration::from_secs(120),
        ..SeedOAuthConfig::default()
    })
    .await;
    let code = get_code(&emu.base_url).await;
    let response = exchange(&emu.base_url, &code).await;
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/x-www-form-urlencoded"
    );
    let text = response.text().await.unwrap();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(param(&pairs, "expires_in"), Some("120"));
    let rt = param(&pairs, "refresh_token").unwrap();

    let text = refresh(&emu.base_url, rt, None).await.text().await.unwrap();
    assert!(text.contains("access_token="));
    assert!(!text.contains("refresh_token"), "{text}");

    emu.control.set_access_token_ttl(Duration::from_secs(7));
    let text = refresh(&emu.base_url, rt, None).await.text().await.unwrap();
    assert!(text.contains("expires_in=7"), "{text}");
}

#[tokio::test]
async fn rotation_reuse_revokes_the_whole_family() {
    let emu = spawn(SeedOAuthConfig {
        rotate_refresh_tokens: true,
        ..SeedOAuthConfig::default()
    })
    .await;
    let issued = tokens(&emu.base_url).await;
    let old = s(&issued, "refresh_token");
    let rotated: Value = refresh(&emu.base_url, old, None)
        .await
        .json()
        .await
        .unwrap();
    let new = s(&rotated, "refresh_token");
    assert_ne!(new, old);

    let (_, error) = error_of(refresh(&emu.base_url, old, None).await).await;
    assert_eq!(error, "invalid_grant");
    assert_eq!(emu.control.reuse_events(), 1);
    // The legitimate holder's token died with the family (RFC 9700 4.14.2).
    let (_, error) = error_of(refresh(&emu.base_url, new, None).await).await;
    assert_eq!(error, "invalid_grant");
    let access = s(&rotated, "access_token");
    assert_eq!(
        deals(&emu.base_url, access).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn expiry_and_revoke_all_controls() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let issued = tokens(&emu.base_url).await;
    emu.control.expire_access_tokens();
    let response = deals(&emu.base_url, s(&issued, "access_token")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error":"invalid_token"})
    );
    let missing = client()
        .get(at(&emu.base_url, "v1/deals"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);

    let refreshed: Value = refresh(&emu.base_url, s(&issued, "refresh_token"), None)
        .await
        .json()
        .await
        .unwrap();
    let access = s(&refreshed, "access_token");
    assert_eq!(deals(&emu.base_url, access).await.status(), StatusCode::OK);

    emu.control.revoke_all();
    assert_eq!(
        deals(&emu.base_url, access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, error) =
        error_of(refresh(&emu.base_url, s(&issued, "refresh_token"), None).await).await;
    assert_eq!(error, "invalid_grant");
    assert_eq!(emu.control.api_calls(), 4);
}

#[tokio::test]
async fn token_faults_apply_until_cleared() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let url = at(&emu.base_url, "oauth/token");
    let call = || {
        client()
            .post(url.clone())
            .basic_auth("seed-client", Some("seed-secret"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
            .send()
    };
    let control = &emu.control;
    for (fault, status) in [
        (TokenFault::InvalidClient, StatusCode::UNAUTHORIZED),
        (TokenFault::InvalidGrant, StatusCode::BAD_REQUEST),
        (TokenFault::ServerError, StatusCode::INTERNAL_SERVER_ERROR),
        (TokenFault::HtmlPage, StatusCode::BAD_GATEWAY),
        (TokenFault::OkWithoutAccessToken, StatusCode::OK),
    ] {
        control.set_token_fault(Some(fault.clone()));
        let response = call().await.unwrap();
        assert_eq!(response.status(), status, "{fault:?}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("access_token"), "{fault:?}: {body}");
    }

    control.set_token_fault(Some(TokenFault::TooManyRequests {
        retry_after_secs: 30,
    }));
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[RETRY_AFTER], "30");

    control.set_token_fault(Some(TokenFault::Redirect));
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let (location, _) = location_pairs(&response);
    assert_eq!(location.path(), "/oauth/elsewhere");

    control.set_token_fault(Some(TokenFault::HugeBody));
    let mut response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.content_length().is_none(), "streamed, no length");
    let mut received = 0usize;
    while let Some(chunk) = response.chunk().await.unwrap() {
        received += chunk.len();
    }
    assert!(received >= 10 * 1024 * 1024);

    control.set_token_fault(Some(TokenFault::Delay(Duration::from_millis(150))));
    let started = Instant::now();
    let (_, error) = error_of(call().await.unwrap()).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(error, "invalid_grant", "answers normally after the delay");

    control.set_token_fault(None);
    assert_eq!(error_of(call().await.unwrap()).await.1, "invalid_grant");
    assert_eq!(control.token_calls(), 10);
}

#[tokio::test]
async fn consent_page_approves_or_denies() {
    let emu = spawn(SeedOAuthConfig {
        consent: Consent::Page,
        ..SeedOAuthConfig::default()
    })
    .await;
    let response = client()
        .get(authorize_url(&emu.base_url, &[("state", "<script>")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    for needle in [
        "id=\"approve\"",
        "id=\"deny\"",
        "seed-client",
        "<li>write</li>",
        "action=\"/oauth/authorize/decision\"",
    ] {
        assert!(page.contains(needle), "{needle} in {page}");
    }
    assert!(!page.contains("<script>"), "input is escaped");

    let (_, challenge) = pkce();
    let decide = |decision: &'static str| {
        let url = at(&emu.base_url, "oauth/authorize/decision");
        let challenge = challenge.clone();
        async move {
            client()
                .post(url)
                .form(&[
                    ("response_type", "code"),
                    ("client_id", "seed-client"),
                    ("redirect_uri", REDIRECT),
                    ("scope", "read"),
                    ("state", "st-9"),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                    ("decision", decision),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let approved = decide("approve").await;
    assert!(approved.status().is_redirection());
    let (_, pairs) = location_pairs(&approved);
    let code = param(&pairs, "code").unwrap().to_owned();
    assert_eq!(param(&pairs, "state"), Some("st-9"));
    assert_eq!(
        exchange(&emu.base_url, &code).await.status(),
        StatusCode::OK
    );

    let denied = decide("deny").await;
    let (_, pairs) = location_pairs(&denied);
    assert_eq!(param(&pairs, "error"), Some("access_denied"));
    assert_eq!(param(&pairs, "state"), Some("st-9"));
}

#[tokio::test]
async fn revocation_follows_rfc_7009() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let issued = tokens(&emu.base_url).await;
    let revoke = |token: String, secret: &'static str| {
        let url = at(&emu.base_url, "oauth/revoke");
        async move {
            client()
                .post(url)
                .basic_auth("seed-client", Some(secret))
                .form(&[
                    ("token", token.as_str()),
                    ("token_type_hint", "refresh_token"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let rt = s(&issued, "refresh_token").to_owned();
    assert_eq!(
        revoke(rt.clone(), "wrong").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        revoke("unknown".into(), "seed-secret").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        revoke(rt.clone(), "seed-secret").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        error_of(refresh(&emu.base_url, &rt, None).await).await.1,
        "invalid_grant"
    );
    let access = s(&issued, "access_token");
    assert_eq!(
        deals(&emu.base_url, access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(emu.control.revoke_calls(), 3);
}

#[tokio::test]
async fn deals_can_be_created_and_echo_shows_the_request() {
    let emu = spawn(SeedOAuthConfig::default()).await;
    let issued = tokens(&emu.base_url).await;
    let token = s(&issued, "access_token");
    let url = at(&emu.base_url, "v1/deals");

    let response = client()
        .post(url.clone())
        .bearer_auth(token)
        .json(&json!({"title": "New deal", "value": 1200}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        created,
        json!({"id": 6, "title": "New deal", "value": 1200, "stage": "lead"})
    );
    let listed: Value = deals(&emu.base_url, token).await.json().await.unwrap();
    assert_eq!(listed["deals"].as_array().unwrap().len(), 6);
    let bad = client()
        .post(url.clone())
        .bearer_auth(token)
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(bad).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let anonymous = client()
        .post(url)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let mut echo_url = at(&emu.base_url, "v1/echo");
    echo_url
        .query_pairs_mut()
        .append_pair("q", "a b")
        .append_pair("page", "2");
    let response = client()
        .put(echo_url.clone())
        .bearer_auth(token)
        .header("X-Custom", "yes")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/v1/echo");
    assert_eq!(echo["query"], "q=a+b&page=2");
    assert_eq!(echo["headers"]["x-custom"], "yes");
    assert!(echo["headers"].get("cookie").is_none());
    assert_eq!(echo["body"], "payload");
    let anonymous = client().get(echo_url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// The authorize URL of `authorize_url` under `/x/{segment}/`.
fn under(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    url.set_path(&["/x/", segment, "/"].concat());
    url
}

#[tokio::test]
async fn salesforce_like_names_an_instance_and_gives_no_lifetime_or_new_refresh_token() {
    let emu = spawn(SeedOAuthConfig::salesforce_like()).await;
    let body = tokens(&emu.base_url).await;
    assert!(body.get("expires_in").is_none(), "{body}");
    let instance = Url::parse(s(&body, "instance_url")).unwrap();
    assert_eq!(instance.host_str(), Some("localhost"));
    assert_eq!(instance.path(), "/x/instance-1/");
    let refreshed: Value = refresh(&emu.base_url, s(&body, "refresh_token"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(refreshed.get("refresh_token").is_none(), "{refreshed}");
    assert!(refreshed["instance_url"].is_string());
    // The API answers under the instance path too.
    let mut echo = at(&emu.base_url, "x/instance-1/v1/echo");
    echo.set_query(Some("a=1"));
    let seen: Value = client()
        .get(echo)
        .bearer_auth(s(&refreshed, "access_token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["path"], "/x/instance-1/v1/echo");
}

#[tokio::test]
async fn per_account_requires_the_account_json_bodies_and_redirect_uri_on_refresh() {
    let emu = spawn(SeedOAuthConfig::per_account("acme")).await;
    // Outside /x/acme/: no such account.
    let outside = client()
        .get(authorize_url(&emu.base_url, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), StatusCode::NOT_FOUND);
    let account = under(&emu.base_url, "acme");
    let response = client()
        .get(authorize_url(&account, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let (_, pairs) = location_pairs(&response);
    let code = param(&pairs, "code").unwrap().to_owned();
    let (verifier, _) = pkce();
    let form = client()
        .post(at(&account, "oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "seed-client"),
            ("client_secret", "seed-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(form).await.1, "invalid_request");
    let exchanged: Value = client()
        .post(at(&account, "oauth/token"))
        .json(&json!({
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": "seed-client", "client_secret": "seed-secret",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh_token = s(&exchanged, "refresh_token").to_owned();
    let without = client()
        .post(at(&account, "oauth/token"))
        .json(&json!({
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": "seed-client", "client_secret": "seed-secret",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(without).await.1, "invalid_request");
    let with = client()
        .post(at(&account, "oauth/token"))
        .json(&json!({
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            "redirect_uri": REDIRECT,
            "client_id": "seed-client", "client_secret": "seed-secret",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), StatusCode::OK);
}

#[tokio::test]
async fn comma_scopes_must_be_joined_with_commas() {
    let emu = spawn(SeedOAuthConfig::zoho_like(&["A.read", "B.all"])).await;
    let spaced = client()
        .get(authorize_url(&emu.base_url, &[("scope", "A.read B.all")]))
        .send()
        .await
        .unwrap();
    let (_, pairs) = location_pairs(&spaced);
    assert_eq!(param(&pairs, "error"), Some("invalid_scope"));
    let joined = client()
        .get(authorize_url(&emu.base_url, &[("scope", "A.read,B.all")]))
        .send()
        .await
        .unwrap();
    let (_, pairs) = location_pairs(&joined);
    assert!(param(&pairs, "code").is_some());
}

#[tokio::test]
async fn client_credentials_need_the_profile_and_its_scope() {
    let ask = |base: &Url, scope: &str| {
        client()
            .post(at(base, "oauth/token"))
            .basic_auth("seed-client", Some("seed-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
    };
    let plain = spawn(SeedOAuthConfig::default()).await;
    let refused = ask(&plain.base_url, "x").await.unwrap();
    assert_eq!(error_of(refused).await.1, "unsupported_grant_type");
    let emu = spawn(SeedOAuthConfig::client_credentials("api.default")).await;
    let wrong = ask(&emu.base_url, "other").await.unwrap();
    assert_eq!(error_of(wrong).await.1, "invalid_scope");
    let body: Value = ask(&emu.base_url, "api.default")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(
        deals(&emu.base_url, s(&body, "access_token"))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_password_grant_checks_the_user_and_the_platform() {
    let emu = spawn(SeedOAuthConfig::password_grant("sally", "pw", "tether")).await;
    let ask = |password: &str, platform: Option<&str>| {
        let mut body = json!({
            "grant_type": "password", "username": "sally", "password": password,
            "client_id": "seed-client", "client_secret": "seed-secret",
        });
        if let Some(platform) = platform {
            body["platform"] = json!(platform);
        }
        client()
            .post(at(&emu.base_url, "oauth/token"))
            .json(&body)
            .send()
    };
    assert_eq!(
        error_of(ask("pw", None).await.unwrap()).await.1,
        "invalid_request"
    );
    assert_eq!(
        error_of(ask("no", Some("tether")).await.unwrap()).await.1,
        "invalid_grant"
    );
    let body: Value = ask("pw", Some("tether"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = s(&body, "access_token");
    let api = client()
        .get(at(&emu.base_url, "v1/deals"))
        .header("OAuth-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::OK);
}

#[tokio::test]
async fn bitrix24_like_takes_the_token_as_a_query_parameter() {
    let emu = spawn(SeedOAuthConfig::bitrix24_like()).await;
    let code = get_code(&emu.base_url).await;
    let body: Value = exchange(&emu.base_url, &code).await.json().await.unwrap();
    assert!(s(&body, "client_endpoint").contains("/x/instance-1/"));
    let mut url = at(&emu.base_url, "v1/deals");
    url.query_pairs_mut()
        .append_pair("auth", s(&body, "access_token"));
    assert_eq!(
        client().get(url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let bare = client()
        .get(at(&emu.base_url, "v1/deals"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
}

/// The Pipedrive profile knows only the parameters Pipedrive documents: a request with PKCE
/// (or a scope) is sent back with `invalid_request`; the core four are enough for a code.
#[tokio::test]
async fn a_profile_with_documented_parameters_refuses_any_other() {
    let emu = spawn(SeedOAuthConfig::pipedrive_like()).await;
    let response = client()
        .get(authorize_url(emu.base_url(), &[("scope", "")]))
        .send()
        .await
        .unwrap();
    let (_, pairs) = location_pairs(&response);
    assert_eq!(param(&pairs, "error"), Some("invalid_request"));
    assert!(
        emu.control
            .last_authorize_params()
            .iter()
            .any(|(name, _)| name == "code_challenge")
    );
    let mut bare = at(emu.base_url(), "oauth/authorize");
    bare.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "seed-client")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "st-1");
    let response = client().get(bare).send().await.unwrap();
    let (_, pairs) = location_pairs(&response);
    assert!(param(&pairs, "code").is_some(), "{pairs:?}");
}

/// A profile's own token path is the only one served: HubSpot's `/oauth/2026-03/token`
/// answers, `/oauth/token` is 404.
#[tokio::test]
async fn a_profile_serves_its_token_endpoint_at_its_own_path_only() {
    let emu = spawn(SeedOAuthConfig::hubspot_2026_03()).await;
    let code = get_code(emu.base_url()).await;
    let old = exchange(emu.base_url(), &code).await;
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
    let (verifier, _) = pkce();
    let response = client()
        .post(at(emu.base_url(), "oauth/2026-03/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "seed-client"),
            ("client_secret", "seed-secret"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
