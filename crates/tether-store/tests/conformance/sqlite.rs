//! SQLite specifics: file and memory URLs, WAL and foreign keys, idempotent migration,
//! corrupt rows, and the per-thread point readers (which must see the last write and outlive
//! the runtime that started them).

use super::*;

#[tokio::test]
async fn data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);

    let store = SqliteStore::connect(&url).await.unwrap();
    seed_before_restart(store.clone()).await;
    store.pool().close().await;
    drop(store);

    let reopened = SqliteStore::connect(&url).await.unwrap();
    check_after_restart(reopened).await;
}

#[tokio::test]
async fn accepts_url_forms_and_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (n, prefix) in ["sqlite://", "sqlite:"].into_iter().enumerate() {
        let path = dir.path().join(format!("db-{n}.sqlite"));
        assert!(!path.exists());
        let store = SqliteStore::connect(&format!("{prefix}{}", path.display()))
            .await
            .unwrap();
        store.ping().await.unwrap();
        assert!(path.exists(), "{prefix} creates the file");
    }
}

#[tokio::test]
async fn file_database_uses_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&sqlite_url(&dir)).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(busy, 5000);
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_databases_are_separate() {
    let a = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let b = SqliteStore::connect("sqlite::memory:").await.unwrap();
    a.insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    assert_eq!(b.get_connection("conn-1").await.unwrap(), None);
}

#[tokio::test]
async fn unknown_status_is_corrupt() {
    // The CHECK constraint keeps bad statuses out; switch it off to simulate a row
    // written by something else. A memory store has one connection, so the pragma holds.
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE connections SET status = 'paused' WHERE id = 'conn-1'")
        .execute(store.pool())
        .await
        .unwrap();

    let err = store.get_connection("conn-1").await;
    assert!(matches!(err, Err(StoreError::Corrupt(_))), "{err:?}");
    let err = store.list_connections(&ConnectionFilter::default()).await;
    assert!(matches!(err, Err(StoreError::Corrupt(_))), "{err:?}");
}

#[tokio::test]
async fn status_check_constraint_is_not_a_conflict() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let result = sqlx::query(
        "INSERT INTO connections (id, integration, end_user_id, status, credentials, \
         created_at, updated_at) VALUES ('x', 'github', 'u', 'paused', x'00', 0, 0)",
    )
    .execute(store.pool())
    .await;
    let err = StoreError::from(result.unwrap_err());
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
}

// `get_connection` on a file database goes through the point readers (one dedicated
// connection per thread, batching the lookups queued since its last query).

/// Many lookups at once, existing and missing ids mixed and the same ids asked for
/// several times in one batch: each gets exactly its own row, or `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_point_reads_each_get_their_own_row() {
    let (store, _dir) = open_sqlite_file().await;
    for n in 0..20 {
        let mut row = connection(&format!("conn-{n}"), "github", &format!("user-{n}"));
        row.metadata = format!(r#"{{"n":{n}}}"#);
        store.insert_connection(&row).await.unwrap();
    }
    let barrier = Arc::new(Barrier::new(200));
    let lookups: Vec<_> = (0..200)
        .map(|k| {
            let (store, barrier) = (store.clone(), barrier.clone());
            // Every third lookup asks for a missing id; the others cycle through the 20
            // rows, so each row is asked for about seven times at once.
            let id = if k % 3 == 0 {
                format!("missing-{k}")
            } else {
                format!("conn-{}", k % 20)
            };
            tokio::spawn(async move {
                barrier.wait().await;
                let found = store.get_connection(&id).await.unwrap();
                (id, found)
            })
        })
        .collect();
    for lookup in lookups {
        let (id, found) = lookup.await.unwrap();
        match id.strip_prefix("conn-") {
            Some(n) => {
                let row = found.unwrap_or_else(|| panic!("{id} exists"));
                assert_eq!(row.id, id);
                assert_eq!(row.end_user_id, format!("user-{n}"));
                assert_eq!(row.metadata, format!(r#"{{"n":{n}}}"#));
            }
            None => assert_eq!(found, None, "{id}"),
        }
    }
}

/// A row that cannot be read back is each of its lookups' error, also when several
/// ask for it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_an_error_for_every_point_read_of_it() {
    use sqlx::ConnectOptions;
    let (store, dir) = open_sqlite_file().await;
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    // Written by something else, bypassing the CHECK constraint.
    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("tether.db"))
        .connect()
        .await
        .unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query("UPDATE connections SET status = 'paused' WHERE id = 'conn-1'")
        .execute(&mut other)
        .await
        .unwrap();
    let lookups: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get_connection("conn-1").await })
        })
        .collect();
    for lookup in lookups {
        let read = lookup.await.unwrap();
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    }
}

