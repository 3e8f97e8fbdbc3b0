//! SQLite implementation of [`Store`](crate::Store): one database file (or `sqlite::memory:`
//! for tests) in WAL mode behind a small sqlx pool.
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

/// Row locks a claim of webhook events skips rather than waits for: none on SQLite, whose one
/// writer at a time takes no row locks.
macro_rules! skip_locked {
    () => {
        ""
    };
}

#[path = "../sql/agent_tokens.rs"]
mod agent_tokens;
#[path = "../sql/auth.rs"]
mod auth;
mod budget_take;
#[path = "../sql/budgets.rs"]
mod budgets;
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
mod point_reads;
#[path = "../sql/sealing.rs"]
mod sealing;
#[path = "../sql/store.rs"]
mod store;
#[path = "../sql/webhooks.rs"]
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{ChangeFeed, ConnectionRow, StoreError, StoreOptions, StoreResult};

/// Connections kept for a file database. SQLite has one writer at a time anyway; the extra
/// connections let WAL readers proceed while a write is in progress.
const FILE_POOL_SIZE: u32 = 8;

/// How long a statement waits for another connection's write lock before failing with
/// "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`](crate::Store) on SQLite. Cloning is cheap: it clones the pool handle.
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

impl SqliteStore {
    /// None: one process owns a SQLite database, and its own writes invalidate its caches
    /// directly.
    fn change_feed(&self) -> Option<ChangeFeed> {
        None
    }

    /// `get_connection` through the batched readers (see `point_reads`), when there are some.
    async fn read_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
        // A closed pool closes the store: its readers must not go on answering.
        if let Some(readers) = &self.point_reads
            && !self.pool.is_closed()
            && let Some(read) = readers.get(id).await
        {
            return read;
        }
        connections::get(&self.pool, id).await
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
