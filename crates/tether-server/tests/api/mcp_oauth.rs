//! MCP authorization, Tether as the OAuth authorization server: discovery documents, dynamic
//! client registration, the authorization endpoint (page before the redirect URI is trusted,
//! redirect with `error` and `iss` after), the app's approval API (single use, expiry, signed
//! request parameter), the token endpoint (PKCE, single-use codes, redirect URI, resource,
//! refresh rotation with reuse detection revoking the family) and revocation. The access
//! tokens are checked in the agent-token store, which the MCP server reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tether_server::{Clock, GatewayConfig, SystemClock};
use tether_store::{AgentTokenStore, McpOAuthStore, TokenHash};
use url::Url;

use crate::helpers::{AppOptions, TestApp, spawn_app_with};

const SIGN_IN: &str = "http://app.localhost:9/mcp/sign-in";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// The system's clock, moved forward by hand.
#[derive(Default)]
struct MovedClock(AtomicI64);

impl Clock for MovedClock {
    fn now(&self) -> i64 {
        SystemClock.now() + self.0.load(Ordering::SeqCst)
    }
    fn instant(&self) -> Instant {
        SystemClock.instant() + Duration::from_secs(self.0.load(Ordering::SeqCst).unsigned_abs())
    }
}

async fn app_with_clock(clock: Option<Arc<MovedClock>>) -> TestApp {
    spawn_app_with(AppOptions {
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.mcp_auth.sign_in_url = Some(Url::parse(SIGN_IN).unwrap());
        })),
        clock: clock.map(|c| c as Arc<dyn Clock>),
        ..AppOptions::default()
    })
    .await
}

async fn app() -> TestApp {
    app_with_clock(None).await
}

