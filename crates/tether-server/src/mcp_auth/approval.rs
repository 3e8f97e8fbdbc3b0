//! The app's side of an MCP authorization (API key): `GET /v1/agent-authorizations/{request}`
//! says what is asked, `POST .../approve` grants it for one end user (access and
//! integrations as the app decides) and `POST .../deny` refuses it. Both answer where to send
//! the browser next (`redirect_to`, the client's redirect URI with `code` or `error`, `state`
//! and `iss`). A request is taken once: of an approval and a denial, or two approvals, one
//! wins; the others find no request.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tether_core::ids::EndUserId;
use tether_core::random;
use tether_store::{McpAuthRequestRow, McpCodeRow, McpGrantRow, Store, TokenHash};
use utoipa::ToSchema;

use super::errors::redirect_uri_with;
use super::{SCOPE_WRITE, issuer, signing};
use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/v1/agent-authorizations/{request}", get(show::<S>))
        .route(
            "/v1/agent-authorizations/{request}/approve",
            post(approve::<S>),
        )
        .route("/v1/agent-authorizations/{request}/deny", post(deny::<S>))
}

/// What an MCP client asks for, to show the end user before they approve.
#[derive(Serialize, ToSchema)]
pub struct AuthorizationRequestView {
    /// The client's own name for itself (as it registered it: not verified).
    pub client_name: Option<String>,
    /// The client's id: a registered id, or the URL of its metadata document.
    pub client_id: String,
    /// The host the browser returns to after the decision: show it, it says who gets access.
    pub redirect_host: String,
    /// Space-separated scopes asked for: `mcp:read`, `mcp:write`.
    pub scope: String,
    /// The MCP server the access is for.
    pub resource: String,
    /// When the request stops being usable (RFC 3339).
    pub expires_at: String,
}

/// The app's approval: which end user, what access, which integrations.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// The app's id for the signed-in end user the client will act for.
    pub end_user_id: String,
    /// `read` (GET and HEAD only) or `write`; `write` only when the client asked for
    /// `mcp:write`.
    pub access: String,
    /// The integration keys the client may reach; every integration when absent.
    #[serde(default)]
    pub integrations: Option<Vec<String>>,
}

/// Where to send the end user's browser now.
#[derive(Serialize, ToSchema)]
pub struct RedirectTo {
    /// The MCP client's redirect URI with the outcome (`code` or `error`, `state`, `iss`).
    pub redirect_to: String,
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "authorization_request_not_found",
        detail: "no authorization request is waiting under this id (unknown, already decided, \
                 or expired)"
            .into(),
    }
}

/// The request a signed parameter names, live at `now`; expired ones are not found.
async fn live_request<S: Store>(
    state: &AppState<S>,
    parameter: &str,
) -> Result<(TokenHash, McpAuthRequestRow), ApiError> {
    let hash = signing::verify(state, parameter)
        .await?
        .ok_or_else(not_found)?;
    let row = state
        .store
        .get_mcp_request(&hash)
        .await?
        .ok_or_else(not_found)?;
    if row.expires_at <= state.clock.now() {
        return Err(not_found());
    }
    Ok((hash, row))
}

fn rfc3339(unix: i64) -> String {
    tether_core::unix_time::rfc3339(unix)
}

/// What an MCP client asks for.
#[utoipa::path(get, path = "/v1/agent-authorizations/{request}", tag = "agents",
    params(("request" = String, Path, description = "The `tether_request` parameter Tether added to the sign-in URL")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The waiting request", body = AuthorizationRequestView),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`authorization_request_not_found`: unknown, altered, decided or expired", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn show<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(request): Path<String>,
) -> Result<Json<AuthorizationRequestView>, ApiError> {
    let (_, row) = live_request(&state, &request).await?;
    let redirect_host = url::Url::parse(&row.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Json(AuthorizationRequestView {
        client_name: row.client_name,
        client_id: row.client_id,
        redirect_host,
        scope: row.scope,
        resource: row.resource,
        expires_at: rfc3339(row.expires_at),
    }))
}

