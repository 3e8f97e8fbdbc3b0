//! Saving a newly connected account. A reconnect (same end user, same integration) keeps the
//! connection id the app already holds, replaces the credentials and clears `needs_reauth`.
//! Either way the `connection.created` webhook (with `reconnected` saying which) is written in
//! the same transaction as the credentials.
//!
//! Before anything is written, the integration's check call says whose the new credentials
//! are (the account). The same end user connecting the same account again updates the
//! connection they have (one row per end user and integration, which the store's unique
//! constraint and compare-and-swap keep true under concurrent connects); another account
//! changes nothing: the end user is told which account the connection belongs to. A session
//! made with `reconnect_connection_id` must also end on that very connection, and must name
//! its account when the connection's is known. The account and the grant's deadlines are
//! written right after the credentials, guarded by their version.

use serde_json::{Map, Value};
use tether_core::account_check::{self, Account, CheckOutcome};
use tether_core::credentials::Credentials;
use tether_core::ids::ConnectionId;
use tether_core::vault::VaultError;
use tether_store::{
    ConnectionRow, ConnectionStatus, CredentialsUpdate, GrantRecord, Sealed, Store, StoreError,
    StoredAccount,
};

use crate::state::AppState;
use crate::webhooks::{self, EventType};

/// The `connection.created` event's extra field.
fn created_extra(reconnected: bool, account: Option<&Account>) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("reconnected".into(), Value::Bool(reconnected));
    if let Some(account) = account {
        extra.insert("account".into(), account_json(account));
    }
    extra
}

/// The account as webhooks and the API show it.
pub(crate) fn account_json(account: &Account) -> Value {
    serde_json::json!({
        "user_id": account.user_id,
        "organization_id": account.organization_id,
        "label": account.label,
    })
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
    /// Another account signed in than the one the connection belongs to: nothing changed.
    #[error("another account signed in than the connection's")]
    AccountMismatch {
        /// The connection's account label (or id), to tell the end user.
        belongs_to: String,
    },
    /// A reconnect whose new account could not be confirmed (the provider's check did not
    /// answer): nothing changed.
    #[error("the account could not be confirmed: {0}")]
    AccountUnconfirmed(String),
    /// The connection a reconnect session names is gone (deleted meanwhile).
    #[error("the connection to reconnect no longer exists")]
    ReconnectGone,
}

impl SaveError {
    /// The store's error, when that is what failed.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            SaveError::Store(err) => Some(err),
            _ => None,
        }
    }
}

impl From<SaveError> for crate::http::error::ApiError {
    fn from(err: SaveError) -> Self {
        match err {
            SaveError::Store(err) => err.into(),
            SaveError::Seal(err) => crate::http::error::ApiError::cannot_seal(err),
            SaveError::AccountMismatch { .. } => crate::http::error::ApiError::Conflict {
                code: "account_mismatch",
                detail: err.to_string(),
            },
            SaveError::AccountUnconfirmed(_) => {
                crate::http::error::ApiError::ProviderUnavailable(err.to_string())
            }
            SaveError::ReconnectGone => crate::http::error::ApiError::connection_not_found(),
        }
    }
}

/// Who connected.
pub struct EndUser {
    pub id: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
}

