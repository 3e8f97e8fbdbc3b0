//! `[mcp]` in `tether.toml` (and `TETHER_MCP__<KEY>`): the MCP server at `/mcp`, the agent
//! tokens it takes, and the authorization server through which MCP clients get theirs. One
//! module, so the section's keys are declared in one place; defaults are `McpConfig`'s and
//! `McpAuthConfig`'s.

use tether_server::GatewayConfig;

use crate::settings::settings;
use crate::tuning::default_gateway;

settings! {
    /// `[mcp]`: the MCP server's limits, and how MCP clients are authorized through OAuth
    /// (Tether as their authorization server, the app signing its user in).
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
        /// the app's page that signs its user in and approves an MCP client; Tether sends the
        /// browser there with `?tether_request=...` (http or https URL); without it, MCP
        /// clients cannot sign in through OAuth (agent tokens still work)
        sign_in_url: Option<String> => custom("none"),
        /// browser origins besides Tether's own that may call `/mcp` (a web app whose page is
        /// the MCP client), such as https://app.example.com; a request with any other `Origin`
        /// header gets 403 (DNS rebinding protection, as the MCP transport asks)
        allowed_origins: Vec<String> => custom("none"),
        /// how long an authorization request waits for the app's approval
        request_ttl_secs: Option<u64> => secs(60, config.mcp_auth.request_ttl),
        /// how long an access token issued to an MCP client lives
        access_token_ttl_secs: Option<u64> => secs(60, config.mcp_auth.access_ttl),
        /// how long a refresh token issued to an MCP client lives unused (each use rotates it)
        refresh_token_ttl_days: Option<u32> => days(1, config.mcp_auth.refresh_ttl),
        /// clients one address (an IPv6 address by its /64) may register per hour through
        /// `POST /mcp/oauth/register`, per instance; more get 429 with `Retry-After`
        registrations_per_hour: Option<u32> => count(1, config.mcp_auth.registrations_per_hour),
    }
}

impl McpSettings {
    /// `sign_in_url` and `allowed_origins`, which the `settings!` rules do not cover.
    pub fn apply_custom(&self, config: &mut GatewayConfig) -> anyhow::Result<()> {
        for text in &self.allowed_origins {
            let origin = browser_origin(text)
                .map_err(|message| anyhow::anyhow!("mcp.allowed_origins: {message}"))?;
            config.mcp.allowed_origins.push(origin);
        }
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

/// An origin a browser sends (`https://app.example.com`, a port when not the default): an
/// http or https URL without path, query or fragment. The error names what is wrong.
pub fn browser_origin(text: &str) -> Result<url::Origin, String> {
    let url = url::Url::parse(text)
        .map_err(|_| format!("{text:?} is not an origin such as https://app.example.com"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(format!(
            "{text:?} must be an http or https origin, without a path"
        ));
    }
    Ok(url.origin())
}

#[cfg(test)]
mod tests {
    use super::browser_origin;

    #[test]
    fn an_allowed_origin_is_an_http_origin_without_a_path() {
        let origin = browser_origin("https://app.example.com").unwrap();
        assert_eq!(origin.ascii_serialization(), "https://app.example.com");
        assert_eq!(
            browser_origin("http://127.0.0.1:3000/")
                .unwrap()
                .ascii_serialization(),
            "http://127.0.0.1:3000"
        );
        for bad in [
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com/app",
            "https://a.example?x=1",
            "",
        ] {
            assert!(browser_origin(bad).is_err(), "{bad}");
        }
    }
}
