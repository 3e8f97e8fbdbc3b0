//! Row types: what the store reads and writes. Plain data; secrets are already sealed bytes.

/// Lifecycle of a connection, as API.md names it.
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
    pub token_hash: String,
    pub end_user_id: String,
    pub end_user_email: Option<String>,
    pub end_user_display_name: Option<String>,
    /// JSON array of integration keys the session allows; `None` means all.
    pub integrations: Option<String>,
    pub return_url: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
}

/// One authorization-code flow in progress (RFC 6749 4.1, RFC 7636).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStateRow {
    /// SHA-256 (hex) of the `state` parameter.
    pub state_hash: String,
    /// SHA-256 (hex) of the browser-binding cookie value.
    pub browser_hash: String,
    pub session_token_hash: String,
    pub integration: String,
    pub end_user_id: String,
    /// The PKCE code verifier, sealed by the vault (bound to `state_hash`).
    pub pkce_verifier: Vec<u8>,
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
    pub credentials: Vec<u8>,
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
}

/// A compare-and-swap write of new credentials; see [`crate::Store::replace_credentials`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsUpdate {
    pub id: String,
    pub expected_version: i64,
    pub credentials: Vec<u8>,
    pub access_expires_at: Option<i64>,
    pub metadata: String,
    pub status: ConnectionStatus,
    /// Replaces the stored end-user details when `Some` (a reconnect may bring new ones).
    pub end_user_email: Option<String>,
    pub end_user_display_name: Option<String>,
    pub now: i64,
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
