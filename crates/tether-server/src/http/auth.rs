//! The API key at the edge: the extractor that lets a request through to the app's routes only
//! with a valid key, counting wrong keys against the failure limit. Apart from the key set
//! (`state::api_keys`), which the state holds and which never reads the state.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use tether_store::Store;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Proof that the request carries a valid API key. Handlers that read or use credentials
/// take it, so no route reaches a secret without it.
pub struct App;

impl<S: Store> FromRequestParts<AppState<S>> for App {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S>,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        // The key is checked first: a valid key passes whatever others guessed, so nobody
        // can lock the app out by sending wrong keys.
        match presented {
            Some(key) if state.key_accepted(key).await => Ok(App),
            Some(key) => {
                // Only a wrong key counts: a request without one is a mistake, not a guess.
                let client = state.client_of(parts);
                tracing::info!(client = ?client, "request with a wrong API key");
                match state
                    .api_key_limiter
                    .record_failure(&state.store, state.clock.as_ref(), client, key)
                    .await
                {
                    Some(wait) => Err(ApiError::RateLimited(wait)),
                    None => Err(ApiError::Unauthorized),
                }
            }
            None => Err(ApiError::Unauthorized),
        }
    }
}
