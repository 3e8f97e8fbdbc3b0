//! The console's reconnect link: for a connection that needs its end user again, a connect
//! session made with `reconnect_connection_id` (same end user, same integration), shown for
//! the operator to pass on. Finishing it keeps the connection's id and only accepts the same
//! provider account, exactly as a session the app makes through the API.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tether_core::random;
use tether_store::{ConnectSessionRow, Store, TokenHash};

use super::{ActionForm, authorize_action, internal, message, no_such_connection};
use crate::state::AppState;

pub(super) async fn reconnect_link<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let gone = || no_such_connection(&state, &operator, "No connection has this id.");
    let Ok(id) = crate::api::parse_connection_id(&id) else {
        return gone();
    };
    let row = match state.store.get_connection(id.as_str()).await {
        Ok(Some(row)) => row,
        Ok(None) => return gone(),
        Err(err) => return internal(&state, "connection", &err),
    };
    let token = random::prefixed_token("cs_");
    let token_hash = TokenHash::of(&token);
    let now = state.clock.now();
    let session = ConnectSessionRow {
        token_hash: token_hash.clone(),
        end_user_id: row.end_user_id.clone(),
        end_user_email: row.end_user_email.clone(),
        end_user_display_name: row.end_user_display_name.clone(),
        integrations: Some(
            serde_json::to_string(&[row.integration.as_str()]).expect("strings serialize"),
        ),
        return_url: None,
        expires_at: crate::connection_service::expiry::after(now, state.config.connect_session_ttl),
        created_at: now,
        browser_hash: None,
        completed_at: None,
    };
    if let Err(err) = state.store.insert_connect_session(&session).await {
        return internal(&state, "reconnect session", &err);
    }
    if let Err(err) = state
        .store
        .set_session_reconnect(token_hash.as_str(), &row.id)
        .await
    {
        return internal(&state, "reconnect session", &err);
    }
    let mut link = state.config.public_path(&["connect"]);
    link.query_pairs_mut().append_pair("session", &token);
    tracing::info!(connection_id = %row.id, "console: reconnect link made");
    let minutes = state.config.connect_session_ttl.as_secs() / 60;
    message(
        &state,
        Some(&operator),
        StatusCode::OK,
        "Reconnect link",
        &format!(
            "Send this link to the end user ({}). It works once, in the first browser that \
             opens it, for {minutes} minutes, and only with the account the connection \
             belongs to: {link}",
            row.end_user_email.as_deref().unwrap_or(&row.end_user_id)
        ),
    )
}
