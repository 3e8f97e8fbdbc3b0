//! The background lifecycle worker: health checks on a schedule, keep-alive refreshes, and
//! the notice of a grant's fixed end.
//!
//! - **Checks.** A connection never checked gets its first check at a point of the interval
//!   chosen by a hash of its id, so 100,000 connections made in one import spread evenly over
//!   the interval instead of all calling the provider in the first minute; after each check
//!   the next is due one interval later (jittered, and never sooner than the operator's
//!   minimum for the integration). At most `check_concurrency` checks run at once per
//!   instance, and each holds the connection's lease, so instances never check one
//!   connection twice at a time.
//! - **Keep-alive.** A refresh token that the provider expires when unused is used before it
//!   does (`keepalive_at`, from `[lifetime] refresh_token_idle_days`), through the same
//!   refresh path as reads; back-off after a transient failure is respected.
//! - **Expiring.** A grant with a fixed lifetime (`refresh_token_max_days`) is announced once,
//!   `expiring_notice` ahead, with `connection.expiring`.
//!
//! Every time decision reads the state's clock; the loop itself wakes every `tick`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tether_store::{CheckDue, Store};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::health::{self, Caller};
use super::refresh::{self, Freshness};
use super::{ConnectionError, expiry};
use crate::state::AppState;
use crate::webhooks::{self, EventType};

/// Connections looked at per round and per kind of work, at most.
const ROUND_LIMIT: u32 = 1000;

/// Runs until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn run<S: Store>(state: AppState<S>, mut shutdown: watch::Receiver<bool>) {
    let config = state.config.lifecycle.clone();
    let semaphore = Arc::new(Semaphore::new(config.check_concurrency.max(1)));
    tracing::info!(
        interval_secs = config.check_interval.as_secs(),
        concurrency = config.check_concurrency,
        "background checks started"
    );
    loop {
        if *shutdown.borrow() {
            break;
        }
        let full = tokio::select! {
            full = round(&state, &semaphore) => full,
            _ = shutdown.changed() => break,
        };
        // A full round (a large import seen for the first time, many checks due together)
        // goes on after a short floor rather than a whole tick.
        let floor = Duration::from_millis(10);
        let pause = if full { floor } else { config.tick.max(floor) };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!("background checks stopped");
}

/// One round of each kind of work; true when the checks listed were a full round (more
/// may be due).
pub(crate) async fn round<S: Store>(state: &AppState<S>, semaphore: &Arc<Semaphore>) -> bool {
    let full = match checks(state, semaphore).await {
        Ok(listed) => listed >= ROUND_LIMIT as usize,
        Err(err) => {
            tracing::warn!(error = ?err, "could not list connections due for a check");
            false
        }
    };
    if let Err(err) = keep_alive(state).await {
        tracing::warn!(error = ?err, "could not list connections due for a keep-alive refresh");
    }
    if let Err(err) = expiring(state).await {
        tracing::warn!(error = ?err, "could not list grants that end soon");
    }
    full
}

/// Where in `interval` a never-checked connection's first check falls: a hash of its id, so
/// the same connection gets the same point on every instance and all of them spread evenly.
pub(crate) fn first_check_offset(id: &str, interval: Duration) -> Duration {
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    let millis = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(hasher.finish() % millis)
}

