//! Connections and their credentials: insert, find, list and page, compare-and-swap
//! replacement, status changes, deletion, and API-managed integrations. The
//! compare-and-swap is what keeps two refreshers from overwriting each other.

use super::*;

/// The store answers at all.
pub(crate) async fn ping<S: Store>(store: S) {
    store.ping().await.unwrap();
}

pub(crate) async fn connection_insert_get_find<S: Store>(store: S) {
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

pub(crate) async fn connection_duplicate_conflicts<S: Store>(store: S) {
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

pub(crate) async fn list_connections_filters<S: Store>(store: S) {
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

pub(crate) async fn list_connections_limits<S: Store>(store: S) {
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

pub(crate) async fn replace_credentials_cas<S: Store>(store: S) {
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
        credentials: sealed_bytes(b"sealed:new"),
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
        provider_account: None,
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

pub(crate) async fn replace_credentials_concurrent<S: Store>(store: S) {
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
                write.credentials = sealed_bytes(format!("sealed:writer-{n}").as_bytes());
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

pub(crate) async fn set_connection_status<S: Store>(store: S) {
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

pub(crate) async fn delete_connection<S: Store>(store: S) {
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

pub(crate) async fn api_managed_integrations<S: Store>(store: S) {
    assert!(store.list_integrations().await.unwrap().is_empty());
    assert!(
        store
            .put_integration("crm", &sealed_bytes(b"sealed-1"), 10)
            .await
            .unwrap()
    );
    assert!(
        store
            .put_integration("alpha", &sealed_bytes(b"sealed-a"), 11)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_integration("crm", &sealed_bytes(b"sealed-2"), 12)
            .await
            .unwrap(),
        "a replace"
    );
    let all = store.list_integrations().await.unwrap();
    assert_eq!(
        all,
        [
            ("alpha".to_owned(), sealed_bytes(b"sealed-a")),
            ("crm".to_owned(), sealed_bytes(b"sealed-2"))
        ]
    );
    assert!(store.delete_integration("crm").await.unwrap());
    assert!(!store.delete_integration("crm").await.unwrap());
    assert_eq!(store.list_integrations().await.unwrap().len(), 1);
}

pub(crate) async fn insert_connections_all_or_none<S: Store>(store: S) {
    // More rows than one statement holds, so that the batch spans several.
    let rows: Vec<_> = (0..1_234)
        .map(|n| connection(&format!("conn-{n:04}"), "github", &format!("user-{n}")))
        .collect();
    store.insert_connections(&rows).await.unwrap();
    for row in [&rows[0], &rows[499], &rows[500], &rows[1_233]] {
        assert_eq!(&get(&store, &row.id).await, row);
    }
    let page = store.connections_after(None, 1_000).await.unwrap();
    assert_eq!(page.len(), 1_000);
    let rest = store
        .connections_after(Some(&page[999].id), 1_000)
        .await
        .unwrap();
    assert_eq!(rest.len(), 234);

    // One conflict, in the last statement of the batch: nothing of the batch is kept.
    let mut batch: Vec<_> = (0..700)
        .map(|n| connection(&format!("new-{n:04}"), "slack", &format!("user-{n}")))
        .collect();
    batch.push(connection("late", "github", "user-7"));
    let err = store.insert_connections(&batch).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.get_connection("new-0000").await.unwrap(), None);
    assert_eq!(store.get_connection("late").await.unwrap(), None);
    assert_eq!(get(&store, "conn-0007").await, rows[7]);

    store.insert_connections(&[]).await.unwrap();
}
