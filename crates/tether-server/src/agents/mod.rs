//! Agents: AI agents acting for one end user through the MCP server at `/mcp`, with agent
//! tokens the app mints (`/v1/agent-tokens`). A token names one end user, read or write
//! access, and some or all integrations; the MCP tools reach only that user's connections in
//! those integrations, through the same proxy code the app's calls take.
//!
//! - `tokens`: the app's API to mint, list and revoke tokens;
//! - `principal`: the bearer token on `/mcp` resolved to a [`principal::Principal`] (or 401);
//! - `limits`: per-token rate and concurrency on this instance;
//! - `origin`: the transport's `Origin` check (403 for browser pages not allowed);
//! - `mcp`: the MCP server (`rmcp`, Streamable HTTP, stateless);
//! - `tools`: `list_connections` and `crm_request`;
//! - `config`: `[mcp]` limits.

mod config;
pub(crate) mod limits;
mod mcp;
mod origin;
pub(crate) mod principal;
pub(crate) mod tokens;
mod tools;

use axum::Router;
use tether_store::Store;

use crate::state::AppState;

pub use config::McpConfig;

/// The app's `/v1/agent-tokens` routes (API-key guarded, problem+json like the rest).
pub fn api_router<S: Store>() -> Router<AppState<S>> {
    tokens::router()
}

/// `/mcp`, guarded by agent tokens, with its own body limit.
pub fn mcp_router<S: Store>(state: &AppState<S>) -> Router<AppState<S>> {
    mcp::router(state)
}
