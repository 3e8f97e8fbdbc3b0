//! What an operator sees: a request id on every response (a trusted proxy's, or a new one),
//! HTTP metrics by route and status, and liveness and readiness with the version.

use std::sync::Arc;

use serde_json::Value;
use tether_core::SecretString;
use tether_server::GatewayConfig;

use tether_test_support::eventually;

use crate::helpers::*;

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("every response carries x-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let id = app.connect("observed").await;
    let responses = [
        app.http.get(app.url("health")).send().await.unwrap(),
        app.api(reqwest::Method::GET, "v1/connections")
            .send()
            .await
            .unwrap(),
        app.http
            .get(app.url("v1/connections"))
            .send()
            .await
            .unwrap(),
        app.http.get(app.url("no/such/route")).send().await.unwrap(),
        app.proxy_get(&id, "v1/deals").await,
        app.http
            .get(app.url("connect?session=unknown"))
            .send()
            .await
            .unwrap(),
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 401, 404, 200, 410]);
    let ids: Vec<String> = responses.iter().map(request_id).collect();
    for id in &ids {
        assert!(id.starts_with("req_") && id.len() > 10, "{id}");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "each request has its own id");
}

#[tokio::test]
async fn a_request_id_is_taken_only_from_a_trusted_proxy() {
    // Untrusted peer: its id is replaced.
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("health"))
        .header("x-request-id", "from-the-client")
        .send()
        .await
        .unwrap();
    assert_ne!(request_id(&response), "from-the-client");

    // The test client is the load balancer here.
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        })),
        ..AppOptions::default()
    })
    .await;
    let response = app
        .http
        .get(app.url("health"))
        .header("x-request-id", "lb-1234")
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(&response), "lb-1234");
    // A malformed one (spaces, log-injection newlines are impossible in headers) is replaced.
    let response = app
        .http
        .get(app.url("health"))
        .header("x-request-id", "two words")
        .send()
        .await
        .unwrap();
    assert_ne!(request_id(&response), "two words");
}

#[tokio::test]
async fn http_requests_are_counted_by_route_and_status() {
    let token = "metrics-token-for-observability-0123456789";
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(move |config: &mut GatewayConfig| {
            config.metrics_token = Some(SecretString::new(token));
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.connect("counted").await;
    for _ in 0..3 {
        assert_eq!(app.proxy_get(&id, "v1/deals").await.status(), 200);
    }
    let text = app
        .http
        .get(app.url("metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"tether_http_requests_total{route="/v1/proxy/{id}/{*path}",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"tether_http_request_duration_seconds_count{route="/v1/proxy/{id}/{*path}"} 3"#
        ),
        "{text}"
    );
    // The proxy's own view: calls to the provider by integration and status class, and
    // the provider's latency.
    assert!(
        text.contains(r#"tether_proxy_requests_total{integration="crm",class="2xx"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"tether_proxy_upstream_duration_seconds_count{integration="crm"} 3"#),
        "{text}"
    );
    assert!(!text.contains(&id), "never a connection id in a label");
}

#[tokio::test]
async fn health_and_readiness_say_the_version() {
    let app = spawn_app().await;
    let health: Value = app
        .http
        .get(app.url("health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    // Background workers not started yet: alive, but not ready.
    let response = app.http.get(app.url("ready")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["workers"]["refresher"], "stopped");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = app.gateway.as_ref().unwrap().spawn_background(stopped);
    let body: Value = eventually(LIMIT, "ready", || async {
        let response = app.http.get(app.url("ready")).send().await.unwrap();
        match response.status() {
            reqwest::StatusCode::OK => Some(response.json().await.unwrap()),
            _ => None,
        }
    })
    .await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["workers"]["webhooks"], "off");
    let _ = stop.send(true);
    for worker in workers {
        worker.await.unwrap();
    }
    let response = app.http.get(app.url("ready")).send().await.unwrap();
    assert_eq!(response.status(), 503, "stopped workers are not ready");
}
