//! PostgreSQL specifics: no password or row in Debug output, schema and search-path checks,
//! migration by one of several instances starting together, version refusal, unreachable
//! servers, pool size and statement timeout, and corrupt rows.

use std::time::Duration;

use tether_store::{AnyStore, Backend, StoreOptions};

use super::*;

#[tokio::test]
async fn debug_never_shows_the_password() {
    let schema = PgSchema::create().await;
    let mut url = url::Url::parse(&schema.url()).unwrap();
    url.set_password(Some("hunter2-secret")).unwrap();
    let store = PgStore::connect(url.as_str(), &StoreOptions::default())
        .await
        .expect("trust auth accepts any password");
    let shown = format!("{store:?}");
    assert!(shown.starts_with("PgStore"), "{shown}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    let any = AnyStore::Postgres(store);
    let shown = format!("{any:?}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
}

#[tokio::test]
async fn error_debug_never_shows_the_failing_row() {
    let (store, _schema) = open_postgres().await;
    sqlx::query("CREATE TABLE leak_probe (secret text, required text NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    let err = sqlx::query("INSERT INTO leak_probe VALUES ('sealed-secret-value', NULL)")
        .execute(store.pool())
        .await
        .expect_err("NOT NULL is violated");
    // The premise: sqlx's own Debug shows the row (the server's detail).
    assert!(format!("{err:?}").contains("sealed-secret-value"));
    let err = tether_store::StoreError::from(err);
    let shown = format!("{err:?}");
    assert!(!shown.contains("sealed-secret-value"), "{shown}");
    assert!(shown.starts_with("Database("), "{shown}");
    assert!(shown.contains("23502"), "{shown}");
    assert!(
        shown.contains("required"),
        "the message names the column: {shown}"
    );
}

#[tokio::test]
async fn a_schema_name_too_long_for_the_change_feed_is_refused() {
    // 60 bytes: a valid identifier, but `tether:` + 60 bytes is over PostgreSQL's 63-byte
    // limit on NOTIFY channel names, so every write would fail.
    let name = format!(
        "tether_test_{:016x}_{}",
        pg_support::rand_u64(),
        "x".repeat(31)
    );
    assert_eq!(name.len(), 60);
    let schema = PgSchema::create_named(name.clone()).await;
    let err = PgStore::connect_with(schema.connect_options(), &StoreOptions::default())
        .await
        .expect_err("the schema name is too long");
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
    let shown = anyhow_like(&err);
    assert!(shown.contains(&name), "{shown}");
    assert!(shown.contains("at most 56 bytes"), "{shown}");
    // Nothing was created in it.
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect_with(&schema.connect_options())
            .await
            .unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(tables, 0);
}

#[tokio::test]
async fn a_search_path_naming_no_schema_is_an_invalid_url() {
    let options = PgSchema::create()
        .await
        .connect_options()
        .options([("search_path", "tether_test_no_such_schema")]);
    let err = PgStore::connect_with(options, &StoreOptions::default())
        .await
        .expect_err("no schema to hold the tables");
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
    assert!(
        anyhow_like(&err).contains("names no existing schema"),
        "{err:?}"
    );
}

/// The error and its sources, as the CLI shows a failed start-up.
fn anyhow_like(err: &StoreError) -> String {
    let mut shown = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        shown.push_str(": ");
        shown.push_str(&cause.to_string());
        source = cause.source();
    }
    shown
}

#[tokio::test]
async fn data_survives_restart() {
    let schema = PgSchema::create().await;
    let store = schema.store().await;
    seed_before_restart(store.clone()).await;
    store.pool().close().await;
    drop(store);
    check_after_restart(schema.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_migrate_once() {
    let schema = PgSchema::create().await;
    let opens: Vec<_> = (0..3)
        .map(|_| {
            let options = schema.connect_options();
            tokio::spawn(
                async move { PgStore::connect_with(options, &StoreOptions::default()).await },
            )
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every instance starts"));
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!(applied, embedded, "each migration applied exactly once");
    for store in &stores {
        store.migrate().await.unwrap();
    }
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_tether_is_refused() {
    let schema = PgSchema::create().await;
    let store = schema.store().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (29991231000001, 'from the future', true, '\\x00', 1)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let err = PgStore::connect_with(schema.connect_options(), &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownMigration(29991231000001)),
        "{err:?}"
    );
    assert!(err.to_string().contains("29991231000001"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_unavailable_at_once() {
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    let started = std::time::Instant::now();
    let err = PgStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
        &StoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "failed fast");
}

#[tokio::test]
async fn the_url_scheme_picks_the_backend() {
    let schema = PgSchema::create().await;
    let url = schema.url();
    let store = AnyStore::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    store.ping().await.unwrap();
    let sqlite = AnyStore::connect("sqlite::memory:", &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(sqlite.backend(), Backend::Sqlite);
    assert!(sqlite.changes().is_none(), "SQLite has no other writers");
    let err = AnyStore::connect("mysql://localhost/db", &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn pool_size_and_statement_timeout_are_applied() {
    let schema = PgSchema::create().await;
    let options = StoreOptions {
        pool_size: Some(3),
        statement_timeout: Some(Duration::from_millis(200)),
    };
    let store = PgStore::connect_with(schema.connect_options(), &options)
        .await
        .unwrap();
    assert_eq!(store.pool().options().get_max_connections(), 3);
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(timeout, "200ms");
    // A statement over the limit is cancelled and reported as the database being
    // unavailable (the API answers 503), not as a bug.
    let err = sqlx::query("SELECT pg_sleep(2)")
        .execute(store.pool())
        .await
        .map_err(StoreError::from)
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn unknown_status_is_corrupt() {
    let schema = PgSchema::create().await;
    let store = schema.store().await;
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    sqlx::query("ALTER TABLE connections DROP CONSTRAINT connections_status_check")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE connections SET status = 'paused' WHERE id = 'conn-1'")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.get_connection("conn-1").await;
    assert!(matches!(err, Err(StoreError::Corrupt(_))), "{err:?}");
}
