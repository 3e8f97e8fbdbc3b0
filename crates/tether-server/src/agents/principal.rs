//! Who calls `/mcp`: the agent token in `Authorization: Bearer ...`, resolved to a
//! [`Principal`] by one indexed read of its hash (no cache, so a revocation on any instance
//! holds from the next request on). A missing, unknown, expired or revoked token is a 401
//! with the `WWW-Authenticate` challenge the MCP authorization spec asks for: it points the
//! client at the protected resource metadata, and says `invalid_token` when one was sent.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tether_store::{AgentAccess, AgentTokenRow, Store, TokenHash};

use super::limits::Refusal;
use crate::http::error::ApiError;
use crate::state::AppState;

/// Longest bearer value looked up; longer is no token of ours (and not worth hashing).
const MAX_TOKEN_LEN: usize = 512;

/// The agent a request to `/mcp` acts as: one end user, an access level, a set of
/// integrations. What the tools see; never the token.
#[derive(Clone, Debug)]
pub struct Principal {
    pub token_id: String,
    pub end_user_id: String,
    pub access: AgentAccess,
    /// `None`: every integration of the end user.
    pub integrations: Option<Vec<String>>,
    /// Set when the token came through MCP authorization.
    pub mcp_client_id: Option<String>,
}

impl Principal {
    fn of(row: AgentTokenRow) -> Self {
        Principal {
            token_id: row.id,
            end_user_id: row.end_user_id,
            access: row.access,
            integrations: row.integrations,
            mcp_client_id: row.mcp_client_id,
        }
    }

    /// Whether the token reaches integration `key`.
    pub fn reaches(&self, key: &str) -> bool {
        self.integrations
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k == key))
    }

    /// Who made a call, for the history: the MCP client when there is one, and the token.
    pub fn caller(&self) -> String {
        match &self.mcp_client_id {
            Some(client) => format!("MCP client {client} (token {})", self.token_id),
            None => format!("agent token {}", self.token_id),
        }
    }
}

/// The `Authorization: Bearer` value, if any.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware of the `/mcp` routes: lets a request through with its [`Principal`] in the
/// request's extensions (where the MCP handler finds it), within the token's limits.
pub async fn require_agent<S: Store>(
    State(state): State<AppState<S>>,
    mut request: Request,
    next: Next,
) -> Response<Body> {
    let Some(token) = bearer(&request) else {
        return unauthorized(&state, false);
    };
    if token.len() > MAX_TOKEN_LEN {
        return unauthorized(&state, true);
    }
    let hash = TokenHash::of(token);
    let row = match state
        .store
        .find_active_agent_token(&hash, state.clock.now())
        .await
    {
        Ok(Some(row)) => row,
        Ok(None) => return unauthorized(&state, true),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let principal = Principal::of(row);
    let limits = &state.config.mcp;
    let admitted = match state.agent_limits.admit(
        &principal.token_id,
        limits.requests_per_minute,
        limits.max_concurrent,
        state.clock.instant(),
    ) {
        Ok(admitted) => admitted,
        Err(Refusal::Rate(after)) => {
            return ApiError::Throttled {
                code: "agent_rate_limited",
                detail: "this agent token made too many requests this minute".into(),
                retry_after: after,
            }
            .into_response();
        }
        Err(Refusal::Concurrency) => {
            return ApiError::Throttled {
                code: "agent_concurrency_limited",
                detail: "this agent token has too many requests in progress".into(),
                retry_after: 1,
            }
            .into_response();
        }
    };
    request.extensions_mut().insert(principal);
    let response = next.run(request).await;
    // The place is held until the response head is out; a streamed body (SSE) is short
    // here, since stateless requests answer and end.
    drop(admitted);
    response
}

/// 401 with the challenge: where the protected resource metadata is, and `invalid_token`
/// when a token was sent (RFC 6750 section 3, RFC 9728 section 5.1).
fn unauthorized<S: Store>(state: &AppState<S>, token_sent: bool) -> Response<Body> {
    let metadata = state
        .config
        .public_path(&[".well-known", "oauth-protected-resource", "mcp"]);
    let mut challenge = String::from("Bearer resource_metadata=\"");
    challenge.push_str(metadata.as_str());
    challenge.push('"');
    if token_sent {
        challenge.push_str(", error=\"invalid_token\"");
    }
    let mut response = ApiError::AgentUnauthorized(if token_sent {
        "the agent token is unknown, expired or revoked"
    } else {
        "an agent token is required (Authorization: Bearer ...)"
    })
    .into_response();
    debug_assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    match HeaderValue::try_from(challenge) {
        Ok(value) => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        Err(_) => {
            // A public URL is ASCII without quotes, so this does not happen; the plain
            // challenge ApiError wrote stays.
        }
    }
    response
}
