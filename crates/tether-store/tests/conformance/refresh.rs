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

/// A claim for `owner` at `now`, of connections expiring within 50 s of it, in a round that
/// started at `NOW`.
fn claim(owner: &str, now: i64, limit: u32) -> RefreshClaim {
    RefreshClaim {
        owner: owner.to_owned(),
        before: now + 50,
        now,
        lease_until: now + 30,
        attempted_before: NOW,
        limit,
    }
}

pub(crate) async fn refresh_claims<S: Store>(store: S) {
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
    add("backing-off", Some(NOW + 2), Active, Some(NOW + 60));
    add("tie-b", Some(NOW - 100), Active, None);
    add("tie-a", Some(NOW - 100), Active, None);
    add("leased", Some(NOW + 3), Active, None);
    store.insert_connections(&rows).await.unwrap();
    assert!(
        store
            .try_acquire_refresh_lease("leased", "b", NOW + 30, NOW)
            .await
            .unwrap()
    );

    // Soonest first, ties by id; what is leased, in back-off or not active waits.
    let first = store
        .claim_due_refreshes(&claim("a", NOW, 3))
        .await
        .unwrap();
    assert_eq!(ids(&first), ["tie-a", "tie-b", "sooner"]);
    assert_eq!(
        first[2].credentials, rows[1].credentials,
        "the rows as stored"
    );
    let rest = store
        .claim_due_refreshes(&claim("a", NOW, 10))
        .await
        .unwrap();
    assert_eq!(
        ids(&rest),
        ["soon"],
        "claimed ones are leased, even to their owner"
    );
    assert!(
        store
            .claim_due_refreshes(&claim("b", NOW, 10))
            .await
            .unwrap()
            .is_empty()
    );
    // The leases are real: nobody else takes them until they expire.
    assert!(
        !store
            .try_acquire_refresh_lease("soon", "b", NOW + 30, NOW + 1)
            .await
            .unwrap()
    );

    // Within one round a connection is claimed once, even after its lease ended (a token
    // living shorter than the window waits for the next round)...
    let same_round = store
        .claim_due_refreshes(&claim("c", NOW + 31, 10))
        .await
        .unwrap();
    assert!(same_round.is_empty(), "{:?}", ids(&same_round));
    // ...and a later round takes everything due whose lease has ended: the first claims and
    // b's lease lapsed at NOW + 30, the back-off at NOW + 60.
    let mut next_round = claim("c", NOW + 62, 10);
    next_round.attempted_before = NOW + 62;
    let again = store.claim_due_refreshes(&next_round).await.unwrap();
    assert_eq!(
        ids(&again),
        [
            "tie-a",
            "tie-b",
            "backing-off",
            "leased",
            "sooner",
            "soon",
            "later"
        ]
    );
    assert_eq!(get(&store, "soon").await.credentials_version, 1);
}

pub(crate) async fn refresh_claims_concurrent<S: Store>(store: S) {
    let rows: Vec<_> = (0..200)
        .map(|n| {
            let mut row = connection(&format!("conn-{n:03}"), "github", &format!("user-{n}"));
            row.access_expires_at = Some(NOW - 1);
            row
        })
        .collect();
    store.insert_connections(&rows).await.unwrap();

    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_due_refreshes(&claim(&format!("instance-{n}"), NOW, 7))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|row| row.id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    claimed.sort();
    let all: Vec<_> = rows.iter().map(|row| row.id.clone()).collect();
    assert_eq!(claimed, all, "every due connection claimed exactly once");
}

pub(crate) async fn finish_refresh<S: Store>(store: S) {
    let mut row = connection("conn-1", "github", "user-1");
    row.access_expires_at = Some(NOW - 1);
    store.insert_connection(&row).await.unwrap();
    store
        .record_refresh_failure("conn-1", NOW - 1, "provider 503", NOW - 10)
        .await
        .unwrap();
    let claimed = store
        .claim_due_refreshes(&claim("a", NOW, 10))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["conn-1"]);

    let refreshed = RefreshedCredentials {
        update: update("conn-1", 1),
        keepalive_at: Some(NOW + 86_400),
        lease_owner: "a".to_owned(),
    };
    let written = store
        .finish_refresh(
            &refreshed,
            Some(&history_only("evt-1", "conn-1", "refreshed", NOW + 100)),
        )
        .await
        .unwrap()
        .expect("the swap wins");
    assert_eq!(written, get(&store, "conn-1").await, "the row as written");
    assert_eq!(written.credentials_version, 2);
    assert_eq!(written.credentials, refreshed.update.credentials);
    assert_eq!(written.access_expires_at, Some(NOW + 7200));
    assert_eq!(written.refresh_failures, 0, "back-off cleared");
    assert_eq!(written.last_error, None);
    assert_eq!(written.end_user_email.as_deref(), Some("new@example.com"));
    let lifecycle = store
        .connection_lifecycles(&["conn-1".to_owned()])
        .await
        .unwrap();
    assert_eq!(lifecycle[0].keepalive_at, Some(NOW + 86_400));
    assert_eq!(kinds(&history(&store, "conn-1").await), ["refreshed"]);
    // The lease is given back with the write.
    assert!(
        store
            .try_acquire_refresh_lease("conn-1", "b", NOW + 130, NOW + 100)
            .await
            .unwrap()
    );

    // A stale writer changes nothing, writes no event, and gives back only its own lease.
    let stale = RefreshedCredentials {
        update: update("conn-1", 1),
        keepalive_at: None,
        lease_owner: "a".to_owned(),
    };
    let event = history_only("evt-2", "conn-1", "refreshed", NOW + 101);
    assert_eq!(
        store.finish_refresh(&stale, Some(&event)).await.unwrap(),
        None
    );
    assert_eq!(get(&store, "conn-1").await, written);
    assert_eq!(kinds(&history(&store, "conn-1").await), ["refreshed"]);
    assert!(
        !store
            .try_acquire_refresh_lease("conn-1", "c", NOW + 130, NOW + 101)
            .await
            .unwrap(),
        "b's lease survives a's late finish"
    );
    // The holder's own stale finish frees its lease.
    let stale_b = RefreshedCredentials {
        lease_owner: "b".to_owned(),
        ..stale
    };
    assert_eq!(store.finish_refresh(&stale_b, None).await.unwrap(), None);
    assert!(
        store
            .try_acquire_refresh_lease("conn-1", "c", NOW + 130, NOW + 102)
            .await
            .unwrap()
    );
    let lifecycle = store
        .connection_lifecycles(&["conn-1".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        lifecycle[0].keepalive_at,
        Some(NOW + 86_400),
        "left as it was"
    );

    let gone = RefreshedCredentials {
        update: update("missing", 1),
        keepalive_at: None,
        lease_owner: "a".to_owned(),
    };
    assert_eq!(store.finish_refresh(&gone, None).await.unwrap(), None);
}

