//! What keeps a connection alive and truthful after the connect: whose account it is, its
//! health checks (consecutive definite failures, when the next is due), and its grant's
//! deadlines (when the refresher must use the refresh token so it does not expire unused,
//! the fixed end of the grant and whether the app was told).
//!
//! A trait of its own beside [`crate::Store`] (which requires it), so these columns are
//! read and written through their own statements (`sql/lifecycle.rs`, compiled for each
//! backend) and the connection row the rest of the store passes around stays as it is.
//! One check per connection at a time, across instances, is the refresh lease
//! ([`crate::Store::try_acquire_refresh_lease`]): a check and a refresh never overlap either.

use std::future::Future;

use crate::any::forward_to_backend;
use crate::{AnyStore, NewWebhookEvent, StatusChange, StoreResult};

/// The provider's account a connection's credentials belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredAccount {
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    pub label: Option<String>,
}

/// The lifecycle columns of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionLifecycle {
    pub id: String,
    /// `None` until the provider said whose the credentials are.
    pub account: Option<StoredAccount>,
    /// Consecutive definite check failures; a passing check resets it.
    pub check_failures: i64,
    pub last_checked_at: Option<i64>,
    /// What the last check found, in a few words (`ok`, `HTTP 401: ...`).
    pub last_check: Option<String>,
    pub next_check_at: Option<i64>,
    /// When the refresher uses the refresh token, so it does not expire unused.
    pub keepalive_at: Option<i64>,
    /// When the grant ends whatever is done (the provider's fixed lifetime).
    pub grant_expires_at: Option<i64>,
    /// When the app was told the grant is ending (`connection.expiring`), once per grant.
    pub expiring_notified_at: Option<i64>,
}

/// What a new grant (a connect, a reconnect) sets, written only while the connection still
/// holds the credentials that grant produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    /// The `credentials_version` the grant's credentials were written as.
    pub expected_version: i64,
    /// Replaces the stored account when `Some`; `None` keeps it.
    pub account: Option<StoredAccount>,
    pub keepalive_at: Option<i64>,
    pub grant_expires_at: Option<i64>,
    pub now: i64,
}

/// What one check found, for [`LifecycleStore::record_check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The credentials work: the failure count goes back to 0.
    Passed,
    /// The provider refused them: one more consecutive failure.
    Refused,
    /// The provider could not say (timeout, 5xx, ...): the count is left as it is.
    Unavailable,
}

/// One check's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRecord {
    pub id: String,
    pub result: CheckResult,
    /// A few words for `last_check`; never a secret.
    pub summary: String,
    /// The account the check named, kept when the connection has none yet.
    pub account: Option<StoredAccount>,
    pub next_check_at: i64,
    pub now: i64,
}

/// A connection whose check is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckDue {
    pub id: String,
    pub integration: String,
    /// `None` when never scheduled (the caller spreads those over the interval).
    pub next_check_at: Option<i64>,
}

/// The lifecycle's storage. Each decision that must hold across instances is one
/// conditional statement.
pub trait LifecycleStore {
    /// The lifecycle columns of these connections (unknown ids are left out), in no order.
    fn connection_lifecycles(
        &self,
        ids: &[String],
    ) -> impl Future<Output = StoreResult<Vec<ConnectionLifecycle>>> + Send;

    /// Records a new grant's account and deadlines, clears the failure count and the
    /// expiring notice, only while `credentials_version` equals `expected_version`. Returns
    /// whether it was written.
    fn record_grant(&self, grant: &GrantRecord) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Moves the keep-alive deadline (after a refresh used the refresh token), only while
    /// `credentials_version` equals `expected_version`.
    fn set_keepalive(
        &self,
        id: &str,
        expected_version: i64,
        keepalive_at: Option<i64>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records one check and schedules the next, in one statement; returns the consecutive
    /// failure count afterwards, or `None` when the connection is gone.
    fn record_check(
        &self,
        check: &CheckRecord,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Active connections whose check is due at `now` or never scheduled, due first (never
    /// scheduled first of all), at most `limit`.
    fn connections_due_for_check(
        &self,
        now: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<CheckDue>>> + Send;

    /// Schedules a connection's first check at `at`, only when none is scheduled.
    fn schedule_check(&self, id: &str, at: i64) -> impl Future<Output = StoreResult<bool>> + Send;

    /// [`LifecycleStore::schedule_check`] for many connections, in one transaction (a large
    /// import seen for the first time); returns how many were scheduled.
    fn schedule_checks(
        &self,
        schedule: &[(String, i64)],
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Ids of active connections whose keep-alive deadline is before `before`, soonest first.
    fn connections_due_for_keepalive(
        &self,
        before: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Ids of active connections whose grant ends before `before` and whose app was not told
    /// yet, soonest first.
    fn connections_grant_ending(
        &self,
        before: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Marks the grant's end as announced, once: true only for the caller that marked it, and
    /// `event` is written in the same transaction only then.
    fn mark_expiring(
        &self,
        id: &str,
        now: i64,
        event: Option<&NewWebhookEvent>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// [`crate::Store::set_connection_status_with_event`] with several events (a refused
    /// refresh is both `connection.refresh_failed` and `connection.needs_reauth`), written in
    /// the same transaction, only when the status changed: the first with its history entry
    /// (one change, one entry), the others into the outbox only (when `deliver`).
    fn change_status_with_events(
        &self,
        change: &StatusChange,
        events: &[NewWebhookEvent],
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Writes an event on its own (its history entry, and the outbox when `deliver`): for
    /// facts that change no row, such as a refused check below the threshold or a recovery
    /// after the reconnect that caused it committed.
    fn append_event(&self, event: &NewWebhookEvent)
    -> impl Future<Output = StoreResult<()>> + Send;

    /// Marks a connect session as the reconnect of `connection_id`.
    fn set_session_reconnect(
        &self,
        token_hash: &str,
        connection_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The connection a connect session reconnects, if it is a reconnect.
    fn session_reconnect(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
}

impl LifecycleStore for AnyStore {
    forward_to_backend! {
        fn connection_lifecycles(&self, ids: &[String]) -> StoreResult<Vec<ConnectionLifecycle>>;
        fn record_grant(&self, grant: &GrantRecord) -> StoreResult<bool>;
        fn set_keepalive(&self, id: &str, expected_version: i64, keepalive_at: Option<i64>)
            -> StoreResult<bool>;
        fn record_check(&self, check: &CheckRecord) -> StoreResult<Option<i64>>;
        fn connections_due_for_check(&self, now: i64, limit: u32) -> StoreResult<Vec<CheckDue>>;
        fn schedule_check(&self, id: &str, at: i64) -> StoreResult<bool>;
        fn schedule_checks(&self, schedule: &[(String, i64)]) -> StoreResult<u64>;
        fn connections_due_for_keepalive(&self, before: i64, limit: u32)
            -> StoreResult<Vec<String>>;
        fn connections_grant_ending(&self, before: i64, limit: u32) -> StoreResult<Vec<String>>;
        fn mark_expiring(&self, id: &str, now: i64, event: Option<&NewWebhookEvent>)
            -> StoreResult<bool>;
        fn change_status_with_events(&self, change: &StatusChange, events: &[NewWebhookEvent])
            -> StoreResult<bool>;
        fn append_event(&self, event: &NewWebhookEvent) -> StoreResult<()>;
        fn set_session_reconnect(&self, token_hash: &str, connection_id: &str) -> StoreResult<()>;
        fn session_reconnect(&self, token_hash: &str) -> StoreResult<Option<String>>;
    }
}
