//! The sealing key and the count of sealed values per key id, on either backend (see
//! `crate::sealing`). On PostgreSQL announcing notifies every instance at commit (the trigger
//! of `migrations/postgres/*_sealing_key.sql`).

use super::Pool;

use crate::StoreResult;
use crate::sealing::{SEALED_COLUMNS, SealedCount, counts};

pub(super) async fn sealing_key(pool: &Pool) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT key_id FROM sealing_key WHERE singleton = 1")
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn announce(pool: &Pool, key_id: &str, now: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sealing_key (singleton, key_id, announced_at) VALUES (1, $1, $2) \
         ON CONFLICT (singleton) DO UPDATE SET key_id = EXCLUDED.key_id, \
         announced_at = EXCLUDED.announced_at",
    )
    .bind(key_id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn announce_if_none(pool: &Pool, key_id: &str, now: i64) -> StoreResult<String> {
    // The no-op update makes RETURNING give the row that won, ours or an earlier one.
    Ok(sqlx::query_scalar(
        "INSERT INTO sealing_key (singleton, key_id, announced_at) VALUES (1, $1, $2) \
         ON CONFLICT (singleton) DO UPDATE SET key_id = sealing_key.key_id RETURNING key_id",
    )
    .bind(key_id)
    .bind(now)
    .fetch_one(pool)
    .await?)
}

pub(super) async fn sealed_value_counts(pool: &Pool) -> StoreResult<Vec<SealedCount>> {
    let mut rows = Vec::new();
    for (what, table, column) in SEALED_COLUMNS {
        // Reading bytes out of a blob is where the dialects differ.
        let sql = super::dialect::sealed_count_sql(table, column);
        let found: Vec<(String, i64)> = sqlx::query_as(&sql).fetch_all(pool).await?;
        rows.extend(
            found
                .into_iter()
                .map(|(key_id, count)| (what.to_owned(), key_id, count)),
        );
    }
    Ok(counts(rows))
}
