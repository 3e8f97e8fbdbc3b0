//! The two discovery documents an MCP client reads first: the protected resource metadata of
//! `{public_url}/mcp` (RFC 9728), which names Tether as its authorization server, and the
//! authorization server metadata (RFC 8414), which names the endpoints and what they support.
//! Both are public, static for a configuration, and cacheable for a short while.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tether_store::Store;

use super::{SCOPE_READ, SCOPE_WRITE, issuer, public_endpoint, resource};
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        // RFC 9728 section 3.1: the resource's path is appended to the well-known prefix; the
        // bare prefix serves the same document for clients that look there first.
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(protected_resource::<S>),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(protected_resource::<S>),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(authorization_server::<S>),
        )
}

fn cacheable(body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `GET /.well-known/oauth-protected-resource/mcp`: RFC 9728 section 2.
async fn protected_resource<S: Store>(State(state): State<AppState<S>>) -> Response {
    let config = &state.config;
    cacheable(json!({
        "resource": resource(config),
        "authorization_servers": [issuer(config)],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [SCOPE_READ, SCOPE_WRITE],
        "resource_name": config.app_name,
    }))
}

/// `GET /.well-known/oauth-authorization-server`: RFC 8414 section 2.
async fn authorization_server<S: Store>(State(state): State<AppState<S>>) -> Response {
    let config = &state.config;
    let endpoint = |segments: &[&str]| public_endpoint(config, segments).to_string();
    cacheable(json!({
        "issuer": issuer(config),
        "authorization_endpoint": endpoint(&["mcp", "oauth", "authorize"]),
        "token_endpoint": endpoint(&["mcp", "oauth", "token"]),
        "registration_endpoint": endpoint(&["mcp", "oauth", "register"]),
        "revocation_endpoint": endpoint(&["mcp", "oauth", "revoke"]),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [SCOPE_READ, SCOPE_WRITE],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
    }))
}
