//! Row types: what the store reads and writes. Plain data; secrets are already sealed bytes.

/// Lifecycle of a connection, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    Active,
    NeedsReauth,
    Revoked,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReauth => "needs_reauth",
            ConnectionStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(ConnectionStatus::Active),
            "needs_reauth" => Some(ConnectionStatus::NeedsReauth),
            "revoked" => Some(ConnectionStatus::Revoked),
            _ => None,
        }
    }
}

/// A connect session: lets one end user's browser connect, for a short time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectSessionRow {
    /// SHA-256 (hex) of the session token; the token itself is never stored.
    pub token_hash: crate::TokenHash,
    pub end_user_id: String,
    pub end_user_email: Option<String>,
    pub end_user_display_name: Option<String>,
    /// JSON array of integration keys the session allows; `None` means all.
    pub integrations: Option<String>,
    pub return_url: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
    /// SHA-256 (hex) of the browser-binding cookie of the first browser that opened the
    /// session; `None` until one did. Only that browser may use the session.
    pub browser_hash: Option<crate::TokenHash>,
    /// When the session's one successful connection was made; a used session connects
    /// nothing more.
    pub completed_at: Option<i64>,
}

/// Credential checks counted against one connect session in a fixed window (rate limiting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptWindow {
    /// Checks in the current window, including the one just counted.
    pub attempts: u32,
    /// When the current window began (unix seconds).
    pub since: i64,
}

/// One authorization-code flow in progress (RFC 6749 4.1, RFC 7636).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStateRow {
    /// SHA-256 (hex) of the `state` parameter.
    pub state_hash: crate::TokenHash,
    /// SHA-256 (hex) of the browser-binding cookie value.
    pub browser_hash: crate::TokenHash,
    pub session_token_hash: crate::TokenHash,
    pub integration: String,
    pub end_user_id: String,
    /// The PKCE code verifier, sealed by the vault (bound to `state_hash`).
    pub pkce_verifier: crate::Sealed,
    pub redirect_uri: String,
    pub return_url: Option<String>,
    /// `popup` or `page`: how the Connect page was opened.
    pub display: String,
    pub expires_at: i64,
    pub created_at: i64,
}

/// What [`crate::Store::consume_flow_state`] found.
// Returned once per OAuth callback and moved, never stored in bulk: boxing the row would
// cost an allocation and an API change for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// The state was ours and is now gone.
    Consumed(FlowStateRow),
    /// The state exists but was issued to another browser; it was left in place.
    WrongBrowser,
    /// No such state (never issued, or already used).
    Unknown,
}

/// One end user's credentials for one integration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRow {
    pub id: String,
    pub integration: String,
    pub end_user_id: String,
    pub end_user_email: Option<String>,
    pub end_user_display_name: Option<String>,
    pub status: ConnectionStatus,
    /// The credential set, sealed by the vault with this row's id as associated data.
    pub credentials: crate::Sealed,
    /// Bumped on every credentials write; guards against lost updates.
    pub credentials_version: i64,
    /// When the access token expires (unix seconds); `None` for credentials that do not.
    pub access_expires_at: Option<i64>,
    /// JSON object of non-secret facts (provider ids, link name, scopes, ...).
    pub metadata: String,
    pub last_error: Option<String>,
    pub refresh_failures: i64,
    pub next_refresh_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The provider account the credentials belong to, as the lifecycle recorded it (see
    /// [`crate::LifecycleStore`]); read with the row, never written by an insert or a
    /// credentials update. `None` until the provider said.
    pub provider_account: Option<ProviderAccount>,
}

/// Whose provider account a connection is, as one key: the organisation (HubSpot's portal,
/// Salesforce's org, Pipedrive's company) when the provider names one, else the user. Two
/// connections with the same key share what the provider limits per account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProviderAccount(String);

