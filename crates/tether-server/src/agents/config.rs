//! The MCP server's limits (`[mcp]` in `tether.toml`): how long an agent token may live,
//! how much one token may do, how much of a provider's answer goes back to the model, and
//! which browser origins may call it.

use std::time::Duration;

use url::Origin;

/// Limits of the MCP server at `/mcp` and of the agent tokens it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpConfig {
    /// Browser origins besides Tether's own that may call `/mcp` (a web app whose page is
    /// the MCP client); a request with any other `Origin` header gets 403.
    pub allowed_origins: Vec<Origin>,
    /// An agent token's lifetime when the app asks for none.
    pub default_token_ttl: Duration,
    /// The longest lifetime an app may ask for.
    pub max_token_ttl: Duration,
    /// Requests one token may make to `/mcp` per minute (this instance's count: the limit
    /// is kept in memory, so N instances behind a balancer allow up to N times as many).
    pub requests_per_minute: u32,
    /// Requests of one token in progress at once (per instance, like the rate).
    pub max_concurrent: u32,
    /// Largest request body `/mcp` reads (a JSON-RPC message, with any CRM body inside).
    pub max_request_bytes: usize,
    /// The provider's body is cut after this many bytes before it goes back to the model.
    pub max_response_bytes: usize,
    /// A `crm_request` call that takes longer is answered with an error.
    pub tool_timeout: Duration,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            allowed_origins: Vec::new(),
            default_token_ttl: Duration::from_secs(60 * 60),
            max_token_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            requests_per_minute: 120,
            max_concurrent: 4,
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 100 * 1024,
            tool_timeout: Duration::from_secs(30),
        }
    }
}

/// The shortest lifetime an app may ask for: a token that expires before the agent's first
/// call is a mistake, not a precaution.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(60);
