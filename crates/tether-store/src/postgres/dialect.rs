//! What PostgreSQL says differently from SQLite. The statements in `sql/` are shared by both
//! backends; only the text (and the one lock) that the dialects truly disagree on lives here,
//! next to its SQLite twin in `sqlite/dialect.rs`.

use sqlx::Transaction;

use super::{Db, Pool};
use crate::StoreResult;

/// Makes the flow starts of one connect session take turns until the transaction ends, with a
/// transaction-scoped advisory lock on the session (other sessions are not held up): two
/// instances' statements could otherwise each count the session's flows before the other
/// inserts.
pub(super) async fn lock_session(tx: &mut Transaction<'_, Db>, session: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(session)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Counts the sealed values in `table.column` per key id. The key id's length is the header's
/// second byte; the id follows it.
pub(super) fn sealed_count_sql(table: &str, column: &str) -> String {
    format!(
        "SELECT convert_from(substring({column} FROM 3 FOR get_byte({column}, 1)), 'UTF8') \
         AS key_id, count(*) FROM {table} \
         WHERE octet_length({column}) > 2 AND get_byte({column}, 0) = 1 GROUP BY 1"
    )
}

/// Creates or replaces an integration's sealed configuration; true when it was created. One
/// upsert that tells insert from update: a row version written by this very INSERT has no
/// deleting transaction (xmax = 0); one updated by ON CONFLICT does. created_at survives a
/// replace.
pub(super) async fn put_integration(
    pool: &Pool,
    key: &str,
    sealed_config: &[u8],
    now: i64,
) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "INSERT INTO integrations (key, config, created_at, updated_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (key) DO UPDATE SET config = excluded.config, \
         updated_at = excluded.updated_at RETURNING (xmax = 0)",
    )
    .bind(key)
    .bind(sealed_config)
    .bind(now)
    .fetch_one(pool)
    .await?)
}
