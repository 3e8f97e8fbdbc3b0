//! The purge: deletes expired connect sessions and OAuth flow states in the background, so
//! abandoned links and flows do not pile up, connection history older than the configured
//! retention, API-key failure windows and console sessions that ended, and shared budget
//! rows that say nothing any more (`[proxy] shared_budgets`). Agent tokens and MCP clients
//! go with the history: a token that expired or was revoked is kept as long as history that
//! may name it, and a registered MCP client as long as any grant of it ended within the
//! retention (one that never got a grant, a day after it registered). Every instance may
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
        purge_agents(&state, history_before).await;
        if state.config.proxy_shared_budgets {
            purge_budgets(&state).await;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// How long a registered MCP client may wait for its first grant before it is purged: anyone
/// may register one (RFC 7591), so those never used must not pile up.
const UNUSED_MCP_CLIENT_SECS: i64 = 24 * 60 * 60;

/// Agent tokens and registered MCP clients whose time ended before `history_before` (the
/// history that names a token is kept that long, so the token is too).
async fn purge_agents<S: Store>(state: &AppState<S>, history_before: i64) {
    match state.store.purge_agent_tokens(history_before).await {
        Ok(0) => {}
        Ok(purged) => tracing::debug!(purged, "purged ended agent tokens"),
        Err(err) => tracing::warn!(error = %err, "purging agent tokens failed"),
    }
    let unused_before = state.clock.now().saturating_sub(UNUSED_MCP_CLIENT_SECS);
    match state
        .store
        .purge_mcp_clients(unused_before, history_before)
        .await
    {
        Ok(0) => {}
        Ok(purged) => tracing::debug!(purged, "purged unused MCP clients"),
        Err(err) => tracing::warn!(error = %err, "purging MCP clients failed"),
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
