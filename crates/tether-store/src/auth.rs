//! What the API-key edge keeps in the database: failed-key windows, console sessions and the
//! revocation of keys Tether made. Kept in the database (not in a server's memory) because
//! several instances serve one deployment: a guess through one instance counts on all, and a
//! sign-out through one ends the session on all. SQLite takes the same path with one instance.
//!
//! A trait of its own, beside [`crate::Store`] (which requires it), so the edge's storage lives
//! in its own module (`sql/auth.rs`, compiled for each backend).

use std::future::Future;

use crate::any::forward_to_backend;
use crate::{AnyStore, AttemptWindow, StoreResult, TokenHash};

/// An API key Tether made (the first-run key), as stored: its hash only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredApiKey {
    /// SHA-256 (hex) of the key.
    pub key_hash: TokenHash,
    pub label: String,
    pub created_at: i64,
    /// When it was revoked; a revoked key is never accepted again.
    pub revoked_at: Option<i64>,
}

/// A console sign-in, named by the hash of the random nonce its cookie carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSessionRow {
    /// SHA-256 (hex) of the cookie's nonce.
    pub id_hash: TokenHash,
    /// Fingerprint of the API key that signed in (never the key).
    pub key_fingerprint: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The API-key edge's storage. Every decision that must hold across instances is one
/// statement (a conditional upsert, a delete), never a read followed by a write.
pub trait AuthStore {
    // ----- failed API-key attempts --------------------------------------------------------

    /// Counts one failed attempt against each of `buckets` in a fixed window of
    /// `window_secs`: a bucket's window that began at or before `now - window_secs` restarts
    /// at `now` with this failure as its first. One statement. Returns each bucket's window
    /// after counting, in the order of `buckets`.
    fn count_auth_failures(
        &self,
        buckets: &[String],
        now: i64,
        window_secs: i64,
    ) -> impl Future<Output = StoreResult<Vec<AttemptWindow>>> + Send;

    /// Deletes failure windows that began before `before`; returns how many.
    fn purge_auth_failures(&self, before: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    // ----- console sessions ---------------------------------------------------------------

    /// Records a new console session.
    fn insert_console_session(
        &self,
        session: &ConsoleSessionRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Whether the session exists and has not expired at `now`.
    fn console_session_active(
        &self,
        id_hash: &TokenHash,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Ends one session (sign-out); false when there was none.
    fn end_console_session(
        &self,
        id_hash: &TokenHash,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Ends every session signed in with this key fingerprint; returns how many.
    fn end_console_sessions_of_key(
        &self,
        key_fingerprint: &str,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Ends every session ("sign out everywhere"); returns how many.
    fn end_all_console_sessions(&self) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Deletes sessions expired at `now`; returns how many.
    fn purge_console_sessions(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    // ----- API keys made by Tether --------------------------------------------------------

    /// Every stored API key, revoked ones included, oldest first.
    fn stored_api_keys(&self) -> impl Future<Output = StoreResult<Vec<StoredApiKey>>> + Send;

    /// Marks every stored key not yet revoked as revoked at `now`; returns their hashes.
    fn revoke_stored_api_keys(
        &self,
        now: i64,
    ) -> impl Future<Output = StoreResult<Vec<TokenHash>>> + Send;
}

impl AuthStore for AnyStore {
    forward_to_backend! {
        fn count_auth_failures(&self, buckets: &[String], now: i64, window_secs: i64)
            -> StoreResult<Vec<AttemptWindow>>;
        fn purge_auth_failures(&self, before: i64) -> StoreResult<u64>;
        fn insert_console_session(&self, session: &ConsoleSessionRow) -> StoreResult<()>;
        fn console_session_active(&self, id_hash: &TokenHash, now: i64) -> StoreResult<bool>;
        fn end_console_session(&self, id_hash: &TokenHash) -> StoreResult<bool>;
        fn end_console_sessions_of_key(&self, key_fingerprint: &str) -> StoreResult<u64>;
        fn end_all_console_sessions(&self) -> StoreResult<u64>;
        fn purge_console_sessions(&self, now: i64) -> StoreResult<u64>;
        fn stored_api_keys(&self) -> StoreResult<Vec<StoredApiKey>>;
        fn revoke_stored_api_keys(&self, now: i64) -> StoreResult<Vec<TokenHash>>;
    }
}
