//! What Tether keeps as the OAuth authorization server of its MCP server: registered clients,
//! authorization requests waiting for the app's approval, grants, authorization codes and
//! refresh tokens, and the key that signs requests sent to the app.
//!
//! Every secret arrives hashed ([`TokenHash`]) and never leaves as anything else; the signing
//! key arrives sealed by the vault. Access tokens are rows of `agent_tokens` (the MCP server's
//! own table) with `mcp_client_id` and `grant_id` set, written here in the same transaction as
//! the refresh token they come with, so a grant's tokens are revoked together.
//!
//! Every decision that must hold across instances (a code used once, a refresh token rotated
//! once, a request approved once) is one conditional statement, never a read then a write.

use std::future::Future;

use crate::any::forward_to_backend;
use crate::{AnyStore, Sealed, StoreResult, TokenHash};

/// A client registered through dynamic client registration (RFC 7591).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpClientRow {
    pub client_id: String,
    pub client_name: Option<String>,
    /// The exact redirect URIs the client registered.
    pub redirect_uris: Vec<String>,
    pub created_at: i64,
}

/// An authorization request waiting for the app to approve or deny it (single use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpAuthRequestRow {
    /// SHA-256 of the request's opaque id (the id travels only in the signed parameter).
    pub request_hash: TokenHash,
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uri: String,
    /// The client's `state`, returned to it as given.
    pub state: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// Space-separated scopes asked for.
    pub scope: String,
    /// The protected resource the tokens are for (RFC 8707).
    pub resource: String,
    pub expires_at: i64,
    pub created_at: i64,
}

/// One end user's approval for one client: the family of its codes and tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpGrantRow {
    /// `mcpg_` + random.
    pub id: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub end_user_id: String,
    /// `read` or `write`.
    pub access: String,
    /// JSON array of integration keys; `None` = every integration.
    pub integrations: Option<String>,
    pub scope: String,
    pub resource: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// An authorization code, as issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpCodeRow {
    pub code_hash: TokenHash,
    pub grant_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub expires_at: i64,
    pub created_at: i64,
}

/// An access token issued to an MCP client: an `agent_tokens` row of its grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpAccessToken {
    /// `agt_` + random, like every agent token.
    pub id: String,
    pub token_hash: TokenHash,
    pub expires_at: i64,
}

/// A refresh token, as issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpRefreshToken {
    pub token_hash: TokenHash,
    pub expires_at: i64,
}

/// What presenting an authorization code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use of a live code of a live grant: the code and its grant (boxed: the other
    /// outcomes are small).
    Redeemed(McpCodeRow, Box<McpGrantRow>),
    /// The code was used before: its grant has just been revoked with every token of it.
    Reused { grant_id: String },
    /// No such code, or it expired, or its grant is revoked.
    Invalid,
}

/// What presenting a refresh token found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The token was live and is now used; the grant it belongs to.
    Rotated(McpGrantRow),
    /// The token was used or revoked before: its grant has just been revoked with every token
    /// of it (RFC 9700 section 4.14.2, refresh token rotation).
    Reused { grant_id: String },
    /// No such token, or it expired.
    Invalid,
}

