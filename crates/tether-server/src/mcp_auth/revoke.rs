//! `POST /mcp/oauth/revoke`: token revocation (RFC 7009) for public clients, which name
//! themselves with `client_id`. A refresh token revokes its whole grant (section 2.1: the
//! access tokens of the same grant go too); an access token revokes itself. A token that is
//! unknown, already revoked or another client's gets the same 200 as a revoked one (section
//! 2.2), so the endpoint tells nobody which tokens exist.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tether_store::{Store, TokenHash};

use super::errors::{OAuthError, no_store};
use super::token::form;
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/mcp/oauth/revoke", post(revoke::<S>))
}

async fn revoke<S: Store>(State(state): State<AppState<S>>, body: Bytes) -> Response {
    match handle(&state, &body).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(err) => err.into_response(),
    }
}

async fn handle<S: Store>(state: &AppState<S>, body: &[u8]) -> Result<(), OAuthError> {
    let params = form(body)?;
    let token = params
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let client_id = params
        .get("client_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_client", "client_id is required"))?;
    let hash = TokenHash::of(token);
    let now = state.clock.now();
    // The hint only orders the lookups (section 2.1); both kinds are tried.
    if let Some(grant_id) = state
        .store
        .mcp_grant_of_refresh_token(&hash, client_id)
        .await?
    {
        state.store.revoke_mcp_grant(&grant_id, now).await?;
        tracing::info!(grant_id = %grant_id, "mcp grant revoked by its client");
        return Ok(());
    }
    state
        .store
        .revoke_mcp_access_token(&hash, client_id, now)
        .await?;
    Ok(())
}
