//! Tether's storage layer: the [`Store`] trait and its sqlx implementations.
//!
//! The store keeps rows, nothing more. It never sees a plaintext secret (credentials arrive
//! sealed by the vault, session tokens and `state` values arrive hashed), it knows no HTTP, and
//! it does not interpret provider data. Timestamps are UTC unix seconds.
//!
//! One trait, one implementation per backend (SQLite in `sqlite/`, PostgreSQL in
//! `postgres/`), each with its own `migrations/` folder; [`AnyStore`] picks one at start-up
//! from the URL scheme. The conformance suite in `tests/` runs against every backend.

#![forbid(unsafe_code)]

mod agent_tokens;
mod any;
mod auth;
mod budgets;
mod changes;
mod error;
mod lifecycle;
mod mcp_oauth;
mod opaque;
mod paging;
// Each backend compiles the shared statements of `sql/` for its own pool, on purpose.
#[allow(clippy::duplicate_mod)]
pub mod postgres;
mod records;
mod rows;
mod sealing;
// Each backend compiles the shared statements of `sql/` for its own pool, on purpose.
#[allow(clippy::duplicate_mod)]
pub mod sqlite;

pub use agent_tokens::{AgentAccess, AgentTokenRow, AgentTokenStore};
pub use any::{AnyStore, Backend};
pub use auth::{AuthStore, ConsoleSessionRow, StoredApiKey};
pub use budgets::{BudgetStore, BudgetTake, BudgetVerdict, GcraKey};
pub use changes::{Change, ChangeFeed};
pub use error::{StoreError, StoreResult};
pub use lifecycle::{
    CheckDue, CheckRecord, CheckResult, ConnectionLifecycle, GrantRecord, LifecycleStore,
    StoredAccount,
};
pub use mcp_oauth::{
    CodeRedemption, McpAccessToken, McpAuthRequestRow, McpClientRow, McpCodeRow, McpGrantRow,
    McpOAuthStore, McpRefreshToken, RefreshRotation,
};
pub use opaque::{Sealed, TokenHash};
pub use postgres::PgStore;
pub use records::*;
pub use sealing::SealedCount;
pub use sqlite::SqliteStore;

use std::future::Future;
use std::time::Duration;

/// Connection settings beside the URL (`[database]` in `tether.toml`); `None` keeps the
/// backend's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections in this instance's pool.
    pub pool_size: Option<u32>,
    /// Longest a single statement may run before the database cancels it (PostgreSQL; SQLite
    /// has no server to enforce one).
    pub statement_timeout: Option<Duration>,
}

