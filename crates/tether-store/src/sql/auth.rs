//! [`AuthStore`] on either backend (compiled once per backend, see `sqlite/mod.rs` and
//! `postgres/mod.rs`): on PostgreSQL shared by every instance on the database.

use super::ThisStore;
use crate::auth::{ConsoleSessionRow, StoredApiKey};
use crate::{AttemptWindow, AuthStore, StoreResult, TokenHash};

impl AuthStore for ThisStore {
    #[tracing::instrument(skip_all, err)]
    async fn count_auth_failures(
        &self,
        buckets: &[String],
        now: i64,
        window_secs: i64,
    ) -> StoreResult<Vec<AttemptWindow>> {
        let mut windows = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            // One conditional upsert per bucket: a window that began at or before
            // `now - window_secs` is over, and this failure opens a new one.
            let (since, failures): (i64, i64) = sqlx::query_as(
                "INSERT INTO auth_failures (bucket, window_start, failures) VALUES ($1, $2, 1) \
                 ON CONFLICT (bucket) DO UPDATE SET \
                   failures = CASE WHEN auth_failures.window_start <= $3 THEN 1 \
                              ELSE auth_failures.failures + 1 END, \
                   window_start = CASE WHEN auth_failures.window_start <= $4 THEN excluded.window_start \
                                  ELSE auth_failures.window_start END \
                 RETURNING window_start, failures",
            )
            .bind(bucket)
            .bind(now)
            .bind(now - window_secs)
            .bind(now - window_secs)
            .fetch_one(&self.pool)
            .await?;
            windows.push(AttemptWindow {
                attempts: u32::try_from(failures).unwrap_or(u32::MAX),
                since,
            });
        }
        Ok(windows)
    }

    #[tracing::instrument(skip_all, err)]
    async fn purge_auth_failures(&self, before: i64) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM auth_failures WHERE window_start < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    #[tracing::instrument(skip_all, err)]
    async fn insert_console_session(&self, session: &ConsoleSessionRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, key_fingerprint, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(session.id_hash.as_str())
        .bind(&session.key_fingerprint)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn console_session_active(&self, id_hash: &TokenHash, now: i64) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT expires_at FROM console_sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    #[tracing::instrument(skip_all, err)]
    async fn end_console_session(&self, id_hash: &TokenHash) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all, err)]
    async fn end_console_sessions_of_key(&self, key_fingerprint: &str) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM console_sessions WHERE key_fingerprint = $1")
            .bind(key_fingerprint)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    #[tracing::instrument(skip_all, err)]
    async fn end_all_console_sessions(&self) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM console_sessions")
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    #[tracing::instrument(skip_all, err)]
    async fn purge_console_sessions(&self, now: i64) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    #[tracing::instrument(skip_all, err)]
    async fn stored_api_keys(&self) -> StoreResult<Vec<StoredApiKey>> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT key_hash, label, created_at, revoked_at FROM api_keys \
             ORDER BY created_at, key_hash",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(key_hash, label, created_at, revoked_at)| StoredApiKey {
                key_hash: TokenHash::from_hex(key_hash),
                label,
                created_at,
                revoked_at,
            })
            .collect())
    }

    #[tracing::instrument(skip_all, err)]
    async fn revoke_stored_api_keys(&self, now: i64) -> StoreResult<Vec<TokenHash>> {
        let revoked: Vec<String> = sqlx::query_scalar(
            "UPDATE api_keys SET revoked_at = $1, updated_at = $2 WHERE revoked_at IS NULL \
             RETURNING key_hash",
        )
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(revoked.into_iter().map(TokenHash::from_hex).collect())
    }
}
