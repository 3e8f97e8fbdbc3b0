//! `[mcp]` in `tether.toml` (and `TETHER_MCP__<KEY>`): the MCP server at `/mcp` and the agent
//! tokens it takes. A module of its own, so the section's keys (its limits here, MCP
//! authorization's elsewhere) are declared in one place; defaults are `McpConfig`'s.

use tether_server::GatewayConfig;

use crate::settings::settings;
use crate::tuning::default_gateway;

settings! {
    /// `[mcp]`: the MCP server's limits.
    pub struct McpSettings in "mcp" for config: GatewayConfig = default_gateway() => {
        /// an agent token's lifetime when the app asks for none (`expires_in`)
        default_token_ttl_secs: Option<u64> => secs(60, config.mcp.default_token_ttl),
        /// the longest lifetime an app may ask for
        max_token_ttl_secs: Option<u64> => secs(60, config.mcp.max_token_ttl),
        /// requests one agent token may make to `/mcp` per minute, per instance (kept in
        /// memory: N instances allow up to N times as many)
        requests_per_minute: Option<u32> => count(1, config.mcp.requests_per_minute),
        /// requests of one agent token in progress at once, per instance
        max_concurrent: Option<u32> => count(1, config.mcp.max_concurrent),
        /// the largest request body `/mcp` reads, in bytes
        max_request_bytes: Option<usize> => count(1024, config.mcp.max_request_bytes),
        /// a provider's body is cut after this many bytes before it goes back to the agent
        /// (with a note saying so)
        max_response_bytes: Option<usize> => count(1024, config.mcp.max_response_bytes),
        /// a `crm_request` tool call that takes longer is answered with an error
        tool_timeout_secs: Option<u64> => secs(1, config.mcp.tool_timeout),
    }
}
