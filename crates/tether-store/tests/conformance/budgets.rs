//! What `BudgetStore` promises, on every backend: a GCRA budget takes its burst and then one
//! call per interval; a connection over its share spends nothing of the integration's; a
//! provider's hold refuses every call until it ends and spends nothing; the latest hold wins;
//! racing callers together take exactly the budget; rows that say nothing any more are purged.

use std::sync::Arc;

use tether_store::{BudgetTake, BudgetVerdict, GcraKey, SqliteStore, Store};
use tokio::sync::Barrier;

/// The suite's "now", in microseconds.
const NOW: i64 = 1_800_000_000_000_000;
const SECOND: i64 = 1_000_000;

/// `requests` per second.
fn gcra(key: &str, requests: i64) -> GcraKey {
    let interval = SECOND / requests;
    GcraKey {
        key: key.to_owned(),
        interval_micros: interval,
        tolerance_micros: interval * (requests - 1),
    }
}

fn take(at: i64, connection: Option<GcraKey>, integration: Option<GcraKey>) -> BudgetTake {
    BudgetTake {
        now_micros: at,
        hold: "h:c:conn_a".to_owned(),
        connection,
        integration,
    }
}

async fn budgets_take_refuse_and_hold<S: Store>(store: S) {
    let conn = || Some(gcra("c:conn_a", 3));
    let integ = || Some(gcra("i:crm", 4));
    for _ in 0..3 {
        assert_eq!(
            store
                .take_budgets(&take(NOW, conn(), integ()))
                .await
                .unwrap(),
            BudgetVerdict::Taken
        );
    }
    // Over the connection's three: a wait of at most one interval, and the integration's
    // fourth is not spent by it.
    match store
        .take_budgets(&take(NOW, conn(), integ()))
        .await
        .unwrap()
    {
        BudgetVerdict::OverConnection { wait_micros } => {
            assert!((1..=SECOND / 3).contains(&wait_micros), "{wait_micros}")
        }
        other => panic!("expected the connection's budget to refuse: {other:?}"),
    }
    let other = take(NOW, Some(gcra("c:conn_b", 3)), integ());
    assert_eq!(
        store.take_budgets(&other).await.unwrap(),
        BudgetVerdict::Taken
    );
    assert!(matches!(
        store.take_budgets(&other).await.unwrap(),
        BudgetVerdict::OverIntegration { .. }
    ));
    // A third of a second later the connection may call once more.
    let later = NOW + SECOND / 3;
    assert_eq!(
        store
            .take_budgets(&take(later, conn(), None))
            .await
            .unwrap(),
        BudgetVerdict::Taken
    );

    // A hold refuses until it ends; the latest of two holds wins; it spends nothing.
    store
        .hold_budget("h:c:conn_a", NOW + 5 * SECOND)
        .await
        .unwrap();
    store
        .hold_budget("h:c:conn_a", NOW + 2 * SECOND)
        .await
        .unwrap();
    for at in [NOW, NOW + 4 * SECOND] {
        assert_eq!(
            store
                .take_budgets(&take(at, conn(), integ()))
                .await
                .unwrap(),
            BudgetVerdict::Held {
                until_micros: NOW + 5 * SECOND
            }
        );
    }
    let after = NOW + 5 * SECOND;
    for _ in 0..3 {
        assert_eq!(
            store
                .take_budgets(&take(after, conn(), integ()))
                .await
                .unwrap(),
            BudgetVerdict::Taken,
            "the held calls spent nothing, and the budgets refilled"
        );
    }

    // Every row's time is past by then: the purge takes them all, and nothing current.
    store
        .hold_budget("h:c:conn_z", NOW + 60 * SECOND)
        .await
        .unwrap();
    let purged = store.purge_budgets(NOW + 10 * SECOND).await.unwrap();
    assert_eq!(purged, 4, "conn_a, conn_b, crm and the ended hold");
    assert!(matches!(
        store
            .take_budgets(&BudgetTake {
                hold: "h:c:conn_z".into(),
                ..take(NOW + 10 * SECOND, None, None)
            })
            .await
            .unwrap(),
        BudgetVerdict::Held { .. }
    ));
}

async fn racing_callers_take_exactly_the_budget<S: Store>(store: S) {
    const RACERS: usize = 8;
    const BUDGET: i64 = 20;
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|n| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut taken = 0;
                for _ in 0..5 {
                    let ask = take(
                        NOW,
                        Some(gcra(&format!("c:conn_{n}"), 100)),
                        Some(gcra("i:crm", BUDGET)),
                    );
                    if store.take_budgets(&ask).await.unwrap() == BudgetVerdict::Taken {
                        taken += 1;
                    }
                }
                taken
            })
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        taken += task.await.unwrap();
    }
    assert_eq!(taken, BUDGET, "40 calls at once against a budget of 20");
}

macro_rules! budget_suite {
    ($backend:ident, $open:path) => {
        mod $backend {
            budget_suite!(@tests $open;
                budgets_take_refuse_and_hold,
                racing_callers_take_exactly_the_budget,
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

budget_suite!(sqlite, super::open_sqlite);
budget_suite!(postgres, super::super::open_postgres);
