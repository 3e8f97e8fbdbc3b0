//! The store chosen at start-up from the database URL: SQLite (`sqlite:`) or PostgreSQL
//! (`postgres://`, `postgresql://`). One binary serves both; the choice is made once, and
//! every call is a plain `match` to the chosen backend (no boxing, no `dyn`), so the server
//! stays generic over [`Store`] and knows nothing of backends.

use crate::{
    AttemptWindow, ChangeFeed, ConnectSessionRow, ConnectionEventRow, ConnectionFilter,
    ConnectionPage, ConnectionRow, ConnectionStatus, ConsumeOutcome, CredentialsUpdate,
    EventBucket, FlowStateRow, HistoryEntry, NewWebhookEvent, PgStore, RefreshClaim, RefreshFinish,
    Sealed, SqliteStore, StatusChange, StatusCount, Store, StoreError, StoreOptions, StoreResult,
    TokenHash, WebhookAttempt, WebhookEventFilter, WebhookEventRow,
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

/// Writes each listed method (its signature, once) as a call of the same method on whichever
/// backend this is: every async method of [`Store`] and its companion traits
/// ([`crate::AuthStore`], [`crate::LifecycleStore`], [`crate::AgentTokenStore`]) that has no
/// default.
macro_rules! forward_to_backend {
    ($(fn $method:ident(&self $(, $arg:ident: $type:ty)* $(,)?) -> $output:ty;)*) => {
        $(
            async fn $method(&self $(, $arg: $type)*) -> $output {
                match self {
                    AnyStore::Sqlite(store) => store.$method($($arg),*).await,
                    AnyStore::Postgres(store) => store.$method($($arg),*).await,
                }
            }
        )*
    };
}
pub(crate) use forward_to_backend;

impl Store for AnyStore {
    fn changes(&self) -> Option<ChangeFeed> {
        match self {
            AnyStore::Sqlite(store) => store.changes(),
            AnyStore::Postgres(store) => store.changes(),
        }
    }

    forward_to_backend! {
        fn ping(&self) -> StoreResult<()>;
        fn insert_api_key_hash(&self, key_hash: &TokenHash, label: &str, now: i64)
            -> StoreResult<()>;
        fn api_key_hashes(&self) -> StoreResult<Vec<TokenHash>>;
        fn put_integration(&self, key: &str, sealed_config: &Sealed, now: i64)
            -> StoreResult<bool>;
        fn delete_integration(&self, key: &str) -> StoreResult<bool>;
        fn sealing_key(&self) -> StoreResult<Option<String>>;
        fn announce_sealing_key(&self, key_id: &str, now: i64) -> StoreResult<()>;
        fn announce_sealing_key_if_none(&self, key_id: &str, now: i64) -> StoreResult<String>;
        fn sealed_value_counts(&self) -> StoreResult<Vec<crate::SealedCount>>;
        fn list_integrations(&self) -> StoreResult<Vec<(String, Sealed)>>;
        fn reseal_integration(&self, key: &str, old: &Sealed, new: &Sealed, now: i64)
            -> StoreResult<bool>;
        fn insert_connect_session(&self, session: &ConnectSessionRow) -> StoreResult<()>;
        fn get_connect_session(&self, token_hash: &TokenHash)
            -> StoreResult<Option<ConnectSessionRow>>;
        fn bind_connect_session(&self, token_hash: &TokenHash, browser_hash: &TokenHash, now: i64)
            -> StoreResult<Option<TokenHash>>;
        fn complete_connect_session(&self, token_hash: &TokenHash, now: i64) -> StoreResult<bool>;
        fn reopen_connect_session(&self, token_hash: &TokenHash, now: i64) -> StoreResult<()>;
        fn count_session_attempt(&self, token_hash: &TokenHash, now: i64, window_secs: i64)
            -> StoreResult<Option<AttemptWindow>>;
        fn insert_flow_state(&self, flow: &FlowStateRow, max_per_session: u32) -> StoreResult<bool>;
        fn flow_states_after(&self, after: Option<&TokenHash>, limit: u32)
            -> StoreResult<Vec<FlowStateRow>>;
        fn reseal_flow_verifier(&self, state_hash: &TokenHash, old: &Sealed, new: &Sealed)
            -> StoreResult<bool>;
        fn consume_flow_state(&self, state_hash: &TokenHash, browser_hash: &TokenHash)
            -> StoreResult<ConsumeOutcome>;
        fn purge_expired(&self, now: i64) -> StoreResult<u64>;
        fn insert_connections(&self, connections: &[ConnectionRow]) -> StoreResult<()>;
        fn find_connection(&self, integration: &str, end_user_id: &str)
            -> StoreResult<Option<ConnectionRow>>;
        fn get_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>>;
        fn list_connections(&self, filter: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>>;
        fn set_connection_status(
            &self,
            id: &str,
            status: ConnectionStatus,
            last_error: Option<&str>,
            now: i64
        ) -> StoreResult<bool>;
        fn connections_after(&self, after_id: Option<&str>, limit: u32)
            -> StoreResult<Vec<ConnectionRow>>;
        fn reseal_credentials(&self, id: &str, expected_version: i64, credentials: &Sealed, now: i64)
            -> StoreResult<bool>;
        fn insert_connection_with_event(
            &self,
            connection: &ConnectionRow,
            event: Option<&NewWebhookEvent>
        ) -> StoreResult<()>;
        fn replace_credentials_with_event(
            &self,
            update: &CredentialsUpdate,
            event: Option<&NewWebhookEvent>
        ) -> StoreResult<bool>;
        fn set_connection_status_with_event(
            &self,
            change: &StatusChange,
            event: Option<&NewWebhookEvent>
        ) -> StoreResult<bool>;
        fn delete_connection_with_event(&self, id: &str, event: Option<&NewWebhookEvent>)
            -> StoreResult<bool>;
        fn try_acquire_refresh_lease(&self, id: &str, owner: &str, until: i64, now: i64)
            -> StoreResult<bool>;
        fn release_refresh_lease(&self, id: &str, owner: &str) -> StoreResult<()>;
        fn connections_due_for_refresh(&self, before: i64, now: i64, limit: u32)
            -> StoreResult<Vec<ConnectionRow>>;
        fn claim_due_refreshes(&self, claim: &RefreshClaim) -> StoreResult<Vec<ConnectionRow>>;
        fn finish_refreshes(&self, batch: &[RefreshFinish<'_>])
            -> StoreResult<Vec<Option<ConnectionRow>>>;
        fn record_refresh_failure_with_event(
            &self,
            id: &str,
            next_refresh_at: i64,
            last_error: &str,
            now: i64,
            event: Option<&NewWebhookEvent>
        ) -> StoreResult<()>;
        fn list_connection_events(&self, connection_id: &str, before_seq: Option<i64>, limit: u32)
            -> StoreResult<Vec<ConnectionEventRow>>;
        fn record_connection_history(&self, connection_id: &str, entry: &HistoryEntry, at: i64)
            -> StoreResult<bool>;
        fn purge_connection_events(&self, before: i64) -> StoreResult<u64>;
        fn page_connections(&self, page: &ConnectionPage) -> StoreResult<Vec<ConnectionRow>>;
        fn connection_status_counts(&self) -> StoreResult<Vec<StatusCount>>;
        fn connection_event_buckets(&self, since: i64, bucket_secs: i64, kinds: &[&str])
            -> StoreResult<Vec<EventBucket>>;
        fn claim_webhook_events(&self, owner: &str, lease_until: i64, now: i64, limit: u32)
            -> StoreResult<Vec<WebhookEventRow>>;
        fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> StoreResult<bool>;
        fn list_webhook_events(&self, filter: &WebhookEventFilter)
            -> StoreResult<Vec<WebhookEventRow>>;
        fn get_webhook_event(&self, id: &str) -> StoreResult<Option<WebhookEventRow>>;
        fn redeliver_webhook_event(&self, id: &str, now: i64) -> StoreResult<bool>;
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
