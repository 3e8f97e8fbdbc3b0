//! PostgreSQL's change feed: one instance hears the others' writes and key announcements, and
//! a dropped listener says so and resyncs, so caches never serve a stale row silently.

use std::time::Duration;

use tether_store::{Change, ChangeFeed};

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
            .reseal_credentials("conn-1", 2, &sealed_bytes(b"resealed"), NOW)
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
    theirs
        .put_integration("crm", &sealed_bytes(b"sealed"), NOW)
        .await
        .unwrap();
    assert_eq!(next_change(&mut feed, "a create").await, integration("crm"));
    theirs
        .put_integration("crm", &sealed_bytes(b"sealed-2"), NOW)
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
    other
        .put_integration("crm", &sealed_bytes(b"sealed"), NOW)
        .await
        .unwrap();
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
    store
        .put_integration("crm", &sealed_bytes(b"sealed"), NOW)
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut feed, "a change after the resync").await,
        Change::Integration("crm".into())
    );
}
