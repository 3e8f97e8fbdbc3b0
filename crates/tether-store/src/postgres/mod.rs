//! PostgreSQL implementation of [`Store`]: one database shared by every Tether instance behind
//! a load balancer, through a sqlx pool per instance.
//!
//! Every decision that must hold across instances is ONE conditional statement, never a read
//! followed by a write: taking a flow state (`DELETE ... RETURNING`), a credentials
//! compare-and-swap and a refresh lease (`UPDATE ... WHERE version/lease matches`, which
//! PostgreSQL re-checks against the latest row version when another writer committed first),
//! and claiming webhook events (`FOR UPDATE SKIP LOCKED`). Migrations run under an advisory
//! lock, so instances starting together apply them once. Changes that other instances cache
//! are announced by triggers with NOTIFY and heard through [`Store::changes`] (see
//! `changes.rs`).
//!
//! This module never logs a secret, a token hash, a state hash or a database password.

// The statements, written once in `sql/` for both backends (with `$N` placeholders, which
// SQLite reads too) and compiled here against a PostgreSQL pool; see `dialect.rs` for the rest.
/// The database the shared statements are compiled for.
type Db = sqlx::Postgres;
/// The pool the shared statements run on.
type Pool = sqlx::Pool<Db>;
/// The store the shared trait impls are for.
type ThisStore = PgStore;

/// Row locks a claim of webhook events skips rather than waits for: rows another instance is claiming right now.
macro_rules! skip_locked {
    () => {
        " FOR UPDATE SKIP LOCKED"
    };
}

#[path = "../sql/auth.rs"]
mod auth;
mod changes;
#[path = "../sql/connections.rs"]
mod connections;
mod dialect;
#[path = "../sql/flows.rs"]
mod flows;
#[path = "../sql/history.rs"]
mod history;
#[path = "../sql/leases.rs"]
mod leases;
#[path = "../sql/sealing.rs"]
mod sealing;
#[path = "../sql/webhooks.rs"]
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::{
    AttemptWindow, ChangeFeed, ConnectSessionRow, ConnectionEventRow, ConnectionFilter,
    ConnectionPage, ConnectionRow, ConnectionStatus, ConsumeOutcome, CredentialsUpdate,
    EventBucket, FlowStateRow, NewWebhookEvent, StatusChange, StatusCount, Store, StoreOptions,
    StoreResult, WebhookAttempt, WebhookEventFilter, WebhookEventRow,
};

/// Connections per instance when `[database] pool_size` is not set.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// How long a statement may run when `[database] statement_timeout` is not set. Long enough for
/// any of the store's statements under load; short enough that a stuck database answers 503
/// instead of holding requests.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request waits for a pooled connection (or a new one) before the store reports
/// the database unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`] on PostgreSQL. Cloning is cheap: it clones the pool handle.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// What the notification listener connects with (same server, database and schema);
    /// shared, as the store is cloned into every request.
    options: std::sync::Arc<PgConnectOptions>,
    /// The NOTIFY channel of this database schema; see `changes.rs`.
    channel: String,
}

/// The longest NOTIFY channel name PostgreSQL accepts (`NAMEDATALEN - 1`).
const MAX_CHANNEL_BYTES: usize = 63;

/// A [`crate::StoreError::InvalidUrl`] saying what is wrong with the connect options.
fn invalid_options(why: impl Into<String>) -> crate::StoreError {
    crate::StoreError::InvalidUrl(sqlx::Error::Configuration(why.into().into()))
}

