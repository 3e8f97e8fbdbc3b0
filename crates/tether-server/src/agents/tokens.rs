//! `/v1/agent-tokens`: the app mints a bearer token for an AI agent acting for one of its end
//! users (`POST`), lists an end user's tokens (`GET`, never the token itself) and revokes one
//! (`DELETE`). The token is shown once and stored only as a hash; since every MCP request
//! looks its hash up in the database, a revocation through any instance holds on every
//! instance from the next request on.

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tether_core::ids::EndUserId;
use tether_core::{random, unix_time};
use tether_store::{AgentAccess, AgentTokenRow, Store, TokenHash};
use utoipa::{IntoParams, ToSchema};

use super::config::MIN_TOKEN_TTL;
use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

/// What leak scanners can look for: every agent token starts with it.
pub const TOKEN_PREFIX: &str = "tat_";

/// Most tokens `GET /v1/agent-tokens` lists for one end user.
const LIST_LIMIT: u32 = 200;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/v1/agent-tokens", post(create::<S>).get(list::<S>))
        .route("/v1/agent-tokens/{id}", delete(revoke::<S>))
}

/// A token for an agent acting for one end user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentToken {
    /// The app's id for the end user whose connections the agent may use.
    end_user_id: String,
    /// `read` (GET and HEAD only) or `write` (any method).
    access: String,
    /// The integration keys the agent may use; every integration when absent.
    #[serde(default)]
    integrations: Option<Vec<String>>,
    /// Lifetime in seconds: 60 to `[mcp] max_token_ttl_secs` (30 days by default); one hour
    /// when absent.
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A new agent token: hand `token` to the agent (as `Authorization: Bearer ...` on `/mcp`).
#[derive(Serialize, ToSchema)]
pub struct AgentTokenCreated {
    /// `agt_...`: names the token to list or revoke it.
    pub id: String,
    /// The token (`tat_...`); shown once, stored only as a hash.
    pub token: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// An agent token as listed (never the token itself).
#[derive(Serialize, ToSchema)]
pub struct AgentTokenView {
    pub id: String,
    pub end_user_id: String,
    /// `read` or `write`.
    pub access: String,
    /// The integration keys it reaches; `null`: every integration.
    pub integrations: Option<Vec<String>>,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// The MCP client it was issued to through MCP authorization; `null` when the app
    /// minted it.
    pub mcp_client_id: Option<String>,
}

/// An end user's agent tokens, newest first.
#[derive(Serialize, ToSchema)]
pub struct AgentTokenList {
    pub agent_tokens: Vec<AgentTokenView>,
}

pub(crate) fn view(row: &AgentTokenRow, now: i64) -> AgentTokenView {
    let status = if row.revoked_at.is_some() {
        "revoked"
    } else if row.expires_at <= now {
        "expired"
    } else {
        "active"
    };
    AgentTokenView {
        id: row.id.clone(),
        end_user_id: row.end_user_id.clone(),
        access: row.access.as_str().to_owned(),
        integrations: row.integrations.clone(),
        created_at: unix_time::rfc3339(row.created_at),
        expires_at: unix_time::rfc3339(row.expires_at),
        revoked_at: row.revoked_at.map(unix_time::rfc3339),
        status: status.to_owned(),
        mcp_client_id: row.mcp_client_id.clone(),
    }
}

/// Refuses integration keys that name no integration: 422 `integration_not_found`, naming
/// the first unknown key. What an agent may reach is checked the same way wherever it is
/// decided: a token the app mints here, and a grant the app approves for an MCP client.
pub(crate) fn require_known_integrations<S: Store>(
    state: &AppState<S>,
    keys: &[String],
) -> Result<(), ApiError> {
    match keys.iter().find(|key| state.integration(key).is_none()) {
        Some(key) => Err(ApiError::Unprocessable {
            code: "integration_not_found",
            detail: format!("no integration is configured with key {key:?}"),
        }),
        None => Ok(()),
    }
}

/// A fresh id: `agt_` and 128 random bits in hex (an id is not a secret, only unique).
pub(crate) fn new_id() -> String {
    let mut id = String::from("agt_");
    id.push_str(&hex::encode(rand::random::<[u8; 16]>()));
    id
}

/// Mints an agent token for one end user.
#[utoipa::path(post, path = "/v1/agent-tokens", tag = "agents", request_body = CreateAgentToken,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = AgentTokenCreated),
        (status = 400, description = "`invalid_end_user`, `invalid_access`, `invalid_expires_in`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`integration_not_found`: an integration key no integration has", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    body: Result<Json<CreateAgentToken>, JsonRejection>,
) -> Result<(StatusCode, Json<AgentTokenCreated>), ApiError> {
    let Json(body) = body?;
    let end_user_id = EndUserId::try_from(body.end_user_id.as_str())
        .map_err(|e| ApiError::bad_request("invalid_end_user", e.to_string()))?;
    let access = AgentAccess::parse(&body.access).ok_or_else(|| {
        ApiError::bad_request("invalid_access", "access must be \"read\" or \"write\"")
    })?;
    if let Some(keys) = &body.integrations {
        require_known_integrations(&state, keys)?;
    }
    let limits = &state.config.mcp;
    let ttl = match body.expires_in {
        None => limits.default_token_ttl,
        Some(secs) => {
            let ttl = Duration::from_secs(secs);
            if ttl < MIN_TOKEN_TTL || ttl > limits.max_token_ttl {
                return Err(ApiError::bad_request(
                    "invalid_expires_in",
                    format!(
                        "expires_in must be between {} and {} seconds",
                        MIN_TOKEN_TTL.as_secs(),
                        limits.max_token_ttl.as_secs()
                    ),
                ));
            }
            ttl
        }
    };
    let token = random::prefixed_token(TOKEN_PREFIX);
    let now = state.clock.now();
    let expires_at = crate::connection_service::expiry::after(now, ttl);
    let row = AgentTokenRow {
        id: new_id(),
        token_hash: TokenHash::of(&token),
        end_user_id: end_user_id.as_str().to_owned(),
        access,
        integrations: body.integrations,
        created_at: now,
        expires_at,
        revoked_at: None,
        mcp_client_id: None,
        grant_id: None,
    };
    state.store.insert_agent_token(&row).await?;
    tracing::info!(agent_token_id = %row.id, access = access.as_str(), "agent token created");
    Ok((
        StatusCode::CREATED,
        Json(AgentTokenCreated {
            id: row.id,
            token,
            expires_at: unix_time::rfc3339(expires_at),
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The end user whose tokens to list.
    end_user_id: String,
}

/// An end user's agent tokens (revoked and expired ones too), newest first, at most 200.
#[utoipa::path(get, path = "/v1/agent-tokens", tag = "agents", params(ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The end user's tokens", body = AgentTokenList),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<AgentTokenList>, ApiError> {
    let Query(query) = query?;
    let rows = state
        .store
        .list_agent_tokens(&query.end_user_id, LIST_LIMIT)
        .await?;
    let now = state.clock.now();
    Ok(Json(AgentTokenList {
        agent_tokens: rows.iter().map(|row| view(row, now)).collect(),
    }))
}

/// Revokes an agent token at once, on every instance. Revoking it again is no error.
#[utoipa::path(delete, path = "/v1/agent-tokens/{id}", tag = "agents",
    params(("id" = String, Path, description = "The token's id (`agt_...`)")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`agent_token_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state
        .store
        .revoke_agent_token(&id, state.clock.now())
        .await?
    {
        tracing::info!(agent_token_id = %id, "agent token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound {
            code: "agent_token_not_found",
            detail: "no agent token has this id".into(),
        })
    }
}
