//! Getting a connection's live credentials, refreshing OAuth tokens when needed.
//!
//! One refresh per connection at a time: callers in this process queue on a per-connection
//! lock and, once they hold it, first look whether someone refreshed while they waited (the
//! row's `credentials_version` moved) and take that result; across instances a lease in the
//! database decides who calls the token endpoint. The new token set is written in one
//! compare-and-swap before anyone is handed it, so a rotated refresh token is never lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tether_core::credentials::Credentials;
use tether_core::integration::Integration;
use tether_core::oauth2::{self, TokenError};
use tether_core::unix_time;
use tether_store::{ConnectionRow, ConnectionStatus, CredentialsUpdate, Store};

use crate::cache::CachedConnection;
use crate::error::ApiError;
use crate::state::AppState;

/// Per-connection locks for in-process single flight.
#[derive(Default)]
pub struct RefreshLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl RefreshLocks {
    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("refresh locks poisoned");
        if let Some(lock) = locks.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(id.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

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

/// A connection ready to use.
pub struct Live {
    pub row: Arc<ConnectionRow>,
    pub credentials: Arc<Credentials>,
    pub integration: Arc<Integration>,
}

/// The connection's credentials, refreshed first when `freshness` asks for it.
pub async fn live<S: Store>(
    state: &AppState<S>,
    id: &str,
    freshness: Freshness,
) -> Result<Live, ApiError> {
    if freshness == Freshness::Normal {
        if let Some(cached) = state.cache.get(id) {
            if !expires_soon(state, &cached.credentials) {
                return into_live(state, cached);
            }
        }
    } else {
        state.cache.invalidate(id);
    }

    let current = load(state, id).await?;
    let integration = integration_of(state, &current.row)?;
    let must_refresh = is_refreshable(&current.credentials)
        && match freshness {
            Freshness::Normal => expires_soon(state, &current.credentials),
            Freshness::Force => true,
            Freshness::Rejected { version } => current.row.credentials_version == version,
        };
    if !must_refresh {
        state.cache.insert(current.clone());
        return into_live(state, current);
    }
    let refreshed = refresh(state, &integration, current).await?;
    Ok(Live {
        row: refreshed.row,
        credentials: refreshed.credentials,
        integration,
    })
}

fn into_live<S: Store>(state: &AppState<S>, cached: CachedConnection) -> Result<Live, ApiError> {
    let integration = integration_of(state, &cached.row)?;
    Ok(Live {
        row: cached.row,
        credentials: cached.credentials,
        integration,
    })
}

fn integration_of<S: Store>(
    state: &AppState<S>,
    row: &ConnectionRow,
) -> Result<Arc<Integration>, ApiError> {
    state.integration(&row.integration).cloned().ok_or_else(|| ApiError::NotFound {
        code: "integration_not_found",
        detail: format!(
            "the connection's integration {:?} is no longer configured",
            row.integration
        ),
    })
}

/// Reads and opens a connection from the store, refusing unusable ones.
async fn load<S: Store>(state: &AppState<S>, id: &str) -> Result<CachedConnection, ApiError> {
    let row = state
        .store
        .get_connection(id)
        .await?
        .ok_or_else(ApiError::connection_not_found)?;
    if row.status != ConnectionStatus::Active {
        state.cache.invalidate(id);
        return Err(ApiError::NeedsReauth);
    }
    let credentials = Credentials::open(&state.vault, &row.id, &row.credentials)
        .map_err(|e| anyhow::Error::new(e).context("opening connection credentials"))?;
    Ok(CachedConnection {
        row: Arc::new(row),
        credentials: Arc::new(credentials),
    })
}

fn is_refreshable(credentials: &Credentials) -> bool {
    matches!(credentials, Credentials::Oauth2(_))
}

fn expires_soon<S: Store>(state: &AppState<S>, credentials: &Credentials) -> bool {
    let margin = state.config.refresh_margin.as_secs() as i64;
    credentials
        .expires_at()
        .is_some_and(|at| at - unix_time::now() <= margin)
}

fn still_valid(credentials: &Credentials) -> bool {
    credentials
        .expires_at()
        .is_none_or(|at| at > unix_time::now())
}

async fn refresh<S: Store>(
    state: &AppState<S>,
    integration: &Arc<Integration>,
    seen: CachedConnection,
) -> Result<CachedConnection, ApiError> {
    let id = seen.row.id.clone();
    let lock = state.refresh_locks.lock_for(&id);
    let _guard = lock.lock().await;

    // Someone may have refreshed while we waited for the lock: share their result.
    let current = load(state, &id).await?;
    if current.row.credentials_version != seen.row.credentials_version {
        state.cache.insert(current.clone());
        return Ok(current);
    }
    let lease_secs = state.config.refresh_lease.as_secs().max(1) as i64;
    let mut waited = Duration::ZERO;
    loop {
        let now = unix_time::now();
        if state
            .store
            .try_acquire_refresh_lease(&id, &state.instance_id, now + lease_secs, now)
            .await?
        {
            break;
        }
        // Another instance is refreshing: wait for its result rather than racing it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
        let latest = load(state, &id).await?;
        if latest.row.credentials_version != seen.row.credentials_version {
            state.cache.insert(latest.clone());
            return Ok(latest);
        }
        if waited > state.config.refresh_lease * 2 {
            return Err(ApiError::ProviderUnavailable(
                "another instance is refreshing this connection; try again".into(),
            ));
        }
    }

    let result = call_token_endpoint(state, integration, &current).await;
    let outcome = match result {
        Ok(credentials) => store_refreshed(state, &current, credentials).await,
        Err(err) => Err(handle_failure(state, integration, &current, err).await),
    };
    if let Err(err) = state.store.release_refresh_lease(&id, &state.instance_id).await {
        tracing::warn!(connection_id = %id, error = ?err, "could not release refresh lease");
    }
    match outcome {
        Ok(refreshed) => Ok(refreshed),
        Err(Fallback::Serve) => Ok(current),
        Err(Fallback::Fail(err)) => Err(err),
    }
}

async fn call_token_endpoint<S: Store>(
    state: &AppState<S>,
    integration: &Integration,
    current: &CachedConnection,
) -> Result<Credentials, TokenError> {
    let (Some(client), Credentials::Oauth2(tokens)) =
        (&integration.oauth2, current.credentials.as_ref())
    else {
        return Err(TokenError::InvalidResponse("connection is not refreshable".into()));
    };
    let started = std::time::Instant::now();
    let result = oauth2::refresh(&state.outbound, client, tokens, unix_time::now()).await;
    tracing::info!(
        connection_id = %current.row.id,
        integration = %current.row.integration,
        ok = result.is_ok(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "token refresh"
    );
    result.map(Credentials::Oauth2)
}

/// What to do when a refresh failed.
enum Fallback {
    /// Keep serving the current, still valid, access token.
    Serve,
    Fail(ApiError),
}

async fn store_refreshed<S: Store>(
    state: &AppState<S>,
    current: &CachedConnection,
    credentials: Credentials,
) -> Result<CachedConnection, Fallback> {
    let now = unix_time::now();
    let update = CredentialsUpdate {
        id: current.row.id.clone(),
        expected_version: current.row.credentials_version,
        credentials: credentials.seal(&state.vault, &current.row.id),
        access_expires_at: credentials.expires_at(),
        metadata: current.row.metadata.clone(),
        status: ConnectionStatus::Active,
        end_user_email: None,
        end_user_display_name: None,
        now,
    };
    let written = state
        .store
        .replace_credentials(&update)
        .await
        .map_err(|e| Fallback::Fail(e.into()))?;
    if !written {
        // We held the lease, so this means the connection was deleted or replaced by a
        // reconnect meanwhile; its new credentials win.
        state.cache.invalidate(&current.row.id);
        return load(state, &current.row.id).await.map_err(Fallback::Fail);
    }
    state.cache.invalidate(&current.row.id);
    let fresh = load(state, &current.row.id).await.map_err(Fallback::Fail)?;
    state.cache.insert(fresh.clone());
    Ok(fresh)
}

async fn handle_failure<S: Store>(
    state: &AppState<S>,
    integration: &Integration,
    current: &CachedConnection,
    err: TokenError,
) -> Fallback {
    let id = &current.row.id;
    let reauth_errors = integration
        .oauth2
        .as_ref()
        .map(|c| c.reauth_errors.as_slice())
        .unwrap_or_default();
    let now = unix_time::now();
    if err.needs_reauth(reauth_errors) {
        tracing::warn!(connection_id = %id, reason = %err.reason(), "refresh refused: connection needs reauthorization");
        state.cache.invalidate(id);
        if let Err(e) = state
            .store
            .set_connection_status(id, ConnectionStatus::NeedsReauth, Some(&err.reason()), now)
            .await
        {
            return Fallback::Fail(e.into());
        }
        return Fallback::Fail(ApiError::NeedsReauth);
    }
    tracing::warn!(connection_id = %id, reason = %err.reason(), "refresh failed; will retry");
    let backoff = match &err {
        TokenError::Unavailable {
            retry_after: Some(after),
            ..
        } => after.as_secs() as i64,
        _ => 30,
    };
    if let Err(e) = state
        .store
        .record_refresh_failure(id, now + backoff, &err.reason(), now)
        .await
    {
        tracing::warn!(connection_id = %id, error = ?e, "could not record refresh failure");
    }
    if still_valid(&current.credentials) {
        return Fallback::Serve;
    }
    Fallback::Fail(match err {
        TokenError::Unavailable { reason, .. } => ApiError::ProviderUnavailable(format!(
            "the provider could not refresh the token ({reason}); try again later"
        )),
        other => ApiError::Provider(other.to_string()),
    })
}
