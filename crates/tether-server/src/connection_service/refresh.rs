//! Getting a connection's live credentials, refreshing OAuth tokens when needed.
//!
//! One refresh per connection at a time: callers in this process queue on a per-connection
//! lock and, once they hold it, first look whether someone refreshed while they waited (the
//! row's `credentials_version` moved) and take that result; across instances a lease in the
//! database decides who calls the token endpoint. The new token set is written in one
//! compare-and-swap before anyone is handed it, so a rotated refresh token is never lost.
//!
//! The call to the token endpoint and what its outcome writes (new tokens, `needs_reauth`,
//! back-off) are in [`token_call`](super::token_call).

use std::sync::Arc;
use std::time::Duration;

use tether_core::credentials::Credentials;
use tether_core::integration::Integration;
use tether_store::{ConnectionRow, ConnectionStatus, Store};

use super::cache::CachedConnection;
use super::error::ConnectionError;
use super::expiry;
use super::token_call::{Fallback, call_token_endpoint, handle_failure, store_refreshed};
use crate::state::AppState;

pub use super::live::Live;

/// How fresh the caller needs the credentials to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Refresh only when the access token expires within the margin.
    Normal,
    /// Refresh now (`?force_refresh=true`).
    Force,
    /// The provider rejected the token of this version: refresh unless it already moved on.
    Rejected { version: i64 },
}

/// The connection's credentials, refreshed first when `freshness` asks for it.
pub async fn live<S: Store>(
    state: &AppState<S>,
    id: &str,
    freshness: Freshness,
) -> Result<Live, ConnectionError> {
    if freshness == Freshness::Normal {
        if let Some(cached) = state.cache.get(id)
            && !expires_soon(state, &cached.credentials)
        {
            return into_live(state, cached);
        }
    } else {
        state.cache.invalidate(id);
    }

    let current = load(state, id).await?;
    let integration = integration_of(state, &current.row)?;
    let must_refresh = is_refreshable(&current.credentials)
        && match freshness {
            // In back-off after a transient failure, a still valid token is served as is:
            // reads must not turn a provider outage into a refresh storm.
            Freshness::Normal => expiry::due_for_refresh(
                current.credentials.expires_at(),
                current.row.next_refresh_at,
                state.clock.now(),
                state.config.refresh_margin,
            ),
            Freshness::Force => true,
            Freshness::Rejected { version } => current.row.credentials_version == version,
        };
    if !must_refresh {
        state.cache.insert(current.clone());
        return Ok(Live::of(current, integration));
    }
    let respect_backoff = freshness == Freshness::Normal;
    let refreshed = refresh(state, &integration, current, respect_backoff, true).await?;
    Ok(Live::of(refreshed, integration))
}

fn into_live<S: Store>(
    state: &AppState<S>,
    cached: CachedConnection,
) -> Result<Live, ConnectionError> {
    let integration = integration_of(state, &cached.row)?;
    Ok(Live::of(cached, integration))
}

fn integration_of<S: Store>(
    state: &AppState<S>,
    row: &ConnectionRow,
) -> Result<Arc<Integration>, ConnectionError> {
    state
        .integration(&row.integration)
        .ok_or_else(|| ConnectionError::IntegrationGone(row.integration.clone()))
}

/// Reads and opens a connection from the store, refusing unusable ones.
pub(super) async fn load<S: Store>(
    state: &AppState<S>,
    id: &str,
) -> Result<CachedConnection, ConnectionError> {
    // Before the read: a delete committed after it invalidates this generation, so the
    // possibly stale row we are about to read is never cached (see `cache`).
    let generation = state.cache.generation(id);
    let row = state
        .store
        .get_connection(id)
        .await?
        .ok_or(ConnectionError::NotFound)?;
    if row.status != ConnectionStatus::Active {
        state.cache.invalidate(id);
        return Err(ConnectionError::NeedsReauth);
    }
    let credentials = Credentials::open(&state.vault, &row.id, &row.credentials)
        .map_err(|e| anyhow::Error::new(e).context("opening connection credentials"))?;
    Ok(CachedConnection {
        row: Arc::new(row),
        credentials: Arc::new(credentials),
        prepared: Arc::default(),
        generation,
    })
}

fn is_refreshable(credentials: &Credentials) -> bool {
    matches!(credentials, Credentials::Oauth2(_))
}

fn expires_soon<S: Store>(state: &AppState<S>, credentials: &Credentials) -> bool {
    expiry::expires_within(
        credentials.expires_at(),
        state.clock.now(),
        state.config.refresh_margin,
    )
}

pub(super) fn still_valid<S: Store>(state: &AppState<S>, credentials: &Credentials) -> bool {
    expiry::still_valid(credentials.expires_at(), state.clock.now())
}

/// Whether a transient failure put this connection in back-off and its token still works.
fn in_backoff<S: Store>(state: &AppState<S>, current: &CachedConnection) -> bool {
    expiry::in_backoff(
        current.row.next_refresh_at,
        current.credentials.expires_at(),
        state.clock.now(),
    )
}