impl ProviderAccount {
    /// The key of an account with these ids (`o:` or `u:` first, so an organisation and a
    /// user with the same id never share a key); `None` when neither is known.
    pub fn of(organization_id: Option<String>, user_id: Option<String>) -> Option<Self> {
        let nonempty = |id: &Option<String>| id.as_deref().is_some_and(|i| !i.is_empty());
        if nonempty(&organization_id) {
            organization_id.map(|id| ProviderAccount(["o:", &id].concat()))
        } else if nonempty(&user_id) {
            user_id.map(|id| ProviderAccount(["u:", &id].concat()))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A compare-and-swap write of new credentials; see [`crate::Store::replace_credentials`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsUpdate {
    pub id: String,
    pub expected_version: i64,
    /// The new credential set, sealed by the vault with the row's id as associated data.
    pub credentials: crate::Sealed,
    pub access_expires_at: Option<i64>,
    pub metadata: String,
    pub status: ConnectionStatus,
    /// Replaces the stored end-user details when `Some` (a reconnect may bring new ones).
    pub end_user_email: Option<String>,
    pub end_user_display_name: Option<String>,
    pub now: i64,
}

/// A batch of refresh leases to take at once; see [`crate::Store::claim_due_refreshes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshClaim {
    /// The instance taking the leases.
    pub owner: String,
    /// Claims connections whose access token expires before this (the refresher's horizon).
    pub before: i64,
    /// Now: leases and back-off that ended at or before it no longer hold a connection back.
    pub now: i64,
    /// When the leases taken end.
    pub lease_until: i64,
    /// Leaves out connections whose last refresh attempt started at or after this (the
    /// start of the refresher's round), so that a token living shorter than the window is not
    /// refreshed again and again within one round.
    pub attempted_before: i64,
    /// At most this many connections.
    pub limit: u32,
}

/// A refreshed token set, written by [`crate::Store::finish_refreshes`] in one transaction with
/// the keep-alive deadline it moves and the release of the refresh lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshedCredentials {
    /// The compare-and-swap of the credentials, as [`crate::Store::replace_credentials`].
    pub update: CredentialsUpdate,
    /// When the refresher must next use the refresh token to keep it alive (`None`: never).
    pub keepalive_at: Option<i64>,
    /// The lease holder, whose lease is given back whether or not the swap wins.
    pub lease_owner: String,
}

/// One refresh to finish in [`crate::Store::finish_refreshes`]: its token set and, when the
/// swap wins, its history entry (and webhook).
#[derive(Clone, Copy, Debug)]
pub struct RefreshFinish<'a> {
    pub refreshed: &'a RefreshedCredentials,
    pub event: Option<&'a NewWebhookEvent>,
}

/// Filters for listing connections; `None` means any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionFilter {
    pub end_user_id: Option<String>,
    pub integration: Option<String>,
    pub status: Option<ConnectionStatus>,
    /// At most this many rows; 0 means the default of 100, and anything above 1000 is 1000.
    pub limit: u32,
}

/// A status change made only when it is one: see
/// [`crate::Store::set_connection_status_with_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    pub id: String,
    pub status: ConnectionStatus,
    pub last_error: Option<String>,
    /// When `Some`, the change applies only while `credentials_version` still equals it, so
    /// a refresh that failed with old credentials cannot mark a reconnected connection.
    pub expected_version: Option<i64>,
    pub now: i64,
}

// ----- webhooks ----------------------------------------------------------------------------

/// Delivery state of one webhook event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookStatus {
    /// Not delivered yet; the worker will (re)try at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; only a redelivery sends it again.
    Failed,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Pending => "pending",
            WebhookStatus::Delivered => "delivered",
            WebhookStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(WebhookStatus::Pending),
            "delivered" => Some(WebhookStatus::Delivered),
            "failed" => Some(WebhookStatus::Failed),
            _ => None,
        }
    }
}

/// An event about a connection, written together with the change it reports: always into
/// the connection's history, and into the webhook outbox when `deliver` is set (a webhook URL
/// is configured).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWebhookEvent {
    /// Public id (`evt_...`), also inside the payload so receivers can deduplicate.
    pub id: String,
    /// `connection.created`, `connection.refreshed`, ...
    pub event_type: String,
    pub connection_id: String,
    /// The JSON body to deliver, fixed when the event is created (no secrets in it).
    pub payload: String,
    pub created_at: i64,
    /// Put in the outbox for delivery. When false only the history entry is written: an
    /// outbox nobody drains would only grow.
    pub deliver: bool,
    /// What the connection's history records for this event.
    pub history: HistoryEntry,
}

