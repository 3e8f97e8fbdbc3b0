//! Tether as the OAuth 2.1 authorization server of its own MCP server, as the MCP
//! authorization specification asks (revisions 2025-06-18 and 2025-11-25): protected resource
//! metadata (RFC 9728), authorization server metadata (RFC 8414), dynamic client registration
//! (RFC 7591) and client ID metadata documents, the authorization code grant with PKCE S256
//! only, resource indicators (RFC 8707), rotating refresh tokens with reuse detection, and
//! revocation (RFC 7009).
//!
//! Tether never signs anyone in: it sends the browser to the app's sign-in page with a
//! signed, single-use request; the app approves it through its API key (which end user, what
//! access, which integrations), and Tether finishes the flow. The access tokens are agent
//! tokens (rows of `agent_tokens` with the grant and the client), so the MCP server accepts
//! them without knowing any of this. One module per endpoint; nothing here is kept in one
//! instance's memory but a short cache of fetched client metadata documents and the count of
//! registrations per client address (`registrations`).

pub(crate) mod approval;
mod authorize;
mod client;
mod errors;
mod metadata;
mod register;
mod registrations;
mod revoke;
pub mod settings;
mod signing;
mod token;

use axum::Router;
use tether_store::Store;
use url::Url;

use crate::config::GatewayConfig;
use crate::state::AppState;

pub use settings::McpAuthConfig;
pub(crate) use signing::SEALING_CONTEXT as SIGNING_KEY_CONTEXT;

/// The scope that lets a client read through the MCP server.
pub const SCOPE_READ: &str = "mcp:read";
/// The scope that lets a client write through the MCP server.
pub const SCOPE_WRITE: &str = "mcp:write";

/// The authorization server's per-instance state: the signing key once read, fetched client
/// metadata documents, and registrations per client address.
#[derive(Default)]
pub struct McpAuthState {
    signing_key: signing::KeyCell,
    clients: client::MetadataCache,
    registrations: registrations::RegistrationLimiter,
}

/// Every route of the authorization server (the app's approval API included).
pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .merge(metadata::router())
        .merge(register::router())
        .merge(authorize::router())
        .merge(approval::router())
        .merge(token::router())
        .merge(revoke::router())
}

/// The issuer identifier: the public URL without a trailing slash (RFC 8414 section 2).
pub(crate) fn issuer(config: &GatewayConfig) -> String {
    config.public_url.as_str().trim_end_matches('/').to_owned()
}

/// A URL under the public URL, built segment by segment.
pub(crate) fn public_endpoint(config: &GatewayConfig, segments: &[&str]) -> Url {
    let mut url = config.public_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .expect("the public URL is an http(s) URL, which has a path");
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// The protected resource every token is bound to: `{public_url}/mcp` (RFC 8707).
pub(crate) fn resource(config: &GatewayConfig) -> String {
    public_endpoint(config, &["mcp"]).to_string()
}