/// Everything Tether persists. Implementations are cheap to clone (a pool handle).
///
/// Methods return `impl Future + Send` so that the server can stay generic over the backend
/// (`AppState<S: Store>`) without boxing every call.
pub trait Store:
    AgentTokenStore
    + AuthStore
    + BudgetStore
    + LifecycleStore
    + McpOAuthStore
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Answers when the database answers (`GET /health`).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Changes committed by any writer sharing this database (other instances included) to
    /// what a server caches: connections' credentials and status, API-managed integrations.
    /// `None` when the backend has no other writers to hear (SQLite: one instance, whose own
    /// writes invalidate its caches directly). Each call starts a new subscription; it ends
    /// when the feed is dropped.
    fn changes(&self) -> Option<ChangeFeed>;

    // ----- API keys made by Tether (stored as hashes) ------------------------------------

    /// Stores the SHA-256 (hex) of an API key Tether generated.
    fn insert_api_key_hash(
        &self,
        key_hash: &TokenHash,
        label: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Every stored API key hash.
    fn api_key_hashes(&self) -> impl Future<Output = StoreResult<Vec<TokenHash>>> + Send;

    // ----- integrations created through the API -------------------------------------------

    /// Creates or replaces an API-managed integration (its configuration sealed by the vault).
    /// Returns true when it was created, false when it replaced one.
    fn put_integration(
        &self,
        key: &str,
        sealed_config: &Sealed,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes an API-managed integration; false when there was none.
    fn delete_integration(&self, key: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Every API-managed integration as (key, sealed configuration), by key.
    fn list_integrations(&self) -> impl Future<Output = StoreResult<Vec<(String, Sealed)>>> + Send;

    /// Replaces an integration's sealed configuration when it still holds `old`
    /// (re-encryption under another key); false, changing nothing, when it is gone or changed.
    fn reseal_integration(
        &self,
        key: &str,
        old: &Sealed,
        new: &Sealed,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // ----- the sealing key (key rotation) ----------------------------------------------------

    /// The id of the vault key announced as the one that seals new values, if any.
    fn sealing_key(&self) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// Announces `key_id` as the sealing key, replacing any other. Every instance hears it:
    /// through [`Store::changes`] at commit where the backend has a feed, and at its next poll
    /// of [`Store::sealing_key`] in any case.
    fn announce_sealing_key(
        &self,
        key_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Announces `key_id` only when no key is announced yet (a first start); returns the key
    /// announced afterwards, ours or the one already there. One statement.
    fn announce_sealing_key_if_none(
        &self,
        key_id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<String>> + Send;

    /// How many sealed values each vault key id seals, per sealed column (connections'
    /// credentials, API-managed integrations, OAuth flows in progress), read from the values'
    /// headers in the database.
    fn sealed_value_counts(&self) -> impl Future<Output = StoreResult<Vec<SealedCount>>> + Send;

    // ----- connect sessions --------------------------------------------------------------

    /// Stores a new connect session. Its token is stored only as a hash.
    fn insert_connect_session(
        &self,
        session: &ConnectSessionRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The session with this token hash, expired or not (the caller decides what expiry means).
    fn get_connect_session(
        &self,
        token_hash: &TokenHash,
    ) -> impl Future<Output = StoreResult<Option<ConnectSessionRow>>> + Send;

    /// Binds a session to the browser that first presents it: sets `browser_hash` only when
    /// none is set yet, in one conditional statement, so of two browsers racing exactly one
    /// wins. Returns the hash the session is bound to afterwards (the caller compares it with
    /// its own), or `None` when there is no such session.
    fn bind_connect_session(
        &self,
        token_hash: &TokenHash,
        browser_hash: &TokenHash,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<TokenHash>>> + Send;

    /// Marks a session used by its one successful connection. True only for the caller that
    /// changed it (it was not completed yet), so of two concurrent connects one stores.
    fn complete_connect_session(
        &self,
        token_hash: &TokenHash,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Undoes [`Store::complete_connect_session`] when the save that followed it failed, so
    /// the end user can try again with the same link.
    fn reopen_connect_session(
        &self,
        token_hash: &TokenHash,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Counts one credential check against a session in a fixed window of `window_secs`: a
    /// window older than that restarts at `now` with this check as its first. One statement.
    /// `None` when there is no such session.
    fn count_session_attempt(
        &self,
        token_hash: &TokenHash,
        now: i64,
        window_secs: i64,
    ) -> impl Future<Output = StoreResult<Option<AttemptWindow>>> + Send;

    // ----- OAuth flow states -------------------------------------------------------------

    /// Stores the state of one authorization-code flow, between the redirect to the provider
    /// and the callback, unless its session already has `max_per_session` flows in progress
    /// (a session must not grow the table without bound). Returns whether it was stored.
    fn insert_flow_state(
        &self,
        flow: &FlowStateRow,
        max_per_session: u32,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Up to `limit` flow states with a state hash greater than `after`, by state hash: a
    /// cursor for maintenance such as key rotation.
    fn flow_states_after(
        &self,
        after: Option<&TokenHash>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<FlowStateRow>>> + Send;

    /// Replaces a flow's sealed PKCE verifier when it still holds `old` (re-encryption under
    /// another key); false, changing nothing, when it is gone or changed.
    fn reseal_flow_verifier(
        &self,
        state_hash: &TokenHash,
        old: &Sealed,
        new: &Sealed,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Takes a flow state exactly once: when the state hash exists AND was issued to this
    /// browser (`browser_hash`), the row is deleted and returned, atomically, so that two
    /// concurrent callbacks cannot both succeed. Expiry is the caller's check (an expired row
    /// is still consumed, so it cannot be tried again). A state presented by another browser
    /// is NOT consumed, so an attacker cannot burn a victim's flow.
    fn consume_flow_state(
        &self,
        state_hash: &TokenHash,
        browser_hash: &TokenHash,
    ) -> impl Future<Output = StoreResult<ConsumeOutcome>> + Send;

    /// Deletes flow states and connect sessions that expired before `now`; returns how many.
    fn purge_expired(&self, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    // ----- connections -------------------------------------------------------------------

    /// Inserts a new connection. Fails with [`StoreError::Conflict`] when the
    /// (integration, end_user_id) pair already has one.
    fn insert_connection(
        &self,
        connection: &ConnectionRow,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        // Each plain write is its `_with_event` twin with no event: one code path to keep atomic.
        self.insert_connection_with_event(connection, None)
    }

    /// Inserts many new connections in one transaction (an import, a benchmark's setup): all
    /// of them, or, when one breaks a unique constraint ([`StoreError::Conflict`]), none.
    fn insert_connections(
        &self,
        connections: &[ConnectionRow],
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The connection of this end user for this integration, if any (reconnect keeps its id).
    fn find_connection(
        &self,
        integration: &str,
        end_user_id: &str,
    ) -> impl Future<Output = StoreResult<Option<ConnectionRow>>> + Send;

    /// The connection with this id, if any.
    fn get_connection(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<ConnectionRow>>> + Send;

    /// Connections matching every given filter, oldest first, at most `filter.limit`.
    fn list_connections(
        &self,
        filter: &ConnectionFilter,
    ) -> impl Future<Output = StoreResult<Vec<ConnectionRow>>> + Send;

    /// Replaces a connection's credentials (and expiry, metadata, status, end-user details)
    /// when its `credentials_version` still equals `expected_version`, bumping the version.
    /// Returns false, changing nothing, when another writer got there first. This is the one
    /// write that makes a refreshed token set durable: access and refresh token together.
    fn replace_credentials(
        &self,
        update: &CredentialsUpdate,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        self.replace_credentials_with_event(update, None)
    }

    /// Sets a connection's status (e.g. `needs_reauth`) with the reason; false when not found.
    fn set_connection_status(
        &self,
        id: &str,
        status: ConnectionStatus,
        last_error: Option<&str>,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes a connection; false when it did not exist.
    fn delete_connection(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send {
        self.delete_connection_with_event(id, None)
    }

    /// Up to `limit` connections with an id greater than `after_id`, by id: a cursor over
    /// every connection, for maintenance such as key rotation.
    fn connections_after(
        &self,
        after_id: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ConnectionRow>>> + Send;

    /// Replaces only the sealed credential bytes (re-encryption under another key) when the
    /// version still matches, bumping it; false when another writer got there first.
    fn reseal_credentials(
        &self,
        id: &str,
        expected_version: i64,
        credentials: &Sealed,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // ----- changes that emit a webhook (the outbox row commits with the change) -----------

    /// [`Store::insert_connection`], and `event` in the outbox in the same transaction.
    fn insert_connection_with_event(
        &self,
        connection: &ConnectionRow,
        event: Option<&NewWebhookEvent>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// [`Store::replace_credentials`]; `event` is written, in the same transaction, only when
    /// the compare-and-swap wins.
    fn replace_credentials_with_event(
        &self,
        update: &CredentialsUpdate,
        event: Option<&NewWebhookEvent>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Sets the status only when it is a change: the row exists, its status differs from
    /// `change.status`, and (when given) its `credentials_version` equals
    /// `change.expected_version`. Returns whether it changed; `event` is written, in the same
    /// transaction, only then, so racing writers emit one event between them.
    fn set_connection_status_with_event(
        &self,
        change: &StatusChange,
        event: Option<&NewWebhookEvent>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// [`Store::delete_connection`]; `event` is written, in the same transaction, only when a
    /// row was deleted.
    fn delete_connection_with_event(
        &self,
        id: &str,
        event: Option<&NewWebhookEvent>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    // ----- refresh leases (one refresh per connection, across instances) ------------------

    /// Takes the refresh lease of a connection for `owner` until `until`, when nobody holds
    /// it, the holder's lease has expired (a crashed holder never blocks refresh forever), or
    /// `owner` already holds it (a restarted instance with the same id takes it back at once).
    /// Records `now` as the start of a refresh attempt. Returns whether `owner` holds it.
    fn try_acquire_refresh_lease(
        &self,
        id: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Gives the lease back (only if `owner` still holds it).
    fn release_refresh_lease(
        &self,
        id: &str,
        owner: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Connections in status `active` whose access token expires before `before`, and that
    /// are not in back-off (`next_refresh_at` is null or <= `now`), soonest first.
    fn connections_due_for_refresh(
        &self,
        before: i64,
        now: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ConnectionRow>>> + Send;

    /// Takes the refresh leases of up to `claim.limit` connections due for refresh, in one
    /// statement, and returns those connections, soonest expiry first: active, expiring
    /// before `claim.before`, not in back-off, with no live lease (not even one of
    /// `claim.owner`'s: that owner is refreshing the connection right now), and no refresh
    /// attempt started at or after `claim.attempted_before`. Each lease is `claim.owner`'s
    /// until `claim.lease_until`, and `claim.now` is recorded as the start of a refresh
    /// attempt. Rows another instance is claiming at the same moment are skipped rather than
    /// waited for (PostgreSQL), so instances claiming together get different connections.
    fn claim_due_refreshes(
        &self,
        claim: &RefreshClaim,
    ) -> impl Future<Output = StoreResult<Vec<ConnectionRow>>> + Send;

    /// Makes refreshed token sets durable, in one transaction (one commit for the batch, not
    /// one per refresh): for each, the compare-and-swap of
    /// [`Store::replace_credentials_with_event`] (and its `event`, only when it wins), the new
    /// keep-alive deadline, and the release of `refreshed.lease_owner`'s lease. Returns, in
    /// the batch's order, each connection as written; `None`, changing nothing but the lease,
    /// when another writer got there first or the connection is gone. Two entries for one
    /// connection are written in the batch's order, as two calls would. A failure writes
    /// nothing of the batch.
    fn finish_refreshes(
        &self,
        batch: &[RefreshFinish<'_>],
    ) -> impl Future<Output = StoreResult<Vec<Option<ConnectionRow>>>> + Send;

    /// [`Store::finish_refreshes`] for one refreshed token set.
    fn finish_refresh(
        &self,
        refreshed: &RefreshedCredentials,
        event: Option<&NewWebhookEvent>,
    ) -> impl Future<Output = StoreResult<Option<ConnectionRow>>> + Send {
        async move {
            let written = self
                .finish_refreshes(&[RefreshFinish { refreshed, event }])
                .await?;
            Ok(written.into_iter().next().flatten())
        }
    }

    /// Records a transient refresh failure: increments `refresh_failures`, sets
    /// `next_refresh_at` and `last_error`. Status is left as it is.
    fn record_refresh_failure(
        &self,
        id: &str,
        next_refresh_at: i64,
        last_error: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.record_refresh_failure_with_event(id, next_refresh_at, last_error, now, None)
    }

    /// [`Store::record_refresh_failure`], and `event` (its history entry; delivered only when
    /// `event.deliver`) in the same transaction, when the connection exists.
    fn record_refresh_failure_with_event(
        &self,
        id: &str,
        next_refresh_at: i64,
        last_error: &str,
        now: i64,
        event: Option<&NewWebhookEvent>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // ----- connection history and the console's views ------------------------------------

    /// A connection's history, newest first: up to `limit` (1..=500) entries with a `seq`
    /// below `before_seq` (the last `seq` of the previous page), deleted connections included.
    fn list_connection_events(
        &self,
        connection_id: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<ConnectionEventRow>>> + Send;

    /// Writes one history entry that no change goes with (the proxy held back by the
    /// provider), only when the connection exists; returns whether it was written.
    fn record_connection_history(
        &self,
        connection_id: &str,
        entry: &HistoryEntry,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes history entries written before `before`; returns how many.
    fn purge_connection_events(&self, before: i64)
    -> impl Future<Output = StoreResult<u64>> + Send;

    /// A page of connections by id, filtered, for the console (keyset pagination: the cost
    /// of a page does not grow with the pages before it).
    fn page_connections(
        &self,
        page: &ConnectionPage,
    ) -> impl Future<Output = StoreResult<Vec<ConnectionRow>>> + Send;

    /// How many connections each integration has in each status (from an index).
    fn connection_status_counts(
        &self,
    ) -> impl Future<Output = StoreResult<Vec<StatusCount>>> + Send;

    /// History entries of the given kinds since `since`, counted per integration, kind and
    /// bucket of `bucket_secs` (for the console's charts).
    fn connection_event_buckets(
        &self,
        since: i64,
        bucket_secs: i64,
        kinds: &[&str],
    ) -> impl Future<Output = StoreResult<Vec<EventBucket>>> + Send;

    // ----- webhook outbox and delivery log ------------------------------------------------

    /// Claims up to `limit` pending events that are due (`next_attempt_at <= now`), not
    /// claimed by a live worker, and the oldest pending event of their connection (so each
    /// connection's events go out in order, one at a time). Claimed rows are leased to
    /// `owner` until `lease_until`; a crashed worker's claims expire, and `owner` may take
    /// back claims it already holds (a restarted instance with the same id). Oldest first.
    fn claim_webhook_events(
        &self,
        owner: &str,
        lease_until: i64,
        now: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<WebhookEventRow>>> + Send;

    /// Records one delivery attempt of an event `attempt.owner` claimed, and releases the
    /// claim. Returns false, changing nothing, when the claim is no longer that owner's.
    fn record_webhook_attempt(
        &self,
        attempt: &WebhookAttempt,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The delivery log: events matching the filter, newest first.
    fn list_webhook_events(
        &self,
        filter: &WebhookEventFilter,
    ) -> impl Future<Output = StoreResult<Vec<WebhookEventRow>>> + Send;

    /// One event by its public id.
    fn get_webhook_event(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<WebhookEventRow>>> + Send;

    /// Queues an event again (whatever its status): pending, due at `now`, attempts reset. A
    /// claim on it is kept, so an event being sent is not sent twice, and redelivering an
    /// event that is pending already queues nothing more. False when there is no such event.
    fn redeliver_webhook_event(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}
