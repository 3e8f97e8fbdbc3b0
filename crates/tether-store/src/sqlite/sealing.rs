//! The sealing key and the count of sealed values per key id, on SQLite (see `crate::sealing`).

use sqlx::SqlitePool;

use crate::StoreResult;
use crate::sealing::{SEALED_COLUMNS, SealedCount, counts};

pub(super) async fn sealing_key(pool: &SqlitePool) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT key_id FROM sealing_key WHERE singleton = 1")
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn announce(pool: &SqlitePool, key_id: &str, now: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sealing_key (singleton, key_id, announced_at) VALUES (1, ?, ?) \
         ON CONFLICT (singleton) DO UPDATE SET key_id = excluded.key_id, \
         announced_at = excluded.announced_at",
    )
    .bind(key_id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn announce_if_none(
    pool: &SqlitePool,
    key_id: &str,
    now: i64,
) -> StoreResult<String> {
    // One statement: of two instances starting at once, the first insert wins and both read it.
    Ok(sqlx::query_scalar(
        "INSERT INTO sealing_key (singleton, key_id, announced_at) VALUES (1, ?, ?) \
         ON CONFLICT (singleton) DO UPDATE SET singleton = singleton RETURNING key_id",
    )
    .bind(key_id)
    .bind(now)
    .fetch_one(pool)
    .await?)
}

pub(super) async fn sealed_value_counts(pool: &SqlitePool) -> StoreResult<Vec<SealedCount>> {
    let mut rows = Vec::new();
    for (what, table, column) in SEALED_COLUMNS {
        // The key id's length is the header's second byte: a byte below 0x80 cast to text is
        // the character of that code point (ids are at most 64 bytes long).
        let sql = format!(
            "SELECT CAST(substr({column}, 3, unicode(CAST(substr({column}, 2, 1) AS TEXT))) \
             AS TEXT) AS key_id, count(*) FROM {table} \
             WHERE length({column}) > 2 AND substr({column}, 1, 1) = x'01' GROUP BY key_id"
        );
        let found: Vec<(String, i64)> = sqlx::query_as(&sql).fetch_all(pool).await?;
        rows.extend(
            found
                .into_iter()
                .map(|(key_id, count)| (what.to_owned(), key_id, count)),
        );
    }
    Ok(counts(rows))
}
