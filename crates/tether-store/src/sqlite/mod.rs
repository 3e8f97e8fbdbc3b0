//! SQLite implementation of [`Store`]: one database file (or `sqlite::memory:` for tests) in
//! WAL mode behind a small sqlx pool.
//!
//! Every method is a handful of single statements; where a decision must be atomic (taking a
//! flow state, a credentials compare-and-swap, a refresh lease) it is ONE conditional
//! statement, never a read followed by a write, so several tasks (or, on PostgreSQL, several
//! instances) cannot both win. This module never logs a secret, a token hash or a state hash.

// The statements, written once in `sql/` for both backends (with `$N` placeholders, which
// SQLite reads too) and compiled here against a SQLite pool; see `dialect.rs` for the rest.
/// The database the shared statements are compiled for.
type Db = sqlx::Sqlite;
/// The pool the shared statements run on.
type Pool = sqlx::Pool<Db>;
/// The store the shared trait impls are for.
type ThisStore = SqliteStore;

/// Row locks a claim of webhook events skips rather than waits for: none on SQLite, whose one writer at a time has no row locks.
macro_rules! skip_locked {
    () => {
        ""
    };
}

#[path = "../sql/auth.rs"]
mod auth;
#[path = "../sql/connections.rs"]
mod connections;
mod dialect;
#[path = "../sql/flows.rs"]
mod flows;
#[path = "../sql/history.rs"]
mod history;
#[path = "../sql/leases.rs"]
mod leases;
mod point_reads;
#[path = "../sql/sealing.rs"]
mod sealing;
#[path = "../sql/webhooks.rs"]
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{
    AttemptWindow, ChangeFeed, ConnectSessionRow, ConnectionEventRow, ConnectionFilter,
    ConnectionPage, ConnectionRow, ConnectionStatus, ConsumeOutcome, CredentialsUpdate,
    EventBucket, FlowStateRow, NewWebhookEvent, StatusChange, StatusCount, Store, StoreError,
    StoreOptions, StoreResult, WebhookAttempt, WebhookEventFilter, WebhookEventRow,
};

/// Connections kept for a file database. SQLite has one writer at a time anyway; the extra
/// connections let WAL readers proceed while a write is in progress.
const FILE_POOL_SIZE: u32 = 8;

/// How long a statement waits for another connection's write lock before failing with
/// "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`] on SQLite. Cloning is cheap: it clones the pool handle.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// `get_connection`'s batched readers (see `point_reads`); none for an in-memory database.
    point_reads: Option<Arc<point_reads::PointReaders>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating the file if missing) the database at `url` and applies the embedded
    /// migrations. Accepts `sqlite://path`, `sqlite:path` and `sqlite::memory:`.
    // No `err` here: the caller reports a failed start-up, once.
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// [`SqliteStore::connect`] with settings: `pool_size` sizes a file database's pool (an
    /// in-memory one always has exactly one connection); SQLite has no statement timeout.
    #[tracing::instrument(skip_all)]
    pub async fn connect_with(url: &str, settings: &StoreOptions) -> StoreResult<Self> {
        let in_memory = is_in_memory(url);
        let mut options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        // An in-memory database has no WAL (SQLite would answer "memory" anyway); asking only
        // for files keeps the intent readable.
        if !in_memory {
            options = options.journal_mode(SqliteJournalMode::Wal);
            private_files(options.get_filename())?;
        }

        let pool_options = if in_memory {
            // The database lives as long as its last connection: keep exactly one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new()
                .max_connections(settings.pool_size.unwrap_or(FILE_POOL_SIZE).max(1))
        }
        // No ping before each use: a SQLite connection is a file handle in this process, it
        // cannot have gone away, and the ping is a round trip to its worker thread that would
        // double the cost of a credential cache miss.
        .test_before_acquire(false);
        // The readers open the file the pool created: never a new, empty one if it moved.
        let point_reads = (!in_memory).then(|| {
            Arc::new(point_reads::PointReaders::new(
                options.clone().create_if_missing(false),
            ))
        });
        let pool = pool_options.connect_with(options).await?;

        let store = Self { pool, point_reads };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations embedded from `migrations/sqlite` that are not applied yet.
    /// Idempotent; [`SqliteStore::connect`] already calls it.
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// The underlying pool, for tools and tests that need raw SQL.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Makes the database file private to its owner (mode 0600) before SQLite opens it: created
/// so when missing, tightened when an older file (or its `-wal`/`-shm`) is readable by others.
/// SQLite creates the `-wal` and `-shm` files with the database file's mode, so they follow.
/// The file holds end users' emails, hashes and sealed secrets; no other local user needs it.
fn private_files(path: &std::path::Path) -> StoreResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(StoreError::Database(sqlx::Error::Io(err))),
        }
        let mut names = vec![path.as_os_str().to_owned()];
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            names.push(name);
        }
        for name in names {
            let Ok(metadata) = std::fs::metadata(&name) else {
                continue;
            };
            if metadata.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600))
                    .map_err(|err| StoreError::Database(sqlx::Error::Io(err)))?;
                tracing::warn!(
                    path = %std::path::Path::new(&name).display(),
                    "the database file was readable by other users; it is now mode 0600"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether `url` names an in-memory database (`sqlite::memory:` or `?mode=memory`).
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// One process owns a SQLite database: its own writes invalidate its caches directly.
    fn changes(&self) -> Option<ChangeFeed> {
        None
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
            "INSERT INTO api_keys (key_hash, label, created_at, updated_at) VALUES (?, ?, ?, ?)",
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
        // Insert, else update: each statement decides on its own, so two callers creating
        // the same key cannot both be told they created it (a read first could not promise
        // that), and created_at survives a replace. A delete between the two tries again.
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO integrations (key, config, created_at, updated_at) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(sealed_config)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(true);
            }
            let updated =
                sqlx::query("UPDATE integrations SET config = ?, updated_at = ? WHERE key = ?")
                    .bind(sealed_config)
                    .bind(now)
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
            if updated.rows_affected() == 1 {
                return Ok(false);
            }
        }
        Err(StoreError::Conflict(
            "the integration was created and deleted again meanwhile",
        ))
    }

    #[tracing::instrument(skip_all, fields(key = %key), err)]
    async fn delete_integration(&self, key: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM integrations WHERE key = ?")
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
        let result = sqlx::query(
            "UPDATE integrations SET config = ?, updated_at = ? WHERE key = ? AND config = ?",
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
        // A closed pool closes the store: its readers must not go on answering.
        if let Some(readers) = &self.point_reads
            && !self.pool.is_closed()
            && let Some(read) = readers.get(id).await
        {
            return read;
        }
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

#[cfg(test)]
mod tests {
    use super::is_in_memory;

    #[test]
    fn recognises_in_memory_urls() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://:memory:"));
        assert!(is_in_memory("sqlite://file.db?mode=memory"));
        assert!(!is_in_memory("sqlite://tether.db"));
        assert!(!is_in_memory("sqlite:data/tether.db"));
    }
}
