//! `[mcp]` keys of the MCP authorization server: the app's sign-in page and the lifetimes of
//! what it issues. Declared apart from the MCP server's own `[mcp]` keys so each part of the
//! section lives beside its feature.

use tether_server::GatewayConfig;

use crate::settings::settings;
use crate::tuning::default_gateway;

settings! {
    /// `[mcp]`: how MCP clients are authorized through OAuth (Tether as their authorization
    /// server, the app signing its user in).
    pub struct McpAuthSection in "mcp" for config: GatewayConfig = default_gateway() => {
        /// the app's page that signs its user in and approves an MCP client; Tether sends the
        /// browser there with `?tether_request=...` (http or https URL); without it, MCP
        /// clients cannot sign in through OAuth (agent tokens still work)
        sign_in_url: Option<String> => custom("none"),
        /// how long an authorization request waits for the app's approval
        request_ttl_secs: Option<u64> => secs(60, config.mcp_auth.request_ttl),
        /// how long an access token issued to an MCP client lives
        access_token_ttl_secs: Option<u64> => secs(60, config.mcp_auth.access_ttl),
        /// how long a refresh token issued to an MCP client lives unused (each use rotates it)
        refresh_token_ttl_days: Option<u32> => days(1, config.mcp_auth.refresh_ttl),
    }
}

impl McpAuthSection {
    /// `sign_in_url`, which the `settings!` rules do not cover.
    pub fn apply_custom(&self, config: &mut GatewayConfig) -> anyhow::Result<()> {
        if let Some(text) = &self.sign_in_url {
            let url = url::Url::parse(text)
                .map_err(|_| anyhow::anyhow!("mcp.sign_in_url: not an absolute URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() {
                anyhow::bail!("mcp.sign_in_url: must be an http or https URL without a fragment");
            }
            config.mcp_auth.sign_in_url = Some(url);
        }
        Ok(())
    }
}
