//! Connect sessions and OAuth flow states: single use, bound to one browser, capped, and
//! purged when they expire. These carry a user through the Connect page, so every race
//! (two browsers, two callbacks) must have exactly one winner.

use super::*;

pub(crate) async fn connect_sessions<S: Store>(store: S) {
    let row = session("token-hash-1", NOW + 600);
    store.insert_connect_session(&row).await.unwrap();

    assert_eq!(
        store
            .get_connect_session(&th("token-hash-1"))
            .await
            .unwrap(),
        Some(row.clone())
    );
    assert_eq!(
        store.get_connect_session(&th("unknown")).await.unwrap(),
        None
    );

    // An expired session is still returned: expiry is the caller's decision.
    let expired = session("token-hash-2", NOW - 1);
    store.insert_connect_session(&expired).await.unwrap();
    assert_eq!(
        store
            .get_connect_session(&th("token-hash-2"))
            .await
            .unwrap(),
        Some(expired)
    );

    let again = store.insert_connect_session(&row).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

pub(crate) async fn flow_state_single_use<S: Store>(store: S) {
    let row = flow("state-1", "browser-1", NOW + 600);
    store.insert_flow_state(&row, 10).await.unwrap();

    let first = store
        .consume_flow_state(&th("state-1"), &th("browser-1"))
        .await
        .unwrap();
    assert_eq!(first, ConsumeOutcome::Consumed(row));
    let second = store
        .consume_flow_state(&th("state-1"), &th("browser-1"))
        .await
        .unwrap();
    assert_eq!(second, ConsumeOutcome::Unknown);
    let never = store
        .consume_flow_state(&th("never-issued"), &th("browser-1"))
        .await
        .unwrap();
    assert_eq!(never, ConsumeOutcome::Unknown);
}

pub(crate) async fn flow_state_expired_is_still_consumed<S: Store>(store: S) {
    let row = flow("state-old", "browser-1", NOW - 1);
    store.insert_flow_state(&row, 10).await.unwrap();
    let outcome = store
        .consume_flow_state(&th("state-old"), &th("browser-1"))
        .await
        .unwrap();
    assert_eq!(outcome, ConsumeOutcome::Consumed(row));
    let again = store
        .consume_flow_state(&th("state-old"), &th("browser-1"))
        .await
        .unwrap();
    assert_eq!(again, ConsumeOutcome::Unknown);
}

pub(crate) async fn flow_state_wrong_browser_leaves_it<S: Store>(store: S) {
    let row = flow("state-1", "victim", NOW + 600);
    store.insert_flow_state(&row, 10).await.unwrap();

    for _ in 0..2 {
        let outcome = store
            .consume_flow_state(&th("state-1"), &th("attacker"))
            .await
            .unwrap();
        assert_eq!(outcome, ConsumeOutcome::WrongBrowser);
    }
    let outcome = store
        .consume_flow_state(&th("state-1"), &th("victim"))
        .await
        .unwrap();
    assert_eq!(outcome, ConsumeOutcome::Consumed(row));
}

pub(crate) async fn flow_state_concurrent_consume<S: Store>(store: S) {
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
                    .consume_flow_state(&th("state-race"), &th("browser-1"))
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

pub(crate) async fn connect_session_binds_to_first_browser<S: Store>(store: S) {
    store
        .insert_connect_session(&session("t", NOW + 600))
        .await
        .unwrap();
    let first = store
        .bind_connect_session(&th("t"), &th("browser-a"), NOW)
        .await;
    assert_eq!(first.unwrap().as_deref(), Some("browser-a"));
    // A second browser does not take it over; the first one's binding is returned.
    let second = store
        .bind_connect_session(&th("t"), &th("browser-b"), NOW)
        .await;
    assert_eq!(second.unwrap().as_deref(), Some("browser-a"));
    let row = store.get_connect_session(&th("t")).await.unwrap().unwrap();
    assert_eq!(row.browser_hash.as_deref(), Some("browser-a"));
    assert_eq!(
        store
            .bind_connect_session(&th("none"), &th("b"), NOW)
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn connect_session_binding_race<S: Store>(store: S) {
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
            let bound = store
                .bind_connect_session(&th("t"), &th(&mine), NOW)
                .await
                .unwrap();
            bound.as_deref() == Some(mine.as_str())
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one browser binds the session");
}

pub(crate) async fn connect_session_completes_once<S: Store>(store: S) {
    store
        .insert_connect_session(&session("t", NOW + 600))
        .await
        .unwrap();
    assert!(store.complete_connect_session(&th("t"), NOW).await.unwrap());
    assert!(
        !store
            .complete_connect_session(&th("t"), NOW + 1)
            .await
            .unwrap()
    );
    let row = store.get_connect_session(&th("t")).await.unwrap().unwrap();
    assert_eq!(row.completed_at, Some(NOW));
    // A failed save hands the session back.
    store
        .reopen_connect_session(&th("t"), NOW + 2)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_connect_session(&th("t"))
            .await
            .unwrap()
            .unwrap()
            .completed_at,
        None
    );
    assert!(
        !store
            .complete_connect_session(&th("none"), NOW)
            .await
            .unwrap()
    );

    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .complete_connect_session(&th("t"), NOW + 3)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one connect completes a session");
}

pub(crate) async fn connect_session_attempt_window<S: Store>(store: S) {
    store
        .insert_connect_session(&session("t", NOW + 6000))
        .await
        .unwrap();
    for n in 1..=3 {
        let counted = store
            .count_session_attempt(&th("t"), NOW + n, 600)
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
        .count_session_attempt(&th("t"), NOW + 1 + 600, 600)
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
        store
            .count_session_attempt(&th("none"), NOW, 600)
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn flow_states_capped_per_session<S: Store>(store: S) {
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

pub(crate) async fn purge_expired<S: Store>(store: S) {
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

    assert_eq!(
        store.get_connect_session(&th("s-expired")).await.unwrap(),
        None
    );
    assert!(
        store
            .get_connect_session(&th("s-boundary"))
            .await
            .unwrap()
            .is_some(),
        "expires AT now"
    );
    assert!(
        store
            .get_connect_session(&th("s-live"))
            .await
            .unwrap()
            .is_some()
    );
    let gone = store
        .consume_flow_state(&th("f-expired"), &th("b"))
        .await
        .unwrap();
    assert_eq!(gone, ConsumeOutcome::Unknown);
    let kept = store
        .consume_flow_state(&th("f-live"), &th("b"))
        .await
        .unwrap();
    assert_eq!(kept, ConsumeOutcome::Consumed(live));
    assert!(
        store.get_connection("conn-1").await.unwrap().is_some(),
        "connections untouched"
    );

    assert_eq!(store.purge_expired(NOW).await.unwrap(), 0);
}
