//! What several test binaries of the `tether` binary share: waiting for a started `tether
//! serve` to say where it listens, and the browser's steps of a connect flow.

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::redirect::Policy;
use serde_json::Value;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use url::Url;

/// Reads `child`'s stdout until it prints `Tether is listening on URL` (panicking after
/// `limit`, or when it exits first), then keeps draining stdout in the background so the
/// process never blocks on a full pipe. The child must have been spawned with piped stdout.
pub async fn wait_listening(child: &mut Child, limit: Duration) -> Url {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let url = tokio::time::timeout(limit, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Tether is listening on ") {
                return url.to_owned();
            }
        }
        panic!("tether exited before listening");
    })
    .await
    .unwrap_or_else(|_| panic!("tether listens within {limit:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Url::parse(&url).expect("tether prints a URL")
}

/// The Connect start URL (`/connect/{integration}?session=T`) on `base` for a session the API
/// just created (`session` is its JSON answer).
pub fn start_url(base: &Url, session: &Value, integration: &str) -> Url {
    let connect_url = Url::parse(session["connect_url"].as_str().unwrap()).unwrap();
    let token = connect_url
        .query_pairs()
        .find(|(k, _)| k == "session")
        .expect("the connect URL carries the session")
        .1
        .into_owned();
    let mut start = base.join("connect/").unwrap();
    start
        .path_segments_mut()
        .unwrap()
        .pop_if_empty()
        .push(integration);
    start.query_pairs_mut().append_pair("session", &token);
    start
}

/// A browser that keeps cookies and follows redirects until one leads to the app (`/app/`).
pub fn browser_to_app() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::custom(|attempt| {
            if attempt.url().path().starts_with("/app/") || attempt.previous().len() > 10 {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .unwrap()
}

/// The connection id in the app's return URL `landed` (which must be `/app/return`).
pub fn returned_connection(landed: &Url) -> String {
    assert_eq!(landed.path(), "/app/return", "{landed}");
    landed
        .query_pairs()
        .find(|(k, _)| k == "connection_id")
        .expect("the return URL names the connection")
        .1
        .into_owned()
}