async fn checks<S: Store>(
    state: &AppState<S>,
    semaphore: &Arc<Semaphore>,
) -> Result<usize, tether_store::StoreError> {
    let now = state.clock.now();
    let due = state
        .store
        .connections_due_for_check(now, ROUND_LIMIT)
        .await?;
    let listed = due.len();
    let mut tasks = JoinSet::new();
    let mut first_sight = Vec::new();
    for CheckDue {
        id,
        integration,
        next_check_at,
    } in due
    {
        let has_check = state
            .integration(&integration)
            .is_some_and(|i| i.check.is_some());
        let interval = state.config.lifecycle.interval_for(&integration);
        if next_check_at.is_none() || !has_check {
            // First sight (or nothing to check with): a place in the interval, not now.
            let offset = if has_check {
                first_check_offset(&id, interval)
            } else {
                interval
            };
            let at = expiry::after(now, offset.max(Duration::from_secs(1)));
            if !has_check {
                // Moved on even when already scheduled, so it is not listed every round.
                state
                    .store
                    .record_check(&tether_store::CheckRecord {
                        id: id.clone(),
                        result: tether_store::CheckResult::Unavailable,
                        summary: "no check declared".into(),
                        account: None,
                        next_check_at: at,
                        now,
                    })
                    .await?;
            } else {
                first_sight.push((id, at));
            }
            continue;
        }
        let semaphore = semaphore.clone();
        let state = state.clone();
        tasks.spawn(async move {
            let Ok(_permit) = semaphore.acquire_owned().await else {
                return;
            };
            match health::check(&state, &id, Caller::Background).await {
                Ok(_) | Err(ConnectionError::NotFound | ConnectionError::NeedsReauth) => {}
                Err(err) => {
                    tracing::debug!(connection_id = %id, error = %err, "background check failed")
                }
            }
        });
    }
    // One transaction for the whole round's first sightings (a large import: 1000 at once).
    if !first_sight.is_empty() {
        state.store.schedule_checks(&first_sight).await?;
    }
    while tasks.join_next().await.is_some() {}
    Ok(listed)
}

async fn keep_alive<S: Store>(state: &AppState<S>) -> Result<(), tether_store::StoreError> {
    let now = state.clock.now();
    let due = state
        .store
        .connections_due_for_keepalive(now, ROUND_LIMIT)
        .await?;
    for id in due {
        let Some(row) = state.store.get_connection(&id).await? else {
            continue;
        };
        // In back-off after a transient failure: the refresher's own schedule decides.
        if row.next_refresh_at.is_some_and(|at| at > now) {
            continue;
        }
        tracing::info!(connection_id = %id, "refreshing to keep an idle refresh token alive");
        match refresh::live(state, &id, Freshness::Force).await {
            Ok(_) | Err(ConnectionError::NotFound | ConnectionError::NeedsReauth) => {}
            Err(err) => {
                tracing::debug!(connection_id = %id, error = %err, "keep-alive refresh failed")
            }
        }
    }
    Ok(())
}

async fn expiring<S: Store>(state: &AppState<S>) -> Result<(), tether_store::StoreError> {
    let now = state.clock.now();
    let horizon = expiry::after(now, state.config.lifecycle.expiring_notice);
    let ending = state
        .store
        .connections_grant_ending(horizon, ROUND_LIMIT)
        .await?;
    for id in ending {
        let Some(row) = state.store.get_connection(&id).await? else {
            continue;
        };
        let ends = state
            .store
            .connection_lifecycles(std::slice::from_ref(&id))
            .await?
            .into_iter()
            .next()
            .and_then(|l| l.grant_expires_at);
        let mut extra = Map::new();
        extra.insert(
            "grant_expires_at".into(),
            json!(ends.map(tether_core::unix_time::rfc3339)),
        );
        extra.insert("reason".into(), Value::from("grant_lifetime"));
        let event = webhooks::event(&state.config, now, EventType::Expiring, &row, extra);
        if state.store.mark_expiring(&id, now, event.as_ref()).await? {
            tracing::info!(connection_id = %id, "grant ends soon; the app was told");
            webhooks::wake(&state.webhook_wake, event.as_ref());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_checks_spread_over_the_interval() {
        let interval = Duration::from_secs(3600);
        let mut buckets = [0_u32; 10];
        for n in 0..10_000 {
            let offset = first_check_offset(&format!("conn_{n:032x}"), interval);
            assert!(offset < interval);
            buckets[(offset.as_secs() / 360) as usize] += 1;
        }
        // Even within a few percent: every tenth of the interval gets about a tenth.
        assert!(
            buckets.iter().all(|&b| (850..=1150).contains(&b)),
            "{buckets:?}"
        );
        assert_eq!(
            first_check_offset("conn_a", interval),
            first_check_offset("conn_a", interval),
            "the same point on every instance"
        );
    }
}