/// The MCP authorization server's storage.
pub trait McpOAuthStore {
    /// Stores a registered client.
    fn insert_mcp_client(
        &self,
        client: &McpClientRow,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The registered client with this id, if any.
    fn get_mcp_client(
        &self,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<McpClientRow>>> + Send;

    /// Stores an authorization request waiting for approval.
    fn insert_mcp_request(
        &self,
        request: &McpAuthRequestRow,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The waiting request with this hash, expired or not (the caller decides).
    fn get_mcp_request(
        &self,
        request_hash: &TokenHash,
    ) -> impl Future<Output = StoreResult<Option<McpAuthRequestRow>>> + Send;

    /// Takes a waiting request exactly once (deleted and returned atomically): of two
    /// approvals, or an approval and a denial, one gets it. Expiry is the caller's check.
    fn take_mcp_request(
        &self,
        request_hash: &TokenHash,
    ) -> impl Future<Output = StoreResult<Option<McpAuthRequestRow>>> + Send;

    /// Stores an approved grant and its authorization code, together.
    fn insert_mcp_grant(
        &self,
        grant: &McpGrantRow,
        code: &McpCodeRow,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Marks a code used, once. A code used before revokes its grant (and every token of it)
    /// in the same transaction.
    fn redeem_mcp_code(
        &self,
        code_hash: &TokenHash,
        now: i64,
    ) -> impl Future<Output = StoreResult<CodeRedemption>> + Send;

    /// Marks a refresh token used, once. A token used or revoked before revokes its grant (and
    /// every token of it) in the same transaction.
    fn rotate_mcp_refresh_token(
        &self,
        token_hash: &TokenHash,
        now: i64,
    ) -> impl Future<Output = StoreResult<RefreshRotation>> + Send;

    /// Issues an access token (an `agent_tokens` row carrying the grant's end user, access,
    /// integrations and client) and a refresh token for `grant_id`, in one transaction, and
    /// only while the grant is not revoked: false, writing nothing, when it is.
    fn issue_mcp_tokens(
        &self,
        grant_id: &str,
        access: &McpAccessToken,
        refresh: &McpRefreshToken,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Revokes a grant: the grant, its refresh tokens and its access tokens. True when the
    /// grant existed and was not revoked yet.
    fn revoke_mcp_grant(
        &self,
        grant_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The grant a refresh token (live or not) belongs to, if it is one of `client_id`'s.
    fn mcp_grant_of_refresh_token(
        &self,
        token_hash: &TokenHash,
        client_id: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// Revokes one access token issued to `client_id` (RFC 7009); true when it was live.
    fn revoke_mcp_access_token(
        &self,
        token_hash: &TokenHash,
        client_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The grant with this id, revoked or not.
    fn get_mcp_grant(
        &self,
        grant_id: &str,
    ) -> impl Future<Output = StoreResult<Option<McpGrantRow>>> + Send;

    /// One end user's grants not revoked, newest first, at most `limit`.
    fn list_mcp_grants(
        &self,
        end_user_id: &str,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<McpGrantRow>>> + Send;

    /// Deletes requests and codes expired before `now`, and refresh tokens expired before
    /// `now`; returns how many rows.
    fn purge_mcp_oauth(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Deletes the registered clients created before `unused_before` that nothing keeps:
    /// no authorization request waiting, no agent token still live at `ended_before`
    /// (neither expired nor revoked before it), and no grant that is live or ended at or after
    /// `ended_before`. A grant ends when it is revoked; one never revoked has ended once none
    /// of its codes and refresh tokens expires at or after `ended_before` (an expired one may
    /// be gone already: the end is what the stored rows still say). A client that never got
    /// a grant is deleted once it is older than `unused_before`. The grants of a deleted
    /// client go with it (their codes and refresh tokens too). Returns how many clients.
    fn purge_mcp_clients(
        &self,
        unused_before: i64,
        ended_before: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The sealed request-signing key: `candidate` when none is stored yet (a first start),
    /// otherwise the one already there, so every instance ends up with the same key.
    fn mcp_signing_key(
        &self,
        candidate: &Sealed,
        now: i64,
    ) -> impl Future<Output = StoreResult<Sealed>> + Send;

    /// The sealed request-signing key as stored, if any (for a key rotation).
    fn stored_mcp_signing_key(&self) -> impl Future<Output = StoreResult<Option<Sealed>>> + Send;

    /// Replaces the sealed signing key by `new` (the same key sealed under another vault key)
    /// only while it is still `old`; answers whether it did.
    fn reseal_mcp_signing_key(
        &self,
        old: &Sealed,
        new: &Sealed,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

impl McpOAuthStore for AnyStore {
    forward_to_backend! {
        fn insert_mcp_client(&self, client: &McpClientRow, now: i64) -> StoreResult<()>;
        fn get_mcp_client(&self, client_id: &str) -> StoreResult<Option<McpClientRow>>;
        fn insert_mcp_request(&self, request: &McpAuthRequestRow, now: i64) -> StoreResult<()>;
        fn get_mcp_request(&self, request_hash: &TokenHash)
            -> StoreResult<Option<McpAuthRequestRow>>;
        fn take_mcp_request(&self, request_hash: &TokenHash)
            -> StoreResult<Option<McpAuthRequestRow>>;
        fn insert_mcp_grant(&self, grant: &McpGrantRow, code: &McpCodeRow, now: i64)
            -> StoreResult<()>;
        fn redeem_mcp_code(&self, code_hash: &TokenHash, now: i64) -> StoreResult<CodeRedemption>;
        fn rotate_mcp_refresh_token(&self, token_hash: &TokenHash, now: i64)
            -> StoreResult<RefreshRotation>;
        fn issue_mcp_tokens(
            &self,
            grant_id: &str,
            access: &McpAccessToken,
            refresh: &McpRefreshToken,
            now: i64
        ) -> StoreResult<bool>;
        fn revoke_mcp_grant(&self, grant_id: &str, now: i64) -> StoreResult<bool>;
        fn mcp_grant_of_refresh_token(&self, token_hash: &TokenHash, client_id: &str)
            -> StoreResult<Option<String>>;
        fn revoke_mcp_access_token(&self, token_hash: &TokenHash, client_id: &str, now: i64)
            -> StoreResult<bool>;
        fn get_mcp_grant(&self, grant_id: &str) -> StoreResult<Option<McpGrantRow>>;
        fn list_mcp_grants(&self, end_user_id: &str, limit: u32) -> StoreResult<Vec<McpGrantRow>>;
        fn purge_mcp_oauth(&self, now: i64) -> StoreResult<u64>;
        fn purge_mcp_clients(&self, unused_before: i64, ended_before: i64) -> StoreResult<u64>;
        fn mcp_signing_key(&self, candidate: &Sealed, now: i64) -> StoreResult<Sealed>;
        fn stored_mcp_signing_key(&self) -> StoreResult<Option<Sealed>>;
        fn reseal_mcp_signing_key(&self, old: &Sealed, new: &Sealed) -> StoreResult<bool>;
    }
}
