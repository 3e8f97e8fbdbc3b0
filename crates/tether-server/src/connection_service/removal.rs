//! Deleting a connection: revoke at the provider where possible (RFC 7009), record what that
//! gave in the history, then delete the row together with its `connection.deleted` event. A
//! failed revocation never blocks the delete. Shared by the API and the CLI.

use tether_core::credentials::{Credentials, OAuth2Tokens};
use tether_core::oauth2;
use tether_store::{ConnectionRow, Store};

use super::error::ConnectionError;
use crate::state::AppState;
use crate::webhooks::{self, EventType};

/// Revokes (best effort) and deletes; [`ConnectionError::NotFound`] when there is no such row.
pub async fn delete_connection<S: Store>(
    state: &AppState<S>,
    id: &str,
) -> Result<(), ConnectionError> {
    let row = state
        .store
        .get_connection(id)
        .await?
        .ok_or(ConnectionError::NotFound)?;
    if let Some(outcome) = revoke_at_provider(state, &row).await {
        record_revocation(state, &row, outcome).await;
    }
    let event = webhooks::event(
        &state.config,
        state.clock.now(),
        EventType::Deleted,
        &row,
        serde_json::Map::new(),
    );
    let deleted = state
        .store
        .delete_connection_with_event(id, event.as_ref())
        .await;
    // After the delete commits (or fails): a read racing the delete may have cached the row
    // just before; this invalidation removes it and refuses the insert of any read in flight.
    state.cache.invalidate(id);
    if !deleted? {
        return Err(ConnectionError::NotFound);
    }
    webhooks::wake(&state.webhook_wake, event.as_ref());
    tracing::info!(connection_id = %row.id, integration = %row.integration, "connection deleted");
    Ok(())
}

/// Best effort: the connection is deleted even when the provider cannot be told. What
/// happened, for the history; `None` when there was nothing to revoke with.
async fn revoke_at_provider<S: Store>(state: &AppState<S>, row: &ConnectionRow) -> Option<String> {
    let Ok(Credentials::Oauth2(tokens)) =
        Credentials::open(&state.vault, &row.id, &row.credentials)
    else {
        return None;
    };
    revoke_tokens(state, row, &tokens).await
}

/// The revocation's outcome in the connection's history (kept after the delete), never
/// delivered as a webhook of its own: `connection.deleted` follows.
async fn record_revocation<S: Store>(state: &AppState<S>, row: &ConnectionRow, outcome: String) {
    let mut extra = serde_json::Map::new();
    extra.insert("reason".into(), serde_json::Value::from(outcome));
    let Some(mut event) = webhooks::event(
        &state.config,
        state.clock.now(),
        EventType::Deleted,
        row,
        extra,
    ) else {
        return;
    };
    event.deliver = false;
    event.history.kind = tether_store::history_kind::REVOCATION.to_owned();
    if let Err(err) = state.store.append_event(&event).await {
        tracing::warn!(connection_id = %row.id, error = ?err, "could not record the revocation");
    }
}

/// Revokes `tokens`, issued for `row`'s connection, where its integration has a revocation
/// URL (RFC 7009); best effort, a failure is logged. Also for tokens a refresh got for a
/// connection deleted meanwhile, which nobody else will ever revoke.
pub(super) async fn revoke_tokens<S: Store>(
    state: &AppState<S>,
    row: &ConnectionRow,
    tokens: &OAuth2Tokens,
) -> Option<String> {
    let integration = state.integration(&row.integration)?;
    let client = integration.oauth2.as_ref()?;
    if client.revocation_url.is_none() {
        return Some("not revoked: the provider has no revocation endpoint".into());
    }
    // Revoking the refresh token also ends its access tokens at most providers (7009 2.1).
    let token = match &tokens.refresh_token {
        Some(refresh) => oauth2::Revocable::Refresh(refresh),
        None => oauth2::Revocable::Access(&tokens.access_token),
    };
    let metadata = super::provider_auth::metadata_of(row);
    let vars = integration.vars(&metadata, None);
    match oauth2::revoke(&state.outbound, client, &vars, token).await {
        Ok(()) => Some("revoked at the provider".into()),
        Err(err) => {
            tracing::warn!(connection_id = %row.id, error = %err, "revocation at the provider failed");
            Some(format!("revocation failed: {}", err.reason()))
        }
    }
}