/// The history part of an event: see [`ConnectionEventRow`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryEntry {
    /// One of [`history_kind`]'s names.
    pub kind: String,
    pub integration: String,
    /// The provider's reason for a failure, or a short fact ("HTTP 200"). Never a secret.
    pub detail: Option<String>,
    /// The reference code of a failure, also written in its log line.
    pub reference: Option<String>,
}

/// The kinds of history entry.
pub mod history_kind {
    pub const CREATED: &str = "created";
    pub const RECONNECTED: &str = "reconnected";
    pub const REFRESHED: &str = "refreshed";
    /// A transient refresh failure; the refresher tries again after a back-off.
    pub const REFRESH_FAILED: &str = "refresh_failed";
    /// The provider refused the refresh for good; the end user must reconnect.
    pub const NEEDS_REAUTH: &str = "needs_reauth";
    pub const DELETED: &str = "deleted";
    pub const WEBHOOK_DELIVERED: &str = "webhook_delivered";
    pub const WEBHOOK_FAILED: &str = "webhook_failed";
    /// The provider's request budget for the connection was spent: the proxy holds calls
    /// back (or answers 429) until it resets.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Back to `active` after `needs_reauth` (a reconnect with the same account).
    pub const RECOVERED: &str = "recovered";
    /// The grant's fixed end is near; the app was told.
    pub const EXPIRING: &str = "expiring";
    /// A check the provider answered with a refusal (one of the consecutive failures that
    /// may mark the connection `needs_reauth`).
    pub const CHECK_FAILED: &str = "check_failed";
    /// What revoking at the provider on delete gave (`detail` says: revoked, failed, ...).
    pub const REVOCATION: &str = "revocation";
    /// A call an AI agent made through the MCP server (`detail`: who, tool, method, path,
    /// status, duration; `reference`: the agent token's or MCP client's id).
    pub const AGENT_CALL: &str = "agent_call";
    /// Every kind, for filters and charts.
    pub const ALL: [&str; 14] = [
        CREATED,
        RECONNECTED,
        REFRESHED,
        REFRESH_FAILED,
        NEEDS_REAUTH,
        DELETED,
        WEBHOOK_DELIVERED,
        WEBHOOK_FAILED,
        RATE_LIMITED,
        RECOVERED,
        EXPIRING,
        CHECK_FAILED,
        REVOCATION,
        AGENT_CALL,
    ];
}

/// One entry of a connection's history (kept after the connection is deleted, until purged).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ConnectionEventRow {
    /// Insertion order; the cursor of [`crate::Store::list_connection_events`].
    pub seq: i64,
    pub connection_id: String,
    pub integration: String,
    pub kind: String,
    pub detail: Option<String>,
    pub reference: Option<String>,
    /// The webhook event reporting it, when one was queued.
    pub webhook_event_id: Option<String>,
    pub created_at: i64,
}

/// A page of connections for the console, by id (keyset pagination).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionPage {
    pub integration: Option<String>,
    pub status: Option<ConnectionStatus>,
    /// Matches the end user id exactly, or the email case-insensitively (both indexed).
    pub search: Option<String>,
    /// Rows with an id greater than this (the last id of the previous page).
    pub after_id: Option<String>,
    /// 0 means 50; at most 500.
    pub limit: u32,
}

/// How many connections one integration has in one status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCount {
    pub integration: String,
    pub status: ConnectionStatus,
    pub count: i64,
}

/// How many history entries of one kind one integration had in one time bucket.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EventBucket {
    pub integration: String,
    pub kind: String,
    /// Start of the bucket (unix seconds): `since + n * bucket_secs`.
    pub bucket_start: i64,
    pub count: i64,
}