/// Closing the store's pool closes the store: point reads stop too, as unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_answers_no_point_reads() {
    let (store, _dir) = open_sqlite_file().await;
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    assert_eq!(get(&store, "conn-1").await.id, "conn-1");
    store.pool().close().await;
    let read = store.get_connection("conn-1").await;
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
}

/// A write through the pool is seen by the very next point read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_reads_see_the_last_write() {
    let (store, _dir) = open_sqlite_file().await;
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    // The reader exists and has read the row before the writes.
    assert_eq!(get(&store, "conn-1").await.credentials_version, 1);
    for version in 1..=5 {
        let mut write = update("conn-1", version);
        write.credentials = sealed_bytes(format!("sealed:v{}", version + 1).as_bytes());
        assert!(store.replace_credentials(&write).await.unwrap());
        let row = get(&store, "conn-1").await;
        assert_eq!(row.credentials_version, version + 1);
        assert_eq!(row.credentials, write.credentials);
    }
    assert!(
        store
            .set_connection_status("conn-1", ConnectionStatus::NeedsReauth, Some("x"), NOW)
            .await
            .unwrap()
    );
    assert_eq!(
        get(&store, "conn-1").await.status,
        ConnectionStatus::NeedsReauth
    );
    assert!(store.delete_connection("conn-1").await.unwrap());
    assert_eq!(store.get_connection("conn-1").await.unwrap(), None);
    store
        .insert_connection(&connection("conn-2", "github", "user-2"))
        .await
        .unwrap();
    assert_eq!(get(&store, "conn-2").await.id, "conn-2");
}

/// A store used from one runtime, then (that runtime dropped, its reader with it) from
/// another on the same thread: the thread gets a new reader and reads stay right.
#[test]
fn point_reads_outlive_the_runtime_that_started_them() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let first = runtime();
    let store = first.block_on(async {
        let store = SqliteStore::connect(&url).await.unwrap();
        store
            .insert_connection(&connection("conn-1", "github", "user-1"))
            .await
            .unwrap();
        assert_eq!(get(&store, "conn-1").await.id, "conn-1");
        store
    });
    drop(first);

    let second = runtime();
    second.block_on(async {
        for _ in 0..3 {
            assert_eq!(get(&store, "conn-1").await.id, "conn-1");
            assert_eq!(store.get_connection("missing").await.unwrap(), None);
        }
    });
    drop(second);

    // A store opened on the second runtime's successor reads what the first wrote.
    let third = runtime();
    third.block_on(async {
        let reopened = SqliteStore::connect(&url).await.unwrap();
        assert_eq!(get(&reopened, "conn-1").await.id, "conn-1");
        reopened
            .insert_connection(&connection("conn-2", "github", "user-2"))
            .await
            .unwrap();
        assert_eq!(get(&reopened, "conn-2").await.id, "conn-2");
        assert_eq!(get(&store, "conn-2").await.id, "conn-2");
    });
}

/// A thread whose first runtime is alive but idle reads from a second runtime: the read
/// must not go to the idle runtime's reader (nobody drives it) and hang.
#[test]
fn a_point_read_on_another_runtime_of_the_same_thread_answers() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let first = runtime();
    let store = first.block_on(async {
        let store = SqliteStore::connect(&url).await.unwrap();
        store
            .insert_connection(&connection("conn-1", "github", "user-1"))
            .await
            .unwrap();
        assert_eq!(get(&store, "conn-1").await.id, "conn-1");
        store
    });
    // `first` stays alive, but nobody drives it now.
    let second = runtime();
    let read = second.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            store.get_connection("conn-1"),
        )
        .await
    });
    let row = read.expect("the read answered").unwrap().expect("the row");
    assert_eq!(row.id, "conn-1");
    drop(first);
}

/// Two callers putting the same new integration at once: exactly one is told it created it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_one_new_integration_create_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&sqlite_url(&dir)).await.unwrap();
    for round in 0..50 {
        let key = format!("crm{round}");
        let barrier = Arc::new(Barrier::new(2));
        let puts: Vec<_> = (0..2)
            .map(|_| {
                let (store, barrier, key) = (store.clone(), barrier.clone(), key.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .put_integration(&key, &sealed_bytes(b"sealed"), NOW)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut created = 0;
        for put in puts {
            created += usize::from(put.await.unwrap());
        }
        assert_eq!(created, 1, "round {round}: both or neither said created");
    }
}
