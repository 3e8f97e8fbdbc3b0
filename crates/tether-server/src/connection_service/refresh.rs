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
use super::refresher::CallSlot;
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
    // Boxed: the refresh (token call, sealing, the write) is the largest state of this
    // future, and inline it would be part of every proxied call's future for the whole call
    // (several KiB for each request in flight); only the rare call that refreshes pays the
    // allocation.
    let refreshed = Box::pin(refresh(state, &integration, current, respect_backoff)).await?;
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

/// Refreshes a connection the background refresher claimed (its lease taken, until
/// `lease_until`, together with a batch of others; see
/// [`Store::claim_due_refreshes`](tether_store::Store::claim_due_refreshes)): only when it is
/// still active, refreshable, due within `window`, and nobody in this process refreshed it
/// since the claim. Failures are handled (and recorded) as on read; the error is returned for
/// the caller's log. `call_slot`, one of the refresher's slots for token calls, is given back
/// as soon as the token endpoint answered, so that the next call need not wait for this
/// one's write (which shares its commit with the others finishing then).
pub(crate) async fn refresh_claimed<S: Store>(
    state: &AppState<S>,
    claimed: &ConnectionRow,
    lease_until: i64,
    window: Duration,
    call_slot: CallSlot,
) -> Result<(), ConnectionError> {
    let id = claimed.id.as_str();
    // Behind any read of this process refreshing it right now (a read takes the lease even
    // when this instance holds it already).
    let lock = state.refresh_locks.lock_for(id);
    let _guard = lock.lock().await;
    // Read again under the lock: a read in this process may have refreshed it (or put it in
    // back-off) between the claim and now, and presenting a spent refresh token again would
    // revoke a rotating grant. The claim itself read the row as it leased it, so no other
    // instance can have refreshed it since.
    let current = match load(state, id).await {
        Ok(current) => current,
        // Deleted or no longer active since it was claimed: nothing to do.
        Err(ConnectionError::NeedsReauth | ConnectionError::NotFound) => {
            release_lease(state, id).await;
            return Ok(());
        }
        Err(err) => {
            release_lease(state, id).await;
            return Err(err);
        }
    };
    let now = state.clock.now();
    let due = expiry::due_for_refresh(
        current.credentials.expires_at(),
        current.row.next_refresh_at,
        now,
        window,
    );
    if current.row.credentials_version != claimed.credentials_version
        || !is_refreshable(&current.credentials)
        || !due
    {
        release_lease(state, id).await;
        return Ok(());
    }
    let integration = match integration_of(state, &current.row) {
        Ok(integration) => integration,
        Err(err) => {
            release_lease(state, id).await;
            return Err(err);
        }
    };
    // A claim waits its turn behind the refresher's concurrency: when a good part of its
    // lease went by meanwhile (a slow provider), take it again, for a whole lease, before
    // calling; when another instance took it over after it lapsed, leave it to that one.
    if expiry::lease_runs_short(lease_until, now, state.config.refresh_lease) {
        let until = expiry::lease_until(now, state.config.refresh_lease);
        if !state
            .store
            .try_acquire_refresh_lease(id, &state.instance_id, until, now)
            .await?
        {
            return Ok(());
        }
    }
    refresh_under_lease(state, &integration, current, Some(call_slot), false)
        .await
        .map(|_| ())
}

/// Refreshes `seen` unless someone else did meanwhile. With `respect_backoff`, a connection
/// that went into back-off while we waited for the lock, or whose lease another holder has
/// while its token is still valid, is served as it is; otherwise a lease held by another is
/// waited for, and its result served.
async fn refresh<S: Store>(
    state: &AppState<S>,
    integration: &Arc<Integration>,
    seen: CachedConnection,
    respect_backoff: bool,
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
        // to a whole lease for it.
        if respect_backoff && still_valid(state, &current.credentials) {
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
    refresh_under_lease(state, integration, current, None, true).await
}

/// The token call for `current`, whose lease this instance holds (and whose lock this task
/// holds), and what its outcome writes; the lease is given back in every case (with the new
/// tokens, in the same transaction). With `cache`, the new credentials are read back and
/// cached for the reader that asked for them. `call_slot` is dropped once the token endpoint
/// answered.
async fn refresh_under_lease<S: Store>(
    state: &AppState<S>,
    integration: &Arc<Integration>,
    current: CachedConnection,
    call_slot: Option<CallSlot>,
    cache: bool,
) -> Result<CachedConnection, ConnectionError> {
    let id = current.row.id.clone();
    // A provider that rotates refresh tokens spends the old one at this call: refuse before
    // it when the new tokens could not be sealed (the announced key is not held here).
    if let Err(err) = state.vault.sealing_key_id() {
        release_lease(state, &id).await;
        return Err(ConnectionError::CannotSeal(err));
    }
    let result = call_token_endpoint(state, integration, &current).await;
    drop(call_slot);
    let outcome = match result {
        Ok((credentials, metadata)) => {
            let stored = store_refreshed(state, &current, credentials, metadata, cache).await;
            // The write gives the lease back in its transaction; if it failed, or lost the
            // compare-and-swap, once more to be sure.
            if stored.is_err() {
                release_lease(state, &id).await;
            }
            stored
        }
        Err(err) => {
            let fallback = handle_failure(state, integration, &current, err).await;
            release_lease(state, &id).await;
            Err(fallback)
        }
    };
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
