//! Connect sessions and OAuth flow states on PostgreSQL: short-lived rows that bridge the
//! redirect to a provider and its callback, on whichever instance each lands. Token and `state`
//! values only ever arrive here hashed.

use sqlx::PgPool;

use crate::{ConnectSessionRow, ConsumeOutcome, FlowStateRow, StoreResult};

/// A `connect_sessions` row as PostgreSQL returns it.
#[derive(sqlx::FromRow)]
struct SessionRecord {
    token_hash: String,
    end_user_id: String,
    end_user_email: Option<String>,
    end_user_display_name: Option<String>,
    integrations: Option<String>,
    return_url: Option<String>,
    expires_at: i64,
    created_at: i64,
}

impl From<SessionRecord> for ConnectSessionRow {
    fn from(r: SessionRecord) -> Self {
        ConnectSessionRow {
            token_hash: r.token_hash,
            end_user_id: r.end_user_id,
            end_user_email: r.end_user_email,
            end_user_display_name: r.end_user_display_name,
            integrations: r.integrations,
            return_url: r.return_url,
            expires_at: r.expires_at,
            created_at: r.created_at,
        }
    }
}

/// A `flow_states` row as PostgreSQL returns it.
#[derive(sqlx::FromRow)]
struct FlowRecord {
    state_hash: String,
    browser_hash: String,
    session_token_hash: String,
    integration: String,
    end_user_id: String,
    pkce_verifier: Vec<u8>,
    redirect_uri: String,
    return_url: Option<String>,
    display: String,
    expires_at: i64,
    created_at: i64,
}

impl From<FlowRecord> for FlowStateRow {
    fn from(r: FlowRecord) -> Self {
        FlowStateRow {
            state_hash: r.state_hash,
            browser_hash: r.browser_hash,
            session_token_hash: r.session_token_hash,
            integration: r.integration,
            end_user_id: r.end_user_id,
            pkce_verifier: r.pkce_verifier,
            redirect_uri: r.redirect_uri,
            return_url: r.return_url,
            display: r.display,
            expires_at: r.expires_at,
            created_at: r.created_at,
        }
    }
}

pub(super) async fn insert_connect_session(
    pool: &PgPool,
    s: &ConnectSessionRow,
) -> StoreResult<()> {
    // Sessions are never modified, so `updated_at` starts (and stays) at `created_at`.
    sqlx::query(
        "INSERT INTO connect_sessions (token_hash, end_user_id, end_user_email, \
         end_user_display_name, integrations, return_url, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&s.token_hash)
    .bind(&s.end_user_id)
    .bind(&s.end_user_email)
    .bind(&s.end_user_display_name)
    .bind(&s.integrations)
    .bind(&s.return_url)
    .bind(s.expires_at)
    .bind(s.created_at)
    .bind(s.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn get_connect_session(
    pool: &PgPool,
    token_hash: &str,
) -> StoreResult<Option<ConnectSessionRow>> {
    let record: Option<SessionRecord> = sqlx::query_as(
        "SELECT token_hash, end_user_id, end_user_email, end_user_display_name, integrations, \
         return_url, expires_at, created_at FROM connect_sessions WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(record.map(Into::into))
}

pub(super) async fn insert_flow_state(pool: &PgPool, f: &FlowStateRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO flow_states (state_hash, browser_hash, session_token_hash, integration, \
         end_user_id, pkce_verifier, redirect_uri, return_url, display, expires_at, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&f.state_hash)
    .bind(&f.browser_hash)
    .bind(&f.session_token_hash)
    .bind(&f.integration)
    .bind(&f.end_user_id)
    .bind(&f.pkce_verifier)
    .bind(&f.redirect_uri)
    .bind(&f.return_url)
    .bind(&f.display)
    .bind(f.expires_at)
    .bind(f.created_at)
    .bind(f.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn consume_flow_state(
    pool: &PgPool,
    state_hash: &str,
    browser_hash: &str,
) -> StoreResult<ConsumeOutcome> {
    // The delete IS the check: of several concurrent callers (on any instance), only the one
    // whose DELETE removed the row gets it back; the others wait for its row lock and then
    // find the row gone. The primary key guarantees at most one row.
    let mut taken: Vec<FlowRecord> = sqlx::query_as(
        "DELETE FROM flow_states WHERE state_hash = $1 AND browser_hash = $2 \
         RETURNING state_hash, browser_hash, session_token_hash, integration, end_user_id, \
         pkce_verifier, redirect_uri, return_url, display, expires_at, created_at",
    )
    .bind(state_hash)
    .bind(browser_hash)
    .fetch_all(pool)
    .await?;
    if let Some(record) = taken.pop() {
        return Ok(ConsumeOutcome::Consumed(record.into()));
    }

    // Nothing taken: only tells the caller why. A state still present belongs to another
    // browser and is deliberately left in place.
    let present: Option<i64> =
        sqlx::query_scalar("SELECT 1::BIGINT FROM flow_states WHERE state_hash = $1")
            .bind(state_hash)
            .fetch_optional(pool)
            .await?;
    Ok(match present {
        Some(_) => ConsumeOutcome::WrongBrowser,
        None => ConsumeOutcome::Unknown,
    })
}

pub(super) async fn purge_expired(pool: &PgPool, now: i64) -> StoreResult<u64> {
    let flows = sqlx::query("DELETE FROM flow_states WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
    let sessions = sqlx::query("DELETE FROM connect_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(flows + sessions)
}