/// Stores credentials for (integration, end user); returns the connection id. `reconnect`:
/// the connection a reconnect session names (the save must land on it).
pub async fn save_connection<S: Store>(
    state: &AppState<S>,
    integration: &str,
    end_user: &EndUser,
    credentials: &Credentials,
    metadata: &serde_json::Map<String, serde_json::Value>,
    reconnect: Option<&str>,
) -> Result<String, SaveError> {
    let lifetime = state
        .integration(integration)
        .map(|i| i.lifetime)
        .unwrap_or_default();
    // A token response without `expires_in` takes the provider's declared lifetime.
    let mut credentials = credentials.clone();
    if let Credentials::Oauth2(tokens) = &mut credentials {
        super::lifetime::default_expiry(&lifetime, state.clock.now(), tokens);
    }
    let credentials = &credentials;
    let account = learn_account(state, integration, credentials, metadata).await;
    let check_interval = state
        .integration(integration)
        .filter(|i| i.check.is_some())
        .map(|_| state.config.lifecycle.interval_for(integration));
    let grant = || Grant {
        account: &account,
        credentials,
        lifetime: &lifetime,
        check_interval,
    };
    let metadata = serde_json::Value::Object(metadata.clone()).to_string();
    // Two tries: a concurrent first connect may insert between our find and our insert.
    for _ in 0..2 {
        let now = state.clock.now();
        let existing = state
            .store
            .find_connection(integration, &end_user.id)
            .await?;
        if let Some(target) = reconnect
            && existing.as_ref().is_none_or(|row| row.id != target)
        {
            return Err(SaveError::ReconnectGone);
        }
        if let Some(existing) = existing {
            same_account(state, &existing, account.as_ref(), reconnect.is_some()).await?;
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
                created_extra(true, account.as_ref()),
            );
            if state
                .store
                .replace_credentials_with_event(&update, event.as_ref())
                .await?
            {
                state.cache.invalidate(&existing.id);
                webhooks::wake(&state.webhook_wake, event.as_ref());
                tracing::info!(connection_id = %existing.id, integration, "connection reconnected");
                let recovered = (existing.status == ConnectionStatus::NeedsReauth)
                    .then(|| {
                        webhooks::event(
                            &state.config,
                            state.clock.now(),
                            EventType::Recovered,
                            &existing,
                            recovered_extra(account.as_ref()),
                        )
                    })
                    .flatten();
                let version = existing.credentials_version + 1;
                record_grant(state, grant(), &existing.id, version, recovered).await;
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
            provider_account: None,
        };
        let event = webhooks::event(
            &state.config,
            state.clock.now(),
            EventType::Created,
            &row,
            created_extra(false, account.as_ref()),
        );
        match state
            .store
            .insert_connection_with_event(&row, event.as_ref())
            .await
        {
            Ok(()) => {
                webhooks::wake(&state.webhook_wake, event.as_ref());
                tracing::info!(connection_id = %id, integration, "connection created");
                record_grant(state, grant(), &id, 1, None).await;
                return Ok(id);
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(StoreError::Conflict("connection changed concurrently; try again").into())
}

fn recovered_extra(account: Option<&Account>) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert(
        "status".into(),
        Value::from(ConnectionStatus::Active.as_str()),
    );
    extra.insert("reason".into(), Value::from("reconnected"));
    if let Some(account) = account {
        extra.insert("account".into(), account_json(account));
    }
    extra
}

/// Whose the new credentials are, from the integration's check call; `None` when it has
/// none or the provider did not say (logged: the connection is saved without an account,
/// and the first background check learns it).
async fn learn_account<S: Store>(
    state: &AppState<S>,
    integration: &str,
    credentials: &Credentials,
    metadata: &Map<String, Value>,
) -> Option<Account> {
    let integration = state.integration(integration)?;
    let check = integration.check.clone()?;
    match account_check::run(&state.outbound, &integration, &check, metadata, credentials).await {
        Ok(CheckOutcome::Ok(account)) => account.filter(|a| !a.is_anonymous()),
        Ok(other) => {
            tracing::warn!(integration = %integration.key, outcome = ?other,
                "the check call right after connecting did not name the account");
            None
        }
        Err(err) => {
            tracing::warn!(integration = %integration.key, error = %err,
                "the check call cannot be made");
            None
        }
    }
}

/// Refuses to put another account's credentials into an existing connection: when both
/// accounts are known they must be the same; a reconnect must prove it whenever the
/// connection's account is known.
async fn same_account<S: Store>(
    state: &AppState<S>,
    existing: &ConnectionRow,
    new: Option<&Account>,
    reconnect: bool,
) -> Result<(), SaveError> {
    let stored = state
        .store
        .connection_lifecycles(std::slice::from_ref(&existing.id))
        .await?
        .into_iter()
        .next()
        .and_then(|l| l.account);
    let Some(stored) = stored else {
        return Ok(());
    };
    let stored = Account {
        user_id: stored.user_id,
        organization_id: stored.organization_id,
        label: stored.label,
    };
    let belongs_to = || {
        stored
            .label
            .clone()
            .or_else(|| stored.user_id.clone())
            .or_else(|| stored.organization_id.clone())
            .unwrap_or_default()
    };
    match new {
        Some(new) if stored.same_as(new) => Ok(()),
        Some(_) => {
            tracing::warn!(connection_id = %existing.id,
                "another account signed in than the connection's; nothing changed");
            Err(SaveError::AccountMismatch {
                belongs_to: belongs_to(),
            })
        }
        None if reconnect && !stored.is_anonymous() => Err(SaveError::AccountUnconfirmed(
            "the provider did not say which account signed in".into(),
        )),
        None => Ok(()),
    }
}

/// Writes the grant's account and deadlines (and the recovery event, when the reconnect
/// ended a `needs_reauth`), only while the connection still holds these credentials. Best
/// effort: the credentials are saved already; a failure is logged, and the next check
/// learns the account.
async fn record_grant<S: Store>(
    state: &AppState<S>,
    grant: Grant<'_>,
    id: &str,
    version: i64,
    recovered: Option<tether_store::NewWebhookEvent>,
) {
    let now = state.clock.now();
    let record = GrantRecord {
        id: id.to_owned(),
        expected_version: version,
        account: grant.account.clone().map(|a| StoredAccount {
            user_id: a.user_id,
            organization_id: a.organization_id,
            label: a.label,
        }),
        keepalive_at: super::lifetime::keepalive_at(grant.lifetime, now, grant.credentials),
        grant_expires_at: super::lifetime::grant_expires_at(grant.lifetime, now),
        now,
    };
    match state.store.record_grant(&record).await {
        Ok(true) => {
            // The row a reader cached meanwhile may lack the account, which the proxy keys
            // per-account limits by (other instances hear it through the change feed).
            state.cache.invalidate(id);
            // The first check goes at a point of the interval a hash of the id picks, so
            // connections made together are checked apart (kept when one is scheduled).
            if let Some(interval) = grant.check_interval {
                let offset = super::checker::first_check_offset(id, interval)
                    .max(std::time::Duration::from_secs(1));
                let at = super::expiry::after(now, offset);
                if let Err(err) = state.store.schedule_check(id, at).await {
                    tracing::warn!(connection_id = %id, error = ?err, "could not schedule the first check");
                }
            }
        }
        Ok(false) => {
            tracing::info!(connection_id = %id, "credentials moved on before the grant was recorded")
        }
        Err(err) => {
            tracing::warn!(connection_id = %id, error = ?err, "could not record the grant's account")
        }
    }
    if let Some(event) = recovered {
        match state.store.append_event(&event).await {
            Ok(()) => webhooks::wake(&state.webhook_wake, Some(&event)),
            Err(err) => {
                tracing::warn!(connection_id = %id, error = ?err, "could not record the recovery")
            }
        }
    }
}

/// What a new grant brings: whose it is, the credentials, and the provider's lifetimes.
struct Grant<'a> {
    account: &'a Option<Account>,
    credentials: &'a Credentials,
    lifetime: &'a tether_core::catalog::LifetimeDef,
    /// The integration's check interval, when it declares a check.
    check_interval: Option<std::time::Duration>,
}
