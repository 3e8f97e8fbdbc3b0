//! The background refresher: refreshes OAuth tokens that expire within a window, before any
//! read has to wait for it.
//!
//! Each round claims the due connections a batch at a time (active, expiring within `window`,
//! not in back-off, not leased: one statement takes their refresh leases and returns them, see
//! [`Store::claim_due_refreshes`]), so that instances sharing a database never list the same
//! connections, and refreshes them through the same single-flight path as reads
//! (per-connection lock, compare-and-swap, the lease given back with the new tokens), at most
//! `concurrency` token calls at once: a refresh gives its slot back when the provider answered,
//! and its write joins those of the others finishing then (`refresh_writes`). It claims again
//! as soon as half the claimed batch is done, so the token calls never wait for a claim, and a
//! claimed connection waits for at most about two token calls before its own. A round ends when nothing more is due; a connection is claimed
//! once per round, so a token that lives shorter than the window waits for the next one.
//! Between rounds it sleeps `interval` (jittered). It stops when shutdown is signalled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tether_store::{ConnectionRow, RefreshClaim, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::{expiry, refresh};
use crate::state::AppState;

/// Runs until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn run<S: Store>(state: AppState<S>, mut shutdown: watch::Receiver<bool>) {
    let _running = crate::state::Running::mark(&state.workers.refresher);
    let config = state.config.refresher.clone();
    tracing::info!(
        window_secs = config.window.as_secs(),
        concurrency = config.concurrency,
        "background refresher started"
    );
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            () = round(&state, config.concurrency.max(1), config.window) => {}
            // Dropping the round drops its JoinSet, which aborts refreshes in flight; their
            // leases expire and the compare-and-swap keeps the stored tokens consistent.
            _ = shutdown.changed() => break,
        };
        // The floor keeps a zero interval in configuration from making this spin.
        let pause = jittered(config.interval.max(Duration::from_millis(100)));
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

/// The most refreshes a round keeps in flight, whatever their stage: bounds its memory when
/// the writes fall behind the token calls (a slow database).
const MAX_IN_FLIGHT_PER_SLOT: usize = 8;

/// One round: claims and refreshes, `concurrency` token calls at a time, until nothing more
/// is due.
async fn round<S: Store>(state: &AppState<S>, concurrency: usize, window: Duration) {
    let started = state.clock.now();
    let calls = Arc::new(Semaphore::new(concurrency));
    // Claimed connections whose token call has not answered yet; those past it only wait for
    // their write, which they share with the others finishing then.
    let before_call = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let mut drained = false;
    let mut refreshed = 0_usize;
    loop {
        // Top up once half of what waits for a token call is done: the other half keeps the
        // calls busy meanwhile, and no claimed connection waits long for its turn (its lease
        // runs). What waits for its write does not hold the next claim back, so that more
        // writes share a commit.
        let waiting = before_call.load(Ordering::Acquire);
        if !drained && waiting <= concurrency && tasks.len() < MAX_IN_FLIGHT_PER_SLOT * concurrency
        {
            let wanted = 2 * concurrency - waiting;
            match claim(state, window, started, wanted).await {
                Ok(claimed) => {
                    drained = claimed.len() < wanted;
                    for (row, lease_until) in claimed {
                        refreshed += 1;
                        let turn = Turn::take(&before_call);
                        let calls = calls.clone();
                        let state = state.clone();
                        tasks.spawn(async move {
                            let Ok(permit) = calls.acquire_owned().await else {
                                return;
                            };
                            let call_slot = CallSlot {
                                _permit: permit,
                                _turn: turn,
                            };
                            if let Err(err) = refresh::refresh_claimed(
                                &state,
                                &row,
                                lease_until,
                                window,
                                call_slot,
                            )
                            .await
                            {
                                tracing::debug!(connection_id = %row.id, error = %err,
                                    "ahead-of-expiry refresh failed");
                            }
                        });
                    }
                }
                Err(err) => {
                    tracing::warn!(error = ?err, "could not claim connections due for refresh");
                    drained = true;
                }
            }
        }
        if tasks.join_next().await.is_none() {
            break;
        }
    }
    if refreshed > 0 {
        tracing::debug!(count = refreshed, "refreshed ahead of expiry");
    }
}

/// A claimed connection's place among those waiting for their token call: counted from its
/// claim until it is dropped.
struct Turn(Arc<AtomicUsize>);

impl Turn {
    fn take(count: &Arc<AtomicUsize>) -> Turn {
        count.fetch_add(1, Ordering::AcqRel);
        Turn(count.clone())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One of the round's `concurrency` token-call slots, with the connection's turn: both given
/// back when the provider answered (see [`refresh::refresh_claimed`]).
pub(crate) struct CallSlot {
    _permit: OwnedSemaphorePermit,
    _turn: Turn,
}

/// Claims up to `limit` connections due now (by the state's clock): active, expiring before
/// the end of `window`, not in back-off, not leased, not attempted since `round_started`; each
/// with the end of the lease taken on it.
async fn claim<S: Store>(
    state: &AppState<S>,
    window: Duration,
    round_started: i64,
    limit: usize,
) -> Result<Vec<(ConnectionRow, i64)>, StoreError> {
    let now = state.clock.now();
    let lease_until = expiry::lease_until(now, state.config.refresh_lease);
    let rows = state
        .store
        .claim_due_refreshes(&RefreshClaim {
            owner: state.instance_id.clone(),
            before: expiry::horizon(now, window),
            now,
            lease_until,
            attempted_before: round_started,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        })
        .await?;
    Ok(rows.into_iter().map(|row| (row, lease_until)).collect())
}

/// `interval` plus up to 10%.
fn jittered(interval: Duration) -> Duration {
    let spread = (interval.as_millis() / 10).max(1) as u64;
    interval + Duration::from_millis(rand::random_range(0..spread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection_service::clock::{Clock, FakeClock};
    use crate::connection_service::test_rows::{T, active_row as row};
    use tether_store::{ConnectionStatus, SqliteStore};

    /// The claims as the clock moves, against a real (in-memory) store.
    #[tokio::test]
    async fn claims_what_is_due_by_the_clock_once_per_round() {
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
        let state = AppState::for_tests(store, clock.clone());
        let window = Duration::from_secs(600);
        let claimed = async |round_started: i64| -> Vec<String> {
            let now = clock.now();
            let rows = claim(&state, window, round_started, 10).await.unwrap();
            // Each with the end of its lease: the configured 30 s from now.
            assert!(rows.iter().all(|(_, until)| *until == now + 30));
            rows.into_iter().map(|(row, _)| row.id).collect()
        };

        assert_eq!(claimed(T).await, ["soon"], "the one in back-off waits");
        clock.advance(Duration::from_secs(50));
        assert_eq!(
            claimed(T).await,
            ["backing_off"],
            "back-off over; the one claimed already is not claimed again in this round"
        );
        clock.advance(Duration::from_secs(50));
        // Expiring exactly at the end of the window: the store lists only what expires
        // before it, so this one waits a second.
        assert!(claimed(T).await.is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(claimed(T).await, ["later"]);
        clock.advance(Duration::from_secs(100_000));
        assert!(claimed(T).await.is_empty(), "each once per round");
        let next_round = T + 100_101;
        assert_eq!(
            claimed(next_round).await,
            ["soon", "backing_off", "later"],
            "a new round, the leases lapsed; an unknown expiry or an inactive connection is \
             never due"
        );
    }
}
