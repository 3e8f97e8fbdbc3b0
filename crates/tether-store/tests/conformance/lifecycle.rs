//! What `LifecycleStore` promises, on every backend: the account and grant deadlines written
//! only with the credentials they belong to, check failures counted exactly once each even
//! when instances race, checks scheduled once, and a grant's end announced once.

use std::sync::Arc;

use tether_store::{
    CheckRecord, CheckResult, ConnectSessionRow, ConnectionRow, ConnectionStatus, GrantRecord,
    HistoryEntry, NewWebhookEvent, SqliteStore, StatusChange, Store, StoredAccount, TokenHash,
};
use tokio::sync::Barrier;

const NOW: i64 = 1_800_000_000;
const RACERS: usize = 16;

fn row(id: &str, end_user_id: &str) -> ConnectionRow {
    ConnectionRow {
        id: id.to_owned(),
        integration: "crm".to_owned(),
        end_user_id: end_user_id.to_owned(),
        end_user_email: None,
        end_user_display_name: None,
        status: ConnectionStatus::Active,
        credentials: tether_store::Sealed::from_bytes(b"sealed".to_vec()),
        credentials_version: 1,
        access_expires_at: Some(NOW + 3600),
        metadata: "{}".to_owned(),
        last_error: None,
        refresh_failures: 0,
        next_refresh_at: None,
        created_at: NOW,
        updated_at: NOW,
        provider_account: None,
    }
}

fn account(user: &str) -> StoredAccount {
    StoredAccount {
        user_id: Some(user.to_owned()),
        organization_id: Some("org-1".to_owned()),
        label: Some(format!("{user}@example.com")),
    }
}

fn check(id: &str, result: CheckResult, at: i64) -> CheckRecord {
    CheckRecord {
        id: id.to_owned(),
        result,
        summary: format!("{result:?}"),
        account: None,
        next_check_at: at + 600,
        now: at,
    }
}

async fn lifecycle<S: Store>(store: &S, id: &str) -> tether_store::ConnectionLifecycle {
    let mut all = store.connection_lifecycles(&[id.to_owned()]).await.unwrap();
    assert_eq!(all.len(), 1, "{id} exists");
    all.remove(0)
}

async fn grant_follows_the_credentials<S: Store>(store: S) {
    store.insert_connection(&row("c1", "u1")).await.unwrap();
    let fresh = lifecycle(&store, "c1").await;
    assert_eq!(fresh.account, None);
    assert_eq!(fresh.check_failures, 0);
    let grant = GrantRecord {
        id: "c1".into(),
        expected_version: 1,
        account: Some(account("a1")),
        keepalive_at: Some(NOW + 80 * 86_400),
        grant_expires_at: Some(NOW + 365 * 86_400),
        now: NOW,
    };
    assert!(store.record_grant(&grant).await.unwrap());
    let written = lifecycle(&store, "c1").await;
    assert_eq!(written.account, Some(account("a1")));
    // The row carries the account's key, read with it (the proxy keys per-account limits
    // by it): the organisation when known, else the user.
    let key =
        |row: tether_store::ConnectionRow| row.provider_account.map(|a| a.as_str().to_owned());
    let read = store.get_connection("c1").await.unwrap().unwrap();
    assert_eq!(key(read), Some("o:org-1".to_owned()));
    store.insert_connection(&row("c2", "u2")).await.unwrap();
    let user_only = GrantRecord {
        id: "c2".into(),
        account: Some(StoredAccount {
            organization_id: None,
            ..account("a2")
        }),
        ..grant.clone()
    };
    assert!(store.record_grant(&user_only).await.unwrap());
    let listed = store
        .list_connections(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == "c2")
        .unwrap();
    assert_eq!(key(listed), Some("u:a2".to_owned()));
    assert_eq!(written.keepalive_at, grant.keepalive_at);
    assert_eq!(written.grant_expires_at, grant.grant_expires_at);
    // A stale grant (the credentials moved on) writes nothing.
    let stale = GrantRecord {
        expected_version: 7,
        account: Some(account("other")),
        ..grant.clone()
    };
    assert!(!store.record_grant(&stale).await.unwrap());
    assert_eq!(lifecycle(&store, "c1").await.account, Some(account("a1")));
    // No account in the grant keeps the known one.
    let keep = GrantRecord {
        account: None,
        keepalive_at: None,
        ..grant
    };
    assert!(store.record_grant(&keep).await.unwrap());
    let kept = lifecycle(&store, "c1").await;
    assert_eq!(kept.account, Some(account("a1")));
    assert_eq!(kept.keepalive_at, None);
    assert!(store.set_keepalive("c1", 1, Some(NOW + 5)).await.unwrap());
    assert!(!store.set_keepalive("c1", 2, Some(NOW + 9)).await.unwrap());
    assert_eq!(lifecycle(&store, "c1").await.keepalive_at, Some(NOW + 5));
    // Unknown ids are left out; many ids are read at once.
    let many: Vec<String> = (0..1200)
        .map(|i| format!("none-{i}"))
        .chain(["c1".to_owned()])
        .collect();
    assert_eq!(store.connection_lifecycles(&many).await.unwrap().len(), 1);
}

