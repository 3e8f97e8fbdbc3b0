//! Agent tokens in the console: a connection's page lists its end user's agent tokens, and an
//! operator revokes one with a button (a POST with the session's CSRF token from the same
//! origin, like every console action). The revocation holds on every instance at once.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tether_core::unix_time::rfc3339;
use tether_store::{Store, StoreResult};

use super::{ActionForm, authorize_action, dashboard_url, message, no_such_connection, see_other};
use crate::state::AppState;

/// Tokens listed on a connection's page.
const LISTED: u32 = 50;

/// One agent token as the console shows it.
pub(super) struct AgentTokenItem {
    pub id: String,
    pub access: &'static str,
    /// The integrations it reaches, or "all".
    pub integrations: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    pub expires: String,
    /// The MCP client it was issued to, when it came through MCP authorization.
    pub client: String,
    /// Where its revoke button posts; `None` once it no longer works.
    pub revoke_href: Option<String>,
}

/// The end user's agent tokens, newest first, for the page of `connection_id`.
pub(super) async fn of_end_user<S: Store>(
    state: &AppState<S>,
    end_user_id: &str,
    connection_id: &str,
) -> StoreResult<Vec<AgentTokenItem>> {
    let now = state.clock.now();
    let rows = state.store.list_agent_tokens(end_user_id, LISTED).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let view = crate::agents::tokens::view(row, now);
            let active = view.status == "active";
            AgentTokenItem {
                id: row.id.clone(),
                access: row.access.as_str(),
                integrations: row
                    .integrations
                    .as_ref()
                    .map_or_else(|| "all".to_owned(), |keys| keys.join(", ")),
                status: view.status,
                expires: rfc3339(row.expires_at),
                client: row.mcp_client_id.clone().unwrap_or_default(),
                revoke_href: active.then(|| {
                    dashboard_url(
                        state,
                        &[
                            "connections",
                            connection_id,
                            "agent-tokens",
                            &row.id,
                            "revoke",
                        ],
                        &[],
                    )
                }),
            }
        })
        .collect())
}

/// `POST /dashboard/connections/{id}/agent-tokens/{token}/revoke`.
pub(super) async fn revoke<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path((connection_id, token_id)): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let Ok(connection_id) = crate::api::parse_connection_id(&connection_id) else {
        return no_such_connection(&state, &operator, "No connection has this id.");
    };
    match state
        .store
        .revoke_agent_token(&token_id, state.clock.now())
        .await
    {
        Ok(true) => {
            tracing::info!(agent_token_id = %token_id, "console: agent token revoked");
            see_other(&dashboard_url(
                &state,
                &["connections", connection_id.as_str()],
                &[("notice", "agent_token_revoked")],
            ))
        }
        Ok(false) => message(
            &state,
            Some(&operator),
            StatusCode::NOT_FOUND,
            "No such agent token",
            "No agent token has this id.",
        ),
        Err(err) => super::internal(&state, "agent token", &err),
    }
}
