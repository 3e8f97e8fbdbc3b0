//! What SQLite says differently from PostgreSQL. The statements in `sql/` are shared by both
//! backends; only the text (and the one lock) that the dialects truly disagree on lives here,
//! next to its PostgreSQL twin in `postgres/dialect.rs`.

use sqlx::Transaction;

use super::Db;
use crate::StoreResult;

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
