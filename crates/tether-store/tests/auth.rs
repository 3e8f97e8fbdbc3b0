//! What `AuthStore` promises, on every backend: failure windows that count every racing
//! failure exactly once and restart after their window, console sessions that end, and stored
//! API keys that stay revoked. Fresh database per test; fixed timestamps.

#[allow(dead_code)]
mod pg_support;

use std::sync::Arc;

use tether_store::{ConsoleSessionRow, SqliteStore, Store, TokenHash};
use tokio::sync::Barrier;

const NOW: i64 = 1_800_000_000;
const RACERS: usize = 16;

async fn failure_windows<S: Store>(store: S) {
    let buckets = vec!["addr:192.0.2.1".to_owned(), "key:abc".to_owned()];
    let first = store.count_auth_failures(&buckets, NOW, 60).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|w| w.attempts == 1 && w.since == NOW));
    let second = store
        .count_auth_failures(&buckets[1..], NOW + 59, 60)
        .await
        .unwrap();
    assert_eq!(second[0].attempts, 2);
    assert_eq!(second[0].since, NOW);
    // The window is over: the next failure opens a new one.
    let third = store
        .count_auth_failures(&buckets[1..], NOW + 60, 60)
        .await
        .unwrap();
    assert_eq!((third[0].attempts, third[0].since), (1, NOW + 60));
    // The purge drops windows that began before its cut-off.
    assert_eq!(store.purge_auth_failures(NOW + 1).await.unwrap(), 1);
    let fresh = store
        .count_auth_failures(&buckets[..1], NOW + 61, 60)
        .await
        .unwrap();
    assert_eq!((fresh[0].attempts, fresh[0].since), (1, NOW + 61));
}

/// Instances counting the same bucket at once: every failure is counted, none twice.
async fn failure_windows_concurrent<S: Store>(store: S) {
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .count_auth_failures(&["key:shared".to_owned()], NOW, 60)
                .await
                .unwrap()[0]
                .attempts
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=RACERS as u32).collect::<Vec<_>>());
}

fn console_session(id: &str, key: &str, expires_at: i64) -> ConsoleSessionRow {
    ConsoleSessionRow {
        id_hash: TokenHash::from_hex(id),
        key_fingerprint: key.to_owned(),
        created_at: NOW,
        expires_at,
    }
}

async fn console_sessions<S: Store>(store: S) {
    for row in [
        console_session("s1", "k1", NOW + 100),
        console_session("s2", "k1", NOW + 100),
        console_session("s3", "k2", NOW + 100),
        console_session("s4", "k2", NOW + 10),
    ] {
        store.insert_console_session(&row).await.unwrap();
    }
    assert!(
        store
            .console_session_active(&TokenHash::from_hex("s1"), NOW)
            .await
            .unwrap()
    );
    assert!(
        !store
            .console_session_active(&TokenHash::from_hex("nope"), NOW)
            .await
            .unwrap()
    );
    assert!(
        !store
            .console_session_active(&TokenHash::from_hex("s4"), NOW + 10)
            .await
            .unwrap(),
        "expired"
    );
    assert!(
        store
            .end_console_session(&TokenHash::from_hex("s1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_console_session(&TokenHash::from_hex("s1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .console_session_active(&TokenHash::from_hex("s1"), NOW)
            .await
            .unwrap()
    );
    assert_eq!(store.purge_console_sessions(NOW + 10).await.unwrap(), 1);
    assert_eq!(store.end_console_sessions_of_key("k1").await.unwrap(), 1);
    assert!(
        store
            .console_session_active(&TokenHash::from_hex("s3"), NOW)
            .await
            .unwrap()
    );
    assert_eq!(store.end_all_console_sessions().await.unwrap(), 1);
    assert!(
        !store
            .console_session_active(&TokenHash::from_hex("s3"), NOW)
            .await
            .unwrap()
    );
}

async fn stored_api_keys_stay_revoked<S: Store>(store: S) {
    store
        .insert_api_key_hash(&TokenHash::from_hex("aa"), "first run", 1)
        .await
        .unwrap();
    let keys = store.stored_api_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].revoked_at, None);
    assert_eq!(
        store.revoke_stored_api_keys(5).await.unwrap(),
        [TokenHash::from_hex("aa")]
    );
    assert!(store.revoke_stored_api_keys(6).await.unwrap().is_empty());
    let keys = store.stored_api_keys().await.unwrap();
    assert_eq!(
        (keys[0].key_hash.as_str(), keys[0].revoked_at),
        ("aa", Some(5))
    );
}

macro_rules! suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn failure_windows() {
                let (store, _guard) = $open.await;
                super::failure_windows(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn failure_windows_concurrent() {
                let (store, _guard) = $open.await;
                super::failure_windows_concurrent(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn console_sessions() {
                let (store, _guard) = $open.await;
                super::console_sessions(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn stored_api_keys_stay_revoked() {
                let (store, _guard) = $open.await;
                super::stored_api_keys_stay_revoked(store).await;
            }
        }
    };
}

async fn open_sqlite_file() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tether.db").display());
    (SqliteStore::connect(&url).await.unwrap(), dir)
}

suite!(sqlite, open_sqlite_file());
suite!(postgres, pg_support::open_postgres());
