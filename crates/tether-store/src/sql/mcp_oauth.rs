//! [`McpOAuthStore`] on either backend (compiled once per backend, see `sqlite/mod.rs` and
//! `postgres/mod.rs`). Single use is one conditional `UPDATE`/`DELETE ... RETURNING`; a reuse
//! revokes the grant's whole family in the transaction that noticed it.

use sqlx::Transaction;

use super::{Db, Pool, ThisStore};
use crate::mcp_oauth::{
    CodeRedemption, McpAccessToken, McpAuthRequestRow, McpClientRow, McpCodeRow, McpGrantRow,
    McpOAuthStore, McpRefreshToken, RefreshRotation,
};
use crate::{Sealed, StoreError, StoreResult, TokenHash};

/// The columns of a request, in [`RequestRecord`]'s order.
const REQUEST_COLUMNS: &str = "request_hash, client_id, client_name, redirect_uri, state, \
     code_challenge, scope, resource, expires_at, created_at";

/// Which rows of `mcp_oauth_clients` [`McpOAuthStore::purge_mcp_clients`] deletes (`$1`: the
/// registration cut, `$2`: the end cut). Indexed by `20261207000009_mcp_client_purge.sql`.
const PURGEABLE_CLIENTS: &str = "mcp_oauth_clients.created_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM mcp_oauth_requests r \
       WHERE r.client_id = mcp_oauth_clients.client_id) \
     AND NOT EXISTS (SELECT 1 FROM agent_tokens t \
       WHERE t.mcp_client_id = mcp_oauth_clients.client_id \
         AND t.expires_at >= $2 AND (t.revoked_at IS NULL OR t.revoked_at >= $2)) \
     AND NOT EXISTS (SELECT 1 FROM mcp_oauth_grants g \
       WHERE g.client_id = mcp_oauth_clients.client_id \
         AND (g.revoked_at >= $2 \
           OR (g.revoked_at IS NULL AND (g.created_at >= $2 \
             OR EXISTS (SELECT 1 FROM mcp_oauth_codes k \
               WHERE k.grant_id = g.id AND k.expires_at >= $2) \
             OR EXISTS (SELECT 1 FROM mcp_oauth_refresh_tokens f \
               WHERE f.grant_id = g.id AND f.expires_at >= $2)))))";

/// The columns of a grant, in [`GrantRecord`]'s order.
const GRANT_COLUMNS: &str = "id, client_id, client_name, end_user_id, access, integrations, \
     scope, resource, created_at, revoked_at";

#[derive(sqlx::FromRow)]
struct RequestRecord {
    request_hash: String,
    client_id: String,
    client_name: Option<String>,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    scope: String,
    resource: String,
    expires_at: i64,
    created_at: i64,
}

