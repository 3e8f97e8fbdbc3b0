//! Connection history: each change and each webhook outcome is recorded in the same
//! transaction as the change itself, so the history never disagrees with the row.

use super::*;

pub(crate) async fn history_commits_with_its_change<S: Store>(store: S) {
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

pub(crate) async fn history_records_webhook_outcomes<S: Store>(store: S) {
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

/// An entry recorded on its own (no change to the connection: a request held back by the
/// provider's budget) lands in the history of an existing connection only.
pub(crate) async fn history_without_a_change<S: Store>(store: S) {
    let entry = HistoryEntry {
        kind: history_kind::RATE_LIMITED.to_owned(),
        integration: "github".to_owned(),
        detail: Some("held back until the provider's budget resets".to_owned()),
        reference: None,
    };
    // No connection, no entry.
    assert!(
        !store
            .record_connection_history("conn-1", &entry, NOW)
            .await
            .unwrap()
    );
    assert!(history(&store, "conn-1").await.is_empty());
    let row = connection("conn-1", "github", "user-1");
    store.insert_connection(&row).await.unwrap();
    assert!(
        store
            .record_connection_history("conn-1", &entry, NOW + 5)
            .await
            .unwrap()
    );
    let rows = history(&store, "conn-1").await;
    assert_eq!(kinds(&rows), vec![history_kind::RATE_LIMITED]);
    assert_eq!(rows[0].integration, "github");
    assert_eq!(rows[0].detail, entry.detail);
    assert_eq!(rows[0].created_at, NOW + 5);
    assert_eq!(rows[0].webhook_event_id, None);
}