/// A PKCE verifier and its S256 challenge.
fn pkce(seed: &str) -> (String, String) {
    let verifier = format!("verifier-{seed}-{}", "x".repeat(40));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn resource(app: &TestApp) -> String {
    app.url("mcp").to_string()
}

async fn register(app: &TestApp) -> String {
    let response = app
        .http
        .post(app.url("mcp/oauth/register"))
        .json(
            &json!({"redirect_uris": [REDIRECT], "client_name": "Desk agent",
                      "grant_types": ["authorization_code", "refresh_token"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_endpoint_auth_method"], "none");
    body["client_id"].as_str().unwrap().to_owned()
}

fn authorize_url(app: &TestApp, params: &[(&str, &str)]) -> Url {
    let mut url = app.url("mcp/oauth/authorize");
    url.query_pairs_mut().extend_pairs(params);
    url
}

async fn get(app: &TestApp, url: Url) -> reqwest::Response {
    app.http.get(url).send().await.unwrap()
}

fn location(response: &reqwest::Response) -> Url {
    Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

/// Starts a valid authorization; returns the `tether_request` the app receives.
async fn start(app: &TestApp, client_id: &str, challenge: &str, scope: &str) -> String {
    let resource = resource(app);
    let url = authorize_url(
        app,
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("state", "client-state"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("scope", scope),
            ("resource", &resource),
        ],
    );
    let response = get(app, url).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let target = location(&response);
    assert!(target.as_str().starts_with(SIGN_IN), "{target}");
    query(&target)["tether_request"].clone()
}

async fn approve(app: &TestApp, request: &str, body: Value) -> reqwest::Response {
    app.api(
        reqwest::Method::POST,
        &format!("v1/agent-authorizations/{request}/approve"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

/// Approves for `user` with read access to `crm`; returns the code.
async fn approved_code(app: &TestApp, request: &str, user: &str) -> String {
    let response = approve(
        app,
        request,
        json!({"end_user_id": user, "access": "read", "integrations": ["crm"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let to = Url::parse(body["redirect_to"].as_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(REDIRECT));
    let params = query(&to);
    assert_eq!(params["state"], "client-state");
    assert_eq!(params["iss"], app.base.as_str().trim_end_matches('/'));
    params["code"].clone()
}

async fn token(app: &TestApp, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = app
        .http
        .post(app.url("mcp/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(response.headers()["cache-control"], "no-store");
    (status, response.json().await.unwrap())
}

async fn exchange(
    app: &TestApp,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let resource = resource(app);
    token(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("resource", &resource),
        ],
    )
    .await
}

async fn refresh(app: &TestApp, client_id: &str, refresh_token: &str) -> (StatusCode, Value) {
    token(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ],
    )
    .await
}

/// Whether the MCP server would accept this access token now.
async fn access_live(app: &TestApp, access_token: &str) -> bool {
    let store = app.gateway.as_ref().unwrap().store();
    store
        .find_active_agent_token(&TokenHash::of(access_token), SystemClock.now())
        .await
        .unwrap()
        .is_some()
}

/// Registration, authorization, approval and exchange: the client's tokens.
async fn full_flow(app: &TestApp, user: &str) -> (String, Value) {
    let client_id = register(app).await;
    let (verifier, challenge) = pkce(user);
    let request = start(app, &client_id, &challenge, "mcp:read mcp:write").await;
    let code = approved_code(app, &request, user).await;
    let (status, body) = exchange(app, &client_id, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (client_id, body)
}

#[tokio::test]
async fn discovery_documents_name_the_endpoints() {
    let app = app().await;
    let issuer = app.base.as_str().trim_end_matches('/').to_owned();
    for path in [
        ".well-known/oauth-protected-resource/mcp",
        ".well-known/oauth-protected-resource",
    ] {
        let body: Value = get(&app, app.url(path)).await.json().await.unwrap();
        assert_eq!(body["resource"], resource(&app));
        assert_eq!(body["authorization_servers"], json!([issuer]));
        assert_eq!(body["bearer_methods_supported"], json!(["header"]));
        assert_eq!(body["scopes_supported"], json!(["mcp:read", "mcp:write"]));
    }
    let meta: Value = get(&app, app.url(".well-known/oauth-authorization-server"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], issuer);
    assert_eq!(meta["token_endpoint"], app.url("mcp/oauth/token").as_str());
    assert_eq!(
        meta["authorization_endpoint"],
        app.url("mcp/oauth/authorize").as_str()
    );
    assert_eq!(
        meta["registration_endpoint"],
        app.url("mcp/oauth/register").as_str()
    );
    assert_eq!(
        meta["revocation_endpoint"],
        app.url("mcp/oauth/revoke").as_str()
    );
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["none"])
    );
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    assert_eq!(
        meta["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
}

#[tokio::test]
async fn registration_refuses_unsafe_or_unsupported_metadata() {
    let app = app().await;
    let cases = [
        (
            json!({"redirect_uris": ["http://evil.example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://ok.example.com/cb#frag"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": vec![REDIRECT; 11]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "client_name": "x".repeat(201)}),
            "invalid_client_metadata",
        ),
        (json!("not an object"), "invalid_client_metadata"),
    ];
    for (body, error) in cases {
        let response = app
            .http
            .post(app.url("mcp/oauth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], error, "{body}");
    }
    // https anywhere and http on loopback are fine.
    let response = app
        .http
        .post(app.url("mcp/oauth/register"))
        .json(&json!({"redirect_uris": ["https://agent.example.com/cb", "http://[::1]:8080/cb", "http://localhost/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// Registration is open to anyone, so each client address may register only so many clients
/// an hour (`[mcp] registrations_per_hour`, per instance); requests refused for their
/// metadata do not count. The addresses come from a trusted proxy's `X-Forwarded-For`.
#[tokio::test]
async fn registration_is_rate_limited_per_client_address() {
    let clock = Arc::new(MovedClock::default());
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.mcp_auth.registrations_per_hour = 2;
            config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        })),
        clock: Some(clock.clone() as Arc<dyn Clock>),
        ..AppOptions::default()
    })
    .await;
    let post = async |from: &str, body: Value| {
        app.http
            .post(app.url("mcp/oauth/register"))
            .header("x-forwarded-for", from)
            .json(&body)
            .send()
            .await
            .unwrap()
    };
    let valid = json!({"redirect_uris": [REDIRECT]});
    let bad = post("198.51.100.7", json!({"redirect_uris": []})).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    for _ in 0..2 {
        let response = post("198.51.100.7", valid.clone()).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let refused = post("198.51.100.7", valid.clone()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.headers()["cache-control"], "no-store");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("try again later")
    );

    // Another address has its own count; an hour later the first may register again.
    let other = post("203.0.113.9", valid.clone()).await;
    assert_eq!(other.status(), StatusCode::CREATED);
    clock.0.fetch_add(3600, Ordering::SeqCst);
    let again = post("198.51.100.7", valid).await;
    assert_eq!(again.status(), StatusCode::CREATED);
}

/// The background purge, end to end: a client that got no grant a day after registering, and
/// an agent token that expired longer than the history retention ago, are deleted; a client
/// registered since stays.
#[tokio::test]
async fn the_purge_deletes_unused_clients_and_ended_agent_tokens() {
    let clock = Arc::new(MovedClock::default());
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.purge_interval = Duration::from_millis(100);
            config.history_retention = Duration::from_secs(86_400);
        })),
        clock: Some(clock.clone() as Arc<dyn Clock>),
        ..AppOptions::default()
    })
    .await;
    let unused = register(&app).await;
    let minted: Value = app
        .api(reqwest::Method::POST, "v1/agent-tokens")
        .json(&json!({"end_user_id": "u1", "access": "read", "expires_in": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_id = minted["id"].as_str().unwrap().to_owned();
    // Two days on: the client waited more than a day, the token ended more than a day ago.
    clock.0.fetch_add(2 * 86_400, Ordering::SeqCst);
    let fresh = register(&app).await;
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    app.gateway.as_ref().unwrap().spawn_background(stopped);
    let store = app.gateway.as_ref().unwrap().store();
    tether_test_support::eventually(crate::helpers::LIMIT, "the purge ran", || async {
        store.get_mcp_client(&unused).await.unwrap().is_none()
            && store.get_agent_token(&token_id).await.unwrap().is_none()
    })
    .await;
    assert!(store.get_mcp_client(&fresh).await.unwrap().is_some());
}

#[tokio::test]
async fn authorize_errors_before_the_redirect_uri_is_trusted_are_pages() {
    let app = app().await;
    let client_id = register(&app).await;
    let (_, challenge) = pkce("pages");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        // No client, an unknown one, a redirect URI it did not register.
        vec![("response_type", "code"), ("redirect_uri", REDIRECT)],
        vec![
            ("response_type", "code"),
            ("client_id", "mcpc_unknown"),
            ("redirect_uri", REDIRECT),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    ];
    for params in cases {
        let response = get(&app, authorize_url(&app, &params)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{params:?}");
        assert!(
            response.headers().get("location").is_none(),
            "never a redirect"
        );
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}

#[tokio::test]
async fn authorize_errors_after_the_redirect_uri_go_back_with_iss() {
    let app = app().await;
    let client_id = register(&app).await;
    let (_, challenge) = pkce("errors");
    let issuer = app.base.as_str().trim_end_matches('/').to_owned();
    let base = [
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s1"),
    ];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("response_type", "token"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
            "unsupported_response_type",
        ),
        (vec![("response_type", "code")], "invalid_request"),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("resource", "https://other.example.com/mcp"),
            ],
            "invalid_target",
        ),
        (
            vec![
                ("response_type", "code"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("scope", "admin"),
            ],
            "invalid_scope",
        ),
    ];
    for (extra, error) in cases {
        let params: Vec<(&str, &str)> = base.iter().copied().chain(extra).collect();
        let response = get(&app, authorize_url(&app, &params)).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{params:?}");
        let to = location(&response);
        assert!(to.as_str().starts_with(REDIRECT), "{to}");
        let q = query(&to);
        assert_eq!(q["error"], error, "{params:?}");
        assert_eq!(q["state"], "s1");
        assert_eq!(q["iss"], issuer);
        assert!(!q.contains_key("code"));
    }
}

#[tokio::test]
async fn without_a_sign_in_url_authorization_is_a_page_saying_so() {
    let app = crate::helpers::spawn_app().await;
    let response = get(&app, authorize_url(&app, &[("client_id", "x")])).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("mcp_authorization_not_configured")
    );
}

#[tokio::test]
async fn the_full_flow_issues_an_agent_token_for_the_approved_user_only() {
    let app = app().await;
    let client_id = register(&app).await;
    let (verifier, challenge) = pkce("full");
    let request = start(&app, &client_id, &challenge, "mcp:read mcp:write").await;

    // What the app shows its user; the API key is required.
    let path = format!("v1/agent-authorizations/{request}");
    let unauthenticated = app.http.get(app.url(&path)).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let view: Value = app
        .api(reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["client_name"], "Desk agent");
    assert_eq!(view["client_id"], client_id);
    assert_eq!(view["redirect_host"], "127.0.0.1");
    assert_eq!(view["scope"], "mcp:read mcp:write");
    assert_eq!(view["resource"], resource(&app));

    let code = approved_code(&app, &request, "user-a").await;
    // Approved once: a second decision finds nothing.
    let again = approve(
        &app,
        &request,
        json!({"end_user_id": "user-b", "access": "write"}),
    )
    .await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let problem: Value = again.json().await.unwrap();
    assert_eq!(problem["code"], "authorization_request_not_found");

    let (status, tokens) = exchange(&app, &client_id, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(
        tokens["scope"], "mcp:read",
        "read access grants the read scope only"
    );
    let access = tokens["access_token"].as_str().unwrap();
    assert!(access.starts_with("tat_"));

    // The access token is an agent token of user-a, read-only, on crm, bound to the client.
    let store = app.gateway.as_ref().unwrap().store();
    let row = store
        .find_active_agent_token(&TokenHash::of(access), SystemClock.now())
        .await
        .unwrap()
        .expect("the MCP server accepts it");
    assert_eq!(row.end_user_id, "user-a");
    assert_eq!(row.access.as_str(), "read");
    assert_eq!(row.integrations, Some(vec!["crm".to_owned()]));
    assert_eq!(row.mcp_client_id.as_deref(), Some(client_id.as_str()));
    assert!(row.grant_id.is_some());
    assert!(row.expires_at <= SystemClock.now() + 3600);
    assert!(
        store
            .list_agent_tokens("user-b", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The code was single use: a second exchange fails and revokes what the first got.
    let (status, body) = exchange(&app, &client_id, &code, &verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        !access_live(&app, access).await,
        "code reuse revokes the grant's tokens"
    );
    let (status, _) = refresh(&app, &client_id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_exchange_checks_pkce_redirect_uri_client_and_resource() {
    let app = app().await;
    let client_id = register(&app).await;
    let other_client = register(&app).await;
    let (verifier, challenge) = pkce("checks");
    let resource = resource(&app);
    let wrong_resource = "https://other.example.com/mcp".to_owned();
    let wrong_verifier = "y".repeat(43);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &wrong_verifier),
        ],
        vec![
            ("client_id", &client_id),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code_verifier", &verifier),
        ],
        vec![
            ("client_id", &other_client),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
        vec![
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("resource", &wrong_resource),
        ],
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let request = start(&app, &client_id, &challenge, "mcp:read").await;
        let code = approved_code(&app, &request, "user-a").await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ];
        form.extend(case);
        let (status, body) = token(&app, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "case {i}");
        let expected = if i == 3 {
            "invalid_target"
        } else {
            "invalid_grant"
        };
        assert_eq!(body["error"], expected, "case {i}: {body}");
        // The code is spent all the same: the right values do not make it work afterwards.
        let (status, _) = exchange(&app, &client_id, &code, &verifier).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "case {i}");
    }
    // Malformed requests.
    let (status, body) = token(&app, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, body) = token(&app, &[("grant_type", "authorization_code"), ("code", "c")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("grant_type", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let _ = resource;
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_family() {
    let app = app().await;
    let (client_id, first) = full_flow(&app, "user-r").await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let a1 = first["access_token"].as_str().unwrap();

    let (status, second) = refresh(&app, &client_id, r1).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap();
    let a2 = second["access_token"].as_str().unwrap();
    assert_ne!(r1, r2, "rotated");
    assert!(access_live(&app, a1).await && access_live(&app, a2).await);

    // r1 again: a thief or a replay. Everything of the grant goes.
    let (status, body) = refresh(&app, &client_id, r1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(!access_live(&app, a1).await);
    assert!(!access_live(&app, a2).await);
    let (status, _) = refresh(&app, &client_id, r2).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the newest refresh token is revoked too"
    );

    // A refresh token presented by another client burns its grant as well.
    let (client_b, tokens) = full_flow(&app, "user-s").await;
    let other = register(&app).await;
    let (status, _) = refresh(&app, &other, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!access_live(&app, tokens["access_token"].as_str().unwrap()).await);
    let _ = client_b;
}

#[tokio::test]
async fn revocation_revokes_a_grant_or_a_token_of_the_calling_client_only() {
    let app = app().await;
    let (client_id, tokens) = full_flow(&app, "user-v").await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let revoke = |client: String, token: String| {
        let app = &app;
        async move {
            app.http
                .post(app.url("mcp/oauth/revoke"))
                .form(&[("token", token.as_str()), ("client_id", client.as_str())])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Another client: 200 as RFC 7009 asks, and nothing happens.
    let other = register(&app).await;
    assert_eq!(
        revoke(other.clone(), access.to_owned()).await,
        StatusCode::OK
    );
    assert_eq!(
        revoke(other, refresh_token.to_owned()).await,
        StatusCode::OK
    );
    assert!(access_live(&app, access).await);
    // Unknown tokens: 200 too.
    assert_eq!(
        revoke(client_id.clone(), "nope".into()).await,
        StatusCode::OK
    );

    // The refresh token revokes the whole grant.
    assert_eq!(
        revoke(client_id.clone(), refresh_token.to_owned()).await,
        StatusCode::OK
    );
    assert!(!access_live(&app, access).await);
    let (status, _) = refresh(&app, &client_id, refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // An access token revokes itself.
    let (client_2, tokens_2) = full_flow(&app, "user-w").await;
    let access_2 = tokens_2["access_token"].as_str().unwrap();
    assert_eq!(
        revoke(client_2.clone(), access_2.to_owned()).await,
        StatusCode::OK
    );
    assert!(!access_live(&app, access_2).await);
    let (status, _) = refresh(&app, &client_2, tokens_2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "the grant lives on");
}

#[tokio::test]
async fn the_app_can_deny_and_cannot_forge_or_overreach() {
    let app = app().await;
    let client_id = register(&app).await;
    let (_, challenge) = pkce("deny");

    // A request asking for read only cannot be approved for write.
    let request = start(&app, &client_id, &challenge, "mcp:read").await;
    let response = approve(
        &app,
        &request,
        json!({"end_user_id": "u", "access": "write"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "scope_not_requested"
    );
    // Unknown integrations and bad end-user ids are refused without spending the request.
    let response = approve(
        &app,
        &request,
        json!({"end_user_id": "u", "access": "read", "integrations": ["nope"]}),
    )
    .await;
    // The same answer as minting an agent token with that key (one check, agents/tokens.rs).
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem = response.json::<Value>().await.unwrap();
    assert_eq!(problem["code"], "integration_not_found");
    assert_eq!(
        problem["detail"],
        "no integration is configured with key \"nope\""
    );
    let response = approve(&app, &request, json!({"end_user_id": "", "access": "read"})).await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "invalid_end_user"
    );

    // An altered signature names nothing.
    let (id, tag) = request.split_once('.').unwrap();
    let flipped = if tag.starts_with('0') { "1" } else { "0" };
    let forged = format!("{id}.{flipped}{}", &tag[1..]);
    for path in [
        format!("v1/agent-authorizations/{forged}"),
        format!("v1/agent-authorizations/{id}"),
    ] {
        let response = app.api(reqwest::Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    // Denied: the client hears access_denied, with its state and the issuer.
    let response = app
        .api(
            reqwest::Method::POST,
            &format!("v1/agent-authorizations/{request}/deny"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let to = Url::parse(
        response.json::<Value>().await.unwrap()["redirect_to"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let q = query(&to);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "client-state");
    assert!(q.contains_key("iss"));
    // And the request is gone.
    let response = approve(
        &app,
        &request,
        json!({"end_user_id": "u", "access": "read"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_request_and_a_code_expire() {
    let clock = Arc::new(MovedClock::default());
    let app = app_with_clock(Some(clock.clone())).await;
    let client_id = register(&app).await;
    let (verifier, challenge) = pkce("expiry");

    let request = start(&app, &client_id, &challenge, "mcp:read").await;
    clock.0.fetch_add(11 * 60, Ordering::SeqCst);
    let response = app
        .api(
            reqwest::Method::GET,
            &format!("v1/agent-authorizations/{request}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = approve(
        &app,
        &request,
        json!({"end_user_id": "u", "access": "read"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // A code lives 60 seconds.
    let request = start(&app, &client_id, &challenge, "mcp:read").await;
    let code = approved_code(&app, &request, "u").await;
    clock.0.fetch_add(61, Ordering::SeqCst);
    let (status, body) = exchange(&app, &client_id, &code, &verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn the_console_lists_an_end_users_mcp_clients_and_revokes_one() {
    let app = app().await;
    let (_, tokens) = full_flow(&app, "console-user").await;
    let access = tokens["access_token"].as_str().unwrap();
    let (_, others) = full_flow(&app, "someone-else").await;

    // Signed in as the console's own pages do (same origin), carrying the cookie by hand.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = app.base.origin().ascii_serialization();
    let signed_in = http
        .post(app.url("dashboard/sign-in"))
        .header("origin", &origin)
        .header("sec-fetch-site", "same-origin")
        .form(&[("api_key", app.api_key.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = |path: String| {
        let request = http.get(app.url(&path)).header("cookie", &cookie);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let html = page("dashboard/mcp-clients?end_user_id=console-user".into()).await;
    assert!(html.contains("Desk agent"), "{html}");
    assert_eq!(
        html.matches("data-grant=").count(),
        1,
        "only this end user's grant"
    );
    assert!(!html.contains(access), "never a token");
    // The row's own form (the layout's sign-out form comes first on the page).
    let row = html.find("data-grant=").unwrap();
    let start = row + html[row..].find("action=\"").unwrap() + "action=\"".len();
    let action = html[start..start + html[start..].find('"').unwrap()].replace("&amp;", "&");
    let marker = "name=\"csrf\" value=\"";
    let csrf_at = html.find(marker).unwrap() + marker.len();
    let csrf = html[csrf_at..csrf_at + 64].to_owned();

    let revoked = http
        .post(Url::parse(&action).unwrap_or_else(|_| app.url(action.trim_start_matches('/'))))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert!(!access_live(&app, access).await, "revoked at once");
    assert!(access_live(&app, others["access_token"].as_str().unwrap()).await);
    let html = page("dashboard/mcp-clients?end_user_id=console-user".into()).await;
    assert_eq!(html.matches("data-grant=").count(), 0);
}
