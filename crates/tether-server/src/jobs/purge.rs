//! The purge: deletes expired connect sessions and OAuth flow states in the background, so
//! abandoned links and flows do not pile up, connection history older than the configured
//! retention, API-key failure windows and console sessions that ended, and shared budget
//! rows that say nothing any more (`[proxy] shared_budgets`). Every instance may
//! run it; the deletes are idempotent, so instances running it at the same time only repeat
//! each other's work.

use tether_store::Store;
use tokio::sync::watch;

use crate::state::AppState;

/// Runs until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn run<S: Store>(state: AppState<S>, mut shutdown: watch::Receiver<bool>) {
    let _running = crate::state::Running::mark(&state.workers.purge);
    let interval = state
        .config
        .purge_interval
        .max(std::time::Duration::from_secs(1));
    loop {
        if *shutdown.borrow() {
            break;
        }
        match state.store.purge_expired(state.clock.now()).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "purged expired connect sessions and flows"),
            Err(err) => tracing::warn!(error = %err, "purging expired connect sessions failed"),
        }
        purge_auth(&state).await;
        let history_before = state.clock.now().saturating_sub(
            i64::try_from(state.config.history_retention.as_secs()).unwrap_or(i64::MAX),
        );
        match state.store.purge_connection_events(history_before).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "purged old connection history"),
            Err(err) => tracing::warn!(error = %err, "purging old connection history failed"),
        }
        if state.config.proxy_shared_budgets {
            purge_budgets(&state).await;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// Shared budget rows whose time has passed: a budget that refilled, a hold that ended (a
/// budget not in the table starts full, which is what such a row says).
async fn purge_budgets<S: Store>(state: &AppState<S>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let before = i64::try_from(now.as_micros()).unwrap_or(i64::MAX);
    match state.store.purge_budgets(before).await {
        Ok(0) => {}
        Ok(purged) => tracing::debug!(purged, "purged spent shared budget rows"),
        Err(err) => tracing::warn!(error = %err, "purging shared budget rows failed"),
    }
}

/// Failure windows and console sessions that ended: nothing reads them any more.
async fn purge_auth<S: Store>(state: &AppState<S>) {
    let now = state.clock.now();
    let window = i64::try_from(state.config.api_key_failures.window.as_secs()).unwrap_or(i64::MAX);
    match state
        .store
        .purge_auth_failures(now.saturating_sub(window))
        .await
    {
        Ok(0) => {}
        Ok(purged) => tracing::debug!(purged, "purged ended API-key failure windows"),
        Err(err) => tracing::warn!(error = %err, "purging API-key failure windows failed"),
    }
    match state.store.purge_console_sessions(now).await {
        Ok(0) => {}
        Ok(purged) => tracing::debug!(purged, "purged expired console sessions"),
        Err(err) => tracing::warn!(error = %err, "purging console sessions failed"),
    }
    // MCP authorization requests, codes and refresh tokens past their lifetime.
    match state.store.purge_mcp_oauth(now).await {
        Ok(0) => {}
        Ok(purged) => tracing::debug!(purged, "purged expired MCP authorization rows"),
        Err(err) => tracing::warn!(error = %err, "purging MCP authorization rows failed"),
    }
}
