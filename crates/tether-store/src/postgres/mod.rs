//! PostgreSQL implementation of [`Store`](crate::Store): one database shared by every Tether
//! instance behind a load balancer, through a sqlx pool per instance.
//!
//! Every decision that must hold across instances is ONE conditional statement, never a read
//! followed by a write: taking a flow state (`DELETE ... RETURNING`), a credentials
//! compare-and-swap and a refresh lease (`UPDATE ... WHERE version/lease matches`, which
//! PostgreSQL re-checks against the latest row version when another writer committed first),
//! and claiming webhook events (`FOR UPDATE SKIP LOCKED`). Migrations run under an advisory
//! lock, so instances starting together apply them once. Changes that other instances cache
//! are announced by triggers with NOTIFY and heard through
//! [`Store::changes`](crate::Store::changes) (see `changes.rs`).
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

/// Row locks a claim of webhook events skips rather than waits for: rows another instance is
/// claiming right now.
macro_rules! skip_locked {
    () => {
        " FOR UPDATE SKIP LOCKED"
    };
}

#[path = "../sql/agent_tokens.rs"]
mod agent_tokens;
#[path = "../sql/auth.rs"]
mod auth;
mod budget_take;
#[path = "../sql/budgets.rs"]
mod budgets;
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
#[path = "../sql/lifecycle.rs"]
mod lifecycle;
#[path = "../sql/mcp_oauth.rs"]
mod mcp_oauth;
#[path = "../sql/sealing.rs"]
mod sealing;
#[path = "../sql/store.rs"]
mod store;
#[path = "../sql/webhooks.rs"]
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::{ChangeFeed, ConnectionRow, StoreOptions, StoreResult};

/// Connections per instance when `[database] pool_size` is not set.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// How long a statement may run when `[database] statement_timeout` is not set. Long enough for
/// any of the store's statements under load; short enough that a stuck database answers 503
/// instead of holding requests.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request waits for a pooled connection (or a new one) before the store reports
/// the database unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`](crate::Store) on PostgreSQL. Cloning is cheap: it clones the pool handle.
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

impl PgStore {
    /// Other instances' changes, announced by triggers with NOTIFY (see `changes.rs`).
    fn change_feed(&self) -> Option<ChangeFeed> {
        Some(changes::subscribe(
            PgConnectOptions::clone(&self.options),
            self.channel.clone(),
        ))
    }

    async fn read_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
        connections::get(&self.pool, id).await
    }
}
