//! Webhooks end to end: a receiver on loopback gets every event, signed, in order per
//! connection, including after it was down for a while; the delivery log and redelivery.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use tether_core::SecretString;
use tether_server::{GatewayConfig, WebhookConfig};
use tether_test_support::{Loopback, Received, Receiver, eventually};
use tokio::sync::watch;
use url::Url;

use crate::helpers::*;

pub const WEBHOOK_SECRET: &str = "whsec_test_secret";

/// The types of the events received for `connection_id`, in arrival order.
pub fn types_for(receiver: &Receiver, connection_id: &str) -> Vec<String> {
    receiver
        .received()
        .iter()
        .filter(|r| r.body["connection_id"] == connection_id)
        .map(|r| r.body["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `done` holds of the events received, for at most [`LIMIT`].
pub async fn wait_until(receiver: &Receiver, what: &str, done: impl Fn(&[Received]) -> bool) {
    eventually(LIMIT, what, || async { done(&receiver.received()) }).await;
}

/// The `Tether-Signature` header of a delivery.
fn signature(event: &Received) -> &str {
    event.header("tether-signature").unwrap_or_default()
}

/// Points the gateway's webhooks at `url` with fast retries (1 s back-off, 100 ms polls).
pub fn with_webhooks(config: &mut GatewayConfig, url: &Url) {
    let mut webhooks = WebhookConfig::new(url.clone(), SecretString::new(WEBHOOK_SECRET));
    webhooks.retry_base = Duration::from_secs(1);
    webhooks.retry_max = Duration::from_secs(1);
    webhooks.poll_interval = Duration::from_millis(100);
    webhooks.request_timeout = Duration::from_secs(5);
    config.webhooks = Some(webhooks);
}

/// A gateway whose webhooks go to a fresh receiver, with its background work running. Keep
/// the sender alive for the test's length: dropping it stops the workers.
pub async fn spawn_with_receiver(
    mut options: AppOptions,
) -> (TestApp, Receiver, watch::Sender<bool>) {
    let receiver = Receiver::spawn().await;
    let url = receiver.url().clone();
    let inner = options.configure.take();
    options.configure = Some(Arc::new(move |config: &mut GatewayConfig| {
        if let Some(inner) = &inner {
            inner(config);
        }
        with_webhooks(config, &url);
    }));
    let app = spawn_app_with(options).await;
    let (tx, rx) = watch::channel(false);
    app.gateway.as_ref().unwrap().spawn_background(rx);
    (app, receiver, tx)
}

/// `GET /v1/webhooks/deliveries` with the app's key; the `deliveries` array.
pub async fn deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app
        .api(
            reqwest::Method::GET,
            &format!("v1/webhooks/deliveries{query}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["deliveries"].as_array().unwrap().clone()
}

async fn force_refresh(app: &TestApp, id: &str) {
    let response = app
        .api(
            reqwest::Method::GET,
            &format!("v1/connections/{id}/credentials?force_refresh=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn every_change_is_delivered_signed_and_in_order() {
    let (app, receiver, _stop) = spawn_with_receiver(AppOptions::default()).await;
    let id = app.connect("hooked").await;
    force_refresh(&app, &id).await;
    let response = app
        .api(reqwest::Method::DELETE, &format!("v1/connections/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    wait_until(&receiver, "three events", |events| events.len() >= 3).await;
    assert_eq!(
        types_for(&receiver, &id),
        [
            "connection.created",
            "connection.refreshed",
            "connection.deleted"
        ]
    );
    let now = tether_core::unix_time::now();
    for event in receiver.received() {
        assert!(
            tether_server::webhooks::verify(
                WEBHOOK_SECRET.as_bytes(),
                signature(&event),
                event.raw.as_bytes(),
                now,
                300,
            ),
            "signature {} does not verify",
            signature(&event)
        );
        assert!(!tether_server::webhooks::verify(
            b"wrong secret",
            signature(&event),
            event.raw.as_bytes(),
            now,
            300,
        ));
        let body = &event.body;
        assert_eq!(body["connection_id"], id.as_str());
        assert_eq!(body["integration"], "crm");
        assert_eq!(body["end_user_id"], "hooked");
        assert!(body["occurred_at"].as_str().unwrap().ends_with('Z'));
        assert!(body["id"].as_str().unwrap().starts_with("evt_"));
        // Never a credential in a payload.
        assert!(!event.raw.contains("token\":"), "{}", event.raw);
    }
    assert_eq!(receiver.received()[0].body["reconnected"], false);
    assert!(receiver.received()[1].body["expires_at"].is_string());

    // The delivery log: newest first, all delivered.
    let log = settled_deliveries(&app, "").await;
    let types: Vec<&str> = log.iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "connection.deleted",
            "connection.refreshed",
            "connection.created"
        ]
    );
    assert!(log.iter().all(|d| d["status"] == "delivered"));
    assert!(log.iter().all(|d| d["last_status_code"] == 204));
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_every_event_after() {
    let (app, receiver, _stop) = spawn_with_receiver(AppOptions::default()).await;
    receiver.set_down(true);
    let a = app.connect("down-a").await;
    let b = app.connect("down-b").await;
    force_refresh(&app, &a).await;
    force_refresh(&app, &b).await;

    // Wait until the gateway has seen the receiver fail at least twice for one event.
    eventually(LIMIT, "two failed attempts", || async {
        deliveries(&app, "?status=pending")
            .await
            .iter()
            .any(|d| d["attempts"].as_i64().unwrap() >= 2 && d["last_status_code"] == 503)
    })
    .await;
    assert!(receiver.received().is_empty());

    receiver.set_down(false);
    wait_until(&receiver, "all four events", |events| events.len() >= 4).await;
    for id in [&a, &b] {
        assert_eq!(
            types_for(&receiver, id),
            ["connection.created", "connection.refreshed"],
            "in order for {id}"
        );
    }
    let log = settled_deliveries(&app, "").await;
    let pending: Vec<_> = log.iter().filter(|d| d["status"] == "pending").collect();
    assert!(pending.is_empty(), "{pending:?}");
}

/// The delivery log once no event is pending any more. A receiver holds an event a moment
/// before the worker records its answer, hence the (bounded) wait.
async fn settled_deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    eventually(LIMIT, "no pending delivery", || async {
        let log = deliveries(app, query).await;
        log.iter().all(|d| d["status"] != "pending").then_some(log)
    })
    .await
}

#[tokio::test]
async fn one_delivery_can_be_sent_again() {
    let (app, receiver, _stop) = spawn_with_receiver(AppOptions::default()).await;
    let id = app.connect("again").await;
    wait_until(&receiver, "created", |events| events.len() == 1).await;
    let log = deliveries(&app, &format!("?connection_id={id}")).await;
    assert_eq!(log.len(), 1);
    let event_id = log[0]["id"].as_str().unwrap().to_owned();

    let response = app
        .api(
            reqwest::Method::POST,
            &format!("v1/webhooks/deliveries/{event_id}/redeliver"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    wait_until(&receiver, "the redelivery", |events| events.len() == 2).await;
    let events = receiver.received();
    assert_eq!(
        events[0].raw, events[1].raw,
        "the same event, byte for byte"
    );

    let response = app
        .api(
            reqwest::Method::POST,
            "v1/webhooks/deliveries/evt_nope/redeliver",
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
    assert_eq!(problem["code"], "delivery_not_found");

    // The app's key is required.
    let response = app
        .http
        .get(app.url("v1/webhooks/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn without_a_webhook_url_no_events_are_kept() {
    let app = spawn_app().await;
    let id = app.connect("quiet").await;
    force_refresh(&app, &id).await;
    assert!(deliveries(&app, "").await.is_empty());
}

const METRICS_TOKEN: &str = "metrics-token-for-tests-0123456789abcdef";

#[tokio::test]
async fn metrics_count_refreshes_and_deliveries() {
    let options = AppOptions {
        configure: Some(Arc::new(|config: &mut GatewayConfig| {
            config.metrics_token = Some(SecretString::new(METRICS_TOKEN));
        })),
        ..AppOptions::default()
    };
    let (app, receiver, _stop) = spawn_with_receiver(options).await;
    let id = app.connect("counted").await;
    force_refresh(&app, &id).await;
    wait_until(&receiver, "two events", |events| events.len() >= 2).await;
    // The counter moves just after the receiver answers: poll for it.
    let text = eventually(LIMIT, "two delivered in the metrics", || async {
        let response = app
            .http
            .get(app.url("metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        text.contains(r#"tether_webhook_deliveries_total{outcome="delivered"} 2"#)
            .then_some(text)
    })
    .await;
    assert!(text.contains("tether_refresh_attempts_total 1"), "{text}");
    assert!(
        text.contains("tether_refresh_duration_seconds_count 1"),
        "{text}"
    );
}

/// A receiver that counts every request as it arrives and answers none until `open` is true.
async fn spawn_gated_receiver() -> (
    Loopback,
    Arc<std::sync::atomic::AtomicUsize>,
    watch::Sender<bool>,
) {
    use std::sync::atomic::AtomicUsize;
    let arrived = Arc::new(AtomicUsize::new(0));
    let (open, gate) = watch::channel(true);
    let state = (arrived.clone(), gate);
    let router =
        axum::Router::new()
            .route(
                "/hooks",
                post(
                    |State((arrived, mut gate)): State<(
                        Arc<AtomicUsize>,
                        watch::Receiver<bool>,
                    )>| async move {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(state);
    let server = Loopback::serve(router).await;
    (server, arrived, open)
}

/// Polls the counter until it reaches `n` (bounded), then returns it.
async fn wait_for_count(counter: &std::sync::atomic::AtomicUsize, n: usize) {
    eventually(LIMIT, &format!("{n} arrivals"), || async {
        counter.load(Ordering::SeqCst) >= n
    })
    .await;
}

/// 50 redeliveries of one event in a burst make exactly one delivery: a redelivery while the
/// event is pending (here: being sent, its receiver slow to answer) queues nothing more.
/// Once it is delivered, each redelivery sends it once again.
#[tokio::test]
async fn a_burst_of_redeliveries_sends_the_event_once() {
    let (gated, arrived, open) = spawn_gated_receiver().await;
    let url = gated.url("/hooks");
    let app = spawn_app_with(AppOptions {
        configure: Some(Arc::new(move |config: &mut GatewayConfig| {
            with_webhooks(config, &url);
            // Longer than the burst takes: the held delivery must not time out meanwhile.
            config.webhooks.as_mut().unwrap().request_timeout = Duration::from_secs(60);
        })),
        ..AppOptions::default()
    })
    .await;
    let (_stop, workers) = watch::channel(false);
    app.gateway.as_ref().unwrap().spawn_background(workers);
    let id = app.connect("burst").await;
    wait_for_count(&arrived, 1).await;
    let log = settled_deliveries(&app, &format!("?connection_id={id}")).await;
    assert_eq!(log[0]["status"], "delivered", "{log:?}");
    let event_id = log[0]["id"].as_str().unwrap().to_owned();
    let path = format!("v1/webhooks/deliveries/{event_id}/redeliver");

    // The receiver now holds what it gets; 50 redeliveries at once.
    open.send_replace(false);
    let burst = (0..50).map(|_| {
        let request = app.api(reqwest::Method::POST, &path);
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(burst).await;
    assert!(statuses.iter().all(|s| s.as_u16() == 202), "{statuses:?}");
    // The one redelivery is at the receiver (held there), and none other was sent.
    wait_for_count(&arrived, 2).await;
    open.send_replace(true);
    let log = settled_deliveries(&app, &format!("?connection_id={id}")).await;
    assert_eq!(
        (log[0]["status"].as_str(), log[0]["attempts"].as_u64()),
        (Some("delivered"), Some(1)),
        "{log:?}"
    );
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        2,
        "the original and one redelivery"
    );

    // Delivered again: the next redelivery sends it once more.
    let response = app.api(reqwest::Method::POST, &path).send().await.unwrap();
    assert_eq!(response.status(), 202);
    wait_for_count(&arrived, 3).await;
    let log = settled_deliveries(&app, &format!("?connection_id={id}")).await;
    assert_eq!(log[0]["status"], "delivered", "{log:?}");
    assert_eq!(arrived.load(Ordering::SeqCst), 3);
}
