//! The store conformance suite: every behaviour the [`Store`] trait promises, written once,
//! generic over the backend, and instantiated per backend by `conformance_suite!` at the
//! bottom. A new backend (PostgreSQL) adds one `conformance_suite!` line with its opener.
//!
//! Tests never depend on each other or on wall-clock time: every test gets a fresh database
//! (on PostgreSQL, a fresh schema, dropped afterwards) and all timestamps derive from the
//! fixed [`NOW`].
//!
//! The PostgreSQL half needs a server: `TETHER_TEST_DATABASE_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test` (what `.ci/run` starts). Without one those tests
//! fail, saying so; they never skip silently.

// The lifecycle columns (`LifecycleStore`), in a file of their own.
#[path = "conformance/lifecycle.rs"]
mod lifecycle;

use std::sync::Arc;

use tempfile::TempDir;
use tether_store::{
    AttemptOutcome, AttemptWindow, ConnectSessionRow, ConnectionEventRow, ConnectionFilter,
    ConnectionPage, ConnectionRow, ConnectionStatus, ConsumeOutcome, CredentialsUpdate,
    FlowStateRow, HistoryEntry, NewWebhookEvent, PgStore, Sealed, SealedCount, SqliteStore,
    StatusChange, Store, StoreError, TokenHash, WebhookAttempt, WebhookEventFilter,
    WebhookEventRow, WebhookStatus, history_kind,
};
use tokio::sync::Barrier;

/// The suite's "current time", in unix seconds.
const NOW: i64 = 1_800_000_000;

/// How many tasks race in the concurrency tests.
const RACERS: usize = 16;

// ----- fixtures --------------------------------------------------------------------------