/// Refreshes a connection ahead of expiry, for the background refresher: only when it is
/// still active, refreshable, expiring within `window`, and not in back-off. Failures are
/// handled (and recorded) as on read; the error is returned for the caller's log.
pub(crate) async fn refresh_ahead<S: Store>(
    state: &AppState<S>,
    id: &str,
    window: Duration,
) -> Result<(), ConnectionError> {
    let current = match load(state, id).await {
        Ok(current) => current,
        // Deleted or no longer active since it was listed: nothing to do.
        Err(ConnectionError::NeedsReauth | ConnectionError::NotFound) => return Ok(()),
        Err(err) => return Err(err),
    };
    let due = expiry::due_for_refresh(
        current.credentials.expires_at(),
        current.row.next_refresh_at,
        state.clock.now(),
        window,
    );
    if !is_refreshable(&current.credentials) || !due {
        return Ok(());
    }
    let integration = integration_of(state, &current.row)?;
    // Not waiting for another holder of the lease: it is refreshing this connection already,
    // and this worker's time is better spent on the next one (with several instances, their
    // refreshers list the same due connections).
    refresh(state, &integration, current, true, false)
        .await
        .map(|_| ())
}

/// Refreshes `seen` unless someone else did meanwhile. With `respect_backoff`, a connection
/// that went into back-off while we waited for the lock, or whose lease another holder has
/// while its token is still valid, is served as it is. Without `wait_for_holder` (the
/// background refresher), a lease held by another is left to it and `seen` returned as is.
async fn refresh<S: Store>(
    state: &AppState<S>,
    integration: &Arc<Integration>,
    seen: CachedConnection,
    respect_backoff: bool,
    wait_for_holder: bool,
) -> Result<CachedConnection, ConnectionError> {
    let id = seen.row.id.clone();
    let lock = state.refresh_locks.lock_for(&id);
    let _guard = lock.lock().await;

    // Someone may have refreshed while we waited for the lock: share their result.
    let current = load(state, &id).await?;
    if current.row.credentials_version != seen.row.credentials_version
        || (respect_backoff && in_backoff(state, &current))
    {
        state.cache.insert(current.clone());
        return Ok(current);
    }
    let mut waited = Duration::ZERO;
    loop {
        let now = state.clock.now();
        let until = expiry::lease_until(now, state.config.refresh_lease);
        if state
            .store
            .try_acquire_refresh_lease(&id, &state.instance_id, until, now)
            .await?
        {
            break;
        }
        // Another instance (or a crashed one, until its lease expires) is refreshing. A read
        // that only refreshes ahead of expiry keeps the still valid token rather than wait up
        // to a whole lease for it; the background refresher moves on.
        if !wait_for_holder || (respect_backoff && still_valid(state, &current.credentials)) {
            return Ok(current);
        }
        // Otherwise wait for its result rather than racing it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
        let latest = load(state, &id).await?;
        if latest.row.credentials_version != seen.row.credentials_version {
            state.cache.insert(latest.clone());
            return Ok(latest);
        }
        if waited > state.config.refresh_lease * 2 {
            return Err(ConnectionError::LeaseBusy);
        }
    }

    // Another instance may have refreshed and released its lease between our read and our
    // taking the lease: its new tokens are in the store, and the refresh token we read may
    // already be spent (with rotation, presenting it again revokes the whole grant). Read
    // again now that nobody else can refresh, and use theirs if the version moved.
    let current = match load(state, &id).await {
        Ok(latest) if latest.row.credentials_version == seen.row.credentials_version => latest,
        other => {
            release_lease(state, &id).await;
            let latest = other?;
            state.cache.insert(latest.clone());
            return Ok(latest);
        }
    };
    // A provider that rotates refresh tokens spends the old one at this call: refuse before
    // it when the new tokens could not be sealed (the announced key is not held here).
    if let Err(err) = state.vault.sealing_key_id() {
        release_lease(state, &id).await;
        return Err(ConnectionError::CannotSeal(err));
    }
    let result = call_token_endpoint(state, integration, &current).await;
    let outcome = match result {
        Ok((credentials, metadata)) => {
            store_refreshed(state, &current, credentials, metadata).await
        }
        Err(err) => Err(handle_failure(state, integration, &current, err).await),
    };
    release_lease(state, &id).await;
    match outcome {
        Ok(refreshed) | Err(Fallback::Use(refreshed)) => Ok(refreshed),
        Err(Fallback::Serve) => Ok(current),
        Err(Fallback::Fail(err)) => Err(err),
    }
}

/// Gives the refresh lease back; a failure only delays the next refresh until it expires.
async fn release_lease<S: Store>(state: &AppState<S>, id: &str) {
    if let Err(err) = state
        .store
        .release_refresh_lease(id, &state.instance_id)
        .await
    {
        tracing::warn!(connection_id = %id, error = ?err, "could not release refresh lease");
    }
}
