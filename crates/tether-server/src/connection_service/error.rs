//! What the connection service's reads, refreshes and removals fail with, and the one place
//! ([`From<ConnectionError> for ApiError`]) that says how each failure is answered over HTTP.
//! Callers that are not the JSON API (the console, the background refresher) match on the
//! variants instead of on HTTP codes.

use tether_core::oauth2::TokenError;
use tether_store::StoreError;

use crate::http::error::ApiError;

/// A failure of the connection service.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// No connection has this id (or it was deleted meanwhile).
    #[error("no connection has this id")]
    NotFound,
    /// The connection's integration is no longer configured.
    #[error("the connection's integration {0:?} is no longer configured")]
    IntegrationGone(String),
    /// The connection is not active: its end user must connect it again.
    #[error("the connection needs to be connected again by its end user")]
    NeedsReauth,
    /// The refresh failed and the token has expired: the provider answered, but not usefully.
    #[error("{0}")]
    Provider(TokenError),
    /// The refresh failed and the token has expired: the provider is down or rate limiting.
    #[error("the provider could not refresh the token ({reason}); try again later")]
    ProviderUnavailable { reason: String },
    /// The connection's integration declares no check call (the generic `oauth2` provider
    /// without an operator's `check`).
    #[error("the integration {0:?} declares no check call; add a `check` table to it")]
    NoCheck(String),
    /// Another instance held the refresh lease for longer than a refresh should take.
    #[error("another instance is refreshing this connection; try again")]
    LeaseBusy,
    /// Tether's database cannot be reached; nothing was changed. The cause was logged when the
    /// store failed, and is not kept.
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable,
    /// The store failed otherwise (a bug or a broken database): internal.
    #[error("store: {0}")]
    Store(StoreError),
    /// This instance does not hold the sealing key the database announces (key rotation):
    /// nothing was refreshed, so no new token can be lost for want of a key to seal it.
    #[error("{0}")]
    CannotSeal(tether_core::vault::VaultError),
    /// Anything else that is our fault (credentials that do not open, auth headers that do
    /// not render): internal, logged under a reference, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ConnectionError {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            // As `From<StoreError> for ApiError` does (once per failed call, at warn): the
            // outage is an operator's concern, and the background refresher's failures are
            // only logged at debug after this.
            tracing::warn!(error = ?err, "database unavailable");
            return ConnectionError::DatabaseUnavailable;
        }
        ConnectionError::Store(err)
    }
}

impl From<ConnectionError> for ApiError {
    fn from(err: ConnectionError) -> Self {
        match err {
            ConnectionError::NotFound => ApiError::connection_not_found(),
            ConnectionError::IntegrationGone(_) => ApiError::NotFound {
                code: "integration_not_found",
                detail: err.to_string(),
            },
            ConnectionError::NeedsReauth => ApiError::NeedsReauth,
            ConnectionError::NoCheck(_) => ApiError::Conflict {
                code: "check_not_declared",
                detail: err.to_string(),
            },
            ConnectionError::Provider(_) => ApiError::Provider(err.to_string()),
            ConnectionError::ProviderUnavailable { .. } | ConnectionError::LeaseBusy => {
                ApiError::ProviderUnavailable(err.to_string())
            }
            ConnectionError::DatabaseUnavailable => ApiError::DatabaseUnavailable,
            ConnectionError::Store(err) => {
                ApiError::Internal(anyhow::Error::new(err).context("store"))
            }
            ConnectionError::CannotSeal(err) => ApiError::cannot_seal(err),
            ConnectionError::Internal(err) => ApiError::Internal(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    /// Status, problem code and detail, as the client sees them.
    fn answered(err: ConnectionError) -> (u16, &'static str, String) {
        let api = ApiError::from(err);
        let code = api.code();
        let detail = api.to_string();
        (api.into_response().status().as_u16(), code, detail)
    }

    #[test]
    fn each_failure_is_answered_as_the_api_documents() {
        assert_eq!(
            answered(ConnectionError::NotFound),
            (
                404,
                "connection_not_found",
                "no connection has this id".into()
            )
        );
        assert_eq!(
            answered(ConnectionError::IntegrationGone("crm".into())),
            (
                404,
                "integration_not_found",
                "the connection's integration \"crm\" is no longer configured".into()
            )
        );
        assert_eq!(
            answered(ConnectionError::NeedsReauth),
            (
                409,
                "needs_reauth",
                "the connection needs to be connected again by its end user".into()
            )
        );
        assert_eq!(
            answered(ConnectionError::Provider(TokenError::InvalidResponse(
                "no access_token".into()
            ))),
            (
                502,
                "provider_error",
                "the provider's token response is invalid: no access_token".into()
            )
        );
        assert_eq!(
            answered(ConnectionError::ProviderUnavailable {
                reason: "http_503".into()
            }),
            (
                503,
                "provider_unavailable",
                "the provider could not refresh the token (http_503); try again later".into()
            )
        );
        assert_eq!(
            answered(ConnectionError::LeaseBusy),
            (
                503,
                "provider_unavailable",
                "another instance is refreshing this connection; try again".into()
            )
        );
        assert_eq!(
            answered(ConnectionError::DatabaseUnavailable),
            (
                503,
                "database_unavailable",
                "the database is unavailable; try again shortly".into()
            )
        );
    }

    #[test]
    fn internal_failures_say_nothing_of_their_cause() {
        let (status, code, detail) = answered(ConnectionError::Internal(anyhow::anyhow!(
            "vault key k1 missing"
        )));
        assert_eq!((status, code), (500, "internal_error"));
        assert!(!detail.contains("k1"), "{detail}");
        let (status, code, _) = answered(ConnectionError::Store(StoreError::Conflict("busy")));
        assert_eq!((status, code), (500, "internal_error"));
    }
}
