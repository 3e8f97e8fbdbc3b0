//! The authenticated proxy: auth added, the app's own credentials dropped, paths confined to
//! the provider's base URL, and one refresh-and-retry on a provider 401.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

#[tokio::test]
async fn proxied_deals_carry_the_bearer_token() {
    let app = spawn_app().await;
    let id = app.connect("deals").await;
    let response = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(!body["deals"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn headers_and_query_pass_but_the_apps_credentials_do_not() {
    let app = spawn_app().await;
    let id = app.connect("echo").await;
    let creds = app.credentials_json(&id, false).await;
    let echoed: Value = app
        .api(
            reqwest::Method::GET,
            &format!("v1/proxy/{id}/v1/echo?page=2&q=a%20b"),
        )
        .header("cookie", "app_session=secret")
        .header("x-custom", "kept")
        .header("connection", "x-hop")
        .header("x-hop", "dropped")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &echoed["headers"];
    let expected = format!("Bearer {}", creds["access_token"].as_str().unwrap());
    assert_eq!(headers["authorization"], expected.as_str());
    assert!(headers.get("cookie").is_none(), "{echoed}");
    assert!(headers.get("x-hop").is_none(), "{echoed}");
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(echoed["path"], "/v1/echo");
    assert!(echoed["query"].to_string().contains("page"), "{echoed}");
}

/// Sends a raw request line, so no client normalises the path first.
async fn raw_status(app: &TestApp, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        app.addr, app.api_key
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn paths_cannot_leave_the_base_url() {
    let app = spawn_app().await;
    let id = app.connect("escape").await;
    let before = app.seed.control.api_calls();
    for escape in [
        "/../oauth/token",
        "/v1/../../x",
        "/%2e%2e/oauth/token",
        "/v1%2Fdeals",
        "//evil.example/v1/deals",
        "/http:%2F%2Fevil.example",
        "/v1/%2E/deals",
    ] {
        let mut path = format!("/v1/proxy/{id}");
        path.push_str(escape);
        assert_eq!(raw_status(&app, &path).await, 400, "{escape}");
    }
    assert_eq!(
        app.seed.control.api_calls(),
        before,
        "nothing reached the provider"
    );
    assert_eq!(
        raw_status(&app, &format!("/v1/proxy/{id}/v1/deals")).await,
        200
    );
}

#[tokio::test]
async fn a_provider_401_refreshes_once_and_retries_with_the_body() {
    let app = spawn_app().await;
    let id = app.connect("retry").await;
    app.seed.control.expire_access_tokens();
    let before = app.seed.control.api_calls();
    let response = app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/v1/deals"))
        .json(&json!({"title": "Retried deal", "value": 1200}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert!(created.to_string().contains("Retried deal"), "{created}");
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
    assert_eq!(
        app.seed.control.api_calls() - before,
        2,
        "sent, refused, refreshed, resent"
    );
    // The refreshed token is used from now on without further refreshes.
    let again = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
}

#[tokio::test]
async fn unknown_connections_and_missing_keys_are_problems() {
    let app = spawn_app().await;
    let response = app
        .api(
            reqwest::Method::GET,
            "v1/proxy/conn_0123456789abcdef0123456789abcdef/v1/deals",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "connection_not_found");
    let response = app
        .http
        .get(app.url("v1/proxy/conn_0123456789abcdef0123456789abcdef/v1/deals"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app_with(AppOptions {
        configure: Some(std::sync::Arc::new(|c| c.proxy_max_body_bytes = 1024)),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("big").await;
    let response = app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/v1/deals"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "payload_too_large");
}

#[tokio::test]
async fn a_provider_that_never_answers_is_a_clear_503_not_a_hang() {
    // Accepts connections and never writes a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "silent".into(),
            json!({"provider": "oauth2", "client_id": "c", "client_secret": "s",
                   "authorization_url": "https://silent.example/authorize",
                   "token_url": "https://silent.example/token",
                   "api_base_url": silent_url}),
        )],
        configure: Some(std::sync::Arc::new(|c| {
            c.proxy_read_timeout = std::time::Duration::from_millis(300)
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.import_token("silent", "t", None).await;
    let response = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "provider_unavailable");
    holder.abort();
}

#[tokio::test]
async fn a_body_too_large_to_keep_streams_through_and_a_401_then_goes_back_refreshed() {
    let app = spawn_app_with(AppOptions {
        configure: Some(std::sync::Arc::new(|c| c.proxy_retry_body_bytes = 1024)),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("stream").await;
    let big = "x".repeat(64 * 1024);
    let echoed: Value = app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/v1/echo"))
        .body(big.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["body"].as_str().unwrap().len(), big.len());
    assert_eq!(echoed["headers"]["content-length"], "65536");

    // A streamed body cannot be sent twice: the provider's 401 reaches the app, but the
    // token is refreshed, so the app's own retry succeeds.
    app.seed.control.expire_access_tokens();
    let response = app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/v1/echo"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
    let retried = app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/v1/echo"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
}

/// A provider on loopback that holds each `/v1/slow` request for 200 ms and records how
/// many it had in flight at once; `/v1/trickle` sends its head at once, then a chunk every
/// 50 ms for a minute (a long download the app may abandon).
struct CountingUpstream {
    base: String,
    max_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    trickles: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingUpstream {
    async fn spawn() -> CountingUpstream {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let trickles = Arc::new(AtomicUsize::new(0));
        let slow = {
            let (now, max) = (now.clone(), max_in_flight.clone());
            move || {
                let (now, max) = (now.clone(), max.clone());
                async move {
                    let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(in_flight, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    axum::Json(json!({"deals": [{"id": 7}]}))
                }
            }
        };
        let trickle = {
            let trickles = trickles.clone();
            move || {
                trickles.fetch_add(1, Ordering::SeqCst);
                async move {
                    let chunks = futures_util::stream::unfold(0u32, |sent| async move {
                        if sent > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        (sent < 1200).then(|| {
                            (
                                Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[b'x'; 1024])),
                                sent + 1,
                            )
                        })
                    });
                    axum::body::Body::from_stream(chunks)
                }
            }
        };
        let router = axum::Router::new()
            .route("/v1/slow", axum::routing::get(slow))
            .route("/v1/trickle", axum::routing::get(trickle));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = tether_server::serve(
                listener,
                router,
                tether_server::ServerLimits::default(),
                std::future::pending(),
            )
            .await;
        });
        CountingUpstream {
            base,
            max_in_flight,
            trickles,
            task,
        }
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway with `max_in_flight_per_host` set and a connection to `upstream`; returns the
/// app and the connection id.
async fn capped_gateway(
    upstream: &CountingUpstream,
    per_host: usize,
    read_timeout: std::time::Duration,
) -> (TestApp, String) {
    let app = spawn_app_with(AppOptions {
        integrations: vec![(
            "counted".into(),
            json!({"provider": "oauth2", "client_id": "c", "client_secret": "s",
                   "authorization_url": "https://counted.example/authorize",
                   "token_url": "https://counted.example/token",
                   "api_base_url": upstream.base}),
        )],
        configure: Some(std::sync::Arc::new(move |c| {
            c.proxy_max_in_flight_per_host = per_host;
            c.proxy_read_timeout = read_timeout;
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.import_token("counted", "t", None).await;
    (app, id)
}

/// Six proxied calls at once to `/v1/slow`; each must succeed with the provider's body.
async fn six_at_once(app: &TestApp, id: &str) {
    let calls = (0..6).map(|_| async {
        let response = app.proxy_get(id, "v1/slow").await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"deals": [{"id": 7}]}));
    });
    futures_util::future::join_all(calls).await;
}

#[tokio::test]
async fn requests_in_flight_to_one_host_are_capped() {
    let upstream = CountingUpstream::spawn().await;
    let (app, id) = capped_gateway(&upstream, 2, std::time::Duration::from_secs(10)).await;
    let started = std::time::Instant::now();
    six_at_once(&app, &id).await;
    assert_eq!(upstream.max_in_flight(), 2, "never more than the cap");
    // Three rounds of two, 200 ms each: the others waited their turn.
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_cap_of_zero_lets_every_request_through_at_once() {
    let upstream = CountingUpstream::spawn().await;
    let (app, id) = capped_gateway(&upstream, 0, std::time::Duration::from_secs(10)).await;
    six_at_once(&app, &id).await;
    assert!(upstream.max_in_flight() > 2, "{}", upstream.max_in_flight());
}

#[tokio::test]
async fn a_response_the_app_drops_unread_gives_its_turn_back() {
    let upstream = CountingUpstream::spawn().await;
    let read_timeout = std::time::Duration::from_secs(5);
    let (app, id) = capped_gateway(&upstream, 1, read_timeout).await;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        // A client of its own, so dropping the response closes its connection.
        let client = reqwest::Client::new();
        let response = client
            .get(app.url(&format!("v1/proxy/{id}/v1/trickle")))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        drop(client);
    }
    assert_eq!(
        upstream.trickles.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    // Each waited only for the gateway to notice the last one was abandoned, not for the
    // read timeout (or the minute the download would take).
    assert!(started.elapsed() < read_timeout, "{:?}", started.elapsed());
    // And a call that reads its body still gets its turn.
    let response = app.proxy_get(&id, "v1/slow").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_provider_401_is_retried_even_with_one_request_in_flight_per_host() {
    let app = spawn_app_with(AppOptions {
        configure: Some(std::sync::Arc::new(|c| {
            c.proxy_max_in_flight_per_host = 1;
            c.proxy_read_timeout = std::time::Duration::from_secs(3);
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("retry-capped").await;
    app.seed.control.expire_access_tokens();
    let started = std::time::Instant::now();
    let response = app
        .api(reqwest::Method::POST, &format!("v1/proxy/{id}/v1/deals"))
        .json(&json!({"title": "Capped deal", "value": 10}))
        .send()
        .await
        .unwrap();
    // The refused first response must give its turn back before the retry waits for one.
    assert_eq!(response.status(), 201);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.seed.control.token_calls_by_grant("refresh_token"), 1);
}

/// The proxy route is answered ahead of the router (`http::fast_path`): what does not have
/// its shape stays the router's, and its own answers carry what the router gave them.
#[tokio::test]
async fn the_proxy_route_ahead_of_the_router_answers_as_the_router_did() {
    let app = spawn_app().await;
    let id = app.connect("fast").await;
    let request_id = |response: &reqwest::Response| {
        let value = response.headers()["x-request-id"].to_str().unwrap();
        assert!(value.starts_with("req_"), "{value}");
    };

    // Not the proxy's shape: the router's 404 problem.
    let not_proxy = format!("v1/proxyx/{id}/v1/deals");
    for path in ["v1/proxy", "v1/proxy/", "v1/proxyx", not_proxy.as_str()] {
        let response = app.api(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        request_id(&response);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "not_found", "{path}");
    }
    assert_eq!(raw_status(&app, "/v1/proxy//v1/deals").await, 404);

    // A proxied answer: its request id, the retries made, its length.
    let response = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(response.status(), 200);
    request_id(&response);
    assert_eq!(response.headers()["tether-retries"], "0");
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().len(), length);

    // HEAD: the head alone.
    let response = app
        .api(reqwest::Method::HEAD, &format!("v1/proxy/{id}/v1/deals"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    request_id(&response);
    assert!(response.bytes().await.unwrap().is_empty());

    // No key, or a wrong one: the API's 401 problem, before anything else.
    let response = app
        .http
        .get(app.url(&format!("v1/proxy/{id}/v1/deals")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    request_id(&response);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    // An id with a percent-escape is read by the router's `Path` (decoded), as before: it
    // does not name the path it came in, so the path is refused.
    let escaped = format!("v1/proxy/{}/v1/deals", id.replacen('_', "%5F", 1));
    let response = app
        .api(reqwest::Method::GET, &escaped)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    request_id(&response);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_proxy_path");

    // The route's two shorter shapes are the proxy's too (the provider's base URL).
    for path in [format!("v1/proxy/{id}"), format!("v1/proxy/{id}/")] {
        let response = app.api(reqwest::Method::GET, &path).send().await.unwrap();
        request_id(&response);
        assert_eq!(response.headers()["tether-retries"], "0", "{path}");
    }
}