/// One outbox row: the event and how its delivery went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEventRow {
    /// Insertion order; deliveries follow it per connection.
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub connection_id: String,
    pub payload: String,
    pub status: WebhookStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    /// HTTP status of the last attempt, when the receiver answered at all.
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What one delivery attempt decided; see [`crate::Store::record_webhook_attempt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; try again at this time.
    Retry {
        next_attempt_at: i64,
    },
    /// Failed for the last time.
    GiveUp,
}

/// The result of one delivery attempt of a claimed event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub id: String,
    /// The worker that claimed the event; a stale worker's result is ignored.
    pub owner: String,
    pub at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// Filters for the delivery log; `None` means any. Newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookEventFilter {
    pub connection_id: Option<String>,
    pub status: Option<WebhookStatus>,
    /// At most this many rows; 0 means the default of 100, and anything above 1000 is 1000.
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenHash;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const SEALED: &[u8] = b"sealed-secret-bytes";

    fn assert_redacted(shown: &str) {
        assert!(!shown.contains(HASH), "{shown}");
        assert!(!shown.contains("sealed-secret-bytes"), "{shown}");
        assert!(
            !shown.contains("115, 101, 97"),
            "the bytes as numbers: {shown}"
        );
    }

    fn flow_state() -> FlowStateRow {
        FlowStateRow {
            state_hash: TokenHash::from_hex(HASH),
            browser_hash: TokenHash::from_hex(HASH),
            session_token_hash: TokenHash::from_hex(HASH),
            integration: "github".into(),
            end_user_id: "user-1".into(),
            pkce_verifier: crate::Sealed::from_bytes(SEALED.to_vec()),
            redirect_uri: "https://tether.example/callback".into(),
            return_url: None,
            display: "popup".into(),
            expires_at: 100,
            created_at: 50,
        }
    }

    #[test]
    fn connect_session_debug_hides_hashes() {
        let row = ConnectSessionRow {
            token_hash: TokenHash::from_hex(HASH),
            end_user_id: "user-1".into(),
            end_user_email: Some("ada@example.com".into()),
            end_user_display_name: None,
            integrations: None,
            return_url: None,
            expires_at: 100,
            created_at: 50,
            browser_hash: Some(TokenHash::from_hex(HASH)),
            completed_at: None,
        };
        let shown = format!("{row:?}");
        assert_redacted(&shown);
        assert!(shown.contains(r#"token_hash: <hash>"#), "{shown}");
        assert!(shown.contains(r#"browser_hash: Some(<hash>)"#), "{shown}");
        assert!(shown.contains(r#"end_user_id: "user-1""#), "{shown}");
        let unbound = ConnectSessionRow {
            browser_hash: None,
            ..row
        };
        assert!(format!("{unbound:?}").contains("browser_hash: None"));
    }

    #[test]
    fn flow_state_and_consume_outcome_debug_hide_verifier_and_hashes() {
        let shown = format!("{:?}", flow_state());
        assert_redacted(&shown);
        assert!(
            shown.contains("pkce_verifier: <sealed, 19 bytes>"),
            "{shown}"
        );
        assert!(shown.contains("state_hash: <hash>"), "{shown}");
        assert!(shown.contains("session_token_hash: <hash>"), "{shown}");
        assert!(shown.contains(r#"display: "popup""#), "{shown}");
        let shown = format!("{:?}", ConsumeOutcome::Consumed(flow_state()));
        assert_redacted(&shown);
        assert!(shown.starts_with("Consumed(FlowStateRow {"), "{shown}");
    }

    #[test]
    fn connection_and_update_debug_hide_credentials() {
        let row = ConnectionRow {
            id: "conn-1".into(),
            integration: "github".into(),
            end_user_id: "user-1".into(),
            end_user_email: None,
            end_user_display_name: None,
            status: ConnectionStatus::Active,
            credentials: crate::Sealed::from_bytes(SEALED.to_vec()),
            credentials_version: 3,
            access_expires_at: Some(100),
            metadata: "{}".into(),
            last_error: None,
            refresh_failures: 0,
            next_refresh_at: None,
            created_at: 1,
            updated_at: 2,
            provider_account: None,
        };
        let shown = format!("{row:?}");
        assert_redacted(&shown);
        assert!(shown.contains("credentials: <sealed, 19 bytes>"), "{shown}");
        assert!(shown.contains("credentials_version: 3"), "{shown}");
        assert!(shown.contains("status: Active"), "{shown}");

        let update = CredentialsUpdate {
            id: "conn-1".into(),
            expected_version: 3,
            credentials: crate::Sealed::from_bytes(SEALED.to_vec()),
            access_expires_at: None,
            metadata: "{}".into(),
            status: ConnectionStatus::Active,
            end_user_email: None,
            end_user_display_name: None,
            now: 5,
        };
        let shown = format!("{update:?}");
        assert_redacted(&shown);
        assert!(shown.contains("credentials: <sealed, 19 bytes>"), "{shown}");
        assert!(shown.contains("expected_version: 3"), "{shown}");
    }
}
