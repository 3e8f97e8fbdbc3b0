//! What several test binaries of the `tether` binary share: a PostgreSQL database of their
//! own, and the browser's steps of a connect flow. (Starting and stopping the binary itself is
//! `tether_test_support::TetherProcess`, shared with the other crates' tests.)

// Each test binary uses only some of these.
#![allow(dead_code)]

use std::str::FromStr;

use reqwest::redirect::Policy;
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use url::Url;

/// What the PostgreSQL tests use unless `TETHER_TEST_DATABASE_URL` says otherwise.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server the tests use.
pub fn server_url() -> String {
    std::env::var("TETHER_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A connection to the server's default database, to make and drop test databases.
pub async fn admin() -> PgConnection {
    let url = server_url();
    let options = PgConnectOptions::from_str(&url).expect("a postgres:// URL");
    PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|err| {
            panic!(
                "these tests need PostgreSQL at {url} (set TETHER_TEST_DATABASE_URL, or start \
                 the local server as .ci/run does): {err}"
            )
        })
}

/// A database made for one test, dropped (with `FORCE`, closing leftover sessions) on drop.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// A fresh database named `tether_{purpose}_{random}`.
    pub async fn create(purpose: &str) -> TestDatabase {
        let name = format!("tether_{purpose}_{:016x}", rand::random::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin().await)
            .await
            .expect("creating the test database");
        let mut url = Url::parse(&server_url()).unwrap();
        url.set_path(&name);
        TestDatabase {
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // Drop cannot await: a thread with a runtime of its own drops the database.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let options = PgConnectOptions::from_str(&server_url()).unwrap();
                if let Ok(mut admin) = PgConnection::connect_with(&options).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
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
