//! The store's error type. Callers map [`StoreError::Conflict`] and friends to their own
//! errors; the detail of a database error is for logs, never for an API client.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule would be broken (e.g. a second connection for the same end user).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A stored value could not be read back (corrupt row, unknown enum text).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database failed or is unreachable.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations failed to apply.
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        // SQLite reports UNIQUE and PRIMARY KEY violations alike; both are conflicts.
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            return StoreError::Conflict("unique constraint");
        }
        StoreError::Database(err)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(err)
    }
}
