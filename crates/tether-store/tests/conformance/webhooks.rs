//! The webhook outbox: events commit with the change they describe, are claimed in order per
//! connection by one sender at a time, can be given up, redelivered and logged. Delivery is
//! at-least-once only if none of this loses or duplicates an event.

use super::*;

pub(crate) async fn webhook_events_commit_with_their_change<S: Store>(store: S) {
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

pub(crate) async fn webhook_claims_return_to_their_owner<S: Store>(store: S) {
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

pub(crate) async fn webhook_claims_in_order_per_connection<S: Store>(store: S) {
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

pub(crate) async fn webhook_give_up_redeliver_and_log<S: Store>(store: S) {
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
pub(crate) async fn webhook_redelivery_keeps_a_claim<S: Store>(store: S) {
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

pub(crate) async fn webhook_claim_concurrent<S: Store>(store: S) {
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
