//! What PostgreSQL says differently from SQLite. The statements in `sql/` are shared by both
//! backends; only the text (and the one lock) that the dialects truly disagree on lives here,
//! next to its SQLite twin in `sqlite/dialect.rs`.

use sqlx::Transaction;

use super::Db;
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