async fn checks_count_definite_failures<S: Store>(store: S) {
    store.insert_connection(&row("c1", "u1")).await.unwrap();
    let refused = store
        .record_check(&check("c1", CheckResult::Refused, NOW))
        .await
        .unwrap();
    assert_eq!(refused, Some(1));
    let transient = store
        .record_check(&check("c1", CheckResult::Unavailable, NOW + 1))
        .await
        .unwrap();
    assert_eq!(transient, Some(1), "a transient error never counts");
    let again = store
        .record_check(&check("c1", CheckResult::Refused, NOW + 2))
        .await
        .unwrap();
    assert_eq!(again, Some(2));
    let mut passed = check("c1", CheckResult::Passed, NOW + 3);
    passed.account = Some(account("a1"));
    assert_eq!(store.record_check(&passed).await.unwrap(), Some(0));
    let after = lifecycle(&store, "c1").await;
    assert_eq!(after.last_checked_at, Some(NOW + 3));
    assert_eq!(after.next_check_at, Some(NOW + 603));
    assert_eq!(after.last_check.as_deref(), Some("Passed"));
    assert_eq!(after.account, Some(account("a1")), "learned when unknown");
    let mut other = check("c1", CheckResult::Passed, NOW + 4);
    other.account = Some(account("a2"));
    store.record_check(&other).await.unwrap();
    assert_eq!(
        lifecycle(&store, "c1").await.account,
        Some(account("a1")),
        "a check never replaces a known account"
    );
    assert_eq!(
        store
            .record_check(&check("gone", CheckResult::Refused, NOW))
            .await
            .unwrap(),
        None
    );
}

