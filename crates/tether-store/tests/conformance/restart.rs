//! The two halves of the restart test each backend runs on a database that outlives its
//! store: what one store writes, a new store over the same database must read back.

use super::*;

/// First half of the restart test: writes one of everything.
pub(crate) async fn seed_before_restart<S: Store>(store: S) {
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
pub(crate) async fn check_after_restart<S: Store>(store: S) {
    assert_eq!(
        store.get_connect_session(&th("s-1")).await.unwrap(),
        Some(session("s-1", NOW + 600))
    );
    let conn = get(&store, "conn-1").await;
    assert_eq!(conn.credentials_version, 2);
    assert_eq!(conn.credentials.as_bytes(), b"sealed:new");
    assert!(
        !store
            .try_acquire_refresh_lease("conn-1", "b", NOW + 30, NOW)
            .await
            .unwrap()
    );
    let outcome = store
        .consume_flow_state(&th("f-1"), &th("b"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ConsumeOutcome::Consumed(flow("f-1", "b", NOW + 600))
    );
}
