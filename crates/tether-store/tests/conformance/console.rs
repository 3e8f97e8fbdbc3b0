//! The console's views: paged and filtered connection lists, counts, and event buckets,
//! which must agree with the rows they summarise.

use super::*;

pub(crate) async fn console_pages_counts_and_buckets<S: Store>(store: S) {
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
