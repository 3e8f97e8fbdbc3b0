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

use tether_core::unix_time;
use tether_store::Store;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::refresh;
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
        let round_started = unix_time::now();
        let round = round(&state, &semaphore, config.window);
        let backlog = tokio::select! {
            // Full, and even the last listed token expires before the next round would come.
            latest = round => latest.is_some_and(|at| {
                at < round_started + config.interval.as_secs() as i64
            }),
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
    let now = unix_time::now();
    let due = match state
        .store
        .connections_due_for_refresh(now + window.as_secs() as i64, now, ROUND_LIMIT)
        .await
    {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(error = ?err, "could not list connections due for refresh");
            return None;
        }
    };
    if due.is_empty() {
        return None;
    }
    // Listed soonest first: the last row expires latest.
    let latest = (due.len() >= ROUND_LIMIT as usize)
        .then(|| due.last().and_then(|row| row.access_expires_at))
        .flatten();
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

/// `interval` plus up to 10%.
fn jittered(interval: Duration) -> Duration {
    let spread = (interval.as_millis() / 10).max(1) as u64;
    interval + Duration::from_millis(rand::random_range(0..spread))
}
