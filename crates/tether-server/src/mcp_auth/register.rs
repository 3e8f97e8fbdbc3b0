//! `POST /mcp/oauth/register`: dynamic client registration (RFC 7591) for public clients only
//! (no secret is issued; the client proves itself with PKCE). Every value is bounded, every
//! redirect URI must be https or http on loopback, and errors are RFC 7591 JSON errors. Each
//! client address may register `[mcp] registrations_per_hour` clients (see `registrations`);
//! past that, 429 with `Retry-After` and the same JSON error shape (`rate_limited`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tether_core::random;
use tether_store::{McpClientRow, Store};

use super::client::{MAX_NAME_LEN, MAX_REDIRECT_URIS, redirect_uri_allowed};
use super::errors::{OAuthError, no_store};
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/mcp/oauth/register", post(register::<S>))
}

/// The client metadata Tether reads (RFC 7591 section 2); other fields are ignored.
#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
}

fn invalid_metadata(description: &str) -> OAuthError {
    OAuthError::new("invalid_client_metadata", description)
}

async fn register<S: Store>(
    State(state): State<AppState<S>>,
    parts: Parts,
    body: Bytes,
) -> Response {
    match handle(&state, &parts, &body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// Too many registrations from one address: 429, `Retry-After`, an RFC 7591-shaped body.
fn rate_limited(retry_after: u64) -> Response {
    let mut response = OAuthError {
        status: StatusCode::TOO_MANY_REQUESTS,
        error: "rate_limited",
        description: "too many clients registered from this address; try again later".into(),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

async fn handle<S: Store>(
    state: &AppState<S>,
    parts: &Parts,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let metadata: Metadata = serde_json::from_slice(body)
        .map_err(|_| invalid_metadata("the body must be a JSON object of client metadata"))?;
    if metadata.redirect_uris.is_empty() || metadata.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            "redirect_uris must list between 1 and 10 URIs",
        ));
    }
    for uri in &metadata.redirect_uris {
        redirect_uri_allowed(uri).map_err(|why| OAuthError::new("invalid_redirect_uri", why))?;
    }
    if let Some(method) = &metadata.token_endpoint_auth_method
        && method != "none"
    {
        return Err(invalid_metadata(
            "only public clients are supported: token_endpoint_auth_method must be none",
        ));
    }
    let grant_types = metadata
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    if grant_types
        .iter()
        .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err(invalid_metadata(
            "grant_types may only be authorization_code and refresh_token",
        ));
    }
    let response_types = metadata
        .response_types
        .unwrap_or_else(|| vec!["code".to_owned()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(invalid_metadata("response_types may only be code"));
    }
    if let Some(scope) = &metadata.scope
        && scope
            .split(' ')
            .any(|s| s != super::SCOPE_READ && s != super::SCOPE_WRITE)
    {
        return Err(invalid_metadata(
            "scope may only hold mcp:read and mcp:write",
        ));
    }
    let client_name = match metadata.client_name {
        Some(name) if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) => {
            return Err(invalid_metadata(
                "client_name must be at most 200 characters, without control characters",
            ));
        }
        other => other,
    };
    // Counted only once the metadata is valid: a refused request writes nothing.
    if let Err(retry_after) = state.mcp_auth.registrations.admit(
        state.client_of(parts),
        state.config.mcp_auth.registrations_per_hour,
        state.clock.instant(),
    ) {
        // At debug: a flood of refusals must not become a flood of log lines.
        tracing::debug!(retry_after, "mcp client registration refused: rate limited");
        return Ok(rate_limited(retry_after));
    }
    let now = state.clock.now();
    let row = McpClientRow {
        client_id: random::prefixed_token("mcpc_"),
        client_name,
        redirect_uris: metadata.redirect_uris,
        created_at: now,
    };
    state.store.insert_mcp_client(&row, now).await?;
    tracing::info!(client_id = %row.client_id, "mcp client registered");
    let body = json!({
        "client_id": row.client_id,
        "client_id_issued_at": now,
        "client_name": row.client_name,
        "redirect_uris": row.redirect_uris,
        "grant_types": grant_types,
        "response_types": response_types,
        "token_endpoint_auth_method": "none",
    });
    Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
}
