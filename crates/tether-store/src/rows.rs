//! The rows both backends read, as sqlx decodes them, and their conversion into the store's
//! records. The SQL differs between SQLite and PostgreSQL (placeholders, locking), so each
//! backend keeps its own statements; the column types do not, so the decoding lives here once.
//! Column lists are macros so that `concat!` can build `&'static` SQL from them.

use crate::{
    ConnectSessionRow, ConnectionRow, ConnectionStatus, FlowStateRow, Sealed, StoreError,
    StoreResult, TokenHash, WebhookEventRow, WebhookStatus,
};

/// The columns an insert writes, in a macro so that `concat!` can build `&'static` SQL from
/// it (a constant list of identifiers, never a value).
macro_rules! connection_insert_columns {
    () => {
        "id, integration, end_user_id, end_user_email, end_user_display_name, status, \
         credentials, credentials_version, access_expires_at, metadata, last_error, \
         refresh_failures, next_refresh_at, created_at, updated_at"
    };
}
pub(crate) use connection_insert_columns;

/// The columns of [`ConnectionRecord`]: what an insert writes, and the provider account's
/// ids, which the lifecycle writes (read with the row so the proxy can key an account's
/// limits without another read).
macro_rules! connection_columns {
    () => {
        concat!(
            crate::rows::connection_insert_columns!(),
            ", account_organization_id, account_user_id"
        )
    };
}
pub(crate) use connection_columns;

/// A `connections` row as either backend returns it; the status is still text.
#[derive(sqlx::FromRow)]
pub(crate) struct ConnectionRecord {
    pub(crate) id: String,
    integration: String,
    end_user_id: String,
    end_user_email: Option<String>,
    end_user_display_name: Option<String>,
    status: String,
    credentials: Vec<u8>,
    credentials_version: i64,
    access_expires_at: Option<i64>,
    metadata: String,
    last_error: Option<String>,
    refresh_failures: i64,
    next_refresh_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    account_organization_id: Option<String>,
    account_user_id: Option<String>,
}

impl TryFrom<ConnectionRecord> for ConnectionRow {
    type Error = StoreError;

    fn try_from(r: ConnectionRecord) -> Result<Self, StoreError> {
        let status = ConnectionStatus::parse(&r.status).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "connection {}: unknown status {:?}",
                r.id, r.status
            ))
        })?;
        Ok(ConnectionRow {
            id: r.id,
            integration: r.integration,
            end_user_id: r.end_user_id,
            end_user_email: r.end_user_email,
            end_user_display_name: r.end_user_display_name,
            status,
            credentials: Sealed::from_bytes(r.credentials),
            credentials_version: r.credentials_version,
            access_expires_at: r.access_expires_at,
            metadata: r.metadata,
            last_error: r.last_error,
            refresh_failures: r.refresh_failures,
            next_refresh_at: r.next_refresh_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            provider_account: crate::ProviderAccount::of(
                r.account_organization_id,
                r.account_user_id,
            ),
        })
    }
}

/// A `connect_sessions` row as either backend returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRecord {
    token_hash: String,
    end_user_id: String,
    end_user_email: Option<String>,
    end_user_display_name: Option<String>,
    integrations: Option<String>,
    return_url: Option<String>,
    expires_at: i64,
    created_at: i64,
    browser_hash: Option<String>,
    completed_at: Option<i64>,
}

impl From<SessionRecord> for ConnectSessionRow {
    fn from(r: SessionRecord) -> Self {
        ConnectSessionRow {
            token_hash: TokenHash::from_hex(r.token_hash),
            end_user_id: r.end_user_id,
            end_user_email: r.end_user_email,
            end_user_display_name: r.end_user_display_name,
            integrations: r.integrations,
            return_url: r.return_url,
            expires_at: r.expires_at,
            created_at: r.created_at,
            browser_hash: r.browser_hash.map(TokenHash::from_hex),
            completed_at: r.completed_at,
        }
    }
}

/// A `flow_states` row as either backend returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct FlowRecord {
    state_hash: String,
    browser_hash: String,
    session_token_hash: String,
    integration: String,
    end_user_id: String,
    pkce_verifier: Vec<u8>,
    redirect_uri: String,
    return_url: Option<String>,
    display: String,
    expires_at: i64,
    created_at: i64,
}

impl From<FlowRecord> for FlowStateRow {
    fn from(r: FlowRecord) -> Self {
        FlowStateRow {
            state_hash: TokenHash::from_hex(r.state_hash),
            browser_hash: TokenHash::from_hex(r.browser_hash),
            session_token_hash: TokenHash::from_hex(r.session_token_hash),
            integration: r.integration,
            end_user_id: r.end_user_id,
            pkce_verifier: Sealed::from_bytes(r.pkce_verifier),
            redirect_uri: r.redirect_uri,
            return_url: r.return_url,
            display: r.display,
            expires_at: r.expires_at,
            created_at: r.created_at,
        }
    }
}

/// The columns of [`EventRecord`], for `concat!` (identifiers only, never a value).
macro_rules! event_columns {
    () => {
        "seq, id, event_type, connection_id, payload, status, attempts, next_attempt_at, \
         last_attempt_at, last_status_code, last_error, delivered_at, created_at, updated_at"
    };
}
pub(crate) use event_columns;

/// A `webhook_events` row as either backend returns it; the status is still text.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRecord {
    seq: i64,
    id: String,
    event_type: String,
    connection_id: String,
    payload: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_attempt_at: Option<i64>,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<EventRecord> for WebhookEventRow {
    type Error = StoreError;

    fn try_from(r: EventRecord) -> Result<Self, StoreError> {
        let status = WebhookStatus::parse(&r.status).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "webhook event {}: unknown status {:?}",
                r.id, r.status
            ))
        })?;
        Ok(WebhookEventRow {
            seq: r.seq,
            id: r.id,
            event_type: r.event_type,
            connection_id: r.connection_id,
            payload: r.payload,
            status,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_attempt_at: r.last_attempt_at,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            delivered_at: r.delivered_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub(crate) fn into_event_rows(records: Vec<EventRecord>) -> StoreResult<Vec<WebhookEventRow>> {
    records.into_iter().map(WebhookEventRow::try_from).collect()
}

pub(crate) fn into_connection_rows(
    records: Vec<ConnectionRecord>,
) -> StoreResult<Vec<ConnectionRow>> {
    records.into_iter().map(ConnectionRow::try_from).collect()
}
