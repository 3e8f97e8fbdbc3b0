//! The store chosen at start-up from the database URL: SQLite (`sqlite:`) or PostgreSQL
//! (`postgres://`, `postgresql://`). One binary serves both; the choice is made once, and
//! every call is a plain `match` to the chosen backend (no boxing, no `dyn`), so the server
//! stays generic over [`Store`] and knows nothing of backends.

use crate::{
    AttemptWindow, ChangeFeed, ConnectSessionRow, ConnectionEventRow, ConnectionFilter,
    ConnectionPage, ConnectionRow, ConnectionStatus, ConsumeOutcome, CredentialsUpdate,
    EventBucket, FlowStateRow, NewWebhookEvent, PgStore, SqliteStore, StatusChange, StatusCount,
    Store, StoreError, StoreOptions, StoreResult, WebhookAttempt, WebhookEventFilter,
    WebhookEventRow,
};

/// The backend a database URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Reads the scheme of `url`; `None` for any other scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Backend::Sqlite),
            // Only the URL form: `postgres:` without `//` is not a URL sqlx can read.
            "postgres" | "postgresql" if url[scheme.len() + 1..].starts_with("//") => {
                Some(Backend::Postgres)
            }
            _ => None,
        }
    }
}

/// A [`Store`] on whichever backend the URL named.
#[derive(Clone, Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the database at `url` with the backend its scheme names, and applies that
    /// backend's migrations.
    pub async fn connect(url: &str, options: &StoreOptions) -> StoreResult<AnyStore> {
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => Ok(AnyStore::Sqlite(
                SqliteStore::connect_with(url, options).await?,
            )),
            Some(Backend::Postgres) => {
                Ok(AnyStore::Postgres(PgStore::connect(url, options).await?))
            }
            None => Err(StoreError::InvalidUrl(sqlx::Error::Configuration(
                "the scheme must be sqlite:, postgres:// or postgresql://".into(),
            ))),
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            AnyStore::Sqlite(_) => Backend::Sqlite,
            AnyStore::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies any migrations not applied yet (idempotent; `connect` already did).
    pub async fn migrate(&self) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.migrate().await,
            AnyStore::Postgres(store) => store.migrate().await,
        }
    }
}

/// Calls the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self {
            AnyStore::Sqlite(store) => store.$method($($arg),*).await,
            AnyStore::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

impl Store for AnyStore {
    fn changes(&self) -> Option<ChangeFeed> {
        match self {
            AnyStore::Sqlite(store) => store.changes(),
            AnyStore::Postgres(store) => store.changes(),
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, ping())
    }

    async fn insert_api_key_hash(&self, key_hash: &str, label: &str, now: i64) -> StoreResult<()> {
        dispatch!(self, insert_api_key_hash(key_hash, label, now))
    }

    async fn api_key_hashes(&self) -> StoreResult<Vec<String>> {
        dispatch!(self, api_key_hashes())
    }

    async fn put_integration(
        &self,
        key: &str,
        sealed_config: &[u8],
        now: i64,
    ) -> StoreResult<bool> {
        dispatch!(self, put_integration(key, sealed_config, now))
    }

    async fn delete_integration(&self, key: &str) -> StoreResult<bool> {
        dispatch!(self, delete_integration(key))
    }

    async fn sealing_key(&self) -> StoreResult<Option<String>> {
        dispatch!(self, sealing_key())
    }

    async fn announce_sealing_key(&self, key_id: &str, now: i64) -> StoreResult<()> {
        dispatch!(self, announce_sealing_key(key_id, now))
    }

    async fn announce_sealing_key_if_none(&self, key_id: &str, now: i64) -> StoreResult<String> {
        dispatch!(self, announce_sealing_key_if_none(key_id, now))
    }

    async fn sealed_value_counts(&self) -> StoreResult<Vec<crate::SealedCount>> {
        dispatch!(self, sealed_value_counts())
    }

    async fn list_integrations(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        dispatch!(self, list_integrations())
    }

    async fn reseal_integration(
        &self,
        key: &str,
        old: &[u8],
        new: &[u8],
        now: i64,
    ) -> StoreResult<bool> {
        dispatch!(self, reseal_integration(key, old, new, now))
    }

    async fn insert_connect_session(&self, session: &ConnectSessionRow) -> StoreResult<()> {
        dispatch!(self, insert_connect_session(session))
    }

    async fn get_connect_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<ConnectSessionRow>> {
        dispatch!(self, get_connect_session(token_hash))
    }

    async fn bind_connect_session(
        &self,
        token_hash: &str,
        browser_hash: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        dispatch!(self, bind_connect_session(token_hash, browser_hash, now))
    }

    async fn complete_connect_session(&self, token_hash: &str, now: i64) -> StoreResult<bool> {
        dispatch!(self, complete_connect_session(token_hash, now))
    }

    async fn reopen_connect_session(&self, token_hash: &str, now: i64) -> StoreResult<()> {
        dispatch!(self, reopen_connect_session(token_hash, now))
    }

    async fn count_session_attempt(
        &self,
        token_hash: &str,
        now: i64,
        window_secs: i64,
    ) -> StoreResult<Option<AttemptWindow>> {
        dispatch!(self, count_session_attempt(token_hash, now, window_secs))
    }

    async fn insert_flow_state(
        &self,
        flow: &FlowStateRow,
        max_per_session: u32,
    ) -> StoreResult<bool> {
        dispatch!(self, insert_flow_state(flow, max_per_session))
    }

    async fn flow_states_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<FlowStateRow>> {
        dispatch!(self, flow_states_after(after, limit))
    }