/// A batch: each entry keeps its own compare-and-swap, the winners' events are written (and
/// only theirs), every lease is given back, and two entries for one connection are written in
/// order, as two calls would.
pub(crate) async fn finish_refreshes_batch<S: Store>(store: S) {
    let rows: Vec<_> = (1..=4)
        .map(|n| {
            let mut row = connection(&format!("conn-{n}"), "github", &format!("user-{n}"));
            row.access_expires_at = Some(NOW - 1);
            row
        })
        .collect();
    store.insert_connections(&rows).await.unwrap();
    let claimed = store
        .claim_due_refreshes(&claim("a", NOW, 10))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["conn-1", "conn-2", "conn-3", "conn-4"]);
    let refreshed = |id: &str, version: i64, keepalive_at: Option<i64>| RefreshedCredentials {
        update: update(id, version),
        keepalive_at,
        lease_owner: "a".to_owned(),
    };
    let first = refreshed("conn-1", 1, Some(NOW + 86_400));
    let second = refreshed("conn-2", 1, None);
    let stale = refreshed("conn-3", 7, None);
    let gone = refreshed("missing", 1, None);
    let again = refreshed("conn-1", 2, None);
    let replayed = refreshed("conn-2", 1, None);
    let delivered = event("evt-1", "conn-1", NOW + 100);
    let recorded = history_only("evt-2", "conn-2", "refreshed", NOW + 100);
    let lost = event("evt-3", "conn-3", NOW + 100);
    let batch = [
        RefreshFinish {
            refreshed: &first,
            event: Some(&delivered),
        },
        RefreshFinish {
            refreshed: &second,
            event: Some(&recorded),
        },
        RefreshFinish {
            refreshed: &stale,
            event: Some(&lost),
        },
        RefreshFinish {
            refreshed: &gone,
            event: None,
        },
        // After `first` in the batch: sees its version 2, so it wins too.
        RefreshFinish {
            refreshed: &again,
            event: None,
        },
        // After `second`: its version 1 is spent, so it loses.
        RefreshFinish {
            refreshed: &replayed,
            event: None,
        },
    ];
    let written = store.finish_refreshes(&batch).await.unwrap();
    let versions: Vec<Option<i64>> = written
        .iter()
        .map(|row| row.as_ref().map(|row| row.credentials_version))
        .collect();
    assert_eq!(
        versions,
        [Some(2), Some(2), None, None, Some(3), None],
        "each entry in the batch's order"
    );
    assert_eq!(
        written[4].as_ref(),
        Some(&get(&store, "conn-1").await),
        "the row as written"
    );
    assert_eq!(written[1].as_ref(), Some(&get(&store, "conn-2").await));
    assert_eq!(get(&store, "conn-3").await.credentials_version, 1);
    assert_eq!(kinds(&history(&store, "conn-1").await), ["refreshed"]);
    assert_eq!(kinds(&history(&store, "conn-2").await), ["refreshed"]);
    assert!(
        history(&store, "conn-3").await.is_empty(),
        "a lost swap writes no event"
    );
    assert_eq!(
        event_ids(&all_events(&store).await),
        ["evt-1"],
        "only the delivered winner is in the outbox"
    );
    let lifecycle = store
        .connection_lifecycles(&["conn-1".to_owned(), "conn-2".to_owned()])
        .await
        .unwrap();
    let keepalive = |id: &str| {
        lifecycle
            .iter()
            .find(|l| l.id == id)
            .map(|l| l.keepalive_at)
    };
    assert_eq!(
        keepalive("conn-1"),
        Some(None),
        "the later entry's deadline"
    );
    assert_eq!(keepalive("conn-2"), Some(None));
    for id in ["conn-1", "conn-2", "conn-3", "conn-4"] {
        let free = id != "conn-4";
        assert_eq!(
            store
                // Within a's lease (until NOW + 30).
                .try_acquire_refresh_lease(id, "b", NOW + 130, NOW + 10)
                .await
                .unwrap(),
            free,
            "{id}: every lease in the batch is given back, and only those"
        );
    }
    assert!(store.finish_refreshes(&[]).await.unwrap().is_empty());
}
