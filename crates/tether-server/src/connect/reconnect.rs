//! What a reconnect changes on the Connect side: which connection a session reconnects (set
//! by `reconnect_connection_id` when the app made the session), and the pages for a connect
//! that must not change anything because another account signed in, or because the account
//! could not be confirmed.

use axum::http::StatusCode;
use tether_store::Store;

use super::pages::Failure;
use crate::connection_service::persist::SaveError;
use crate::state::AppState;

/// The connection the session reconnects, if it is a reconnect session.
pub async fn target<S: Store>(
    state: &AppState<S>,
    token_hash: &str,
) -> Result<Option<String>, Failure> {
    state
        .store
        .session_reconnect(token_hash)
        .await
        .map_err(|err| {
            Failure::internal(
                "reading the session's reconnect",
                &err,
                "We could not finish connecting your account. Try again in a moment.",
            )
        })
}

/// The page for a save refused for the account's sake; `None` for any other failure.
/// The account label is the provider's text: the page template escapes it.
pub fn account_failure(err: &SaveError) -> Option<Failure> {
    let mut failure = match err {
        SaveError::AccountMismatch { belongs_to } => Failure::new(
            StatusCode::CONFLICT,
            "account_mismatch",
            "Another account signed in",
            format!(
                "This connection belongs to {belongs_to}. You signed in with another account, \
                 so nothing was changed. Sign in as {belongs_to} and try again, or ask the app \
                 to disconnect it first."
            ),
        ),
        SaveError::AccountUnconfirmed(_) => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "account_unconfirmed",
            "Try again in a moment",
            "The service did not tell us which account signed in, so nothing was changed. \
             Try again in a moment.",
        ),
        SaveError::ReconnectGone => Failure::new(
            StatusCode::GONE,
            "connection_gone",
            "This connection no longer exists",
            "The connection this link was made to repair has been removed, so nothing was \
             connected. Go back to the app and start again.",
        ),
        _ => return None,
    };
    failure.retry_last_start = !matches!(err, SaveError::ReconnectGone);
    Some(failure)
}
