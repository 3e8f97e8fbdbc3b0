//! Connect sessions and OAuth flow states: short-lived rows that bridge the redirect to a
//! provider and its callback. Token and `state` values only ever arrive here hashed.

use sqlx::SqlitePool;

use crate::rows::{FlowRecord, SessionRecord};
use crate::{AttemptWindow, ConnectSessionRow, ConsumeOutcome, FlowStateRow, StoreResult};

pub(super) async fn insert_connect_session(
    pool: &SqlitePool,
    s: &ConnectSessionRow,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO connect_sessions (token_hash, end_user_id, end_user_email, \
         end_user_display_name, integrations, return_url, expires_at, created_at, updated_at, \
         browser_hash, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(&s.browser_hash)
    .bind(s.completed_at)
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
         return_url, expires_at, created_at, browser_hash, completed_at FROM connect_sessions \
         WHERE token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(record.map(Into::into))
}

pub(super) async fn insert_flow_state(
    pool: &SqlitePool,
    f: &FlowStateRow,
    max_per_session: u32,
) -> StoreResult<bool> {
    // The count and the insert are one statement, so the cap holds under concurrent starts.
    let result = sqlx::query(
        "INSERT INTO flow_states (state_hash, browser_hash, session_token_hash, integration, \
         end_user_id, pkce_verifier, redirect_uri, return_url, display, expires_at, created_at, \
         updated_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
         WHERE (SELECT COUNT(*) FROM flow_states WHERE session_token_hash = ?) < ?",
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
    .bind(&f.session_token_hash)
    .bind(i64::from(max_per_session))
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn bind_connect_session(
    pool: &SqlitePool,
    token_hash: &str,
    browser_hash: &str,
    now: i64,
) -> StoreResult<Option<String>> {
    // COALESCE keeps the first binding: the statement is the decision, not a read before it.
    let bound: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE connect_sessions SET browser_hash = COALESCE(browser_hash, ?), updated_at = ? \
         WHERE token_hash = ? RETURNING browser_hash",
    )
    .bind(browser_hash)
    .bind(now)
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(bound.flatten())
}

pub(super) async fn complete_connect_session(
    pool: &SqlitePool,
    token_hash: &str,
    now: i64,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE connect_sessions SET completed_at = ?, updated_at = ? \
         WHERE token_hash = ? AND completed_at IS NULL",
    )
    .bind(now)
    .bind(now)
    .bind(token_hash)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn reopen_connect_session(
    pool: &SqlitePool,
    token_hash: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE connect_sessions SET completed_at = NULL, updated_at = ? WHERE token_hash = ?",
    )
    .bind(now)
    .bind(token_hash)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn count_session_attempt(
    pool: &SqlitePool,
    token_hash: &str,
    now: i64,
    window_secs: i64,
) -> StoreResult<Option<AttemptWindow>> {
    // A window that began at or before `now - window_secs` is over: this check opens a new one.
    let counted: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE connect_sessions SET \
           attempts = CASE WHEN attempts_since IS NULL OR attempts_since <= ? THEN 1 \
                      ELSE attempts + 1 END, \
           attempts_since = CASE WHEN attempts_since IS NULL OR attempts_since <= ? THEN ? \
                            ELSE attempts_since END, \
           updated_at = ? \
         WHERE token_hash = ? RETURNING attempts, attempts_since",
    )
    .bind(now - window_secs)
    .bind(now - window_secs)
    .bind(now)
    .bind(now)
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(counted.map(|(attempts, since)| AttemptWindow {
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        since,
    }))
}

pub(super) async fn flow_states_after(
    pool: &SqlitePool,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<FlowStateRow>> {
    let records: Vec<FlowRecord> = sqlx::query_as(
        "SELECT state_hash, browser_hash, session_token_hash, integration, end_user_id, \
         pkce_verifier, redirect_uri, return_url, display, expires_at, created_at \
         FROM flow_states WHERE state_hash > ? ORDER BY state_hash LIMIT ?",
    )
    .bind(after.unwrap_or(""))
    .bind(crate::paging::LISTS.at_least_one(limit))
    .fetch_all(pool)
    .await?;
    Ok(records.into_iter().map(Into::into).collect())
}

pub(super) async fn reseal_flow_verifier(
    pool: &SqlitePool,
    state_hash: &str,
    old: &[u8],
    new: &[u8],
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE flow_states SET pkce_verifier = ? WHERE state_hash = ? AND pkce_verifier = ?",
    )
    .bind(new)
    .bind(state_hash)
    .bind(old)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
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
