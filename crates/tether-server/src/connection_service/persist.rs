//! Saving a newly connected account. A reconnect (same end user, same integration) keeps the
//! connection id the app already holds, replaces the credentials and clears `needs_reauth`.
//! Either way the `connection.created` webhook (with `reconnected` saying which) is written in
//! the same transaction as the credentials.

use serde_json::{Map, Value};
use tether_core::credentials::Credentials;
use tether_core::ids::ConnectionId;
use tether_core::vault::VaultError;
use tether_store::{ConnectionRow, ConnectionStatus, CredentialsUpdate, Sealed, Store, StoreError};

use crate::state::AppState;
use crate::webhooks::{self, EventType};

/// The `connection.created` event's extra field.
fn created_extra(reconnected: bool) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("reconnected".into(), Value::Bool(reconnected));
    extra
}

/// Why a connection could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This instance does not hold the sealing key the database announces: nothing is
    /// stored rather than stored under a key a rotation is retiring.
    #[error(transparent)]
    Seal(#[from] VaultError),
}

impl SaveError {
    /// The store's error, when that is what failed.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            SaveError::Store(err) => Some(err),
            SaveError::Seal(_) => None,
        }
    }
}

impl From<SaveError> for crate::http::error::ApiError {
    fn from(err: SaveError) -> Self {
        match err {
            SaveError::Store(err) => err.into(),
            SaveError::Seal(err) => crate::http::error::ApiError::cannot_seal(err),
        }
    }
}

/// Who connected.
pub struct EndUser {
    pub id: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
}

/// Stores credentials for (integration, end user); returns the connection id.
pub async fn save_connection<S: Store>(
    state: &AppState<S>,
    integration: &str,
    end_user: &EndUser,
    credentials: &Credentials,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, SaveError> {
    let metadata = serde_json::Value::Object(metadata.clone()).to_string();
    // Two tries: a concurrent first connect may insert between our find and our insert.
    for _ in 0..2 {
        let now = state.clock.now();
        if let Some(existing) = state
            .store
            .find_connection(integration, &end_user.id)
            .await?
        {
            let update = CredentialsUpdate {
                id: existing.id.clone(),
                expected_version: existing.credentials_version,
                credentials: Sealed::from_bytes(credentials.seal(&state.vault, &existing.id)?),
                access_expires_at: credentials.expires_at(),
                metadata: metadata.clone(),
                status: ConnectionStatus::Active,
                end_user_email: end_user.email.clone(),
                end_user_display_name: end_user.display_name.clone(),
                now,
            };
            let event = webhooks::event(
                &state.config,
                state.clock.now(),
                EventType::Created,
                &existing,
                created_extra(true),
            );
            if state
                .store
                .replace_credentials_with_event(&update, event.as_ref())
                .await?
            {
                state.cache.invalidate(&existing.id);
                webhooks::wake(&state.webhook_wake, event.as_ref());
                tracing::info!(connection_id = %existing.id, integration, "connection reconnected");
                return Ok(existing.id);
            }
            continue;
        }
        let id = ConnectionId::generate().to_string();
        let row = ConnectionRow {
            id: id.clone(),
            integration: integration.to_owned(),
            end_user_id: end_user.id.clone(),
            end_user_email: end_user.email.clone(),
            end_user_display_name: end_user.display_name.clone(),
            status: ConnectionStatus::Active,
            credentials: Sealed::from_bytes(credentials.seal(&state.vault, &id)?),
            credentials_version: 1,
            access_expires_at: credentials.expires_at(),
            metadata: metadata.clone(),
            last_error: None,
            refresh_failures: 0,
            next_refresh_at: None,
            created_at: now,
            updated_at: now,
        };
        let event = webhooks::event(
            &state.config,
            state.clock.now(),
            EventType::Created,
            &row,
            created_extra(false),
        );
        match state
            .store
            .insert_connection_with_event(&row, event.as_ref())
            .await
        {
            Ok(()) => {
                webhooks::wake(&state.webhook_wake, event.as_ref());
                tracing::info!(connection_id = %id, integration, "connection created");
                return Ok(id);
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(StoreError::Conflict("connection changed concurrently; try again").into())
}
