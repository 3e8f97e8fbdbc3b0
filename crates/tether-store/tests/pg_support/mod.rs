//! A fresh PostgreSQL schema per test, on the server named by `TETHER_TEST_DATABASE_URL`
//! (default: the local server CI starts), dropped when the test ends. Without a reachable
//! server the test fails with a message saying what is missing: it never skips.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::PgConnectOptions;
use tether_store::{PgStore, StoreOptions};

/// The server and database the PostgreSQL tests use unless told otherwise.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var("TETHER_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A schema of its own for one test; dropped (with everything in it) on drop.
pub struct PgSchema {
    name: String,
}

impl PgSchema {
    /// Creates a schema with a random name.
    pub async fn create() -> PgSchema {
        PgSchema::create_named(format!("tether_test_{:016x}", rand_u64())).await
    }

    /// Creates a schema named `name` (a plain identifier, unique to the test).
    pub async fn create_named(name: String) -> PgSchema {
        let mut admin = admin().await;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .expect("creating a test schema");
        PgSchema { name }
    }

    /// Connection options whose `search_path` is this schema.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&server_url())
            .expect("TETHER_TEST_DATABASE_URL is a postgres:// URL")
            .options([("search_path", self.name.as_str())])
    }

    /// The same as a URL (`?options=-c search_path=...`), for code that takes a URL.
    pub fn url(&self) -> String {
        let mut url = url_of(&server_url());
        let mut options = String::from("-c search_path=");
        options.push_str(&self.name);
        url.query_pairs_mut().append_pair("options", &options);
        url.to_string()
    }

    /// A store on this schema (migrated).
    pub async fn store(&self) -> PgStore {
        PgStore::connect_with(self.connect_options(), &StoreOptions::default())
            .await
            .expect("connecting to the test schema")
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: a thread with a
        // runtime of its own does the cleanup.
        let name = std::mem::take(&mut self.name);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a cleanup runtime");
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect_with(&admin_options()).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut admin)
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn admin_options() -> PgConnectOptions {
    PgConnectOptions::from_str(&server_url())
        .expect("TETHER_TEST_DATABASE_URL is a postgres:// URL")
}

async fn admin() -> sqlx::PgConnection {
    let url = server_url();
    sqlx::PgConnection::connect_with(&admin_options())
        .await
        .unwrap_or_else(|err| {
            panic!(
                "the PostgreSQL tests need a server at {url} (set TETHER_TEST_DATABASE_URL, or \
                 start the local one as .ci/run does): {err}"
            )
        })
}

fn url_of(text: &str) -> url::Url {
    url::Url::parse(text).expect("TETHER_TEST_DATABASE_URL is a URL")
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// Opens a fresh schema for one suite test.
pub async fn open_postgres() -> (PgStore, PgSchema) {
    let schema = PgSchema::create().await;
    let store = schema.store().await;
    (store, schema)
}
