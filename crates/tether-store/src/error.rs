//! The store's error type. Callers map [`StoreError::Conflict`] and friends to their own
//! errors; the detail of a database error is for logs, never for an API client.

/// What went wrong in the store.
///
/// `Debug` is written by hand: sqlx's `Debug` of a PostgreSQL error prints the server's
/// `detail` ("Failing row contains (...)": whole rows, sealed credentials and hashes included)
/// and `where`, and errors are logged with `?err`. Here a database error shows its SQLSTATE
/// and message only, any other sqlx error its `Display`.
#[derive(thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule would be broken (e.g. a second connection for the same end user).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A stored value could not be read back (corrupt row, unknown enum text).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database cannot be reached right now (refused or dropped connection, no pooled
    /// connection within the acquire timeout, server shutting down, statement timeout). Worth
    /// retrying later; nothing was changed by the failed call.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database URL or its options are malformed.
    #[error("invalid database URL")]
    InvalidUrl(#[source] sqlx::Error),
    /// The database failed.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// The database has a migration this build does not know: a newer Tether migrated it.
    #[error(
        "the database is at migration {0}, which this build does not know (a newer Tether \
         migrated it); run that version or a newer one"
    )]
    UnknownMigration(i64),
    /// Migrations failed to apply.
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// The database is closed to this caller: what a write gets when the task that would have
    /// run it stopped with its runtime.
    pub fn closed() -> Self {
        StoreError::Unavailable(sqlx::Error::PoolClosed)
    }
}

impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(what) => f.debug_tuple("Conflict").field(what).finish(),
            StoreError::Corrupt(what) => f.debug_tuple("Corrupt").field(what).finish(),
            StoreError::Unavailable(err) => {
                f.debug_tuple("Unavailable").field(&SafeSqlx(err)).finish()
            }
            StoreError::InvalidUrl(err) => {
                f.debug_tuple("InvalidUrl").field(&SafeSqlx(err)).finish()
            }
            StoreError::Database(err) => f.debug_tuple("Database").field(&SafeSqlx(err)).finish(),
            StoreError::UnknownMigration(version) => {
                f.debug_tuple("UnknownMigration").field(version).finish()
            }
            // A failed migration statement's error Displays as its message only.
            StoreError::Migrate(err) => f.debug_tuple("Migrate").field(&err.to_string()).finish(),
        }
    }
}

/// A `sqlx::Error` shown without the row data a database error's detail may carry.
struct SafeSqlx<'a>(&'a sqlx::Error);

impl std::fmt::Debug for SafeSqlx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            // PostgreSQL keeps row values out of the primary message; they go to `detail`.
            sqlx::Error::Database(db) => f
                .debug_struct("Database")
                .field("code", &db.code())
                .field("message", &db.message())
                .finish_non_exhaustive(),
            other => f.debug_tuple("Sqlx").field(&other.to_string()).finish(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            // SQLite reports UNIQUE and PRIMARY KEY violations alike, PostgreSQL as 23505;
            // both are conflicts.
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("unique constraint")
            }
            sqlx::Error::Database(db) if db.code().is_some_and(|c| is_unavailable_code(&c)) => {
                StoreError::Unavailable(err)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            sqlx::Error::Configuration(_) => StoreError::InvalidUrl(err),
            _ => StoreError::Database(err),
        }
    }
}

/// PostgreSQL SQLSTATEs that mean "not now" rather than "wrong": connection exceptions (class
/// 08), too many connections, the server shutting down or starting, a cancelled statement
/// (the statement timeout).
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "53300" | "57P01" | "57P02" | "57P03" | "57014")
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::VersionMissing(version) => {
                StoreError::UnknownMigration(version)
            }
            sqlx::migrate::MigrateError::Execute(inner) => match StoreError::from(inner) {
                StoreError::Database(inner) => {
                    StoreError::Migrate(sqlx::migrate::MigrateError::Execute(inner))
                }
                other => other,
            },
            other => StoreError::Migrate(other),
        }
    }
}

impl StoreError {
    /// Whether the database was unreachable, so the call may succeed later unchanged.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_plain_variants_is_readable() {
        assert_eq!(
            format!("{:?}", StoreError::Conflict("unique constraint")),
            r#"Conflict("unique constraint")"#
        );
        assert_eq!(
            format!("{:?}", StoreError::Corrupt("bad status".into())),
            r#"Corrupt("bad status")"#
        );
        assert_eq!(
            format!("{:?}", StoreError::UnknownMigration(42)),
            "UnknownMigration(42)"
        );
        assert_eq!(
            format!("{:?}", StoreError::from(sqlx::Error::PoolTimedOut)),
            format!(
                "Unavailable(Sqlx({:?}))",
                sqlx::Error::PoolTimedOut.to_string()
            )
        );
    }
}
