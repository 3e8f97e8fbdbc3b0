//! Settings of the MCP authorization server (`[mcp]` keys `sign_in_url`, the lifetimes of
//! what it issues, and how many clients one address may register). Kept apart from the MCP
//! server's own settings, which live beside it.

use std::time::Duration;

use url::Url;

/// How Tether acts as the OAuth authorization server of its MCP server.
#[derive(Clone, Debug)]
pub struct McpAuthConfig {
    /// The app's page that signs its user in and asks them to approve an MCP client
    /// (`[mcp] sign_in_url`). Tether sends the browser there with `tether_request=...`.
    /// `None`: MCP clients cannot be authorized through OAuth (agent tokens still work).
    pub sign_in_url: Option<Url>,
    /// How long an authorization request waits for the app's approval.
    pub request_ttl: Duration,
    /// How long an authorization code may wait to be exchanged.
    pub code_ttl: Duration,
    /// How long an access token issued to an MCP client lives.
    pub access_ttl: Duration,
    /// How long a refresh token lives unused (each use rotates it).
    pub refresh_ttl: Duration,
    /// How long a fetched client ID metadata document is reused before it is fetched again.
    pub client_metadata_ttl: Duration,
    /// Clients one client address may register per hour, on this instance (`[mcp]
    /// registrations_per_hour`); more get 429 with `Retry-After`.
    pub registrations_per_hour: u32,
}

impl Default for McpAuthConfig {
    fn default() -> Self {
        McpAuthConfig {
            sign_in_url: None,
            request_ttl: Duration::from_secs(10 * 60),
            code_ttl: Duration::from_secs(60),
            access_ttl: Duration::from_secs(60 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            client_metadata_ttl: Duration::from_secs(5 * 60),
            registrations_per_hour: 20,
        }
    }
}
