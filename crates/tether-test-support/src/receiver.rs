//! [`Receiver`]: the app's webhook endpoint, as the tests play it: `POST /hooks` on a loopback
//! port, recording every request (headers, raw body, parsed body) in arrival order. The server
//! tests, the multi-instance tests, the crash test and the log test all need one; what they
//! check differs (signatures, counts, at-least-once without overlap), what they record does
//! not. It can play an app that is down (503, nothing recorded) and one that takes a while
//! to handle an event, noticing when one event is delivered twice at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use url::Url;

use crate::Loopback;

/// One request the receiver accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its headers, as sent.
    pub headers: HeaderMap,
    /// Its body, as sent (what a signature covers).
    pub raw: String,
    /// Its body parsed as JSON, or `Null` when it is not JSON.
    pub body: Value,
}

impl Received {
    /// The value of header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Shared {
    /// When set, every request gets a 503, as from an app that is down.
    down: AtomicBool,
    /// How long the app takes over each request before it answers.
    handling: Duration,
    received: Mutex<Vec<Received>>,
    /// Requests being handled, by the `id` field of their body.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Requests that arrived while another with the same `id` was being handled.
    overlapping: AtomicU64,
}

/// A webhook endpoint on loopback; stops when dropped.
pub struct Receiver {
    url: Url,
    shared: Arc<Shared>,
    _server: Loopback,
}

impl Receiver {
    /// A receiver that answers every `POST /hooks` at once with 204.
    pub async fn spawn() -> Receiver {
        Receiver::spawn_handling_for(Duration::ZERO).await
    }

    /// A receiver that takes `handling` over each request before it records and answers it,
    /// as an app busy with the event does; a second delivery of one event (same body `id`)
    /// arriving in that time is counted by [`Receiver::overlapping`].
    pub async fn spawn_handling_for(handling: Duration) -> Receiver {
        let shared = Arc::new(Shared {
            handling,
            ..Shared::default()
        });
        let router = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state(shared.clone());
        let server = Loopback::serve(router).await;
        Receiver {
            url: server.url("/hooks"),
            shared,
            _server: server,
        }
    }

    /// Where to send: `http://127.0.0.1:PORT/hooks`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Every accepted request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The JSON bodies of every accepted request so far, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        let received = self.shared.received.lock().unwrap();
        received.iter().map(|r| r.body.clone()).collect()
    }

    /// How many accepted bodies have `"type": event_type`.
    pub fn count_of_type(&self, event_type: &str) -> usize {
        let received = self.shared.received.lock().unwrap();
        received
            .iter()
            .filter(|r| r.body["type"] == event_type)
            .count()
    }

    /// Whether a body with `"id": id` was accepted.
    pub fn has_id(&self, id: &str) -> bool {
        let received = self.shared.received.lock().unwrap();
        received.iter().any(|r| r.body["id"] == id)
    }

    /// Plays an app that is down (503 to everything, nothing recorded) or back up.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// How many requests arrived while another with the same body `id` was being handled.
    pub fn overlapping(&self) -> u64 {
        self.shared.overlapping.load(Ordering::SeqCst)
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, raw: String) -> StatusCode {
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    if !shared.handling.is_zero() {
        let id = body["id"].as_str().unwrap_or_default().to_owned();
        // Counted out on drop: a delivery cut short (its sender gone) ends here too.
        let _handling = Handling::enter(&shared, id);
        // The app's own work on the event, which the sender waits for.
        tokio::time::sleep(shared.handling).await;
        record(&shared, headers, raw, body);
    } else {
        record(&shared, headers, raw, body);
    }
    StatusCode::NO_CONTENT
}

fn record(shared: &Shared, headers: HeaderMap, raw: String, body: Value) {
    shared
        .received
        .lock()
        .unwrap()
        .push(Received { headers, raw, body });
}

/// One request being handled, counted in and out by its body's `id`.
struct Handling {
    shared: Arc<Shared>,
    id: String,
}

impl Handling {
    fn enter(shared: &Arc<Shared>, id: String) -> Handling {
        let mut in_flight = shared.in_flight.lock().unwrap();
        let count = in_flight.entry(id.clone()).or_default();
        *count += 1;
        if *count > 1 {
            shared.overlapping.fetch_add(1, Ordering::SeqCst);
        }
        Handling {
            shared: shared.clone(),
            id,
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        if let Some(count) = self.shared.in_flight.lock().unwrap().get_mut(&self.id) {
            *count -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Posts `body` to the receiver over a plain socket (this crate has no HTTP client);
    /// returns the status line.
    async fn post(receiver: &Receiver, body: &str) -> String {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], receiver.url().port().unwrap()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /hooks HTTP/1.1\r\nhost: x\r\nx-sig: s1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn records_headers_and_bodies_in_order_and_plays_down() {
        let receiver = Receiver::spawn().await;
        assert_eq!(receiver.url().path(), "/hooks");
        assert!(
            post(&receiver, r#"{"id":"e1","type":"a"}"#)
                .await
                .contains("204")
        );
        assert!(post(&receiver, "not json").await.contains("204"));
        receiver.set_down(true);
        assert!(post(&receiver, r#"{"id":"e3"}"#).await.contains("503"));
        receiver.set_down(false);

        let received = receiver.received();
        assert_eq!(received.len(), 2, "the 503 is not recorded");
        assert_eq!(received[0].header("x-sig"), Some("s1"));
        assert_eq!(received[0].raw, r#"{"id":"e1","type":"a"}"#);
        assert_eq!(received[1].body, Value::Null);
        assert_eq!(receiver.count_of_type("a"), 1);
        assert!(receiver.has_id("e1"));
        assert!(!receiver.has_id("e3"));
        assert_eq!(receiver.overlapping(), 0);
    }

    #[tokio::test]
    async fn notices_one_event_delivered_twice_at_once() {
        let receiver = Arc::new(Receiver::spawn_handling_for(Duration::from_secs(2)).await);
        let body = r#"{"id":"same"}"#;
        let first = tokio::spawn({
            let receiver = receiver.clone();
            async move { post(&receiver, body).await }
        });
        // The second arrives once the first is being handled, not by a guess at timing.
        crate::eventually(
            Duration::from_secs(10),
            "the first being handled",
            || async { receiver.shared.in_flight.lock().unwrap().get("same") == Some(&1) },
        )
        .await;
        assert!(post(&receiver, body).await.contains("204"));
        assert!(first.await.unwrap().contains("204"));
        assert_eq!(receiver.overlapping(), 1);
        assert_eq!(receiver.received().len(), 2);
        assert!(receiver.shared.in_flight.lock().unwrap()["same"] == 0);
    }
}