// By hand: sqlx's `Debug` of `PgConnectOptions` prints the password (and an inline client
// key), so the options never appear here.
impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`) and applies the
    /// embedded migrations. Fails at once, with the cause, when the URL is malformed, the
    /// server is unreachable, the credentials or database are wrong, or the database was
    /// migrated by a newer Tether.
    // No `err` here: the caller reports a failed start-up, once.
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let connect = PgConnectOptions::from_str(url)?;
        Self::connect_with(connect, options).await
    }

    /// [`PgStore::connect`] with options built in code (tests set a `search_path` here).
    #[tracing::instrument(skip_all)]
    pub async fn connect_with(
        connect: PgConnectOptions,
        options: &StoreOptions,
    ) -> StoreResult<Self> {
        let timeout = options
            .statement_timeout
            .unwrap_or(DEFAULT_STATEMENT_TIMEOUT);
        let connect = connect
            .application_name("tether")
            // A server-side limit, so a statement stuck on a lock or a sick disk fails (and
            // the request answers 503) instead of holding its connection forever.
            .options([("statement_timeout", timeout.as_millis().to_string())]);

        // One direct connection first: the pool would retry an unreachable server until its
        // acquire timeout and then report only that it timed out, losing the cause.
        let mut probe = PgConnection::connect_with(&connect).await?;
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&mut probe)
            .await?;
        probe.close().await?;
        // Both are faults of the URL's options (its `search_path`), not of any row.
        let schema = schema.ok_or_else(|| {
            invalid_options("the search_path names no existing schema to hold Tether's tables")
        })?;
        // The change feed's channel is `tether:<schema>` (see `changes.rs`), and `pg_notify`
        // refuses channel names of 64 bytes or more: every write would then fail (22023).
        if changes::channel_for(&schema).len() > MAX_CHANNEL_BYTES {
            return Err(invalid_options(format!(
                "the schema name {schema:?} is {} bytes; Tether needs one of at most {} bytes \
                 (its change notifications are named after it, and PostgreSQL limits those \
                 names to {MAX_CHANNEL_BYTES} bytes)",
                schema.len(),
                MAX_CHANNEL_BYTES - changes::channel_for("").len(),
            )));
        }

        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.unwrap_or(DEFAULT_POOL_SIZE).max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(connect.clone())
            .await?;
        let store = PgStore {
            pool,
            options: std::sync::Arc::new(connect),
            channel: changes::channel_for(&schema),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations embedded from `migrations/postgres` that are not applied yet.
    /// Idempotent; [`PgStore::connect`] already calls it.
    ///
    /// sqlx's migrator holds a session advisory lock (`pg_advisory_lock`, keyed on the
    /// database name) from before it reads the applied versions until it has applied the last
    /// one, so instances starting together queue on the lock and each finds the work done by
    /// the first. A database that has a migration this build does not know (a newer Tether
    /// migrated it) is refused with [`crate::StoreError::UnknownMigration`], changing nothing.
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        // Waiting for another instance's migration, or a long ALTER, is not a stuck request:
        // the statement timeout is lifted on this connection for the migration, and restored
        // (to the connection's start-up value) before it goes back to the pool.
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        // `run_direct` on the one connection: `run` would take a fresh one from the pool,
        // without the lifted timeout.
        let migrated = sqlx::migrate!("./migrations/postgres")
            .run_direct(&mut *conn)
            .await;
        sqlx::query("RESET statement_timeout")
            .execute(&mut *conn)
            .await?;
        migrated?;
        Ok(())
    }

    /// The underlying pool, for tools and tests that need raw SQL.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The NOTIFY channel this store's changes are announced on.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn changes(&self) -> Option<ChangeFeed> {
        Some(changes::subscribe(
            PgConnectOptions::clone(&self.options),
            self.channel.clone(),
        ))
    }

    #[tracing::instrument(skip_all, err)]
    async fn sealing_key(&self) -> StoreResult<Option<String>> {
        sealing::sealing_key(&self.pool).await
    }

    #[tracing::instrument(skip_all, fields(key = %key_id), err)]
    async fn announce_sealing_key(&self, key_id: &str, now: i64) -> StoreResult<()> {
        sealing::announce(&self.pool, key_id, now).await
    }

    #[tracing::instrument(skip_all, fields(key = %key_id), err)]
    async fn announce_sealing_key_if_none(&self, key_id: &str, now: i64) -> StoreResult<String> {
        sealing::announce_if_none(&self.pool, key_id, now).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn sealed_value_counts(&self) -> StoreResult<Vec<crate::SealedCount>> {
        sealing::sealed_value_counts(&self.pool).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn insert_connect_session(&self, session: &ConnectSessionRow) -> StoreResult<()> {
        flows::insert_connect_session(&self.pool, session).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn get_connect_session(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<ConnectSessionRow>> {
        flows::get_connect_session(&self.pool, token_hash).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn bind_connect_session(
        &self,
        token_hash: &str,
        browser_hash: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        flows::bind_connect_session(&self.pool, token_hash, browser_hash, now).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn complete_connect_session(&self, token_hash: &str, now: i64) -> StoreResult<bool> {
        flows::complete_connect_session(&self.pool, token_hash, now).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn reopen_connect_session(&self, token_hash: &str, now: i64) -> StoreResult<()> {
        flows::reopen_connect_session(&self.pool, token_hash, now).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn count_session_attempt(
        &self,
        token_hash: &str,
        now: i64,
        window_secs: i64,
    ) -> StoreResult<Option<AttemptWindow>> {
        flows::count_session_attempt(&self.pool, token_hash, now, window_secs).await
    }

    #[tracing::instrument(skip_all, fields(integration = %flow.integration), err)]
    async fn insert_flow_state(
        &self,
        flow: &FlowStateRow,
        max_per_session: u32,
    ) -> StoreResult<bool> {
        flows::insert_flow_state(&self.pool, flow, max_per_session).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn flow_states_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<FlowStateRow>> {
        flows::flow_states_after(&self.pool, after, limit).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn reseal_flow_verifier(
        &self,
        state_hash: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool> {
        flows::reseal_flow_verifier(&self.pool, state_hash, old, new).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn consume_flow_state(
        &self,
        state_hash: &str,
        browser_hash: &str,
    ) -> StoreResult<ConsumeOutcome> {
        flows::consume_flow_state(&self.pool, state_hash, browser_hash).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn insert_api_key_hash(&self, key_hash: &str, label: &str, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (key_hash, label, created_at, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key_hash)
        .bind(label)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn api_key_hashes(&self) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT key_hash FROM api_keys ORDER BY created_at")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    #[tracing::instrument(skip_all, fields(key = %key), err)]
    async fn put_integration(
        &self,
        key: &str,
        sealed_config: &[u8],
        now: i64,
    ) -> StoreResult<bool> {
        // One upsert that tells insert from update: a row version written by this very
        // INSERT has no deleting transaction (xmax = 0); one updated by ON CONFLICT does.
        // created_at survives a replace.
        let created: bool = sqlx::query_scalar(
            "INSERT INTO integrations (key, config, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (key) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at \
             RETURNING (xmax = 0)",
        )
        .bind(key)
        .bind(sealed_config)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(created)
    }

    #[tracing::instrument(skip_all, fields(key = %key), err)]
    async fn delete_integration(&self, key: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM integrations WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_integrations(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(
            sqlx::query_as("SELECT key, config FROM integrations ORDER BY key")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    #[tracing::instrument(skip_all, fields(key = %key), err)]
    async fn reseal_integration(
        &self,
        key: &str,
        old: &[u8],
        new: &[u8],
        now: i64,
    ) -> StoreResult<bool> {
        // Compare-and-swap on the sealed bytes: a PUT that replaced the configuration
        // meanwhile wins, and this re-seal changes nothing.
        let result = sqlx::query(
            "UPDATE integrations SET config = $1, updated_at = $2 WHERE key = $3 AND config = $4",
        )
        .bind(new)
        .bind(now)
        .bind(key)
        .bind(old)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        flows::purge_expired(&self.pool, now).await
    }

    #[tracing::instrument(
        skip_all,
        fields(id = %connection.id, integration = %connection.integration),
        err
    )]
    async fn insert_connection(&self, connection: &ConnectionRow) -> StoreResult<()> {
        connections::insert(&self.pool, connection, None).await
    }

    #[tracing::instrument(skip_all, fields(integration = %integration), err)]
    async fn find_connection(
        &self,
        integration: &str,
        end_user_id: &str,
    ) -> StoreResult<Option<ConnectionRow>> {
        connections::find(&self.pool, integration, end_user_id).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn get_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
        connections::get(&self.pool, id).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_connections(&self, filter: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>> {
        connections::list(&self.pool, filter).await
    }

    #[tracing::instrument(skip_all, fields(id = %update.id), err)]
    async fn replace_credentials(&self, update: &CredentialsUpdate) -> StoreResult<bool> {
        connections::replace_credentials(&self.pool, update, None).await
    }

    #[tracing::instrument(skip_all, fields(id = %id, status = status.as_str()), err)]
    async fn set_connection_status(
        &self,
        id: &str,
        status: ConnectionStatus,
        last_error: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        connections::set_status(&self.pool, id, status, last_error, now).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn delete_connection(&self, id: &str) -> StoreResult<bool> {
        connections::delete(&self.pool, id, None).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn connections_after(
        &self,
        after_id: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionRow>> {
        connections::page_after(&self.pool, after_id, limit).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn reseal_credentials(
        &self,
        id: &str,
        expected_version: i64,
        credentials: &[u8],
        now: i64,
    ) -> StoreResult<bool> {
        connections::reseal(&self.pool, id, expected_version, credentials, now).await
    }

    #[tracing::instrument(
        skip_all,
        fields(id = %connection.id, integration = %connection.integration),
        err
    )]
    async fn insert_connection_with_event(
        &self,
        connection: &ConnectionRow,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<()> {
        connections::insert(&self.pool, connection, event).await
    }

    #[tracing::instrument(skip_all, fields(id = %update.id), err)]
    async fn replace_credentials_with_event(
        &self,
        update: &CredentialsUpdate,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        connections::replace_credentials(&self.pool, update, event).await
    }

    #[tracing::instrument(
        skip_all,
        fields(id = %change.id, status = change.status.as_str()),
        err
    )]
    async fn set_connection_status_with_event(
        &self,
        change: &StatusChange,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        connections::change_status(&self.pool, change, event).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn delete_connection_with_event(
        &self,
        id: &str,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<bool> {
        connections::delete(&self.pool, id, event).await
    }

    #[tracing::instrument(skip_all, fields(id = %id, owner = %owner), err)]
    async fn try_acquire_refresh_lease(
        &self,
        id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> StoreResult<bool> {
        leases::try_acquire(&self.pool, id, owner, until, now).await
    }

    #[tracing::instrument(skip_all, fields(id = %id, owner = %owner), err)]
    async fn release_refresh_lease(&self, id: &str, owner: &str) -> StoreResult<()> {
        leases::release(&self.pool, id, owner).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn connections_due_for_refresh(
        &self,
        before: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionRow>> {
        leases::due_for_refresh(&self.pool, before, now, limit).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn record_refresh_failure(
        &self,
        id: &str,
        next_refresh_at: i64,
        last_error: &str,
        now: i64,
    ) -> StoreResult<()> {
        leases::record_refresh_failure(&self.pool, id, next_refresh_at, last_error, now, None).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn record_refresh_failure_with_event(
        &self,
        id: &str,
        next_refresh_at: i64,
        last_error: &str,
        now: i64,
        event: Option<&NewWebhookEvent>,
    ) -> StoreResult<()> {
        leases::record_refresh_failure(&self.pool, id, next_refresh_at, last_error, now, event)
            .await
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_connection_events(
        &self,
        connection_id: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<ConnectionEventRow>> {
        history::list(&self.pool, connection_id, before_seq, limit).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn purge_connection_events(&self, before: i64) -> StoreResult<u64> {
        history::purge(&self.pool, before).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn page_connections(&self, page: &ConnectionPage) -> StoreResult<Vec<ConnectionRow>> {
        history::page(&self.pool, page).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn connection_status_counts(&self) -> StoreResult<Vec<StatusCount>> {
        history::status_counts(&self.pool).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn connection_event_buckets(
        &self,
        since: i64,
        bucket_secs: i64,
        kinds: &[&str],
    ) -> StoreResult<Vec<EventBucket>> {
        history::buckets(&self.pool, since, bucket_secs, kinds).await
    }

    #[tracing::instrument(skip_all, fields(owner = %owner), err)]
    async fn claim_webhook_events(
        &self,
        owner: &str,
        lease_until: i64,
        now: i64,
        limit: u32,
    ) -> StoreResult<Vec<WebhookEventRow>> {
        webhooks::claim(&self.pool, owner, lease_until, now, limit).await
    }

    #[tracing::instrument(skip_all, fields(id = %attempt.id), err)]
    async fn record_webhook_attempt(&self, attempt: &WebhookAttempt) -> StoreResult<bool> {
        webhooks::record_attempt(&self.pool, attempt).await
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_webhook_events(
        &self,
        filter: &WebhookEventFilter,
    ) -> StoreResult<Vec<WebhookEventRow>> {
        webhooks::list(&self.pool, filter).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn get_webhook_event(&self, id: &str) -> StoreResult<Option<WebhookEventRow>> {
        webhooks::get(&self.pool, id).await
    }

    #[tracing::instrument(skip_all, fields(id = %id), err)]
    async fn redeliver_webhook_event(&self, id: &str, now: i64) -> StoreResult<bool> {
        webhooks::redeliver(&self.pool, id, now).await
    }
}
