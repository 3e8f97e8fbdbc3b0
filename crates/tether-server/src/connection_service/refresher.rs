//! The background refresher: refreshes OAuth tokens that expire within a window, before any
//! read has to wait for it.
//!
//! Each round asks the store for active connections expiring within `window` and not in
//! back-off, and refreshes them through the same single-flight path as reads (per-connection
//! lock, database lease, compare-and-swap), at most `concurrency` at once, each after a small
//! random delay so that many instances (or many connections created together) spread out.
//! Between rounds it sleeps `interval` (jittered), or only a short floor after a full round
//! (a backlog, such as many tokens expiring together): it never busy-loops, even when a
//! provider's tokens live shorter than the window. It stops when shutdown is signalled.

use std::sync::Arc;
use std::time::Duration;

use tether_store::{ConnectionRow, Store, StoreError};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{expiry, refresh};
use crate::state::AppState;

/// Connections looked at per round, at most.
const ROUND_LIMIT: u32 = 500;

/// Runs until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn run<S: Store>(state: AppState<S>, mut shutdown: watch::Receiver<bool>) {
    let _running = crate::state::Running::mark(&state.workers.refresher);
    let config = state.config.refresher.clone();
    let semaphore = Arc::new(Semaphore::new(config.concurrency.max(1)));
    tracing::info!(
        window_secs = config.window.as_secs(),
        concurrency = config.concurrency,
        "background refresher started"
    );
    loop {
        if *shutdown.borrow() {
            break;
        }
        let round_started = state.clock.now();
        let round = round(&state, &semaphore, config.window);
        let backlog = tokio::select! {
            latest = round => is_backlog(latest, round_started, config.interval),
            // Dropping the round drops its JoinSet, which aborts refreshes in flight; their
            // leases expire and the compare-and-swap keeps the stored tokens consistent.
            _ = shutdown.changed() => break,
        };
        // A backlog (many tokens expiring together) goes on after the floor rather than a
        // whole interval, or it would drain at ROUND_LIMIT per interval while its tokens
        // expire. Tokens that merely live shorter than the window wait for the interval. The
        // floor keeps a zero interval in configuration from making this spin.
        let floor = Duration::from_millis(100);
        let pause = if backlog {
            floor
        } else {
            jittered(config.interval.max(floor))
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!("background refresher stopped");
}

/// One round: every due connection, refreshed with bounded concurrency. When the round was
/// full (`ROUND_LIMIT` listed, so more may be due), returns the latest expiry it listed.
async fn round<S: Store>(
    state: &AppState<S>,
    semaphore: &Arc<Semaphore>,
    window: Duration,
) -> Option<i64> {
    let due = match list_due(state, window).await {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(error = ?err, "could not list connections due for refresh");
            return None;
        }
    };
    if due.is_empty() {
        return None;
    }
    let latest = latest_of_full_round(&due, ROUND_LIMIT);
    tracing::debug!(count = due.len(), "refreshing ahead of expiry");
    let mut tasks = JoinSet::new();
    for row in due {
        let semaphore = semaphore.clone();
        let state = state.clone();
        tasks.spawn(async move {
            // Up to 250 ms: enough to spread instances apart, small next to any window. Taken
            // before the permit, so that the delay does not cap throughput at `concurrency`
            // refreshes per 125 ms.
            let jitter = Duration::from_millis(rand::random_range(0..250));
            tokio::time::sleep(jitter).await;
            let Ok(_permit) = semaphore.acquire_owned().await else {
                return;
            };
            if let Err(err) = refresh::refresh_ahead(&state, &row.id, window).await {
                tracing::debug!(connection_id = %row.id, error = %err, "ahead-of-expiry refresh failed");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    latest
}

/// The connections due now (by the state's clock), soonest first: active, expiring before
/// the end of `window`, not in back-off; at most `ROUND_LIMIT`.
async fn list_due<S: Store>(
    state: &AppState<S>,
    window: Duration,
) -> Result<Vec<ConnectionRow>, StoreError> {
    let now = state.clock.now();
    state
        .store
        .connections_due_for_refresh(expiry::horizon(now, window), now, ROUND_LIMIT)
        .await
}

/// When the round was full (`limit` listed, so more may be due), the latest expiry it listed:
/// rows come soonest first, so the last one's.
fn latest_of_full_round(due: &[ConnectionRow], limit: u32) -> Option<i64> {
    if due.len() < limit as usize {
        return None;
    }
    due.last().and_then(|row| row.access_expires_at)
}

/// Whether the round left a backlog: it was full, and even the last listed token expires
/// before the next round would come, `interval` after this one started.
fn is_backlog(latest_listed: Option<i64>, round_started: i64, interval: Duration) -> bool {
    latest_listed.is_some_and(|at| at < expiry::horizon(round_started, interval))
}

/// `interval` plus up to 10%.
fn jittered(interval: Duration) -> Duration {
    let spread = (interval.as_millis() / 10).max(1) as u64;
    interval + Duration::from_millis(rand::random_range(0..spread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection_service::clock::FakeClock;
    use tether_store::{ConnectionStatus, SqliteStore};

    const T: i64 = 1_700_000_000;

    fn row(id: &str, expires_at: Option<i64>) -> ConnectionRow {
        ConnectionRow {
            id: id.to_owned(),
            integration: "crm".into(),
            end_user_id: format!("user_{id}"),
            end_user_email: None,
            end_user_display_name: None,
            status: ConnectionStatus::Active,
            credentials: tether_store::Sealed::default(),
            credentials_version: 1,
            access_expires_at: expires_at,
            metadata: "{}".into(),
            last_error: None,
            refresh_failures: 0,
            next_refresh_at: None,
            created_at: T - 3_600,
            updated_at: T - 3_600,
            provider_account: None,
        }
    }

    #[test]
    fn only_a_full_round_reports_its_latest_expiry() {
        let rows = [row("a", Some(T + 10)), row("b", Some(T + 20))];
        assert_eq!(latest_of_full_round(&rows, 3), None, "not full");
        assert_eq!(latest_of_full_round(&rows, 2), Some(T + 20));
        assert_eq!(latest_of_full_round(&[], 0), None, "nothing listed");
        let unknown = [row("a", Some(T + 10)), row("b", None)];
        assert_eq!(latest_of_full_round(&unknown, 2), None);
    }

    #[test]
    fn a_backlog_is_a_full_round_expiring_before_the_next() {
        let interval = Duration::from_secs(60);
        assert!(is_backlog(Some(T + 59), T, interval));
        assert!(
            !is_backlog(Some(T + 60), T, interval),
            "the next round is in time"
        );
        assert!(!is_backlog(None, T, interval), "not full");
        // A zero interval never makes a backlog of tokens that have not yet expired.
        assert!(!is_backlog(Some(T), T, Duration::ZERO));
        assert!(is_backlog(Some(T - 1), T, Duration::ZERO));
    }

    /// The due listing as the clock moves, against a real (in-memory) store.
    #[tokio::test]
    async fn lists_what_is_due_by_the_clock() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let mut backing_off = row("backing_off", Some(T + 300));
        backing_off.next_refresh_at = Some(T + 50);
        let mut inactive = row("inactive", Some(T + 10));
        inactive.status = ConnectionStatus::NeedsReauth;
        for row in [
            row("soon", Some(T + 100)),
            row("later", Some(T + 700)),
            row("unknown", None),
            backing_off,
            inactive,
        ] {
            store.insert_connection(&row).await.unwrap();
        }
        let clock = Arc::new(FakeClock::at(T));
        let vault =
            tether_core::vault::Vault::from_spec(&tether_core::vault::Vault::generate_key_entry())
                .unwrap();
        let state = AppState::new(
            store,
            vault,
            crate::GatewayConfig::new("https://tether.example.com".parse().unwrap()),
            tether_core::catalog::Catalog::embedded().unwrap(),
            crate::state::integrations::Integrations::from_config(Vec::new()),
            crate::ApiKeys::default(),
            clock.clone(),
        );
        let window = Duration::from_secs(600);
        let due = async || -> Vec<String> {
            let rows = list_due(&state, window).await.unwrap();
            rows.into_iter().map(|row| row.id).collect()
        };

        assert_eq!(due().await, ["soon"], "the one in back-off waits");
        clock.advance(Duration::from_secs(50));
        assert_eq!(due().await, ["soon", "backing_off"], "back-off over");
        clock.advance(Duration::from_secs(50));
        // Expiring exactly at the end of the window: the store lists only what expires
        // before it, so this one waits a second.
        assert_eq!(due().await, ["soon", "backing_off"]);
        clock.advance(Duration::from_secs(1));
        assert_eq!(due().await, ["soon", "backing_off", "later"]);
        clock.advance(Duration::from_secs(100_000));
        assert_eq!(
            due().await,
            ["soon", "backing_off", "later"],
            "an unknown expiry or an inactive connection is never due"
        );
    }
}