/// Approves a waiting request for one end user; answers where to send the browser.
#[utoipa::path(post, path = "/v1/agent-authorizations/{request}/approve", tag = "agents",
    params(("request" = String, Path, description = "The `tether_request` parameter")),
    request_body = Approve,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Approved: send the browser to `redirect_to`", body = RedirectTo),
        (status = 400, description = "`invalid_end_user`, `invalid_access`, `scope_not_requested`, `invalid_integrations`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`authorization_request_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`integration_not_found`: an integration key no integration has", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn approve<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(request): Path<String>,
    body: Result<Json<Approve>, JsonRejection>,
) -> Result<Json<RedirectTo>, ApiError> {
    let Json(body) = body?;
    let (hash, row) = live_request(&state, &request).await?;
    // Every check before the request is taken, so a mistake does not spend it.
    let end_user = EndUserId::try_from(body.end_user_id.as_str())
        .map_err(|e| ApiError::bad_request("invalid_end_user", e.to_string()))?;
    if body.access != "read" && body.access != "write" {
        return Err(ApiError::bad_request(
            "invalid_access",
            "access must be read or write",
        ));
    }
    if body.access == "write" && !row.scope.split(' ').any(|s| s == SCOPE_WRITE) {
        return Err(ApiError::bad_request(
            "scope_not_requested",
            "the client asked for read access only (no mcp:write); approve it with access read",
        ));
    }
    let integrations = match &body.integrations {
        None => None,
        Some(keys) if keys.is_empty() => {
            return Err(ApiError::bad_request(
                "invalid_integrations",
                "integrations, when given, must name at least one integration",
            ));
        }
        Some(keys) => {
            crate::agents::tokens::require_known_integrations(&state, keys)?;
            Some(serde_json::to_string(keys).expect("strings serialize"))
        }
    };
    let row = state
        .store
        .take_mcp_request(&hash)
        .await?
        .ok_or_else(not_found)?;
    let now = state.clock.now();
    if row.expires_at <= now {
        return Err(not_found());
    }
    // The scope granted says what the access allows, whatever the client asked.
    let scope = if body.access == "write" {
        row.scope.clone()
    } else {
        super::SCOPE_READ.to_owned()
    };
    let grant = McpGrantRow {
        id: random::prefixed_token("mcpg_"),
        client_id: row.client_id.clone(),
        client_name: row.client_name.clone(),
        end_user_id: end_user.as_str().to_owned(),
        access: body.access.clone(),
        integrations,
        scope,
        resource: row.resource.clone(),
        created_at: now,
        revoked_at: None,
    };
    let code = random::token();
    let code_row = McpCodeRow {
        code_hash: TokenHash::of(&code),
        grant_id: grant.id.clone(),
        redirect_uri: row.redirect_uri.clone(),
        code_challenge: row.code_challenge.clone(),
        expires_at: now + state.config.mcp_auth.code_ttl.as_secs() as i64,
        created_at: now,
    };
    state.store.insert_mcp_grant(&grant, &code_row, now).await?;
    tracing::info!(grant_id = %grant.id, client_id = %grant.client_id, "mcp authorization approved");
    redirect(&state, &row, &[("code", &code)])
}

/// Denies a waiting request; answers where to send the browser.
#[utoipa::path(post, path = "/v1/agent-authorizations/{request}/deny", tag = "agents",
    params(("request" = String, Path, description = "The `tether_request` parameter")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Denied: send the browser to `redirect_to` (it carries `error=access_denied`)", body = RedirectTo),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`authorization_request_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deny<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(request): Path<String>,
) -> Result<Json<RedirectTo>, ApiError> {
    let hash = signing::verify(&state, &request)
        .await?
        .ok_or_else(not_found)?;
    let row = state
        .store
        .take_mcp_request(&hash)
        .await?
        .ok_or_else(not_found)?;
    if row.expires_at <= state.clock.now() {
        return Err(not_found());
    }
    redirect(
        &state,
        &row,
        &[
            ("error", "access_denied"),
            (
                "error_description",
                "the user or the application refused access",
            ),
        ],
    )
}

fn redirect<S: Store>(
    state: &AppState<S>,
    row: &McpAuthRequestRow,
    params: &[(&str, &str)],
) -> Result<Json<RedirectTo>, ApiError> {
    let url = redirect_uri_with(
        &row.redirect_uri,
        params,
        row.state.as_deref(),
        &issuer(&state.config),
    )
    .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a stored redirect URI is not a URL")))?;
    Ok(Json(RedirectTo {
        redirect_to: url.to_string(),
    }))
}
