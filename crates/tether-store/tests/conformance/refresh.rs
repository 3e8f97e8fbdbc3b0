//! Refresh leases and the refresh schedule: one lease holder per connection, leases that
//! expire, the due-for-refresh query, and failure bookkeeping. This is what keeps a fleet of
//! instances from refreshing one token twice.

use super::*;

pub(crate) async fn refresh_leases<S: Store>(store: S) {
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

pub(crate) async fn refresh_lease_concurrent<S: Store>(store: S) {
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

pub(crate) async fn connections_due_for_refresh<S: Store>(store: S) {
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

pub(crate) async fn record_refresh_failure<S: Store>(store: S) {
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
