//! One call to a provider's token endpoint for a refresh, and what its outcome writes, for
//! [`refresh`](super::refresh) (which holds the connection's lock and lease around it).
//!
//! Every outcome is reported in the same transaction as the change: a new token set with
//! `connection.refreshed`, a refused grant (`needs_reauth`) with `connection.refresh_failed`
//! and `connection.needs_reauth`.
//! A transient failure changes no status: the connection backs off (capped, exponential,
//! jittered, see [`Backoff`]) and keeps serving its access token while that is still valid.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use tether_core::credentials::Credentials;
use tether_core::integration::Integration;
use tether_core::oauth2::{self, TokenError};
use tether_core::unix_time;
use tether_store::{
    ConnectionStatus, CredentialsUpdate, RefreshedCredentials, Sealed, StatusChange, Store,
};

use super::backoff::Backoff;
use super::cache::CachedConnection;
use super::error::ConnectionError;
use super::refresh::{load, still_valid};
use crate::state::AppState;
use crate::webhooks::{self, EventType};

/// Refreshes at the token endpoint; returns the new credentials and the connection's
/// metadata with the values the token response updated (a new `instance_url`).
pub(super) async fn call_token_endpoint<S: Store>(
    state: &AppState<S>,
    integration: &Integration,
    current: &CachedConnection,
) -> Result<(Credentials, String), TokenError> {
    let (Some(client), Credentials::Oauth2(tokens)) =
        (&integration.oauth2, current.credentials.as_ref())
    else {
        return Err(TokenError::InvalidResponse(
            "connection is not refreshable".into(),
        ));
    };
    let started = std::time::Instant::now();
    state.metrics.refresh_attempts.inc();
    let mut metadata = super::provider_auth::metadata_of(&current.row);
    let result = oauth2::refresh(
        &state.outbound,
        client,
        &integration.vars(&metadata, None),
        tokens,
        &state.config.callback_url(),
        state.clock.now(),
    )
    .await
    .and_then(|tokens| {
        if let Some(scope) = &tokens.scope {
            metadata.insert("scope".into(), serde_json::Value::String(scope.clone()));
        }
        let updated = oauth2::token_metadata(client, &tokens)?;
        if !updated.is_empty() {
            metadata.extend(updated);
            // A refresh must not be able to move the proxy to a host the file forbids.
            integration
                .check_connection_values(&metadata)
                .map_err(TokenError::InvalidResponse)?;
        }
        Ok(tokens)
    });
    state
        .metrics
        .refresh_duration
        .observe(started.elapsed().as_secs_f64());
    if let Err(err) = &result {
        state.metrics.refresh_failed(err);
    }
    tracing::info!(
        connection_id = %current.row.id,
        integration = %current.row.integration,
        ok = result.is_ok(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "token refresh"
    );
    let metadata = serde_json::Value::Object(metadata).to_string();
    let now = state.clock.now();
    result.map(|mut tokens| {
        // A response without `expires_in` takes the provider's declared lifetime.
        super::lifetime::default_expiry(&integration.lifetime, now, &mut tokens);
        (Credentials::Oauth2(tokens), metadata)
    })
}

/// What to do when a refresh failed.
pub(super) enum Fallback {
    /// Keep serving the current, still valid, access token.
    Serve,
    /// Serve these credentials instead (a reconnect replaced the ones that failed).
    Use(CachedConnection),
    Fail(ConnectionError),
}

/// Writes a refreshed token set, with its history entry (and webhook), the keep-alive
/// deadline the refresh moved (the provider's idle clock restarts when the refresh token is
/// used) and the release of this instance's lease, in one transaction. With `cache`, the
/// new credentials are read back and cached for the reader that asked for them; the
/// background refresher only drops the old ones.
pub(super) async fn store_refreshed<S: Store>(
    state: &AppState<S>,
    current: &CachedConnection,
    credentials: Credentials,
    metadata: String,
    cache: bool,
) -> Result<CachedConnection, Fallback> {
    let now = state.clock.now();
    let sealed = credentials
        .seal(&state.vault, &current.row.id)
        .map_err(|e| Fallback::Fail(ConnectionError::CannotSeal(e)))?;
    let keepalive_at = state
        .integration(&current.row.integration)
        .and_then(|integration| {
            super::lifetime::keepalive_at(&integration.lifetime, now, &credentials)
        });
    let refreshed = RefreshedCredentials {
        update: CredentialsUpdate {
            id: current.row.id.clone(),
            expected_version: current.row.credentials_version,
            credentials: Sealed::from_bytes(sealed),
            access_expires_at: credentials.expires_at(),
            metadata,
            status: ConnectionStatus::Active,
            end_user_email: None,
            end_user_display_name: None,
            now,
        },
        keepalive_at,
        lease_owner: state.instance_id.clone(),
    };
    let mut extra = Map::new();
    extra.insert(
        "expires_at".into(),
        json!(credentials.expires_at().map(unix_time::rfc3339)),
    );
    let event = webhooks::event(
        &state.config,
        state.clock.now(),
        EventType::Refreshed,
        &current.row,
        extra,
    );
    let written = state
        .refresh_writes
        .finish(refreshed, event.clone())
        .await
        .map_err(|e| Fallback::Fail(e.into()))?;
    state.cache.invalidate(&current.row.id);
    let Some(written) = written else {
        // We held the lease, so this means the connection was deleted or replaced by a
        // reconnect meanwhile; its new credentials win.
        return match load(state, &current.row.id).await {
            Err(ConnectionError::NotFound) => {
                // Deleted while the provider answered: the delete revoked the tokens it saw,
                // not these, and nobody will ever use them; they must not stay live at the
                // provider. (After a reconnect they are left alone: at a provider with one
                // grant per user and client, revoking them could end the new connection too.)
                if let Credentials::Oauth2(tokens) = &credentials {
                    tracing::info!(connection_id = %current.row.id,
                        "connection deleted during its refresh; revoking its new tokens where the provider can");
                    super::removal::revoke_tokens(state, &current.row, tokens).await;
                }
                Err(Fallback::Fail(ConnectionError::NotFound))
            }
            other => other.map_err(Fallback::Fail),
        };
    };
    webhooks::wake(&state.webhook_wake, event.as_ref());
    if !cache {
        // Not cached, so no generation to guard: this value goes back to a caller that drops it.
        return Ok(CachedConnection {
            row: Arc::new(written),
            credentials: Arc::new(credentials),
            prepared: Arc::default(),
            generation: 0,
        });
    }
    // Read back rather than cache `written`: a delete committed since the write must not have
    // its connection put back in the cache, and only a read that follows the generation
    // (taken in `load`) can tell.
    let fresh = load(state, &current.row.id).await.map_err(Fallback::Fail)?;
    state.cache.insert(fresh.clone());
    Ok(fresh)
}

pub(super) async fn handle_failure<S: Store>(
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
    let now = state.clock.now();
    // The same reference in the log line and in the connection's history.
    let reference = crate::http::reference::new();
    if err.needs_reauth(reauth_errors) {
        tracing::warn!(connection_id = %id, reason = %err.reason(), reference = %reference, "refresh refused: connection needs reauthorization");
        state.cache.invalidate(id);
        let change = StatusChange {
            id: id.clone(),
            status: ConnectionStatus::NeedsReauth,
            last_error: Some(err.reason()),
            // Only the credentials that were refused: a reconnect meanwhile wins.
            expected_version: Some(current.row.credentials_version),
            now,
        };
        let mut extra = Map::new();
        extra.insert(
            "status".into(),
            Value::from(ConnectionStatus::NeedsReauth.as_str()),
        );
        extra.insert("reason".into(), Value::from(err.reason()));
        extra.insert("reference".into(), Value::from(reference));
        let mut reauth = Map::new();
        reauth.insert("reason".into(), Value::from("refresh_refused"));
        reauth.insert("detail".into(), Value::from(err.reason()));
        let events: Vec<_> = [
            webhooks::event(
                &state.config,
                state.clock.now(),
                EventType::RefreshFailed,
                &current.row,
                extra,
            ),
            webhooks::event(
                &state.config,
                state.clock.now(),
                EventType::NeedsReauth,
                &current.row,
                reauth,
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        match state
            .store
            .change_status_with_events(&change, &events)
            .await
        {
            Ok(true) => webhooks::wake(&state.webhook_wake, events.first()),
            Ok(false) => {
                // Already marked, or reconnected with new credentials: serve those if so.
                return match load(state, id).await {
                    Ok(fresh)
                        if fresh.row.credentials_version != current.row.credentials_version =>
                    {
                        state.cache.insert(fresh.clone());
                        Fallback::Use(fresh)
                    }
                    Ok(_) => Fallback::Fail(ConnectionError::NeedsReauth),
                    Err(e) => Fallback::Fail(e),
                };
            }
            Err(e) => return Fallback::Fail(e.into()),
        }
        return Fallback::Fail(ConnectionError::NeedsReauth);
    }
    tracing::warn!(connection_id = %id, reason = %err.reason(), reference = %reference, "refresh failed; will retry");
    let backoff = backoff_secs(state, current.row.refresh_failures, &err);
    let event = webhooks::history_only(
        &state.config,
        state.clock.now(),
        &current.row,
        err.reason(),
        &reference,
    );
    if let Err(e) = state
        .store
        .record_refresh_failure_with_event(
            id,
            now.saturating_add(backoff),
            &err.reason(),
            now,
            event.as_ref(),
        )
        .await
    {
        tracing::warn!(connection_id = %id, error = ?e, "could not record refresh failure");
    }
    // Later reads must see the back-off, not a cached row from before it.
    state.cache.invalidate(id);
    if still_valid(state, &current.credentials) {
        return Fallback::Serve;
    }
    Fallback::Fail(match err {
        TokenError::Unavailable { reason, .. } => ConnectionError::ProviderUnavailable { reason },
        other => ConnectionError::Provider(other),
    })
}

/// Seconds of back-off after a transient failure (see [`Backoff`]), the connection having
/// failed `failures_before` times in a row already, with random jitter and the provider's
/// `Retry-After` when it sent one.
fn backoff_secs<S: Store>(state: &AppState<S>, failures_before: i64, err: &TokenError) -> i64 {
    let config = &state.config.refresher;
    let backoff = Backoff {
        base: config.backoff_base,
        max: config.backoff_max,
    };
    let retry_after = match err {
        TokenError::Unavailable { retry_after, .. } => *retry_after,
        _ => None,
    };
    backoff.delay_secs(failures_before, retry_after, |most| {
        rand::random_range(0..=most)
    })
}
