//! Connect sessions and OAuth flow states: short-lived rows that bridge the redirect to a
//! provider and its callback. Token and `state` values only ever arrive here hashed.

use sqlx::SqlitePool;

use crate::{ConnectSessionRow, ConsumeOutcome, FlowStateRow, StoreResult};

/// A `connect_sessions` row as SQLite returns it.
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

/// A `flow_states` row as SQLite returns it.
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
    pool: &SqlitePool,
    s: &ConnectSessionRow,
) -> StoreResult<()> {
    // Sessions are never modified, so `updated_at` starts (and stays) at `created_at`.
    sqlx::query(
        "INSERT INTO connect_sessions (token_hash, end_user_id, end_user_email, \
         end_user_display_name, integrations, return_url, expires_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    pool: &SqlitePool,
    token_hash: &str,
) -> StoreResult<Option<ConnectSessionRow>> {
    let record: Option<SessionRecord> = sqlx::query_as(
        "SELECT token_hash, end_user_id, end_user_email, end_user_display_name, integrations, \
         return_url, expires_at, created_at FROM connect_sessions WHERE token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(record.map(Into::into))
}

pub(super) async fn insert_flow_state(pool: &SqlitePool, f: &FlowStateRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO flow_states (state_hash, browser_hash, session_token_hash, integration, \
         end_user_id, pkce_verifier, redirect_uri, return_url, display, expires_at, created_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    pool: &SqlitePool,
    state_hash: &str,
    browser_hash: &str,
) -> StoreResult<ConsumeOutcome> {
    // The delete IS the check: of several concurrent callers, only the one whose DELETE
    // removed the row gets it back. `fetch_all` (not `fetch_optional`) steps the statement to
    // completion, so the delete is committed before we look at the result; the primary key
    // guarantees at most one row.
    let mut taken: Vec<FlowRecord> = sqlx::query_as(
        "DELETE FROM flow_states WHERE state_hash = ? AND browser_hash = ? \
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
    let present: Option<i64> = sqlx::query_scalar("SELECT 1 FROM flow_states WHERE state_hash = ?")
        .bind(state_hash)
        .fetch_optional(pool)
        .await?;
    Ok(match present {
        Some(_) => ConsumeOutcome::WrongBrowser,
        None => ConsumeOutcome::Unknown,
    })
}

pub(super) async fn purge_expired(pool: &SqlitePool, now: i64) -> StoreResult<u64> {
    let flows = sqlx::query("DELETE FROM flow_states WHERE expires_at < ?")
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
    let sessions = sqlx::query("DELETE FROM connect_sessions WHERE expires_at < ?")
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(flows + sessions)
}