    async fn reseal_flow_verifier(
        &self,
        state_hash: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        dispatch!(self, reseal_flow_verifier(state_hash, old, new))
    }

    async fn consume_flow_state(
        &self,
        state_hash: &str,
        browser_hash: &str,
    ) -> StoreResult<ConsumeOutcome> {
        dispatch!(self, consume_flow_state(state_hash, browser_hash))
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        dispatch!(self, purge_expired(now))
    }

    async fn insert_connection(&self, connection: &ConnectionRow) -> StoreResult<()> {
        dispatch!(self, insert_connection(connection))
    }

    async fn find_connection(
        &self,
        integration: &str,
        end_user_id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        dispatch!(self, find_connection(integration, end_user_id))
    }

    async fn get_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
        dispatch!(self, get_connection(id))
    }

    async fn list_connections(&self, filter: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>> {
        dispatch!(self, list_connections(filter))
    }

    async fn replace_credentials(&self, update: &CredentialsUpdate) -> StoreResult<bool> {
        dispatch!(self, replace_credentials(update))
    }

    async fn set_connection_status(
        &self,
        id: &str,
        status: ConnectionStatus,
        last_error: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        dispatch!(self, set_connection_status(id, status, last_error, now))
    }

    async fn delete_connection(&self, id: &str) -> StoreResult<bool> {
        dispatch!(self, delete_connection(id))
    }

    async fn connections_after(
        &self,
        after_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionRow>> {
        dispatch!(self, connections_after(after_id, limit))
    }

    async fn reseal_credentials(
        &self,
        id: &str,
        expected_version: i64,
        credentials: &[u8],
        now: i64,
    ) -> StoreResult<bool> {
        dispatch!(
            self,
            reseal_credentials(id, expected_version, credentials, now)
        )
    }

    async fn insert_connection_with_event(
        &self,
        connection: &ConnectionRow,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<()> {
        dispatch!(self, insert_connection_with_event(connection, event))
    }

    async fn replace_credentials_with_event(
        &self,
        update: &CredentialsUpdate,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        dispatch!(self, replace_credentials_with_event(update, event))
    }

    async fn set_connection_status_with_event(
        &self,
        change: &StatusChange,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        dispatch!(self, set_connection_status_with_event(change, event))
    }

    async fn delete_connection_with_event(
        &self,
        id: &str,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        dispatch!(self, delete_connection_with_event(id, event))
    }

    async fn try_acquire_refresh_lease(
        &self,
        id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> StoreResult<bool> {
        dispatch!(self, try_acquire_refresh_lease(id, owner, until, now))
    }

    async fn release_refresh_lease(&self, id: &str, owner: &str) -> StoreResult<()> {
        dispatch!(self, release_refresh_lease(id, owner))
    }

    async fn connections_due_for_refresh(
        &self,
        before: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionRow>> {
        dispatch!(self, connections_due_for_refresh(before, now, limit))
    }

    async fn record_refresh_failure(
        &self,
        id: &str,
        next_refresh_at: i64,
        last_error: &str,
        now: i64,
    ) -> StoreResult<()> {
        dispatch!(
            self,
            record_refresh_failure(id, next_refresh_at, last_error, now)
        )
    }

    async fn record_refresh_failure_with_event(
        &self,
        id: &str,
        next_refresh_at: i64,
        last_error: &str,
        now: i64,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<()> {
        dispatch!(
            self,
            record_refresh_failure_with_event(id, next_refresh_at, last_error, now, event)
        )
    }

    async fn list_connection_events(
        &self,
        connection_id: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionEventRow>> {
        dispatch!(
            self,
            list_connection_events(connection_id, before_seq, limit)
        )
    }

    async fn purge_connection_events(&self, before: i64) -> StoreResult<u64> {
        dispatch!(self, purge_connection_events(before))
    }

    async fn page_connections(&self, page: &ConnectionPage) -> StoreResult<Vec<ConnectionRow>> {
        dispatch!(self, page_connections(page))
    }

    async fn connection_status_counts(&self) -> StoreResult<Vec<StatusCount>> {
        dispatch!(self, connection_status_counts())
    }

    async fn connection_event_buckets(
        &self,
        since: i64,
        bucket_secs: i64,
        kinds: &[&str],
    ) -> StoreResult<Vec<EventBucket>> {
        dispatch!(self, connection_event_buckets(since, bucket_secs, kinds))
    }

    async fn claim_webhook_events(
        &self,
        owner: &str,
        lease_until: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<WebhookEventRow>> {
        dispatch!(self, claim_webhook_events(owner, lease_until, now, limit))
    }

    async fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> StoreResult<bool> {
        dispatch!(self, record_webhook_attempt(attempt))
    }

    async fn list_webhook_events(
        &self,
        filter: &WebhookEventFilter,
    ) -> StoreResult<Vec<WebhookEventRow>> {
        dispatch!(self, list_webhook_events(filter))
    }

    async fn get_webhook_event(&self, id: &str) -> StoreResult<Option<WebhookEventRow>> {
        dispatch!(self, get_webhook_event(id))
    }

    async fn redeliver_webhook_event(&self, id: &str, now: i64) -> StoreResult<bool> {
        dispatch!(self, redeliver_webhook_event(id, now))
    }
}

#[cfg(test)]
mod tests {
    use super::Backend;

    #[test]
    fn the_scheme_picks_the_backend() {
        assert_eq!(Backend::of_url("sqlite://tether.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://u@localhost/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("PostgreSQL://u@localhost/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("postgres:db"), None);
        assert_eq!(Backend::of_url("mysql://u@localhost/db"), None);
        assert_eq!(Backend::of_url("tether.db"), None);
    }
}
