//! The public edge, tried as an attacker would: slow clients, connect links used from another
//! browser or twice, planted cookies, provider cookies, `..;` paths, guessing through the form
//! or the API key, oversized bodies, unbounded flows, metrics, and key rotation. Every test
//! runs over real HTTP on loopback and is bounded in count and time.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use serde_json::{Value, json};
use tether_core::SecretString;
use tether_core::vault::Vault;
use tether_server::{GatewayConfig, RateLimit, ServerLimits};
use tether_store::{SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

use tether_test_support::eventually;

use crate::helpers::*;
use crate::providers::{self, REDTAIL_PASSWORD};

/// A deadline for waits in this module; every loop here ends by it.
const BOUND: Duration = Duration::from_secs(15);

fn configure(f: impl Fn(&mut GatewayConfig) + Send + Sync + 'static) -> Option<Configure> {
    Some(Arc::new(f))
}

/// The connect session's token, from a session response.
fn session_token(session: &Value) -> String {
    let url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "session")
        .unwrap()
        .1
        .into_owned()
}

/// A browser that keeps cookies and follows no redirects.
fn cookie_jar() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `PUT /v1/integrations/{key}`: the seed emulator's OAuth endpoints, API calls to `api_base`.
async fn put_seed_integration(app: &TestApp, key: &str, api_base: &Url) {
    let seed = app.seed.base_url();
    let table = json!({
        "provider": "oauth2",
        "client_id": "seed-client",
        "client_secret": "seed-secret",
        "authorization_url": seed.join("oauth/authorize").unwrap().as_str(),
        "token_url": seed.join("oauth/token").unwrap().as_str(),
        "api_base_url": api_base.as_str(),
    });
    let put = app
        .api(reqwest::Method::PUT, &["v1/integrations/", key].concat())
        .json(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

// ----- slow clients ----------------------------------------------------------------------

/// Reads until the server closes the socket (or answers and closes), while trickling one
/// byte of header every 200 ms; returns false if it is still open at the deadline.
async fn trickle_until_closed(mut socket: TcpStream) -> bool {
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                // A 408 or similar answer: keep reading until the close.
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if socket.write_all(b"X").await.is_err() {
                    return true;
                }
            }
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

#[tokio::test]
async fn slow_clients_are_dropped_while_health_stays_fast() {
    let app = spawn_app_with(AppOptions {
        limits: ServerLimits {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(2),
            ..ServerLimits::default()
        },
        ..AppOptions::default()
    })
    .await;
    let mut sockets = Vec::new();
    for _ in 0..60 {
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        socket
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        sockets.push(socket);
    }
    // Sixty slow sockets hold no slot a real client needs.
    let health = app.http.get(app.url("health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let closed =
        futures_util::future::join_all(sockets.into_iter().map(trickle_until_closed)).await;
    assert!(
        closed.iter().all(|c| *c),
        "{} of 60 slow sockets were still open after {BOUND:?}",
        closed.iter().filter(|c| !**c).count()
    );
    // A socket that says nothing at all is closed too.
    let silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(wait_closed(silent).await, "a silent socket stayed open");
}

async fn wait_closed(mut socket: TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(BOUND, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let app = spawn_app_with(AppOptions {
        limits: ServerLimits {
            request_timeout: Duration::from_secs(1),
            ..ServerLimits::default()
        },
        ..AppOptions::default()
    })
    .await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/connect/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        app.api_key
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = socket.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    let _ = socket.write_all(b" ").await;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the slow upload was never cut off");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-request-id: req_"),
        "{answer}"
    );
}

// ----- bodies ----------------------------------------------------------------------------

#[tokio::test]
async fn oversized_bodies_are_refused_before_any_work() {
    let app = spawn_app().await;
    let big = vec![b'a'; 2 * 1024 * 1024];
    // Without a key too: the size is checked first.
    let response = app
        .http
        .post(app.url("v1/connect/sessions"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "payload_too_large");

    let session = app.create_session("big", Some(RETURN_URL)).await;
    let form = app.connect_start_url(&session, "crm");
    let response = app.http.post(form).body(big).send().await.unwrap();
    assert_eq!(response.status(), 413);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

// ----- connect links ---------------------------------------------------------------------

#[tokio::test]
async fn a_connect_link_works_only_in_the_browser_that_opened_it() {
    let p = providers::spawn().await;
    let app = &p.app;
    let session = app.create_session("owner", Some(RETURN_URL)).await;
    let first = cookie_jar();
    let page = first
        .get(session["connect_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(set_cookies(&page).len(), 1, "the first browser is bound");
    let text = page.text().await.unwrap();
    assert!(
        text.contains("for <strong><bdi>user@example.com</bdi></strong>"),
        "the page says whom it connects"
    );

    // Someone else with the same link, with correct credentials: refused, nothing stored.
    let second = cookie_jar();
    let form = app.connect_start_url(&session, "redtail");
    for attempt in [
        second.get(form.clone()).send(),
        second.get(session["connect_url"].as_str().unwrap()).send(),
    ] {
        let response = attempt.await.unwrap();
        assert_eq!(response.status(), 403);
        assert!(response.text().await.unwrap().contains("opened elsewhere"));
    }
    let stolen = second
        .post(form.clone())
        .form(&[("username", "demo"), ("password", REDTAIL_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 403);
    assert_eq!(p.redtail.control.calls(), 0, "the provider was never asked");
    assert_eq!(app.connection_count().await, 0);

    // The owner's browser still connects.
    let response = first
        .post(form)
        .form(&[("username", "demo"), ("password", REDTAIL_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(app.connection_count().await, 1);
}

#[tokio::test]
async fn a_finished_session_connects_nothing_more() {
    let p = providers::spawn().await;
    let app = &p.app;
    let session = app.create_session("once", Some(RETURN_URL)).await;
    let browser = cookie_jar();
    let redtail = app.connect_start_url(&session, "redtail");
    let response = browser
        .post(redtail)
        .form(&[("username", "demo"), ("password", REDTAIL_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);

    let salesmate = app.connect_start_url(&session, "salesmate");
    let again = browser
        .post(salesmate)
        .form(&[
            ("access_key", providers::SALESMATE_KEY),
            ("link_name", "acme"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 410);
    assert!(again.text().await.unwrap().contains("already used"));
    let page = browser
        .get(session["connect_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 410);
    assert_eq!(app.connection_count().await, 1);
}

#[tokio::test]
async fn a_planted_browser_cookie_is_never_adopted() {
    let app = spawn_app().await;
    let session = app.create_session("fixed", Some(RETURN_URL)).await;
    let planted = "a".repeat(43);
    let response = app
        .http
        .get(session["connect_url"].as_str().unwrap())
        .header("cookie", format!("tether_browser={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1, "Tether issues its own cookie");
    assert!(cookies[0].starts_with("tether_browser="));
    assert!(!cookies[0].contains(&planted));
    assert!(cookies[0].contains("HttpOnly") && cookies[0].contains("SameSite=Lax"));
    // The planted value is not the binding: whoever planted it cannot use the link.
    let replay = app
        .http
        .get(app.connect_start_url(&session, "crm"))
        .header("cookie", format!("tether_browser={planted}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 403);
}

#[tokio::test]
async fn the_cookie_is_host_prefixed_over_https() {
    let app = spawn_app_with(AppOptions {
        configure: configure(|config| {
            // The tests speak plain http, but pages are judged by the configured public URL.
            let mut public = config.public_url.clone();
            public.set_scheme("https").unwrap();
            config.public_url = public;
        }),
        ..AppOptions::default()
    })
    .await;
    let session = app.create_session("secure", Some(RETURN_URL)).await;
    let mut page_url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    page_url.set_scheme("http").unwrap();
    let response = app.http.get(page_url).send().await.unwrap();
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1);
    assert!(
        cookies[0].starts_with("__Host-tether_browser="),
        "{}",
        cookies[0]
    );
    assert!(cookies[0].contains("Secure") && cookies[0].contains("Path=/"));
    assert!(!cookies[0].contains("Domain"));
}

// ----- rate limits -----------------------------------------------------------------------

#[tokio::test]
async fn credential_checks_are_limited_per_session() {
    let p = providers::spawn_with(AppOptions {
        configure: configure(|config| {
            config.connect_attempts = RateLimit {
                max: 3,
                window: Duration::from_secs(600),
            };
        }),
        ..AppOptions::default()
    })
    .await;
    let app = &p.app;
    let session = app.create_session("guessed", Some(RETURN_URL)).await;
    let browser = cookie_jar();
    let form = app.connect_start_url(&session, "redtail");
    for _ in 0..3 {
        let response = browser
            .post(form.clone())
            .form(&[("username", "demo"), ("password", "wrong-guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
    }
    let limited = browser
        .post(form)
        .form(&[("username", "demo"), ("password", REDTAIL_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&wait), "{wait}");
    assert!(limited.text().await.unwrap().contains("Too many attempts"));
    assert_eq!(
        p.redtail.control.calls(),
        3,
        "the fourth guess never reached Redtail"
    );
    assert_eq!(app.connection_count().await, 0);
}

/// A client whose requests come from `local` (any 127/8 address reaches the loopback server):
/// several clients, several addresses.
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn status_with_key(app: &TestApp, client: &reqwest::Client, key: &str) -> u16 {
    client
        .get(app.url("v1/connections"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_right_key_passes_after_wrong_ones_from_the_same_address() {
    let app = spawn_app_with(AppOptions {
        configure: configure(|config| {
            config.api_key_failures = RateLimit {
                max: 3,
                window: Duration::from_secs(60),
            };
        }),
        ..AppOptions::default()
    })
    .await;
    // Each wrong key from its own prefix: only the address bucket fills.
    for n in 0..3 {
        let status = status_with_key(&app, &app.http, &format!("guess-{n}-0123456789")).await;
        assert_eq!(status, 401);
    }
    let response = app
        .http
        .get(app.url("v1/connections"))
        .bearer_auth("guess-9-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429, "past the limit, wrong keys get 429");
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    // The app behind the same address (a shared proxy, a NAT) is not locked out.
    for _ in 0..3 {
        let response = app
            .api(reqwest::Method::GET, "v1/connections")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn guesses_at_one_key_prefix_from_many_addresses_are_limited() {
    // The default limit: 10 wrong keys a minute.
    let app = spawn_app().await;
    let prefix = &app.api_key[..8];
    let mut statuses = Vec::new();
    for address in 2..=6 {
        let client = client_from(&format!("127.0.0.{address}"));
        for n in 0..10 {
            let guess = format!("{prefix}guess-{address}-{n}-0123456789");
            statuses.push(status_with_key(&app, &client, &guess).await);
        }
    }
    // No address went past 10, but the prefix did: the 11th guess on is refused.
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Another prefix from a fresh address is a guess like any first one; the right key passes.
    let fresh = client_from("127.0.0.7");
    assert_eq!(
        status_with_key(&app, &fresh, "another-prefix-0123456789").await,
        401
    );
    assert_eq!(status_with_key(&app, &fresh, &app.api_key).await, 200);
}

// ----- flows and purging -----------------------------------------------------------------

#[tokio::test]
async fn a_session_can_start_only_so_many_flows() {
    let app = spawn_app_with(AppOptions {
        configure: configure(|config| config.max_flows_per_session = 2),
        ..AppOptions::default()
    })
    .await;
    let session = app.create_session("looping", Some(RETURN_URL)).await;
    let browser = cookie_jar();
    let start = app.connect_start_url(&session, "crm");
    for _ in 0..2 {
        let response = browser.get(start.clone()).send().await.unwrap();
        assert_eq!(response.status(), 303);
    }
    let refused = browser.get(start).send().await.unwrap();
    assert_eq!(refused.status(), 429);
}

#[tokio::test]
async fn expired_sessions_and_flows_are_purged_in_the_background() {
    let app = spawn_app_with(AppOptions {
        configure: configure(|config| {
            config.connect_session_ttl = Duration::from_secs(1);
            config.flow_ttl = Duration::from_secs(1);
            config.purge_interval = Duration::from_millis(200);
        }),
        ..AppOptions::default()
    })
    .await;
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    app.gateway.as_ref().unwrap().spawn_background(stopped);
    let session = app.create_session("gone", Some(RETURN_URL)).await;
    let started = cookie_jar()
        .get(app.connect_start_url(&session, "crm"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 303);
    let store = SqliteStore::connect(&app.db_url).await.unwrap();
    let hash = tether_store::TokenHash::of(&session_token(&session));
    eventually(BOUND, "the expired rows purged", || async {
        let session_left = store.get_connect_session(&hash).await.unwrap().is_some();
        let flows_left = !store.flow_states_after(None, 10).await.unwrap().is_empty();
        !session_left && !flows_left
    })
    .await;
}

// ----- the proxy -------------------------------------------------------------------------

#[tokio::test]
async fn dot_segments_behind_path_parameters_are_refused() {
    let app = spawn_app().await;
    let id = app.connect("paths").await;
    for path in ["..;/admin", "a/..;/b", ".;/x", "%2e%2e;/x"] {
        let response = app.proxy_get(&id, path).await;
        assert_eq!(response.status(), 400, "{path}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_proxy_path");
    }
    assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
}

#[tokio::test]
async fn provider_cookies_never_reach_the_app() {
    // A provider API that sets session cookies on every answer.
    let provider = axum::Router::new().route(
        "/me",
        get(|| async {
            (
                [
                    ("set-cookie", "session=provider-secret; Path=/; HttpOnly"),
                    ("set-cookie2", "legacy=provider-secret"),
                    ("content-type", "application/json"),
                ],
                r#"{"id":1}"#,
            )
        }),
    );
    let server = tether_test_support::Loopback::serve(provider).await;
    let provider_url = server.url("/");

    let app = spawn_app_allowing_loopback().await;
    put_seed_integration(&app, "cookies", &provider_url).await;
    let imported = app
        .api(reqwest::Method::POST, "v1/connections")
        .json(&json!({"integration": "cookies", "end_user": {"id": "c"},
                      "credentials": {"access_token": "token-for-cookie-test", "expires_in": 3600}}))
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 201);
    let id: Value = imported.json().await.unwrap();
    let response = app.proxy_get(id["id"].as_str().unwrap(), "me").await;
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("set-cookie"));
    assert!(!response.headers().contains_key("set-cookie2"));
    assert_eq!(response.text().await.unwrap(), r#"{"id":1}"#);
}

// ----- metrics ---------------------------------------------------------------------------

#[tokio::test]
async fn metrics_are_not_public() {
    let app = spawn_app().await;
    let open = app.http.get(app.url("metrics")).send().await.unwrap();
    assert_eq!(
        open.status(),
        404,
        "no metrics on the public router without a token"
    );
    // The app's API key is not the metrics token.
    let with_key = app
        .api(reqwest::Method::GET, "metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), 404);

    let token = "a-metrics-token-of-enough-length-0123456789";
    let app = spawn_app_with(AppOptions {
        configure: configure(move |config| {
            config.metrics_token = Some(SecretString::new(token));
        }),
        ..AppOptions::default()
    })
    .await;
    let wrong = app
        .http
        .get(app.url("metrics"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .http
        .get(app.url("metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
}

// ----- key rotation ----------------------------------------------------------------------

#[tokio::test]
async fn rotation_covers_every_sealed_value_and_the_old_key_can_go() {
    let mut app = spawn_app_allowing_loopback().await;
    // A connection, an integration stored through the API, and a flow in progress.
    let connection = app.connect("rotated").await;
    let seed = app.seed.base_url().clone();
    put_seed_integration(&app, "stored", &seed).await;
    let browser = cookie_jar();
    let session = app.create_session("mid-flow", Some(RETURN_URL)).await;
    let to_provider = browser
        .get(app.connect_start_url(&session, "stored"))
        .send()
        .await
        .unwrap();
    assert_eq!(to_provider.status(), 303);
    let authorize = redirect_target(&to_provider).unwrap();
    let approved = browser.get(authorize).send().await.unwrap();
    let callback = redirect_target(&approved).expect("the emulator approves at once");

    // Rotate: a new primary key, then re-seal everything under it.
    let old = app.key_spec.clone();
    let new_key = Vault::generate_key_entry();
    let both = Vault::from_spec(&format!("{new_key},{old}")).unwrap();
    let store = SqliteStore::connect(&app.db_url).await.unwrap();
    let done = tether_server::rotation::reseal_all(&store, &both, || {})
        .await
        .unwrap();
    assert_eq!(done.connections, (1, 0));
    assert_eq!(done.integrations, (1, 0));
    assert_eq!(done.flows, (1, 0));
    let again = tether_server::rotation::reseal_all(&store, &both, || {})
        .await
        .unwrap();
    assert_eq!(again.connections, (0, 1), "a second run has nothing to do");

    // Restart with the new key only: every value still opens.
    app.key_spec = new_key;
    app.restart().await;
    assert_eq!(app.proxy_get(&connection, "v1/deals").await.status(), 200);
    let listed: Value = app
        .api(reqwest::Method::GET, "v1/integrations")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.to_string().contains("\"stored\""), "{listed}");
    let finished = browser.get(callback).send().await.unwrap();
    let landed = redirect_target(&finished).expect("the flow in progress finishes");
    assert_eq!(landed.path(), "/app/return", "{landed}");
}
