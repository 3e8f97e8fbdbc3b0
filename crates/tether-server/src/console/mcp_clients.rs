//! The console's MCP clients of one end user: the OAuth grants they approved, with a button
//! that revokes a grant (its refresh tokens and access tokens) at once.

use super::*;

/// Grants shown for one end user.
const GRANTS_SHOWN: u32 = 200;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct McpClientsQuery {
    end_user_id: Option<String>,
    notice: Option<String>,
}

pub(super) struct GrantItem {
    id: String,
    client_name: String,
    client_id: String,
    access: String,
    integrations: String,
    created: String,
    revoke_href: String,
}

#[derive(Template)]
#[template(path = "console/mcp_clients.html")]
pub(super) struct McpClientsPage {
    frame: Frame,
    end_user_id: String,
    rows: Vec<GrantItem>,
}

pub(super) async fn mcp_clients<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    query: Result<Query<McpClientsQuery>, QueryRejection>,
) -> Response {
    let operator = match viewer(&state, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let query = query.map(|q| q.0).unwrap_or_default();
    let Some(end_user_id) = non_empty(query.end_user_id) else {
        return message(
            &state,
            Some(&operator),
            StatusCode::BAD_REQUEST,
            "Which end user?",
            "Open this page from a connection: it lists one end user's MCP clients.",
        );
    };
    let grants = match state
        .store
        .list_mcp_grants(&end_user_id, GRANTS_SHOWN)
        .await
    {
        Ok(grants) => grants,
        Err(err) => return internal(&state, "mcp clients", &err),
    };
    let rows = grants
        .into_iter()
        .map(|g| GrantItem {
            revoke_href: dashboard_url(
                &state,
                &["mcp-clients", &g.id, "revoke"],
                &[("end_user_id", &end_user_id)],
            ),
            id: g.id,
            client_name: g.client_name.unwrap_or_default(),
            client_id: g.client_id,
            access: g.access,
            integrations: g
                .integrations
                .and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok())
                .map(|keys| keys.join(", "))
                .unwrap_or_else(|| "all".to_owned()),
            created: rfc3339(g.created_at),
        })
        .collect();
    let mut frame = Frame::new(&state, Some(&operator), "connections");
    if query.notice.as_deref() == Some("revoked") {
        frame.notice = Some("The MCP client's access was revoked.");
    }
    let nonce = frame.nonce.clone();
    let body = McpClientsPage {
        frame,
        end_user_id,
        rows,
    };
    page(StatusCode::OK, &nonce, body.render())
}

#[derive(Deserialize, Default)]
pub(super) struct RevokeQuery {
    end_user_id: Option<String>,
}

pub(super) async fn revoke_grant<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<RevokeQuery>, QueryRejection>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if let Err(response) = authorize_action(&state, &headers, &form).await {
        return response;
    }
    if let Err(err) = state.store.revoke_mcp_grant(&id, state.clock.now()).await {
        return internal(&state, "revoke mcp grant", &err);
    }
    tracing::info!(grant_id = %id, "console: mcp grant revoked");
    let end_user_id = query.ok().and_then(|q| q.0.end_user_id).unwrap_or_default();
    see_other(&dashboard_url(
        &state,
        &["mcp-clients"],
        &[("end_user_id", &end_user_id), ("notice", "revoked")],
    ))
}
