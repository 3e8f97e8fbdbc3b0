//! The sealing key and the count of sealed values per key id, on PostgreSQL (see
//! `crate::sealing`). Announcing notifies every instance at commit (the trigger of
//! `migrations/postgres/*_sealing_key.sql`).

use sqlx::PgPool;

use crate::StoreResult;
use crate::sealing::{SEALED_COLUMNS, SealedCount, counts};

pub(super) async fn sealing_key(pool: &PgPool) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT key_id FROM sealing_key WHERE singleton = 1")
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn announce(pool: &PgPool, key_id: &str, now: i64) -> StoreResult<()> {
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

pub(super) async fn announce_if_none(pool: &PgPool, key_id: &str, now: i64) -> StoreResult<String> {
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

pub(super) async fn sealed_value_counts(pool: &PgPool) -> StoreResult<Vec<SealedCount>> {
    let mut rows = Vec::new();
    for (what, table, column) in SEALED_COLUMNS {
        // The key id's length is the header's second byte; the id follows it.
        let sql = format!(
            "SELECT convert_from(substring({column} FROM 3 FOR get_byte({column}, 1)), 'UTF8') \
             AS key_id, count(*) FROM {table} \
             WHERE octet_length({column}) > 2 AND get_byte({column}, 0) = 1 GROUP BY 1"
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