fn session(token_hash: &str, expires_at: i64) -> ConnectSessionRow {
    ConnectSessionRow {
        token_hash: TokenHash::from_hex(token_hash),
        end_user_id: "user-1".to_owned(),
        end_user_email: Some("ada@example.com".to_owned()),
        end_user_display_name: None,
        integrations: Some(r#"["github"]"#.to_owned()),
        return_url: Some("https://app.example.com/done".to_owned()),
        expires_at,
        created_at: NOW - 10,
        browser_hash: None,
        completed_at: None,
    }
}

fn flow(state_hash: &str, browser_hash: &str, expires_at: i64) -> FlowStateRow {
    FlowStateRow {
        state_hash: TokenHash::from_hex(state_hash),
        browser_hash: TokenHash::from_hex(browser_hash),
        session_token_hash: TokenHash::from_hex("session-hash"),
        integration: "github".to_owned(),
        end_user_id: "user-1".to_owned(),
        pkce_verifier: Sealed::from_bytes(vec![0, 1, 2, 255, 254]),
        redirect_uri: "https://tether.example.com/oauth/callback".to_owned(),
        return_url: None,
        display: "popup".to_owned(),
        expires_at,
        created_at: NOW - 5,
    }
}

fn connection(id: &str, integration: &str, end_user_id: &str) -> ConnectionRow {
    ConnectionRow {
        id: id.to_owned(),
        integration: integration.to_owned(),
        end_user_id: end_user_id.to_owned(),
        end_user_email: Some(format!("{end_user_id}@example.com")),
        end_user_display_name: Some("Ada".to_owned()),
        status: ConnectionStatus::Active,
        credentials: format!("sealed:{id}").into_bytes(),
        credentials_version: 1,
        access_expires_at: Some(NOW + 3600),
        metadata: r#"{"scopes":["repo"]}"#.to_owned(),
        last_error: None,
        refresh_failures: 0,
        next_refresh_at: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

fn update(id: &str, expected_version: i64) -> CredentialsUpdate {
    CredentialsUpdate {
        id: id.to_owned(),
        expected_version,
        credentials: b"sealed:new".to_vec(),
        access_expires_at: Some(NOW + 7200),
        metadata: r#"{"scopes":["repo","user"]}"#.to_owned(),
        status: ConnectionStatus::Active,
        end_user_email: Some("new@example.com".to_owned()),
        end_user_display_name: None,
        now: NOW + 100,
    }
}

fn ids(rows: &[ConnectionRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

async fn get<S: Store>(store: &S, id: &str) -> ConnectionRow {
    store
        .get_connection(id)
        .await
        .unwrap()
        .expect("connection exists")
}

// ----- the suite ---------------------------------------------------------------------------

async fn ping<S: Store>(store: S) {
    store.ping().await.unwrap();
}

async fn connect_sessions<S: Store>(store: S) {
    let row = session("token-hash-1", NOW + 600);
    store.insert_connect_session(&row).await.unwrap();

    assert_eq!(
        store.get_connect_session("token-hash-1").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(store.get_connect_session("unknown").await.unwrap(), None);

    // An expired session is still returned: expiry is the caller's decision.
    let expired = session("token-hash-2", NOW - 1);
    store.insert_connect_session(&expired).await.unwrap();
    assert_eq!(
        store.get_connect_session("token-hash-2").await.unwrap(),
        Some(expired)
    );

    let again = store.insert_connect_session(&row).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

async fn flow_state_single_use<S: Store>(store: S) {
    let row = flow("state-1", "browser-1", NOW + 600);
    store.insert_flow_state(&row, 10).await.unwrap();

    let first = store
        .consume_flow_state("state-1", "browser-1")
        .await
        .unwrap();
    assert_eq!(first, ConsumeOutcome::Consumed(row));
    let second = store
        .consume_flow_state("state-1", "browser-1")
        .await
        .unwrap();
    assert_eq!(second, ConsumeOutcome::Unknown);
    let never = store
        .consume_flow_state("never-issued", "browser-1")
        .await
        .unwrap();
    assert_eq!(never, ConsumeOutcome::Unknown);
}

async fn flow_state_expired_is_still_consumed<S: Store>(store: S) {
    let row = flow("state-old", "browser-1", NOW - 1);
    store.insert_flow_state(&row, 10).await.unwrap();
    let outcome = store
        .consume_flow_state("state-old", "browser-1")
        .await
        .unwrap();
    assert_eq!(outcome, ConsumeOutcome::Consumed(row));
    let again = store
        .consume_flow_state("state-old", "browser-1")
        .await
        .unwrap();
    assert_eq!(again, ConsumeOutcome::Unknown);
}

async fn flow_state_wrong_browser_leaves_it<S: Store>(store: S) {
    let row = flow("state-1", "victim", NOW + 600);
    store.insert_flow_state(&row, 10).await.unwrap();

    for _ in 0..2 {
        let outcome = store
            .consume_flow_state("state-1", "attacker")
            .await
            .unwrap();
        assert_eq!(outcome, ConsumeOutcome::WrongBrowser);
    }
    let outcome = store.consume_flow_state("state-1", "victim").await.unwrap();
    assert_eq!(outcome, ConsumeOutcome::Consumed(row));
}

async fn flow_state_concurrent_consume<S: Store>(store: S) {
    let row = flow("state-race", "browser-1", NOW + 600);
    store.insert_flow_state(&row, 10).await.unwrap();

    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .consume_flow_state("state-race", "browser-1")
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut consumed = 0;
    for task in tasks {
        match task.await.unwrap() {
            ConsumeOutcome::Consumed(got) => {
                assert_eq!(got, row);
                consumed += 1;
            }
            ConsumeOutcome::Unknown => {}
            ConsumeOutcome::WrongBrowser => panic!("same browser reported as wrong"),
        }
    }
    assert_eq!(consumed, 1, "exactly one callback may win");
}

async fn connection_insert_get_find<S: Store>(store: S) {
    let row = connection("conn-1", "github", "user-1");
    store.insert_connection(&row).await.unwrap();

    assert_eq!(
        store.get_connection("conn-1").await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        store.find_connection("github", "user-1").await.unwrap(),
        Some(row)
    );
    assert_eq!(store.get_connection("conn-2").await.unwrap(), None);
    assert_eq!(
        store.find_connection("github", "user-2").await.unwrap(),
        None
    );
    assert_eq!(
        store.find_connection("slack", "user-1").await.unwrap(),
        None
    );

    // Optional fields round-trip as NULL.
    let mut bare = connection("conn-2", "slack", "user-1");
    bare.end_user_email = None;
    bare.end_user_display_name = None;
    bare.access_expires_at = None;
    bare.status = ConnectionStatus::NeedsReauth;
    bare.last_error = Some("invalid_grant".to_owned());
    bare.refresh_failures = 2;
    bare.next_refresh_at = Some(NOW + 30);
    bare.credentials_version = 7;
    store.insert_connection(&bare).await.unwrap();
    assert_eq!(store.get_connection("conn-2").await.unwrap(), Some(bare));
}

async fn connection_duplicate_conflicts<S: Store>(store: S) {
    let original = connection("conn-1", "github", "user-1");
    store.insert_connection(&original).await.unwrap();

    let same_pair = connection("conn-2", "github", "user-1");
    let err = store.insert_connection(&same_pair).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");

    let same_id = connection("conn-1", "slack", "user-9");
    let err = store.insert_connection(&same_id).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");

    // Nothing was overwritten, and other pairs are fine.
    assert_eq!(get(&store, "conn-1").await, original);
    assert_eq!(store.get_connection("conn-2").await.unwrap(), None);
    store
        .insert_connection(&connection("conn-3", "slack", "user-1"))
        .await
        .unwrap();
    store
        .insert_connection(&connection("conn-4", "github", "user-2"))
        .await
        .unwrap();
}

async fn list_connections_filters<S: Store>(store: S) {
    // Inserted out of creation order, to prove the ordering comes from created_at, then id.
    let mut rows = vec![
        connection("c", "github", "user-1"),
        connection("a", "slack", "user-1"),
        connection("d", "github", "user-2"),
        connection("b", "github", "user-3"),
    ];
    rows[0].created_at = NOW + 1;
    rows[1].created_at = NOW + 2;
    rows[2].created_at = NOW + 1;
    rows[3].created_at = NOW;
    rows[2].status = ConnectionStatus::Revoked;
    for row in &rows {
        store.insert_connection(row).await.unwrap();
    }

    let list = |filter: ConnectionFilter| {
        let store = store.clone();
        async move { store.list_connections(&filter).await.unwrap() }
    };

    let all = list(ConnectionFilter::default()).await;
    assert_eq!(ids(&all), ["b", "c", "d", "a"]);
    assert_eq!(all[0], rows[3]);

    let by_user = list(ConnectionFilter {
        end_user_id: Some("user-1".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&by_user), ["c", "a"]);

    let by_integration = list(ConnectionFilter {
        integration: Some("github".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&by_integration), ["b", "c", "d"]);

    let by_status = list(ConnectionFilter {
        status: Some(ConnectionStatus::Revoked),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&by_status), ["d"]);

    let combined = list(ConnectionFilter {
        end_user_id: Some("user-1".to_owned()),
        integration: Some("github".to_owned()),
        status: Some(ConnectionStatus::Active),
        limit: 0,
    })
    .await;
    assert_eq!(ids(&combined), ["c"]);

    let none = list(ConnectionFilter {
        end_user_id: Some("nobody".to_owned()),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());

    let limited = list(ConnectionFilter {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&limited), ["b", "c"]);
}

async fn list_connections_limits<S: Store>(store: S) {
    for n in 0..1001 {
        let row = connection(&format!("conn-{n:04}"), "github", &format!("user-{n:04}"));
        store.insert_connection(&row).await.unwrap();
    }
    let default = store
        .list_connections(&ConnectionFilter::default())
        .await
        .unwrap();
    assert_eq!(default.len(), 100, "limit 0 means the default of 100");
    assert_eq!(default[0].id, "conn-0000");
    let capped = store
        .list_connections(&ConnectionFilter {
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(capped.len(), 1000, "the limit is capped at 1000");
}

async fn replace_credentials_cas<S: Store>(store: S) {
    let mut original = connection("conn-1", "github", "user-1");
    original.status = ConnectionStatus::NeedsReauth;
    original.last_error = Some("timeout".to_owned());
    original.refresh_failures = 3;
    original.next_refresh_at = Some(NOW + 300);
    store.insert_connection(&original).await.unwrap();

    // A stale writer changes nothing.
    assert!(
        !store
            .replace_credentials(&update("conn-1", 0))
            .await
            .unwrap()
    );
    assert_eq!(get(&store, "conn-1").await, original);

    // The current version wins, bumps the version and resets the refresh bookkeeping.
    assert!(
        store
            .replace_credentials(&update("conn-1", 1))
            .await
            .unwrap()
    );
    let after = get(&store, "conn-1").await;
    let expected = ConnectionRow {
        credentials: b"sealed:new".to_vec(),
        credentials_version: 2,
        access_expires_at: Some(NOW + 7200),
        metadata: r#"{"scopes":["repo","user"]}"#.to_owned(),
        status: ConnectionStatus::Active,
        end_user_email: Some("new@example.com".to_owned()),
        // `None` in the update keeps the stored value.
        end_user_display_name: Some("Ada".to_owned()),
        last_error: None,
        refresh_failures: 0,
        next_refresh_at: None,
        updated_at: NOW + 100,
        ..original.clone()
    };
    assert_eq!(after, expected);

    // The version that just won is now stale.
    assert!(
        !store
            .replace_credentials(&update("conn-1", 1))
            .await
            .unwrap()
    );
    assert_eq!(get(&store, "conn-1").await, expected);

    // Credentials that stop expiring are stored as such.
    let mut forever = update("conn-1", 2);
    forever.access_expires_at = None;
    assert!(store.replace_credentials(&forever).await.unwrap());
    let after = get(&store, "conn-1").await;
    assert_eq!(after.access_expires_at, None);
    assert_eq!(after.credentials_version, 3);

    assert!(
        !store
            .replace_credentials(&update("missing", 1))
            .await
            .unwrap()
    );
}

async fn replace_credentials_concurrent<S: Store>(store: S) {
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();

    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut write = update("conn-1", 1);
                write.credentials = format!("sealed:writer-{n}").into_bytes();
                barrier.wait().await;
                store
                    .replace_credentials(&write)
                    .await
                    .unwrap()
                    .then_some(write.credentials)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "exactly one writer may win");
    let after = get(&store, "conn-1").await;
    assert_eq!(after.credentials_version, 2);
    assert_eq!(after.credentials, winners[0]);
}

async fn set_connection_status<S: Store>(store: S) {
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();

    let changed = store
        .set_connection_status(
            "conn-1",
            ConnectionStatus::NeedsReauth,
            Some("invalid_grant"),
            NOW + 5,
        )
        .await
        .unwrap();
    assert!(changed);
    let row = get(&store, "conn-1").await;
    assert_eq!(row.status, ConnectionStatus::NeedsReauth);
    assert_eq!(row.last_error.as_deref(), Some("invalid_grant"));
    assert_eq!(row.updated_at, NOW + 5);
    assert_eq!(
        row.credentials_version, 1,
        "a status change is not a credentials write"
    );

    let changed = store
        .set_connection_status("conn-1", ConnectionStatus::Revoked, None, NOW + 6)
        .await
        .unwrap();
    assert!(changed);
    let row = get(&store, "conn-1").await;
    assert_eq!(row.status, ConnectionStatus::Revoked);
    assert_eq!(row.last_error, None);

    let missing = store
        .set_connection_status("missing", ConnectionStatus::Revoked, None, NOW)
        .await
        .unwrap();
    assert!(!missing);
}

async fn delete_connection<S: Store>(store: S) {
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    store
        .insert_connection(&connection("conn-2", "github", "user-2"))
        .await
        .unwrap();

    assert!(store.delete_connection("conn-1").await.unwrap());
    assert_eq!(store.get_connection("conn-1").await.unwrap(), None);
    assert_eq!(
        store.find_connection("github", "user-1").await.unwrap(),
        None
    );
    assert!(!store.delete_connection("conn-1").await.unwrap());
    assert!(
        store.get_connection("conn-2").await.unwrap().is_some(),
        "only that one"
    );

    // The end user can connect again afterwards.
    store
        .insert_connection(&connection("conn-3", "github", "user-1"))
        .await
        .unwrap();
}

async fn api_managed_integrations<S: Store>(store: S) {
    assert!(store.list_integrations().await.unwrap().is_empty());
    assert!(store.put_integration("crm", b"sealed-1", 10).await.unwrap());
    assert!(
        store
            .put_integration("alpha", b"sealed-a", 11)
            .await
            .unwrap()
    );
    assert!(
        !store.put_integration("crm", b"sealed-2", 12).await.unwrap(),
        "a replace"
    );
    let all = store.list_integrations().await.unwrap();
    assert_eq!(
        all,
        [
            ("alpha".to_owned(), b"sealed-a".to_vec()),
            ("crm".to_owned(), b"sealed-2".to_vec())
        ]
    );
    assert!(store.delete_integration("crm").await.unwrap());
    assert!(!store.delete_integration("crm").await.unwrap());
    assert_eq!(store.list_integrations().await.unwrap().len(), 1);
}

async fn cursor_and_reseal<S: Store>(store: S) {
    for n in 0..5 {
        let id = format!("conn-{n}");
        store
            .insert_connection(&connection(&id, "github", &format!("user-{n}")))
            .await
            .unwrap();
    }
    let first = store.connections_after(None, 2).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["conn-0", "conn-1"]);
    let rest = store.connections_after(Some("conn-1"), 10).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert!(
        store
            .connections_after(Some("conn-4"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let before = get(&store, "conn-2").await;
    assert!(
        store
            .reseal_credentials("conn-2", before.credentials_version, b"resealed", 50)
            .await
            .unwrap()
    );
    let after = get(&store, "conn-2").await;
    assert_eq!(after.credentials, b"resealed");
    assert_eq!(after.credentials_version, before.credentials_version + 1);
    assert_eq!(after.metadata, before.metadata);
    assert_eq!(after.access_expires_at, before.access_expires_at);
    // A stale version changes nothing.
    assert!(
        !store
            .reseal_credentials("conn-2", before.credentials_version, b"stale", 60)
            .await
            .unwrap()
    );
    assert_eq!(get(&store, "conn-2").await.credentials, b"resealed");
}

async fn refresh_leases<S: Store>(store: S) {
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    let until = NOW + 30;

    assert!(
        store
            .try_acquire_refresh_lease("conn-1", "a", until, NOW)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_refresh_lease("conn-1", "b", until, NOW + 1)
            .await
            .unwrap()
    );
    // The holder may take it again (extend it).
    assert!(
        store
            .try_acquire_refresh_lease("conn-1", "a", until + 10, NOW + 2)
            .await
            .unwrap()
    );

    // A non-owner's release does nothing.
    store.release_refresh_lease("conn-1", "b").await.unwrap();
    assert!(
        !store
            .try_acquire_refresh_lease("conn-1", "b", until, NOW + 3)
            .await
            .unwrap()
    );

    // The owner's release frees it at once.
    store.release_refresh_lease("conn-1", "a").await.unwrap();
    assert!(
        store
            .try_acquire_refresh_lease("conn-1", "b", NOW + 60, NOW + 4)
            .await
            .unwrap()
    );

    // An expired lease (a crashed holder) can be taken over, from its expiry on.
    assert!(
        !store
            .try_acquire_refresh_lease("conn-1", "c", NOW + 120, NOW + 59)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_acquire_refresh_lease("conn-1", "c", NOW + 120, NOW + 60)
            .await
            .unwrap()
    );
    // ...and the former holder, late, cannot release the new holder's lease.
    store.release_refresh_lease("conn-1", "b").await.unwrap();
    assert!(
        !store
            .try_acquire_refresh_lease("conn-1", "b", NOW + 120, NOW + 61)
            .await
            .unwrap()
    );

    // Leases do not touch the credentials.
    assert_eq!(get(&store, "conn-1").await.credentials_version, 1);

    assert!(
        !store
            .try_acquire_refresh_lease("missing", "a", until, NOW)
            .await
            .unwrap()
    );
    store.release_refresh_lease("missing", "a").await.unwrap();
}

async fn refresh_lease_concurrent<S: Store>(store: S) {
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();

    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let owner = format!("instance-{n}");
                store
                    .try_acquire_refresh_lease("conn-1", &owner, NOW + 30, NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut holders = 0;
    for task in tasks {
        holders += usize::from(task.await.unwrap());
    }
    assert_eq!(holders, 1, "exactly one instance may hold the lease");
}

async fn connections_due_for_refresh<S: Store>(store: S) {
    let mut rows = Vec::new();
    let mut add = |id: &str, expires: Option<i64>, status, next_refresh_at| {
        let mut row = connection(id, "github", id);
        row.access_expires_at = expires;
        row.status = status;
        row.next_refresh_at = next_refresh_at;
        rows.push(row);
    };
    use ConnectionStatus::*;
    add("soon", Some(NOW + 10), Active, None);
    add("sooner", Some(NOW + 5), Active, None);
    add("later", Some(NOW + 100), Active, None);
    add("never", None, Active, None);
    add("reauth", Some(NOW + 1), NeedsReauth, None);
    add("revoked", Some(NOW + 1), Revoked, None);
    add("backing-off", Some(NOW + 2), Active, Some(NOW + 60));
    add("back-off-over", Some(NOW + 3), Active, Some(NOW));
    add("already-expired", Some(NOW - 100), Active, None);
    for row in &rows {
        store.insert_connection(row).await.unwrap();
    }

    let due = store
        .connections_due_for_refresh(NOW + 50, NOW, 100)
        .await
        .unwrap();
    assert_eq!(
        ids(&due),
        ["already-expired", "back-off-over", "sooner", "soon"]
    );
    assert_eq!(due[1], rows[7]);

    let limited = store
        .connections_due_for_refresh(NOW + 50, NOW, 2)
        .await
        .unwrap();
    assert_eq!(ids(&limited), ["already-expired", "back-off-over"]);

    // Once the back-off is over, that connection is due again.
    let later = store
        .connections_due_for_refresh(NOW + 50, NOW + 60, 100)
        .await
        .unwrap();
    assert_eq!(
        ids(&later),
        [
            "already-expired",
            "backing-off",
            "back-off-over",
            "sooner",
            "soon"
        ]
    );

    // `before` is exclusive.
    let strict = store
        .connections_due_for_refresh(NOW + 5, NOW, 100)
        .await
        .unwrap();
    assert_eq!(ids(&strict), ["already-expired", "back-off-over"]);
}

async fn record_refresh_failure<S: Store>(store: S) {
    let mut row = connection("conn-1", "github", "user-1");
    row.access_expires_at = Some(NOW + 10);
    store.insert_connection(&row).await.unwrap();

    store
        .record_refresh_failure("conn-1", NOW + 30, "provider 503", NOW + 1)
        .await
        .unwrap();
    store
        .record_refresh_failure("conn-1", NOW + 90, "timeout", NOW + 31)
        .await
        .unwrap();
    let after = get(&store, "conn-1").await;
    assert_eq!(after.refresh_failures, 2);
    assert_eq!(after.next_refresh_at, Some(NOW + 90));
    assert_eq!(after.last_error.as_deref(), Some("timeout"));
    assert_eq!(after.updated_at, NOW + 31);
    assert_eq!(
        after.status,
        ConnectionStatus::Active,
        "status is left as it is"
    );
    assert_eq!(after.credentials, row.credentials);

    // In back-off until next_refresh_at.
    let due = store
        .connections_due_for_refresh(NOW + 60, NOW + 89, 10)
        .await
        .unwrap();
    assert!(due.is_empty());
    let due = store
        .connections_due_for_refresh(NOW + 60, NOW + 90, 10)
        .await
        .unwrap();
    assert_eq!(ids(&due), ["conn-1"]);

    // A successful refresh clears the bookkeeping.
    assert!(
        store
            .replace_credentials(&update("conn-1", 1))
            .await
            .unwrap()
    );
    let after = get(&store, "conn-1").await;
    assert_eq!(after.refresh_failures, 0);
    assert_eq!(after.next_refresh_at, None);
    assert_eq!(after.last_error, None);

    // Unknown ids are not an error.
    store
        .record_refresh_failure("missing", NOW, "x", NOW)
        .await
        .unwrap();
}

async fn purge_expired<S: Store>(store: S) {
    store
        .insert_connect_session(&session("s-expired", NOW - 1))
        .await
        .unwrap();
    store
        .insert_connect_session(&session("s-boundary", NOW))
        .await
        .unwrap();
    store
        .insert_connect_session(&session("s-live", NOW + 600))
        .await
        .unwrap();
    store
        .insert_flow_state(&flow("f-expired", "b", NOW - 1), 10)
        .await
        .unwrap();
    store
        .insert_flow_state(&flow("f-expired-2", "b", NOW - 100), 10)
        .await
        .unwrap();
    let live = flow("f-live", "b", NOW + 600);
    store.insert_flow_state(&live, 10).await.unwrap();
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();

    assert_eq!(store.purge_expired(NOW).await.unwrap(), 3);

    assert_eq!(store.get_connect_session("s-expired").await.unwrap(), None);
    assert!(
        store
            .get_connect_session("s-boundary")
            .await
            .unwrap()
            .is_some(),
        "expires AT now"
    );
    assert!(store.get_connect_session("s-live").await.unwrap().is_some());
    let gone = store.consume_flow_state("f-expired", "b").await.unwrap();
    assert_eq!(gone, ConsumeOutcome::Unknown);
    let kept = store.consume_flow_state("f-live", "b").await.unwrap();
    assert_eq!(kept, ConsumeOutcome::Consumed(live));
    assert!(
        store.get_connection("conn-1").await.unwrap().is_some(),
        "connections untouched"
    );

    assert_eq!(store.purge_expired(NOW).await.unwrap(), 0);
}

/// First half of the restart test: writes one of everything.
async fn seed_before_restart<S: Store>(store: S) {
    store
        .insert_connect_session(&session("s-1", NOW + 600))
        .await
        .unwrap();
    store
        .insert_flow_state(&flow("f-1", "b", NOW + 600), 10)
        .await
        .unwrap();
    store
        .insert_connection(&connection("conn-1", "github", "user-1"))
        .await
        .unwrap();
    assert!(
        store
            .replace_credentials(&update("conn-1", 1))
            .await
            .unwrap()
    );
    assert!(
        store
            .try_acquire_refresh_lease("conn-1", "a", NOW + 30, NOW)
            .await
            .unwrap()
    );
}

/// Second half of the restart test, on a new store over the same database.
async fn check_after_restart<S: Store>(store: S) {
    assert_eq!(
        store.get_connect_session("s-1").await.unwrap(),
        Some(session("s-1", NOW + 600))
    );
    let conn = get(&store, "conn-1").await;
    assert_eq!(conn.credentials_version, 2);
    assert_eq!(conn.credentials, b"sealed:new");
    assert!(
        !store
            .try_acquire_refresh_lease("conn-1", "b", NOW + 30, NOW)
            .await
            .unwrap()
    );
    let outcome = store.consume_flow_state("f-1", "b").await.unwrap();
    assert_eq!(
        outcome,
        ConsumeOutcome::Consumed(flow("f-1", "b", NOW + 600))
    );
}

// ----- instantiation per backend ---------------------------------------------------------

/// Instantiates every suite test for one backend. `$open` is an async fn returning the store
/// and a guard that keeps its database alive for the test's duration.
async fn api_key_hashes<S: Store>(store: S) {
    assert!(store.api_key_hashes().await.unwrap().is_empty());
    store
        .insert_api_key_hash("aa", "first run", 1)
        .await
        .unwrap();
    store.insert_api_key_hash("bb", "second", 2).await.unwrap();
    assert_eq!(store.api_key_hashes().await.unwrap(), ["aa", "bb"]);
    assert!(matches!(
        store.insert_api_key_hash("aa", "again", 3).await,
        Err(StoreError::Conflict(_))
    ));
}

// ----- webhook outbox --------------------------------------------------------------------

fn event(id: &str, connection_id: &str, at: i64) -> NewWebhookEvent {
    NewWebhookEvent {
        id: id.to_owned(),
        event_type: "connection.refreshed".to_owned(),
        connection_id: connection_id.to_owned(),
        payload: format!(r#"{{"id":"{id}"}}"#),
        created_at: at,
        deliver: true,
        history: HistoryEntry {
            kind: history_kind::REFRESHED.to_owned(),
            integration: "github".to_owned(),
            detail: None,
            reference: None,
        },
    }
}

/// An event recorded in the history only (no webhook URL configured).
fn history_only(id: &str, connection_id: &str, kind: &str, at: i64) -> NewWebhookEvent {
    let mut e = event(id, connection_id, at);
    e.deliver = false;
    e.history.kind = kind.to_owned();
    e
}

async fn history<S: Store>(store: &S, connection_id: &str) -> Vec<ConnectionEventRow> {
    store
        .list_connection_events(connection_id, None, 500)
        .await
        .unwrap()
}

fn kinds(rows: &[ConnectionEventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.kind.as_str()).collect()
}

fn attempt(id: &str, owner: &str, at: i64, outcome: AttemptOutcome) -> WebhookAttempt {
    WebhookAttempt {
        id: id.to_owned(),
        owner: owner.to_owned(),
        at,
        status_code: Some(500),
        error: Some("http_500".to_owned()),
        outcome,
    }
}

/// Every event, oldest first.
async fn all_events<S: Store>(store: &S) -> Vec<WebhookEventRow> {
    let mut rows = store
        .list_webhook_events(&WebhookEventFilter::default())
        .await
        .unwrap();
    rows.reverse();
    rows
}

fn event_ids(rows: &[WebhookEventRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

async fn webhook_events_commit_with_their_change<S: Store>(store: S) {
    let row = connection("conn-1", "github", "user-1");
    store
        .insert_connection_with_event(&row, Some(&event("evt-1", "conn-1", NOW)))
        .await
        .unwrap();
    // A failed change leaves no event behind.
    let duplicate = store
        .insert_connection_with_event(&row, Some(&event("evt-x1", "conn-1", NOW)))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );
    assert!(
        !store
            .replace_credentials_with_event(
                &update("conn-1", 7),
                Some(&event("evt-x2", "conn-1", NOW))
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_credentials_with_event(
                &update("conn-1", 1),
                Some(&event("evt-2", "conn-1", NOW))
            )
            .await
            .unwrap()
    );
    assert_eq!(get(&store, "conn-1").await.credentials_version, 2);

    let mut change = StatusChange {
        id: "conn-1".to_owned(),
        status: ConnectionStatus::NeedsReauth,
        last_error: Some("invalid_grant".to_owned()),
        expected_version: Some(1),
        now: NOW + 1,
    };
    // Stale version: a refresh with old credentials must not mark a reconnected connection.
    assert!(
        !store
            .set_connection_status_with_event(&change, Some(&event("evt-x3", "conn-1", NOW)))
            .await
            .unwrap()
    );
    change.expected_version = Some(2);
    assert!(
        store
            .set_connection_status_with_event(&change, Some(&event("evt-3", "conn-1", NOW)))
            .await
            .unwrap()
    );
    let marked = get(&store, "conn-1").await;
    assert_eq!(marked.status, ConnectionStatus::NeedsReauth);
    assert_eq!(marked.last_error.as_deref(), Some("invalid_grant"));
    // Same status again is no change, hence no second event.
    change.expected_version = None;
    assert!(
        !store
            .set_connection_status_with_event(&change, Some(&event("evt-x4", "conn-1", NOW)))
            .await
            .unwrap()
    );

    assert!(
        !store
            .delete_connection_with_event("missing", Some(&event("evt-x5", "missing", NOW)))
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_connection_with_event("conn-1", Some(&event("evt-4", "conn-1", NOW)))
            .await
            .unwrap()
    );
    assert_eq!(store.get_connection("conn-1").await.unwrap(), None);
    // Events outlive their connection, and `None` writes none.
    store
        .insert_connection_with_event(&connection("conn-2", "github", "user-2"), None)
        .await
        .unwrap();

    let events = all_events(&store).await;
    assert_eq!(event_ids(&events), ["evt-1", "evt-2", "evt-3", "evt-4"]);
    let first = &events[0];
    assert_eq!(first.status, WebhookStatus::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.next_attempt_at, NOW);
    assert_eq!(first.payload, r#"{"id":"evt-1"}"#);
    assert_eq!(first.event_type, "connection.refreshed");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store.get_webhook_event("evt-3").await.unwrap().as_ref(),
        Some(&events[2])
    );
    assert_eq!(store.get_webhook_event("evt-x3").await.unwrap(), None);
}

async fn seed_events<S: Store>(store: &S, pairs: &[(&str, &str)]) {
    // Each event rides on the insert of a throwaway connection named after it.
    for (id, connection_id) in pairs {
        let conn_row = connection(&format!("seed-{id}"), "github", &format!("user-{id}"));
        store
            .insert_connection_with_event(&conn_row, Some(&event(id, connection_id, NOW)))
            .await
            .unwrap();
    }
}

async fn webhook_claims_return_to_their_owner<S: Store>(store: S) {
    seed_events(&store, &[("r1", "conn-r")]).await;
    let claimed = store
        .claim_webhook_events("w1", NOW + 60, NOW, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["r1"]);
    // Another worker waits for the lease; the owner (restarted) takes it back at once.
    assert!(
        store
            .claim_webhook_events("w2", NOW + 60, NOW + 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_webhook_events("w1", NOW + 61, NOW + 1, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&again), ["r1"]);
}

async fn webhook_claims_in_order_per_connection<S: Store>(store: S) {
    seed_events(
        &store,
        &[("a1", "conn-a"), ("a2", "conn-a"), ("b1", "conn-b")],
    )
    .await;

    // Only the oldest pending event of each connection.
    let claimed = store
        .claim_webhook_events("w1", NOW + 60, NOW, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["a1", "b1"]);
    // Claimed events are leased; a2 waits behind a1.
    assert!(
        store
            .claim_webhook_events("w2", NOW + 60, NOW, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Only the claim holder records.
    assert!(
        !store
            .record_webhook_attempt(&attempt("a1", "w2", NOW + 1, AttemptOutcome::Delivered))
            .await
            .unwrap()
    );
    let mut delivered = attempt("a1", "w1", NOW + 1, AttemptOutcome::Delivered);
    delivered.status_code = Some(204);
    delivered.error = None;
    assert!(store.record_webhook_attempt(&delivered).await.unwrap());
    let a1 = store.get_webhook_event("a1").await.unwrap().unwrap();
    assert_eq!(a1.status, WebhookStatus::Delivered);
    assert_eq!(a1.attempts, 1);
    assert_eq!(a1.delivered_at, Some(NOW + 1));
    assert_eq!(a1.last_status_code, Some(204));

    // b1 fails and backs off; a2 is now first of its connection.
    let retry = AttemptOutcome::Retry {
        next_attempt_at: NOW + 30,
    };
    assert!(
        store
            .record_webhook_attempt(&attempt("b1", "w1", NOW + 1, retry))
            .await
            .unwrap()
    );
    let b1 = store.get_webhook_event("b1").await.unwrap().unwrap();
    assert_eq!(
        (b1.status, b1.attempts, b1.next_attempt_at),
        (WebhookStatus::Pending, 1, NOW + 30)
    );
    assert_eq!(b1.last_error.as_deref(), Some("http_500"));
    let claimed = store
        .claim_webhook_events("w1", NOW + 60, NOW + 2, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["a2"]);
    // Another worker (w1 still holds a2 and would get it back).
    let claimed = store
        .claim_webhook_events("w4", NOW + 90, NOW + 30, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["b1"]);

    // An expired claim can be taken over; the former holder then records nothing.
    let claimed = store
        .claim_webhook_events("w2", NOW + 200, NOW + 61, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["a2"]);
    assert!(
        !store
            .record_webhook_attempt(&attempt("a2", "w1", NOW + 62, AttemptOutcome::Delivered))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_webhook_attempt(&attempt("a2", "w2", NOW + 62, AttemptOutcome::Delivered))
            .await
            .unwrap()
    );
    // The limit is honoured.
    seed_events(&store, &[("c1", "conn-c"), ("d1", "conn-d")]).await;
    let claimed = store
        .claim_webhook_events("w3", NOW + 500, NOW + 100, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

async fn webhook_give_up_redeliver_and_log<S: Store>(store: S) {
    seed_events(
        &store,
        &[("a1", "conn-a"), ("a2", "conn-a"), ("b1", "conn-b")],
    )
    .await;
    let claimed = store
        .claim_webhook_events("w1", NOW + 60, NOW, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["a1", "b1"]);
    assert!(
        store
            .record_webhook_attempt(&attempt("a1", "w1", NOW, AttemptOutcome::GiveUp))
            .await
            .unwrap()
    );
    let a1 = store.get_webhook_event("a1").await.unwrap().unwrap();
    assert_eq!((a1.status, a1.attempts), (WebhookStatus::Failed, 1));
    // A failed event no longer holds back its connection (w2: w1 still holds b1).
    let claimed = store
        .claim_webhook_events("w2", NOW + 60, NOW, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["a2"]);

    // The log: newest first, filtered.
    let log = store
        .list_webhook_events(&WebhookEventFilter::default())
        .await
        .unwrap();
    assert_eq!(event_ids(&log), ["b1", "a2", "a1"]);
    let failed = store
        .list_webhook_events(&WebhookEventFilter {
            status: Some(WebhookStatus::Failed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(event_ids(&failed), ["a1"]);
    let of_a = store
        .list_webhook_events(&WebhookEventFilter {
            connection_id: Some("conn-a".to_owned()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(event_ids(&of_a), ["a2"]);

    // Redelivery queues it again, due now, with a fresh attempt count.
    assert!(store.redeliver_webhook_event("a1", NOW + 5).await.unwrap());
    assert!(
        !store
            .redeliver_webhook_event("missing", NOW + 5)
            .await
            .unwrap()
    );
    let a1 = store.get_webhook_event("a1").await.unwrap().unwrap();
    assert_eq!(
        (a1.status, a1.attempts, a1.next_attempt_at),
        (WebhookStatus::Pending, 0, NOW + 5)
    );
    // a2 is still claimed by w1, but a1 is older: it goes first once due.
    let claimed = store
        .claim_webhook_events("w2", NOW + 60, NOW + 5, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["a1"]);
}

/// A redelivery while the event is being sent keeps the sender's claim: nobody else takes it,
/// the attempt in flight is recorded, and the event is not queued a second time.
async fn webhook_redelivery_keeps_a_claim<S: Store>(store: S) {
    seed_events(&store, &[("e1", "conn-e")]).await;
    let claimed = store
        .claim_webhook_events("w1", NOW + 60, NOW, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["e1"]);
    for _ in 0..3 {
        assert!(store.redeliver_webhook_event("e1", NOW + 1).await.unwrap());
    }
    let others = store
        .claim_webhook_events("w2", NOW + 60, NOW + 1, 10)
        .await
        .unwrap();
    assert!(event_ids(&others).is_empty(), "still w1's");
    assert!(
        store
            .record_webhook_attempt(&attempt("e1", "w1", NOW + 2, AttemptOutcome::Delivered))
            .await
            .unwrap(),
        "the attempt in flight is recorded"
    );
    let e1 = store.get_webhook_event("e1").await.unwrap().unwrap();
    assert_eq!((e1.status, e1.attempts), (WebhookStatus::Delivered, 1));
    let none = store
        .claim_webhook_events("w2", NOW + 60, NOW + 3, 10)
        .await
        .unwrap();
    assert!(event_ids(&none).is_empty(), "nothing more to send");
    // Once delivered, a redelivery queues it again.
    assert!(store.redeliver_webhook_event("e1", NOW + 4).await.unwrap());
    let again = store
        .claim_webhook_events("w2", NOW + 60, NOW + 4, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&again), ["e1"]);
}

async fn webhook_claim_concurrent<S: Store>(store: S) {
    let pairs: Vec<(String, String)> = (0..40)
        .map(|n| (format!("evt-{n:02}"), format!("conn-{n:02}")))
        .collect();
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    seed_events(&store, &borrowed).await;

    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .claim_webhook_events(&format!("w{n}"), NOW + 60, NOW, 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap().into_iter().map(|row| row.id));
    }
    claimed.sort();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!(claimed.len(), before, "an event was claimed twice");
    assert_eq!(claimed.len(), 40);
}

async fn connect_session_binds_to_first_browser<S: Store>(store: S) {
    store
        .insert_connect_session(&session("t", NOW + 600))
        .await
        .unwrap();
    let first = store.bind_connect_session("t", "browser-a", NOW).await;
    assert_eq!(first.unwrap().as_deref(), Some("browser-a"));
    // A second browser does not take it over; the first one's binding is returned.
    let second = store.bind_connect_session("t", "browser-b", NOW).await;
    assert_eq!(second.unwrap().as_deref(), Some("browser-a"));
    let row = store.get_connect_session("t").await.unwrap().unwrap();
    assert_eq!(row.browser_hash.as_deref(), Some("browser-a"));
    assert_eq!(
        store.bind_connect_session("none", "b", NOW).await.unwrap(),
        None
    );
}

async fn connect_session_binding_race<S: Store>(store: S) {
    store
        .insert_connect_session(&session("t", NOW + 600))
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for n in 0..RACERS {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mine = format!("browser-{n}");
            barrier.wait().await;
            let bound = store.bind_connect_session("t", &mine, NOW).await.unwrap();
            bound.as_deref() == Some(mine.as_str())
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one browser binds the session");
}

async fn connect_session_completes_once<S: Store>(store: S) {
    store
        .insert_connect_session(&session("t", NOW + 600))
        .await
        .unwrap();
    assert!(store.complete_connect_session("t", NOW).await.unwrap());
    assert!(!store.complete_connect_session("t", NOW + 1).await.unwrap());
    let row = store.get_connect_session("t").await.unwrap().unwrap();
    assert_eq!(row.completed_at, Some(NOW));
    // A failed save hands the session back.
    store.reopen_connect_session("t", NOW + 2).await.unwrap();
    assert_eq!(
        store
            .get_connect_session("t")
            .await
            .unwrap()
            .unwrap()
            .completed_at,
        None
    );
    assert!(!store.complete_connect_session("none", NOW).await.unwrap());

    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.complete_connect_session("t", NOW + 3).await.unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one connect completes a session");
}

async fn connect_session_attempt_window<S: Store>(store: S) {
    store
        .insert_connect_session(&session("t", NOW + 6000))
        .await
        .unwrap();
    for n in 1..=3 {
        let counted = store
            .count_session_attempt("t", NOW + n, 600)
            .await
            .unwrap();
        assert_eq!(
            counted,
            Some(AttemptWindow {
                attempts: n as u32,
                since: NOW + 1
            })
        );
    }
    // Once the window is over, counting starts again.
    let later = store
        .count_session_attempt("t", NOW + 1 + 600, 600)
        .await
        .unwrap();
    assert_eq!(
        later,
        Some(AttemptWindow {
            attempts: 1,
            since: NOW + 601
        })
    );
    assert_eq!(
        store.count_session_attempt("none", NOW, 600).await.unwrap(),
        None
    );
}

async fn flow_states_capped_per_session<S: Store>(store: S) {
    for n in 0..3 {
        let stored = store
            .insert_flow_state(&flow(&format!("s-{n}"), "b", NOW + 600), 3)
            .await
            .unwrap();
        assert!(stored);
    }
    assert!(
        !store
            .insert_flow_state(&flow("s-3", "b", NOW + 600), 3)
            .await
            .unwrap(),
        "the fourth flow of a session is refused"
    );
    let mut other = flow("s-other", "b", NOW + 600);
    other.session_token_hash = TokenHash::from_hex("another-session");
    assert!(store.insert_flow_state(&other, 3).await.unwrap());
}

async fn flow_cursor_and_reseal<S: Store>(store: S) {
    for n in 0..3 {
        store
            .insert_flow_state(&flow(&format!("s-{n}"), "b", NOW + 600), 10)
            .await
            .unwrap();
    }
    let first = store.flow_states_after(None, 2).await.unwrap();
    let hashes: Vec<&str> = first.iter().map(|f| f.state_hash.as_str()).collect();
    assert_eq!(hashes, ["s-0", "s-1"]);
    assert_eq!(
        store
            .flow_states_after(Some("s-1"), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let old = first[0].pkce_verifier.clone();
    assert!(
        store
            .reseal_flow_verifier("s-0", &old, b"resealed")
            .await
            .unwrap()
    );
    assert!(
        !store
            .reseal_flow_verifier("s-0", &old, b"stale")
            .await
            .unwrap(),
        "a changed verifier is not overwritten"
    );
    let taken = store.consume_flow_state("s-0", "b").await.unwrap();
    let ConsumeOutcome::Consumed(row) = taken else {
        panic!("{taken:?}")
    };
    assert_eq!(row.pkce_verifier.as_bytes(), b"resealed");
}

async fn integration_reseal<S: Store>(store: S) {
    store.put_integration("crm", b"sealed-1", 10).await.unwrap();
    assert!(
        store
            .reseal_integration("crm", b"sealed-1", b"sealed-2", 11)
            .await
            .unwrap()
    );
    assert!(
        !store
            .reseal_integration("crm", b"sealed-1", b"stale", 12)
            .await
            .unwrap()
    );
    assert!(
        !store
            .reseal_integration("none", b"x", b"y", 12)
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_integrations().await.unwrap(),
        [("crm".to_owned(), b"sealed-2".to_vec())]
    );
}

// ----- the sealing key (key rotation) ------------------------------------------------------

/// A value laid out as the vault seals it (`0x01 | len(key id) | key id | nonce | ciphertext
/// and tag`), under `key_id`; the store reads only the header.
fn sealed_under(key_id: &str) -> Vec<u8> {
    let mut sealed = vec![1, key_id.len() as u8];
    sealed.extend_from_slice(key_id.as_bytes());
    sealed.extend_from_slice(&[7; 12 + 16 + 5]);
    sealed
}

async fn sealing_key_announcements<S: Store>(store: S) {
    assert_eq!(store.sealing_key().await.unwrap(), None);
    // Instances starting together on a new database: the first announcement wins for all.
    let barrier = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|n| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .announce_sealing_key_if_none(&format!("k-{n}"), NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        winners.push(racer.await.unwrap());
    }
    winners.dedup();
    assert_eq!(winners.len(), 1, "one key announced: {winners:?}");
    assert_eq!(
        store.sealing_key().await.unwrap().as_ref(),
        Some(&winners[0])
    );
    // A rotation replaces it; a later start does not put its own back.
    store.announce_sealing_key("k-new", NOW + 1).await.unwrap();
    assert_eq!(
        store
            .announce_sealing_key_if_none("k-0", NOW + 2)
            .await
            .unwrap(),
        "k-new"
    );
    assert_eq!(store.sealing_key().await.unwrap().as_deref(), Some("k-new"));
}

async fn sealed_values_counted_per_key<S: Store>(store: S) {
    assert_eq!(store.sealed_value_counts().await.unwrap(), []);
    for (n, key) in ["k-old", "k-old", "k-new"].iter().enumerate() {
        let mut row = connection(&format!("conn-{n}"), "github", &format!("user-{n}"));
        row.credentials = sealed_under(key);
        store.insert_connection(&row).await.unwrap();
    }
    // Not sealed by the vault: not counted.
    store
        .insert_connection(&connection("conn-x", "github", "user-x"))
        .await
        .unwrap();
    store
        .put_integration("crm", &sealed_under("k-old"), NOW)
        .await
        .unwrap();
    let mut sealed_flow = flow("state-1", "browser", NOW + 60);
    sealed_flow.pkce_verifier = Sealed::from_bytes(sealed_under("k-new"));
    assert!(store.insert_flow_state(&sealed_flow, 10).await.unwrap());
    let mut empty_flow = flow("state-2", "browser", NOW + 60);
    empty_flow.pkce_verifier = Sealed::default();
    assert!(store.insert_flow_state(&empty_flow, 10).await.unwrap());

    let count = |what: &str, key_id: &str, count: u64| SealedCount {
        what: what.into(),
        key_id: key_id.into(),
        count,
    };
    assert_eq!(
        store.sealed_value_counts().await.unwrap(),
        [
            count("connections", "k-new", 1),
            count("connections", "k-old", 2),
            count("flows", "k-new", 1),
            count("integrations", "k-old", 1),
        ]
    );
    // A re-seal moves the count to the new key.
    let row = get(&store, "conn-0").await;
    assert!(
        store
            .reseal_credentials(
                "conn-0",
                row.credentials_version,
                &sealed_under("k-new"),
                NOW
            )
            .await
            .unwrap()
    );
    let counts = store.sealed_value_counts().await.unwrap();
    assert!(
        counts.contains(&count("connections", "k-new", 2)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&count("connections", "k-old", 1)),
        "{counts:?}"
    );
}

// ----- connection history and console views ----------------------------------------------

async fn history_commits_with_its_change<S: Store>(store: S) {
    let row = connection("conn-1", "github", "user-1");
    store
        .insert_connection_with_event(
            &row,
            Some(&history_only("e1", "conn-1", history_kind::CREATED, NOW)),
        )
        .await
        .unwrap();
    // A duplicate insert fails: neither row nor history entry.
    assert!(
        store
            .insert_connection_with_event(
                &row,
                Some(&history_only("e2", "conn-1", history_kind::CREATED, NOW))
            )
            .await
            .is_err()
    );
    // A lost compare-and-swap writes nothing; a won one writes its entry.
    assert!(
        !store
            .replace_credentials_with_event(
                &update("conn-1", 9),
                Some(&history_only(
                    "e3",
                    "conn-1",
                    history_kind::REFRESHED,
                    NOW + 1
                ))
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_credentials_with_event(
                &update("conn-1", 1),
                Some(&history_only(
                    "e4",
                    "conn-1",
                    history_kind::REFRESHED,
                    NOW + 2
                ))
            )
            .await
            .unwrap()
    );
    let mut failed = history_only("e5", "conn-1", history_kind::REFRESH_FAILED, NOW + 3);
    failed.history.detail = Some("temporarily_unavailable".into());
    failed.history.reference = Some("ref-ABCDEFGH".into());
    store
        .record_refresh_failure_with_event(
            "conn-1",
            NOW + 60,
            "temporarily_unavailable",
            NOW + 3,
            Some(&failed),
        )
        .await
        .unwrap();
    // A failure recorded for a connection that is gone writes no history.
    store
        .record_refresh_failure_with_event(
            "missing",
            NOW + 60,
            "x",
            NOW + 3,
            Some(&history_only(
                "e6",
                "missing",
                history_kind::REFRESH_FAILED,
                NOW + 3,
            )),
        )
        .await
        .unwrap();
    assert!(history(&store, "missing").await.is_empty());
    assert_eq!(get(&store, "conn-1").await.refresh_failures, 1);
    let change = StatusChange {
        id: "conn-1".into(),
        status: ConnectionStatus::NeedsReauth,
        last_error: Some("invalid_grant".into()),
        expected_version: None,
        now: NOW + 4,
    };
    let reauth = history_only("e7", "conn-1", history_kind::NEEDS_REAUTH, NOW + 4);
    assert!(
        store
            .set_connection_status_with_event(&change, Some(&reauth))
            .await
            .unwrap()
    );
    // The same change again is no change: no second entry.
    assert!(
        !store
            .set_connection_status_with_event(&change, Some(&reauth))
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_connection_with_event(
                "conn-1",
                Some(&history_only(
                    "e8",
                    "conn-1",
                    history_kind::DELETED,
                    NOW + 5
                ))
            )
            .await
            .unwrap()
    );

    // History outlives the connection; newest first; nothing went to the outbox.
    let rows = history(&store, "conn-1").await;
    assert_eq!(
        kinds(&rows),
        [
            "deleted",
            "needs_reauth",
            "refresh_failed",
            "refreshed",
            "created"
        ]
    );
    assert_eq!(rows[2].detail.as_deref(), Some("temporarily_unavailable"));
    assert_eq!(rows[2].reference.as_deref(), Some("ref-ABCDEFGH"));
    assert_eq!(rows[2].created_at, NOW + 3);
    assert!(
        rows.iter()
            .all(|r| r.webhook_event_id.is_none() && r.integration == "github")
    );
    assert!(all_events(&store).await.is_empty());

    // Keyset pages: before the last seq of the previous page.
    let first = store
        .list_connection_events("conn-1", None, 2)
        .await
        .unwrap();
    let second = store
        .list_connection_events("conn-1", Some(first[1].seq), 2)
        .await
        .unwrap();
    assert_eq!(kinds(&first), ["deleted", "needs_reauth"]);
    assert_eq!(kinds(&second), ["refresh_failed", "refreshed"]);

    // Purge by age.
    assert_eq!(store.purge_connection_events(NOW + 3).await.unwrap(), 2);
    assert_eq!(
        kinds(&history(&store, "conn-1").await),
        ["deleted", "needs_reauth", "refresh_failed"]
    );
}

async fn history_records_webhook_outcomes<S: Store>(store: S) {
    store
        .insert_connection_with_event(
            &connection("conn-1", "github", "user-1"),
            Some(&event("evt-1", "conn-1", NOW)),
        )
        .await
        .unwrap();
    store
        .replace_credentials_with_event(
            &update("conn-1", 1),
            Some(&event("evt-2", "conn-1", NOW + 1)),
        )
        .await
        .unwrap();
    let claimed = store
        .claim_webhook_events("w", NOW + 60, NOW, 10)
        .await
        .unwrap();
    assert_eq!(event_ids(&claimed), ["evt-1"]);
    let mut delivered = attempt("evt-1", "w", NOW + 2, AttemptOutcome::Delivered);
    delivered.status_code = Some(204);
    delivered.error = None;
    assert!(store.record_webhook_attempt(&delivered).await.unwrap());
    store
        .claim_webhook_events("w", NOW + 60, NOW + 3, 10)
        .await
        .unwrap();
    // A retry is not history; giving up is.
    assert!(
        store
            .record_webhook_attempt(&attempt(
                "evt-2",
                "w",
                NOW + 3,
                AttemptOutcome::Retry {
                    next_attempt_at: NOW + 4
                }
            ))
            .await
            .unwrap()
    );
    store
        .claim_webhook_events("w", NOW + 60, NOW + 4, 10)
        .await
        .unwrap();
    assert!(
        store
            .record_webhook_attempt(&attempt("evt-2", "w", NOW + 4, AttemptOutcome::GiveUp))
            .await
            .unwrap()
    );
    // A stale owner's attempt records nothing, in the history either.
    assert!(
        !store
            .record_webhook_attempt(&attempt("evt-2", "other", NOW + 5, AttemptOutcome::GiveUp))
            .await
            .unwrap()
    );

    let rows = history(&store, "conn-1").await;
    assert_eq!(
        kinds(&rows),
        [
            "webhook_failed",
            "webhook_delivered",
            "refreshed",
            "refreshed"
        ]
    );
    assert_eq!(
        rows[0].detail.as_deref(),
        Some("connection.refreshed (HTTP 500)")
    );
    assert_eq!(rows[0].webhook_event_id.as_deref(), Some("evt-2"));
    assert_eq!(
        rows[1].detail.as_deref(),
        Some("connection.refreshed (HTTP 204)")
    );
    assert_eq!(rows[1].integration, "github");
    assert_eq!(rows[3].webhook_event_id.as_deref(), Some("evt-1"));
}

async fn console_pages_counts_and_buckets<S: Store>(store: S) {
    for (i, integration) in ["github", "github", "github", "hubspot", "hubspot"]
        .iter()
        .enumerate()
    {
        let mut row = connection(&format!("conn-{i}"), integration, &format!("user-{i}"));
        row.end_user_email = Some(format!("User-{i}@Example.com"));
        store.insert_connection(&row).await.unwrap();
    }
    store
        .set_connection_status("conn-1", ConnectionStatus::NeedsReauth, None, NOW)
        .await
        .unwrap();

    // Keyset pages by id.
    let first = store
        .page_connections(&ConnectionPage {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&first), ["conn-0", "conn-1"]);
    let next = store
        .page_connections(&ConnectionPage {
            limit: 2,
            after_id: Some("conn-1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&next), ["conn-2", "conn-3"]);
    // Filters.
    let hub = store
        .page_connections(&ConnectionPage {
            integration: Some("hubspot".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&hub), ["conn-3", "conn-4"]);
    let reauth = store
        .page_connections(&ConnectionPage {
            status: Some(ConnectionStatus::NeedsReauth),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&reauth), ["conn-1"]);
    // Search: end user id exactly, or the email whatever its case.
    for search in ["user-3", "user-3@example.com", "USER-3@EXAMPLE.COM"] {
        let found = store
            .page_connections(&ConnectionPage {
                search: Some(search.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(&found), ["conn-3"], "{search}");
    }
    let none = store
        .page_connections(&ConnectionPage {
            search: Some("user-".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());

    let mut counts: Vec<(String, &str, i64)> = store
        .connection_status_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.integration, c.status.as_str(), c.count))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("github".to_owned(), "active", 2),
            ("github".to_owned(), "needs_reauth", 1),
            ("hubspot".to_owned(), "active", 2)
        ]
    );

    // Buckets of an hour: two refreshes in the first hour, one failure in the third.
    let mut a = history_only("e1", "conn-0", history_kind::REFRESHED, NOW + 10);
    store
        .replace_credentials_with_event(&update("conn-0", 1), Some(&a))
        .await
        .unwrap();
    a = history_only("e2", "conn-0", history_kind::REFRESHED, NOW + 20);
    store
        .replace_credentials_with_event(&update("conn-0", 2), Some(&a))
        .await
        .unwrap();
    a = history_only("e3", "conn-0", history_kind::REFRESH_FAILED, NOW + 7300);
    store
        .record_refresh_failure_with_event("conn-0", NOW + 8000, "x", NOW + 7300, Some(&a))
        .await
        .unwrap();
    a = history_only("e4", "conn-0", history_kind::REFRESHED, NOW - 10);
    store
        .replace_credentials_with_event(&update("conn-0", 3), Some(&a))
        .await
        .unwrap();
    let mut buckets: Vec<(String, String, i64, i64)> = store
        .connection_event_buckets(
            NOW,
            3600,
            &[history_kind::REFRESHED, history_kind::REFRESH_FAILED],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.integration, b.kind, b.bucket_start, b.count))
        .collect();
    buckets.sort();
    assert_eq!(
        buckets,
        [
            (
                "github".to_owned(),
                "refresh_failed".to_owned(),
                NOW + 7200,
                1
            ),
            ("github".to_owned(), "refreshed".to_owned(), NOW, 2),
        ]
    );
    assert!(
        store
            .connection_event_buckets(NOW, 3600, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

macro_rules! conformance_suite {
    ($backend:ident, $open:ident) => {
        conformance_suite!(@tests $backend, $open;
            ping,
            connect_sessions,
            connect_session_binds_to_first_browser,
            connect_session_binding_race,
            connect_session_completes_once,
            connect_session_attempt_window,
            flow_states_capped_per_session,
            flow_cursor_and_reseal,
            integration_reseal,
            sealing_key_announcements,
            sealed_values_counted_per_key,
            flow_state_single_use,
            flow_state_expired_is_still_consumed,
            flow_state_wrong_browser_leaves_it,
            flow_state_concurrent_consume,
            connection_insert_get_find,
            connection_duplicate_conflicts,
            list_connections_filters,
            list_connections_limits,
            replace_credentials_cas,
            replace_credentials_concurrent,
            set_connection_status,
            delete_connection,
            cursor_and_reseal,
            api_managed_integrations,
            refresh_leases,
            refresh_lease_concurrent,
            connections_due_for_refresh,
            record_refresh_failure,
            purge_expired,
            api_key_hashes,
            webhook_events_commit_with_their_change,
            webhook_claims_in_order_per_connection,
            webhook_claims_return_to_their_owner,
            webhook_give_up_redeliver_and_log,
            webhook_redelivery_keeps_a_claim,
            webhook_claim_concurrent,
            history_commits_with_its_change,
            history_records_webhook_outcomes,
            console_pages_counts_and_buckets,
        );
    };
    (@tests $backend:ident, $open:ident; $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                // Several worker threads, so the concurrency tests really race.
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (store, _guard) = super::$open().await;
                    super::$test(store).await;
                }
            )*
        }
    };
}

conformance_suite!(sqlite_file, open_sqlite_file);
conformance_suite!(sqlite_memory, open_sqlite_memory);
conformance_suite!(postgres, open_postgres);

/// A fresh SQLite database in a temporary directory, removed when the guard drops.
async fn open_sqlite_file() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&sqlite_url(&dir)).await.unwrap();
    (store, dir)
}

/// A fresh in-memory SQLite database; it lives as long as the store.
async fn open_sqlite_memory() -> (SqliteStore, ()) {
    (SqliteStore::connect("sqlite::memory:").await.unwrap(), ())
}

fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("tether.db").display())
}

// ----- SQLite specifics --------------------------------------------------------------------

mod sqlite {
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
            write.credentials = format!("sealed:v{}", version + 1).into_bytes();
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
                        store.put_integration(&key, b"sealed", NOW).await.unwrap()
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
}

// ----- PostgreSQL ----------------------------------------------------------------------------

mod pg_support;
use pg_support::{PgSchema, open_postgres};

mod postgres_specifics {
    use std::time::Duration;

    use tether_store::{AnyStore, Backend, Change, ChangeFeed, StoreOptions};

    use super::*;

    /// The next change within `wait`, or a panic naming what was awaited.
    async fn next_change(feed: &mut ChangeFeed, what: &str) -> Change {
        tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .unwrap_or_else(|_| panic!("no change within 5 s; awaited {what}"))
            .expect("the feed is open")
    }

    /// Nothing more within a short wait: the feed stays quiet for what must not notify.
    async fn quiet(feed: &mut ChangeFeed) {
        if let Ok(change) = tokio::time::timeout(Duration::from_millis(300), feed.next()).await {
            panic!("expected no change, got {change:?}");
        }
    }

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
                tokio::spawn(async move {
                    PgStore::connect_with(options, &StoreOptions::default()).await
                })
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
        let embedded =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
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
    async fn other_writers_changes_are_heard() {
        let schema = PgSchema::create().await;
        let ours = schema.store().await;
        let theirs = schema.store().await;
        let mut feed = ours.changes().expect("PostgreSQL has a change feed");
        assert_eq!(
            next_change(&mut feed, "the first resync").await,
            Change::Resync
        );

        theirs
            .insert_connection(&connection("conn-1", "github", "user-1"))
            .await
            .unwrap();
        // A lease or a back-off changes nothing an instance caches: no notification.
        assert!(
            theirs
                .try_acquire_refresh_lease("conn-1", "b", NOW + 30, NOW)
                .await
                .unwrap()
        );
        theirs
            .record_refresh_failure("conn-1", NOW + 60, "timeout", NOW)
            .await
            .unwrap();
        quiet(&mut feed).await;

        let conn = |id: &str| Change::Connection(id.to_owned());
        assert!(
            theirs
                .replace_credentials(&update("conn-1", 1))
                .await
                .unwrap()
        );
        assert_eq!(next_change(&mut feed, "a refresh").await, conn("conn-1"));
        assert!(
            theirs
                .reseal_credentials("conn-1", 2, b"resealed", NOW)
                .await
                .unwrap()
        );
        assert_eq!(next_change(&mut feed, "a re-seal").await, conn("conn-1"));
        let change = StatusChange {
            id: "conn-1".into(),
            status: ConnectionStatus::NeedsReauth,
            last_error: Some("invalid_grant".into()),
            expected_version: None,
            now: NOW,
        };
        assert!(
            theirs
                .set_connection_status_with_event(&change, None)
                .await
                .unwrap()
        );
        assert_eq!(next_change(&mut feed, "needs_reauth").await, conn("conn-1"));
        assert!(theirs.delete_connection("conn-1").await.unwrap());
        assert_eq!(next_change(&mut feed, "a delete").await, conn("conn-1"));

        let integration = |key: &str| Change::Integration(key.to_owned());
        theirs.put_integration("crm", b"sealed", NOW).await.unwrap();
        assert_eq!(next_change(&mut feed, "a create").await, integration("crm"));
        theirs
            .put_integration("crm", b"sealed-2", NOW)
            .await
            .unwrap();
        assert_eq!(
            next_change(&mut feed, "a replace").await,
            integration("crm")
        );
        theirs.delete_integration("crm").await.unwrap();
        assert_eq!(next_change(&mut feed, "a delete").await, integration("crm"));

        // Another schema (another Tether database on the same server) is not heard.
        let elsewhere = PgSchema::create().await;
        let other = elsewhere.store().await;
        other.put_integration("crm", b"sealed", NOW).await.unwrap();
        quiet(&mut feed).await;
    }

    #[tokio::test]
    async fn a_new_sealing_key_is_heard_by_every_instance() {
        let schema = PgSchema::create().await;
        let ours = schema.store().await;
        let theirs = schema.store().await;
        let mut feed = ours.changes().unwrap();
        assert_eq!(
            next_change(&mut feed, "the first resync").await,
            Change::Resync
        );
        theirs.announce_sealing_key("k-new", NOW).await.unwrap();
        assert_eq!(
            next_change(&mut feed, "an announced key").await,
            Change::SealingKey("k-new".into())
        );
    }

    #[tokio::test]
    async fn a_dropped_listener_says_lost_then_resyncs() {
        let schema = PgSchema::create().await;
        let store = schema.store().await;
        let mut feed = store.changes().unwrap();
        assert_eq!(
            next_change(&mut feed, "the first resync").await,
            Change::Resync
        );

        // Cut the listening connection from the server side, as a restart or a network cut
        // would.
        let cut: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN %' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
        )
        .bind(store.channel())
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(cut, 1, "one listening connection");
        assert_eq!(next_change(&mut feed, "the loss").await, Change::Lost);
        assert_eq!(next_change(&mut feed, "the resync").await, Change::Resync);

        // Listening again: a change after the resync is heard.
        store.put_integration("crm", b"sealed", NOW).await.unwrap();
        assert_eq!(
            next_change(&mut feed, "a change after the resync").await,
            Change::Integration("crm".into())
        );
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
}

/// The console's queries stay fast with 100,000 connections: each is answered from an index
/// (the plan says so, which holds whatever the machine) and within a generous time bound.
mod sqlite_scale {
    use super::*;

    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(store.pool())
                .await
                .unwrap();
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
    }

    #[tokio::test]
    async fn console_queries_use_indexes_at_100k_connections() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999) \
             INSERT INTO connections (id, integration, end_user_id, end_user_email, status, \
             credentials, created_at, updated_at) \
             SELECT printf('conn-%06d', i), CASE i % 3 WHEN 0 THEN 'github' WHEN 1 THEN \
             'hubspot' ELSE 'redtail' END, 'user-' || i, 'User' || i || '@example.com', \
             CASE WHEN i % 50 = 0 THEN 'needs_reauth' ELSE 'active' END, x'00', 0, 0 FROM n",
        )
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();

        let started = std::time::Instant::now();
        let counts = store.connection_status_counts().await.unwrap();
        assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), 100_000);
        let found = store
            .page_connections(&ConnectionPage {
                search: Some("user77777@EXAMPLE.com".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(&found), ["conn-077777"]);
        let deep = store
            .page_connections(&ConnectionPage {
                status: Some(ConnectionStatus::NeedsReauth),
                integration: Some("github".into()),
                after_id: Some("conn-090000".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(deep.len(), 10);
        assert_eq!(deep[0].id, "conn-090150");
        // Generous for a shared CI machine: a scan-based plan would still fit in it once,
        // which is why the plans are checked below too.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        let counts_plan = plan(
            &store,
            "SELECT integration, status, COUNT(*) FROM connections GROUP BY integration, status",
        )
        .await;
        assert!(
            counts_plan.contains("COVERING INDEX connections_integration_status"),
            "{counts_plan}"
        );
        let search_plan = plan(
            &store,
            "SELECT id FROM connections WHERE id > '' AND (end_user_id = 'x' OR \
             lower(end_user_email) = lower('x')) ORDER BY id LIMIT 50",
        )
        .await;
        assert!(search_plan.contains("connections_email"), "{search_plan}");
        assert!(
            search_plan.contains("connections_end_user"),
            "{search_plan}"
        );
        let page_plan = plan(
            &store,
            "SELECT id FROM connections WHERE id > 'conn-5' AND integration = 'github' \
             AND status = 'active' ORDER BY id LIMIT 50",
        )
        .await;
        assert!(page_plan.contains("USING"), "{page_plan}");
        assert!(!page_plan.contains("SCAN connections"), "{page_plan}");
        assert!(!page_plan.contains("TEMP B-TREE"), "{page_plan}");
    }
}

/// The same on PostgreSQL: 100,000 connections, the console's queries within a bound, and the
/// search and pages answered from indexes rather than by reading the table.
mod postgres_scale {
    use super::*;

    async fn plan(store: &PgStore, sql: &str) -> String {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {sql}"))
            .fetch_all(store.pool())
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("; ")
    }

    #[tokio::test]
    async fn console_queries_use_indexes_at_100k_connections() {
        let schema = PgSchema::create().await;
        let store = schema.store().await;
        sqlx::query(
            "INSERT INTO connections (id, integration, end_user_id, end_user_email, status, \
             credentials, created_at, updated_at) \
             SELECT 'conn-' || lpad(i::text, 6, '0'), CASE i % 3 WHEN 0 THEN 'github' \
             WHEN 1 THEN 'hubspot' ELSE 'redtail' END, 'user-' || i, \
             'User' || i || '@example.com', \
             CASE WHEN i % 50 = 0 THEN 'needs_reauth' ELSE 'active' END, '\\x00', 0, 0 \
             FROM generate_series(0, 99999) AS i",
        )
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query("VACUUM ANALYZE connections")
            .execute(store.pool())
            .await
            .unwrap();

        let started = std::time::Instant::now();
        let counts = store.connection_status_counts().await.unwrap();
        assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), 100_000);
        let found = store
            .page_connections(&ConnectionPage {
                search: Some("user77777@EXAMPLE.com".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(&found), ["conn-077777"]);
        let deep = store
            .page_connections(&ConnectionPage {
                status: Some(ConnectionStatus::NeedsReauth),
                integration: Some("github".into()),
                after_id: Some("conn-090000".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(deep.len(), 10);
        assert_eq!(deep[0].id, "conn-090150");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        let search_plan = plan(
            &store,
            "SELECT id FROM connections WHERE id > '' AND (end_user_id = 'x' OR \
             lower(end_user_email) = lower('x')) ORDER BY id LIMIT 50",
        )
        .await;
        assert!(search_plan.contains("connections_email"), "{search_plan}");
        assert!(!search_plan.contains("Seq Scan"), "{search_plan}");
        let page_plan = plan(
            &store,
            "SELECT id FROM connections WHERE id > 'conn-5' AND integration = 'github' \
             AND status = 'needs_reauth' ORDER BY id LIMIT 50",
        )
        .await;
        assert!(!page_plan.contains("Seq Scan"), "{page_plan}");
    }
}
