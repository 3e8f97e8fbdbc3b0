//! Agent tokens: the bearer tokens an AI agent presents to the MCP server. Each acts for one
//! end user, with read or write access, on some or all of that user's integrations, until it
//! expires or is revoked. Minted by the app through the API, or issued to an MCP OAuth client
//! (then `mcp_client_id` and `grant_id` say which client and grant: revoking a grant revokes
//! every token it issued).
//!
//! Only a token's hash is stored. Every MCP request looks its token up here (one indexed
//! read), so a revocation through any instance is refused by every instance at its next
//! request: there is no cache to invalidate.
//!
//! A trait of its own beside [`crate::Store`] (which requires it); the statements live in
//! `sql/agent_tokens.rs`, compiled for each backend.

use std::future::Future;

use crate::any::forward_to_backend;
use crate::{AnyStore, StoreError, StoreResult, TokenHash};

/// What an agent token allows on its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentAccess {
    /// Only reads (the proxy's GET and HEAD).
    Read,
    /// Any method.
    Write,
}

impl AgentAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentAccess::Read => "read",
            AgentAccess::Write => "write",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(AgentAccess::Read),
            "write" => Some(AgentAccess::Write),
            _ => None,
        }
    }
}

/// One agent token, as stored (its hash, never the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentTokenRow {
    /// `agt_` followed by a random id; safe to show and log.
    pub id: String,
    /// SHA-256 (hex) of the token.
    pub token_hash: TokenHash,
    pub end_user_id: String,
    pub access: AgentAccess,
    /// The integration keys it reaches; `None`: every integration of the end user.
    pub integrations: Option<Vec<String>>,
    pub created_at: i64,
    pub expires_at: i64,
    /// When it was revoked; a revoked token is never accepted again.
    pub revoked_at: Option<i64>,
    /// The MCP OAuth client it was issued to; `None` for a token the app minted.
    pub mcp_client_id: Option<String>,
    /// The OAuth grant it came from, for revoking a grant's whole family.
    pub grant_id: Option<String>,
}

impl AgentTokenRow {
    /// Whether it is accepted at `now`: not revoked and not expired.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// The agent tokens' storage. Revocations are single statements, never a read then a write.
pub trait AgentTokenStore {
    /// Stores a new token. A second row with the same id or hash is
    /// [`StoreError::Conflict`], never a second row.
    fn insert_agent_token(
        &self,
        token: &AgentTokenRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The token with this hash when it is active at `now` (not revoked, `expires_at` after
    /// `now`); `None` for an unknown, revoked or expired one alike.
    fn find_active_agent_token(
        &self,
        token_hash: &TokenHash,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<AgentTokenRow>>> + Send;

    /// The token with this id, whatever its state.
    fn get_agent_token(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<AgentTokenRow>>> + Send;

    /// Revokes one token at `now`. Idempotent: a token already revoked keeps its first
    /// `revoked_at`. Answers whether the token exists (revoked before or now).
    fn revoke_agent_token(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Revokes at `now` every token issued from `grant_id` not revoked yet; returns how many.
    fn revoke_agent_tokens_of_grant(
        &self,
        grant_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The end user's tokens, revoked and expired ones included, newest first, at most
    /// `limit`.
    fn list_agent_tokens(
        &self,
        end_user_id: &str,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<AgentTokenRow>>> + Send;

    /// Deletes tokens that expired or were revoked before `before`; returns how many.
    fn purge_agent_tokens(&self, before: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

impl AgentTokenStore for AnyStore {
    forward_to_backend! {
        fn insert_agent_token(&self, token: &AgentTokenRow) -> StoreResult<()>;
        fn find_active_agent_token(&self, token_hash: &TokenHash, now: i64)
            -> StoreResult<Option<AgentTokenRow>>;
        fn get_agent_token(&self, id: &str) -> StoreResult<Option<AgentTokenRow>>;
        fn revoke_agent_token(&self, id: &str, now: i64) -> StoreResult<bool>;
        fn revoke_agent_tokens_of_grant(&self, grant_id: &str, now: i64) -> StoreResult<u64>;
        fn list_agent_tokens(&self, end_user_id: &str, limit: u32)
            -> StoreResult<Vec<AgentTokenRow>>;
        fn purge_agent_tokens(&self, before: i64) -> StoreResult<u64>;
    }
}

/// The columns of [`AgentTokenRecord`], in a macro so that `concat!` can build `&'static`
/// SQL from it.
macro_rules! agent_token_columns {
    () => {
        "id, token_hash, end_user_id, access, integrations, created_at, expires_at, \
         revoked_at, mcp_client_id, grant_id"
    };
}
pub(crate) use agent_token_columns;

/// An `agent_tokens` row as either backend returns it; access and integrations still text.
#[derive(sqlx::FromRow)]
pub(crate) struct AgentTokenRecord {
    id: String,
    token_hash: String,
    end_user_id: String,
    access: String,
    integrations: Option<String>,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    mcp_client_id: Option<String>,
    grant_id: Option<String>,
}

impl TryFrom<AgentTokenRecord> for AgentTokenRow {
    type Error = StoreError;

    fn try_from(r: AgentTokenRecord) -> Result<Self, StoreError> {
        let access = AgentAccess::parse(&r.access).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "agent token {}: unknown access {:?}",
                r.id, r.access
            ))
        })?;
        let integrations = r
            .integrations
            .as_deref()
            .map(serde_json::from_str::<Vec<String>>)
            .transpose()
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "agent token {}: integrations are not a JSON array of strings",
                    r.id
                ))
            })?;
        Ok(AgentTokenRow {
            id: r.id,
            token_hash: TokenHash::from_hex(r.token_hash),
            end_user_id: r.end_user_id,
            access,
            integrations,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            mcp_client_id: r.mcp_client_id,
            grant_id: r.grant_id,
        })
    }
}

/// The integrations as the column stores them: a JSON array, or NULL for every integration.
pub(crate) fn integrations_column(integrations: Option<&[String]>) -> Option<String> {
    // Serialising a list of strings cannot fail.
    integrations.map(|keys| serde_json::Value::from(keys.to_vec()).to_string())
}