async fn concurrent_check_failures_all_count<S: Store>(store: S) {
    store.insert_connection(&row("c1", "u1")).await.unwrap();
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for n in 0..RACERS {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .record_check(&check("c1", CheckResult::Refused, NOW + n as i64))
                .await
                .unwrap()
                .unwrap()
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    let expected: Vec<i64> = (1..=RACERS as i64).collect();
    assert_eq!(seen, expected, "each failure counted once");
}

async fn checks_due_and_scheduled_once<S: Store>(store: S) {
    for (id, user) in [("c1", "u1"), ("c2", "u2"), ("c3", "u3")] {
        store.insert_connection(&row(id, user)).await.unwrap();
    }
    let due = store.connections_due_for_check(NOW, 10).await.unwrap();
    assert_eq!(due.len(), 3, "never scheduled: due");
    assert!(
        due.iter()
            .all(|d| d.next_check_at.is_none() && d.integration == "crm")
    );
    assert!(store.schedule_check("c1", NOW + 100).await.unwrap());
    assert!(
        !store.schedule_check("c1", NOW + 5).await.unwrap(),
        "only once"
    );
    let batch = [("c1".to_owned(), NOW + 7), ("gone".to_owned(), NOW + 7)];
    assert_eq!(
        store.schedule_checks(&batch).await.unwrap(),
        0,
        "c1 kept, gone ignored"
    );
    store
        .record_check(&check("c2", CheckResult::Passed, NOW - 700))
        .await
        .unwrap();
    store
        .set_connection_status("c3", ConnectionStatus::NeedsReauth, Some("x"), NOW)
        .await
        .unwrap();
    let due = store.connections_due_for_check(NOW, 10).await.unwrap();
    let ids: Vec<&str> = due.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["c2"], "c1 later, c3 not active");
    let later = store
        .connections_due_for_check(NOW + 100, 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 2);
    assert_eq!(
        store
            .connections_due_for_check(NOW + 100, 1)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn keepalive_and_expiring_once<S: Store>(store: S) {
    for (id, user) in [("c1", "u1"), ("c2", "u2")] {
        store.insert_connection(&row(id, user)).await.unwrap();
    }
    let grant = |id: &str, keepalive: i64, ends: i64| GrantRecord {
        id: id.into(),
        expected_version: 1,
        account: None,
        keepalive_at: Some(keepalive),
        grant_expires_at: Some(ends),
        now: NOW,
    };
    store
        .record_grant(&grant("c1", NOW + 10, NOW + 1000))
        .await
        .unwrap();
    store
        .record_grant(&grant("c2", NOW + 20, NOW + 5000))
        .await
        .unwrap();
    assert_eq!(
        store
            .connections_due_for_keepalive(NOW + 15, 10)
            .await
            .unwrap(),
        ["c1"]
    );
    assert_eq!(
        store
            .connections_due_for_keepalive(NOW + 25, 10)
            .await
            .unwrap(),
        ["c1", "c2"]
    );
    assert_eq!(
        store
            .connections_grant_ending(NOW + 2000, 10)
            .await
            .unwrap(),
        ["c1"]
    );
    let event = NewWebhookEvent {
        id: "evt_1".into(),
        event_type: "connection.expiring".into(),
        connection_id: "c1".into(),
        payload: "{}".into(),
        created_at: NOW,
        deliver: true,
        history: HistoryEntry {
            kind: "expiring".into(),
            integration: "crm".into(),
            detail: None,
            reference: None,
        },
    };
    // Racing announcers: one marks it and writes the event.
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for n in 0..RACERS {
        let store = store.clone();
        let barrier = barrier.clone();
        let mut event = event.clone();
        event.id = format!("evt_{n}");
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.mark_expiring("c1", NOW, Some(&event)).await.unwrap()
        }));
    }
    let mut marked = 0;
    for task in tasks {
        marked += usize::from(task.await.unwrap());
    }
    assert_eq!(marked, 1);
    let history = store.list_connection_events("c1", None, 50).await.unwrap();
    assert_eq!(history.iter().filter(|h| h.kind == "expiring").count(), 1);
    assert!(
        store
            .connections_grant_ending(NOW + 2000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A new grant clears the notice (the next end is announced again).
    store
        .record_grant(&grant("c1", NOW + 10, NOW + 1500))
        .await
        .unwrap();
    assert_eq!(
        store
            .connections_grant_ending(NOW + 2000, 10)
            .await
            .unwrap(),
        ["c1"]
    );
    assert!(!store.mark_expiring("c2-missing", NOW, None).await.unwrap());
}

fn history_event(id: &str, kind: &str) -> NewWebhookEvent {
    NewWebhookEvent {
        id: id.into(),
        event_type: ["connection.", kind].concat(),
        connection_id: "c1".into(),
        payload: "{}".into(),
        created_at: NOW,
        deliver: true,
        history: HistoryEntry {
            kind: kind.into(),
            integration: "crm".into(),
            detail: Some("why".into()),
            reference: None,
        },
    }
}

async fn status_change_writes_every_event_once<S: Store>(store: S) {
    store.insert_connection(&row("c1", "u1")).await.unwrap();
    let change = StatusChange {
        id: "c1".into(),
        status: ConnectionStatus::NeedsReauth,
        last_error: Some("revoked".into()),
        expected_version: Some(1),
        now: NOW,
    };
    let events = [
        history_event("evt_a", "refresh_failed"),
        history_event("evt_b", "needs_reauth"),
    ];
    assert!(
        store
            .change_status_with_events(&change, &events)
            .await
            .unwrap()
    );
    let again = [history_event("evt_c", "needs_reauth")];
    assert!(
        !store
            .change_status_with_events(&change, &again)
            .await
            .unwrap(),
        "no change"
    );
    let stale = StatusChange {
        status: ConnectionStatus::Active,
        expected_version: Some(9),
        ..change
    };
    assert!(
        !store
            .change_status_with_events(&stale, &again)
            .await
            .unwrap()
    );
    let history = store.list_connection_events("c1", None, 50).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds, ["refresh_failed"], "one change, one entry");
    let outbox = store
        .list_webhook_events(&tether_store::WebhookEventFilter {
            connection_id: Some("c1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut sent: Vec<&str> = outbox.iter().map(|e| e.id.as_str()).collect();
    sent.sort_unstable();
    assert_eq!(sent, ["evt_a", "evt_b"], "both webhooks");
    assert_eq!(
        store.get_connection("c1").await.unwrap().unwrap().status,
        ConnectionStatus::NeedsReauth
    );
    let mut alone = history_event("evt_d", "check_failed");
    alone.deliver = false;
    store.append_event(&alone).await.unwrap();
    let history = store.list_connection_events("c1", None, 50).await.unwrap();
    assert_eq!(history[0].kind, "check_failed");
    assert_eq!(history[0].webhook_event_id, None, "history only");
}

async fn reconnect_sessions_go_with_their_session<S: Store>(store: S) {
    let session = ConnectSessionRow {
        token_hash: TokenHash::from_hex("ab".repeat(32)),
        end_user_id: "u1".into(),
        end_user_email: None,
        end_user_display_name: None,
        integrations: None,
        return_url: None,
        expires_at: NOW + 60,
        created_at: NOW,
        browser_hash: None,
        completed_at: None,
    };
    store.insert_connect_session(&session).await.unwrap();
    let hash = "ab".repeat(32);
    assert_eq!(store.session_reconnect(&hash).await.unwrap(), None);
    store.set_session_reconnect(&hash, "c1").await.unwrap();
    assert_eq!(
        store.session_reconnect(&hash).await.unwrap().as_deref(),
        Some("c1")
    );
    assert!(
        store
            .set_session_reconnect(&"cd".repeat(32), "c1")
            .await
            .is_err(),
        "only for a session that exists"
    );
    store.purge_expired(NOW + 61).await.unwrap();
    assert_eq!(
        store.session_reconnect(&hash).await.unwrap(),
        None,
        "purged with it"
    );
}

macro_rules! lifecycle_suite {
    ($backend:ident, $open:path) => {
        mod $backend {
            lifecycle_suite!(@tests $open;
                grant_follows_the_credentials,
                checks_count_definite_failures,
                concurrent_check_failures_all_count,
                checks_due_and_scheduled_once,
                keepalive_and_expiring_once,
                status_change_writes_every_event_once,
                reconnect_sessions_go_with_their_session,
            );
        }
    };
    (@tests $open:path; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                let (store, _guard) = $open().await;
                super::$test(store).await;
            }
        )*
    };
}

async fn open_sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tether.db").display());
    (SqliteStore::connect(&url).await.unwrap(), dir)
}

lifecycle_suite!(sqlite, super::open_sqlite);
lifecycle_suite!(postgres, super::super::open_postgres);
