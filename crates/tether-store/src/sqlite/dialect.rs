//! What SQLite says differently from PostgreSQL. The statements in `sql/` are shared by both
//! backends; only the text (and the one lock) that the dialects truly disagree on lives here,
//! next to its PostgreSQL twin in `postgres/dialect.rs`.

use sqlx::Transaction;

use super::{Db, Pool};
use crate::{StoreError, StoreResult};

/// Nothing to do: SQLite has one writer at a time, so the count and the insert of a flow
/// start (one statement) cannot interleave with another start's.
pub(super) async fn lock_session(_tx: &mut Transaction<'_, Db>, _session: &str) -> StoreResult<()> {
    Ok(())
}

/// Counts the sealed values in `table.column` per key id. The key id's length is the header's
/// second byte: a byte below 0x80 cast to text is the character of that code point (ids are at
/// most 64 bytes long).
pub(super) fn sealed_count_sql(table: &str, column: &str) -> String {
    format!(
        "SELECT CAST(substr({column}, 3, unicode(CAST(substr({column}, 2, 1) AS TEXT))) \
         AS TEXT) AS key_id, count(*) FROM {table} \
         WHERE length({column}) > 2 AND substr({column}, 1, 1) = x'01' GROUP BY key_id"
    )
}

/// Creates or replaces an integration's sealed configuration; true when it was created.
/// SQLite has no way to tell an upsert's insert from its update, so: insert, else update. Each
/// statement decides on its own, so two callers creating the same key cannot both be told they
/// created it (a read first could not promise that), and created_at survives a replace. A
/// delete between the two tries again.
pub(super) async fn put_integration(
    pool: &Pool,
    key: &str,
    sealed_config: &[u8],
    now: i64,
) -> StoreResult<bool> {
    for _ in 0..3 {
        let inserted = sqlx::query(
            "INSERT INTO integrations (key, config, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(sealed_config)
        .bind(now)
        .execute(pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(true);
        }
        let updated =
            sqlx::query("UPDATE integrations SET config = $1, updated_at = $2 WHERE key = $3")
                .bind(sealed_config)
                .bind(now)
                .bind(key)
                .execute(pool)
                .await?;
        if updated.rows_affected() == 1 {
            return Ok(false);
        }
    }
    Err(StoreError::Conflict(
        "the integration was created and deleted again meanwhile",
    ))
}