impl From<RequestRecord> for McpAuthRequestRow {
    fn from(r: RequestRecord) -> Self {
        McpAuthRequestRow {
            request_hash: TokenHash::from_hex(r.request_hash),
            client_id: r.client_id,
            client_name: r.client_name,
            redirect_uri: r.redirect_uri,
            state: r.state,
            code_challenge: r.code_challenge,
            scope: r.scope,
            resource: r.resource,
            expires_at: r.expires_at,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct GrantRecord {
    id: String,
    client_id: String,
    client_name: Option<String>,
    end_user_id: String,
    access: String,
    integrations: Option<String>,
    scope: String,
    resource: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<GrantRecord> for McpGrantRow {
    fn from(r: GrantRecord) -> Self {
        McpGrantRow {
            id: r.id,
            client_id: r.client_id,
            client_name: r.client_name,
            end_user_id: r.end_user_id,
            access: r.access,
            integrations: r.integrations,
            scope: r.scope,
            resource: r.resource,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// Attempts before a rotation that keeps losing to deadlocks gives up.
const DEADLOCK_RETRIES: usize = 3;

fn is_deadlock(err: &StoreError) -> bool {
    matches!(err, StoreError::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("40P01"))
}

async fn rotate_refresh_token_once(
    pool: &Pool,
    token_hash: &TokenHash,
    now: i64,
) -> StoreResult<RefreshRotation> {
    let mut tx = pool.begin().await?;
    let taken: Option<String> = sqlx::query_scalar(
        "UPDATE mcp_oauth_refresh_tokens SET used_at = $1, updated_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3 \
         RETURNING grant_id",
    )
    .bind(now)
    .bind(token_hash.as_str())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match taken {
        Some(grant_id) => match grant_in(&mut tx, &grant_id).await? {
            Some(grant) if grant.revoked_at.is_none() => RefreshRotation::Rotated(grant),
            _ => RefreshRotation::Invalid,
        },
        None => {
            let spent: Option<String> = sqlx::query_scalar(
                "SELECT grant_id FROM mcp_oauth_refresh_tokens WHERE token_hash = $1 \
                 AND (used_at IS NOT NULL OR revoked_at IS NOT NULL)",
            )
            .bind(token_hash.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            match spent {
                Some(grant_id) => {
                    revoke_family(&mut tx, &grant_id, now).await?;
                    RefreshRotation::Reused { grant_id }
                }
                None => RefreshRotation::Invalid,
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Revokes a grant and every token of it, inside the caller's transaction; true when the
/// grant was live.
async fn revoke_family(
    tx: &mut Transaction<'_, Db>,
    grant_id: &str,
    now: i64,
) -> StoreResult<bool> {
    let revoked = sqlx::query(
        "UPDATE mcp_oauth_grants SET revoked_at = $1, updated_at = $1 \
         WHERE id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(grant_id)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        > 0;
    sqlx::query(
        "UPDATE mcp_oauth_refresh_tokens SET revoked_at = $1, updated_at = $1 \
         WHERE grant_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(grant_id)
    .execute(&mut **tx)
    .await?;
    // The access tokens are the MCP server's agent tokens; their grant_id names the family.
    sqlx::query(
        "UPDATE agent_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(grant_id)
    .execute(&mut **tx)
    .await?;
    Ok(revoked)
}

async fn grant_in(
    tx: &mut Transaction<'_, Db>,
    grant_id: &str,
) -> StoreResult<Option<McpGrantRow>> {
    let record: Option<GrantRecord> = sqlx::query_as(&format!(
        "SELECT {GRANT_COLUMNS} FROM mcp_oauth_grants WHERE id = $1"
    ))
    .bind(grant_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(record.map(McpGrantRow::from))
}

impl McpOAuthStore for ThisStore {
    #[tracing::instrument(skip_all, err)]
    async fn insert_mcp_client(&self, client: &McpClientRow, now: i64) -> StoreResult<()> {
        let redirect_uris = serde_json::to_string(&client.redirect_uris)
            .map_err(|_| StoreError::Conflict("redirect_uris"))?;
        sqlx::query(
            "INSERT INTO mcp_oauth_clients (client_id, client_name, redirect_uris, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&client.client_id)
        .bind(&client.client_name)
        .bind(redirect_uris)
        .bind(client.created_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn get_mcp_client(&self, client_id: &str) -> StoreResult<Option<McpClientRow>> {
        let row: Option<(String, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT client_id, client_name, redirect_uris, created_at FROM mcp_oauth_clients \
             WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(client_id, client_name, uris, created_at)| McpClientRow {
                client_id,
                client_name,
                // Written by this module as a JSON array; anything else is no URI at all.
                redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
                created_at,
            }),
        )
    }

    #[tracing::instrument(skip_all, err)]
    async fn insert_mcp_request(&self, r: &McpAuthRequestRow, now: i64) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO mcp_oauth_requests ({REQUEST_COLUMNS}, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(r.request_hash.as_str())
        .bind(&r.client_id)
        .bind(&r.client_name)
        .bind(&r.redirect_uri)
        .bind(&r.state)
        .bind(&r.code_challenge)
        .bind(&r.scope)
        .bind(&r.resource)
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn get_mcp_request(
        &self,
        request_hash: &TokenHash,
    ) -> StoreResult<Option<McpAuthRequestRow>> {
        let record: Option<RequestRecord> = sqlx::query_as(&format!(
            "SELECT {REQUEST_COLUMNS} FROM mcp_oauth_requests WHERE request_hash = $1"
        ))
        .bind(request_hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(record.map(McpAuthRequestRow::from))
    }

    #[tracing::instrument(skip_all, err)]
    async fn take_mcp_request(
        &self,
        request_hash: &TokenHash,
    ) -> StoreResult<Option<McpAuthRequestRow>> {
        let record: Option<RequestRecord> = sqlx::query_as(&format!(
            "DELETE FROM mcp_oauth_requests WHERE request_hash = $1 RETURNING {REQUEST_COLUMNS}"
        ))
        .bind(request_hash.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(record.map(McpAuthRequestRow::from))
    }

    #[tracing::instrument(skip_all, err)]
    async fn insert_mcp_grant(
        &self,
        g: &McpGrantRow,
        code: &McpCodeRow,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO mcp_oauth_grants ({GRANT_COLUMNS}, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&g.id)
        .bind(&g.client_id)
        .bind(&g.client_name)
        .bind(&g.end_user_id)
        .bind(&g.access)
        .bind(&g.integrations)
        .bind(&g.scope)
        .bind(&g.resource)
        .bind(g.created_at)
        .bind(g.revoked_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO mcp_oauth_codes (code_hash, grant_id, redirect_uri, code_challenge, \
             expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(code.code_hash.as_str())
        .bind(&code.grant_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(code.expires_at)
        .bind(code.created_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err)]
    async fn redeem_mcp_code(
        &self,
        code_hash: &TokenHash,
        now: i64,
    ) -> StoreResult<CodeRedemption> {
        let mut tx = self.pool.begin().await?;
        let taken: Option<(String, String, String, i64, i64)> = sqlx::query_as(
            "UPDATE mcp_oauth_codes SET used_at = $1, updated_at = $1 \
             WHERE code_hash = $2 AND used_at IS NULL \
             RETURNING grant_id, redirect_uri, code_challenge, expires_at, created_at",
        )
        .bind(now)
        .bind(code_hash.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match taken {
            Some((grant_id, redirect_uri, code_challenge, expires_at, created_at)) => {
                let grant = grant_in(&mut tx, &grant_id).await?;
                match grant {
                    Some(grant) if expires_at > now && grant.revoked_at.is_none() => {
                        CodeRedemption::Redeemed(
                            McpCodeRow {
                                code_hash: code_hash.clone(),
                                grant_id,
                                redirect_uri,
                                code_challenge,
                                expires_at,
                                created_at,
                            },
                            Box::new(grant),
                        )
                    }
                    // Expired: used up all the same, so it cannot be tried again.
                    _ => CodeRedemption::Invalid,
                }
            }
            None => {
                let used: Option<String> = sqlx::query_scalar(
                    "SELECT grant_id FROM mcp_oauth_codes WHERE code_hash = $1 \
                     AND used_at IS NOT NULL",
                )
                .bind(code_hash.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                match used {
                    Some(grant_id) => {
                        revoke_family(&mut tx, &grant_id, now).await?;
                        CodeRedemption::Reused { grant_id }
                    }
                    None => CodeRedemption::Invalid,
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    #[tracing::instrument(skip_all, err)]
    async fn rotate_mcp_refresh_token(
        &self,
        token_hash: &TokenHash,
        now: i64,
    ) -> StoreResult<RefreshRotation> {
        // Racing presentations of one family's tokens lock its rows in different orders (the
        // token taken, then the whole family revoked); PostgreSQL then aborts one of them as a
        // deadlock. The aborted one changed nothing, and its retry sees the winner's commit.
        let mut attempts = 0;
        loop {
            match rotate_refresh_token_once(&self.pool, token_hash, now).await {
                Err(err) if attempts < DEADLOCK_RETRIES && is_deadlock(&err) => attempts += 1,
                outcome => return outcome,
            }
        }
    }

    #[tracing::instrument(skip_all, err)]
    async fn issue_mcp_tokens(
        &self,
        grant_id: &str,
        access: &McpAccessToken,
        refresh: &McpRefreshToken,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // The grant's own columns, so the token carries exactly what was approved.
        let inserted = sqlx::query(
            "INSERT INTO agent_tokens (id, token_hash, end_user_id, access, integrations, \
             created_at, expires_at, mcp_client_id, grant_id) \
             SELECT $1, $2, end_user_id, access, integrations, $3, $4, client_id, id \
             FROM mcp_oauth_grants WHERE id = $5 AND revoked_at IS NULL",
        )
        .bind(&access.id)
        .bind(access.token_hash.as_str())
        .bind(now)
        .bind(access.expires_at)
        .bind(grant_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO mcp_oauth_refresh_tokens (token_hash, grant_id, expires_at, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(refresh.token_hash.as_str())
        .bind(grant_id)
        .bind(refresh.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, err)]
    async fn revoke_mcp_grant(&self, grant_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let revoked = revoke_family(&mut tx, grant_id, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    #[tracing::instrument(skip_all, err)]
    async fn mcp_grant_of_refresh_token(
        &self,
        token_hash: &TokenHash,
        client_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT t.grant_id FROM mcp_oauth_refresh_tokens t \
             JOIN mcp_oauth_grants g ON g.id = t.grant_id \
             WHERE t.token_hash = $1 AND g.client_id = $2",
        )
        .bind(token_hash.as_str())
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    #[tracing::instrument(skip_all, err)]
    async fn revoke_mcp_access_token(
        &self,
        token_hash: &TokenHash,
        client_id: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE agent_tokens SET revoked_at = $1 \
             WHERE token_hash = $2 AND mcp_client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(token_hash.as_str())
        .bind(client_id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all, err)]
    async fn get_mcp_grant(&self, grant_id: &str) -> StoreResult<Option<McpGrantRow>> {
        let record: Option<GrantRecord> = sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS} FROM mcp_oauth_grants WHERE id = $1"
        ))
        .bind(grant_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(record.map(McpGrantRow::from))
    }

    #[tracing::instrument(skip_all, err)]
    async fn list_mcp_grants(
        &self,
        end_user_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<McpGrantRow>> {
        let records: Vec<GrantRecord> = sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS} FROM mcp_oauth_grants \
             WHERE end_user_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(end_user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(records.into_iter().map(McpGrantRow::from).collect())
    }

    #[tracing::instrument(skip_all, err)]
    async fn purge_mcp_oauth(&self, now: i64) -> StoreResult<u64> {
        let mut purged = 0;
        // Codes and refresh tokens are kept while they could still be presented again, so a
        // reuse inside their lifetime is recognised; after it, a reuse is just an unknown one.
        for statement in [
            "DELETE FROM mcp_oauth_requests WHERE expires_at < $1",
            "DELETE FROM mcp_oauth_codes WHERE expires_at < $1",
            "DELETE FROM mcp_oauth_refresh_tokens WHERE expires_at < $1",
        ] {
            purged += sqlx::query(statement)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(purged)
    }

    #[tracing::instrument(skip_all, err)]
    async fn purge_mcp_clients(&self, unused_before: i64, ended_before: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        // Their grants first (every one ended, or the client would be kept); their codes and
        // refresh tokens go with them (ON DELETE CASCADE). Grants of clients named by a
        // metadata document URL have no client row, so they are never matched here.
        sqlx::query(&format!(
            "DELETE FROM mcp_oauth_grants WHERE client_id IN (SELECT client_id \
             FROM mcp_oauth_clients WHERE {PURGEABLE_CLIENTS})"
        ))
        .bind(unused_before)
        .bind(ended_before)
        .execute(&mut *tx)
        .await?;
        let purged = sqlx::query(&format!(
            "DELETE FROM mcp_oauth_clients WHERE {PURGEABLE_CLIENTS}"
        ))
        .bind(unused_before)
        .bind(ended_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(purged)
    }

    #[tracing::instrument(skip_all, err)]
    async fn mcp_signing_key(&self, candidate: &Sealed, now: i64) -> StoreResult<Sealed> {
        sqlx::query(
            "INSERT INTO mcp_oauth_signing_key (singleton, sealed_key, created_at) \
             VALUES (1, $1, $2) ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(candidate.as_bytes())
        .bind(now)
        .execute(&self.pool)
        .await?;
        let stored: Vec<u8> =
            sqlx::query_scalar("SELECT sealed_key FROM mcp_oauth_signing_key WHERE singleton = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(Sealed::from_bytes(stored))
    }

    #[tracing::instrument(skip_all, err)]
    async fn stored_mcp_signing_key(&self) -> StoreResult<Option<Sealed>> {
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT sealed_key FROM mcp_oauth_signing_key WHERE singleton = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(stored.map(Sealed::from_bytes))
    }

    #[tracing::instrument(skip_all, err)]
    async fn reseal_mcp_signing_key(&self, old: &Sealed, new: &Sealed) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE mcp_oauth_signing_key SET sealed_key = $1 \
             WHERE singleton = 1 AND sealed_key = $2",
        )
        .bind(new.as_bytes())
        .bind(old.as_bytes())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}
