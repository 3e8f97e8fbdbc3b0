//! Connect sessions and OAuth flow states, on either backend: short-lived rows that bridge the
//! redirect to a provider and its callback, on whichever instance each lands. Token and `state`
//! values only ever arrive here hashed.

use super::Pool;

use crate::rows::{FlowRecord, SessionRecord};
use crate::{AttemptWindow, ConnectSessionRow, ConsumeOutcome, FlowStateRow, StoreResult};

pub(super) async fn insert_connect_session(pool: &Pool, s: &ConnectSessionRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO connect_sessions (token_hash, end_user_id, end_user_email, \
         end_user_display_name, integrations, return_url, expires_at, created_at, updated_at, \
         browser_hash, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(s.token_hash.as_str())
    .bind(&s.end_user_id)
    .bind(&s.end_user_email)
    .bind(&s.end_user_display_name)
    .bind(&s.integrations)
    .bind(&s.return_url)
    .bind(s.expires_at)
    .bind(s.created_at)
    .bind(s.created_at)
    .bind(s.browser_hash.as_deref())
    .bind(s.completed_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn get_connect_session(
    pool: &Pool,
    token_hash: &str,
) -> StoreResult<Option<ConnectSessionRow>> {
    let record: Option<SessionRecord> = sqlx::query_as(
        "SELECT token_hash, end_user_id, end_user_email, end_user_display_name, integrations, \
         return_url, expires_at, created_at, browser_hash, completed_at FROM connect_sessions \
         WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(record.map(Into::into))
}

pub(super) async fn insert_flow_state(
    pool: &Pool,
    f: &FlowStateRow,
    max_per_session: u32,
) -> StoreResult<bool> {
    // The count and the insert are one statement, but on PostgreSQL two instances' statements
    // may each count before the other inserts: the backend makes the starts of one session
    // take turns for the rest of the transaction (see `dialect::lock_session`).
    let mut tx = pool.begin().await?;
    super::dialect::lock_session(&mut tx, &f.session_token_hash).await?;
    let result = sqlx::query(
        "INSERT INTO flow_states (state_hash, browser_hash, session_token_hash, integration, \
         end_user_id, pkce_verifier, redirect_uri, return_url, display, expires_at, created_at, \
         updated_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
         WHERE (SELECT COUNT(*) FROM flow_states WHERE session_token_hash = $13) < $14",
    )
    .bind(f.state_hash.as_str())
    .bind(f.browser_hash.as_str())
    .bind(f.session_token_hash.as_str())
    .bind(&f.integration)
    .bind(&f.end_user_id)
    .bind(f.pkce_verifier.as_bytes())
    .bind(&f.redirect_uri)
    .bind(&f.return_url)
    .bind(&f.display)
    .bind(f.expires_at)
    .bind(f.created_at)
    .bind(f.created_at)
    .bind(f.session_token_hash.as_str())
    .bind(i64::from(max_per_session))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn bind_connect_session(
    pool: &Pool,
    token_hash: &str,
    browser_hash: &str,
    now: i64,
) -> StoreResult<Option<String>> {
    // COALESCE keeps the first binding: the statement is the decision, not a read before it.
    let bound: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE connect_sessions SET browser_hash = COALESCE(browser_hash, $1), updated_at = $2 \
         WHERE token_hash = $3 RETURNING browser_hash",
    )
    .bind(browser_hash)
    .bind(now)
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    Ok(bound.flatten())
}

pub(super) async fn complete_connect_session(
    pool: &Pool,
    token_hash: &str,
    now: i64,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE connect_sessions SET completed_at = $1, updated_at = $2 \
         WHERE token_hash = $3 AND completed_at IS NULL",
    )
    .bind(now)
    .bind(now)
    .bind(token_hash)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn reopen_connect_session(
    pool: &Pool,
    token_hash: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE connect_sessions SET completed_at = NULL, updated_at = $1 WHERE token_hash = $2",
    )
    .bind(now)
    .bind(token_hash)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn count_session_attempt(
    pool: &Pool,
    token_hash: &str,
    now: i64,
    window_secs: i64,
) -> StoreResult<Option<AttemptWindow>> {
    // A window that began at or before `now - window_secs` is over: this check opens a new one.
    let counted: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE connect_sessions SET \
           attempts = CASE WHEN attempts_since IS NULL OR attempts_since <= $1 THEN 1 \
                      ELSE attempts + 1 END, \
           attempts_since = CASE WHEN attempts_since IS NULL OR attempts_since <= $2 THEN $3 \
                            ELSE attempts_since END, \
           updated_at = $4 \
         WHERE token_hash = $5 RETURNING attempts, attempts_since",
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
    pool: &Pool,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<FlowStateRow>> {
    let records: Vec<FlowRecord> = sqlx::query_as(
        "SELECT state_hash, browser_hash, session_token_hash, integration, end_user_id, \
         pkce_verifier, redirect_uri, return_url, display, expires_at, created_at \
         FROM flow_states WHERE state_hash > $1 ORDER BY state_hash LIMIT $2",
    )
    .bind(after.unwrap_or(""))
    .bind(crate::paging::LISTS.at_least_one(limit))
    .fetch_all(pool)
    .await?;
    Ok(records.into_iter().map(Into::into).collect())
}

pub(super) async fn reseal_flow_verifier(
    pool: &Pool,
    state_hash: &str,
    old: &[u8],
    new: &[u8],
) -> StoreResult<bool> {
    let result = sqlx::query(
        "UPDATE flow_states SET pkce_verifier = $1 WHERE state_hash = $2 AND pkce_verifier = $3",
    )
    .bind(new)
    .bind(state_hash)
    .bind(old)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(super) async fn consume_flow_state(
    pool: &Pool,
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
        sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM flow_states WHERE state_hash = $1")
            .bind(state_hash)
            .fetch_optional(pool)
            .await?;
    Ok(match present {
        Some(_) => ConsumeOutcome::WrongBrowser,
        None => ConsumeOutcome::Unknown,
    })
}

pub(super) async fn purge_expired(pool: &Pool, now: i64) -> StoreResult<u64> {
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
