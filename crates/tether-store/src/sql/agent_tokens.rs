//! [`AgentTokenStore`] on either backend (compiled once per backend, see `sqlite/mod.rs` and
//! `postgres/mod.rs`): on PostgreSQL shared by every instance on the database.

use super::ThisStore;
use crate::agent_tokens::{AgentTokenRecord, agent_token_columns, integrations_column};
use crate::{AgentTokenRow, AgentTokenStore, StoreResult, TokenHash};

impl AgentTokenStore for ThisStore {
    #[tracing::instrument(skip_all, err)]
    async fn insert_agent_token(&self, token: &AgentTokenRow) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO agent_tokens (",
            agent_token_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&token.id)
        .bind(token.token_hash.as_str())
        .bind(&token.end_user_id)
        .bind(token.access.as_str())
        .bind(integrations_column(token.integrations.as_deref()))
        .bind(token.created_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .bind(&token.mcp_client_id)
        .bind(&token.grant_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn find_active_agent_token(
        &self,
        token_hash: &TokenHash,
        now: i64,
    ) -> StoreResult<Option<AgentTokenRow>> {
        let found: Option<AgentTokenRecord> = sqlx::query_as(concat!(
            "SELECT ",
            agent_token_columns!(),
            " FROM agent_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2"
        ))
        .bind(token_hash.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        found.map(AgentTokenRow::try_from).transpose()
    }

    #[tracing::instrument(skip_all, err)]
    async fn get_agent_token(&self, id: &str) -> StoreResult<Option<AgentTokenRow>> {
        let found: Option<AgentTokenRecord> = sqlx::query_as(concat!(
            "SELECT ",
            agent_token_columns!(),
            " FROM agent_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        found.map(AgentTokenRow::try_from).transpose()
    }

    #[tracing::instrument(skip_all, err)]
    async fn revoke_agent_token(&self, id: &str, now: i64) -> StoreResult<bool> {
        // COALESCE keeps the first revocation's time: revoking twice changes nothing, and the
        // row still counts as found.
        let result = sqlx::query(
            "UPDATE agent_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all, err)]
    async fn revoke_agent_tokens_of_grant(&self, grant_id: &str, now: i64) -> StoreResult<u64> {
        let result = sqlx::query(
            "UPDATE agent_tokens SET revoked_at = $1 \
             WHERE grant_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(grant_id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_agent_tokens(
        &self,
        end_user_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<AgentTokenRow>> {
        let rows: Vec<AgentTokenRecord> = sqlx::query_as(concat!(
            "SELECT ",
            agent_token_columns!(),
            " FROM agent_tokens WHERE end_user_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(end_user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AgentTokenRow::try_from).collect()
    }

    #[tracing::instrument(skip_all, err)]
    async fn purge_agent_tokens(&self, before: i64) -> StoreResult<u64> {
        let result =
            sqlx::query("DELETE FROM agent_tokens WHERE expires_at < $1 OR revoked_at < $2")
                .bind(before)
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }
}
