//! `POST /v1/connect/sessions`: the app asks for a short-lived token that lets one end user's
//! browser connect. The token is returned once and stored only as a hash.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router, extract::rejection::JsonRejection};
use serde::{Deserialize, Serialize};
use tether_core::{random, unix_time};
use tether_store::{ConnectSessionRow, Store, TokenHash};
use url::Url;
use utoipa::ToSchema;

use crate::api::end_user::EndUserBody;
use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/v1/connect/sessions", post(create::<S>))
}

/// A connect session for one end user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    end_user: EndUserBody,
    /// The integration keys the end user may connect; every integration when absent.
    #[serde(default)]
    integrations: Option<Vec<String>>,
    /// Where the browser goes after connecting (`?connection_id=..&integration=..` added);
    /// its origin must be in `[connect] allowed_return_origins`.
    #[serde(default)]
    return_url: Option<String>,
    /// Repair this connection: finishing the session replaces its credentials (same id,
    /// history kept, status back to `active`), and only if the same provider account signs
    /// in. It must be this end user's connection; the session is limited to its integration.
    #[serde(default)]
    reconnect_connection_id: Option<String>,
}

/// A new connect session: send the end user's browser to `connect_url`.
#[derive(Serialize, ToSchema)]
pub struct SessionCreated {
    /// The session's token (also in `connect_url`); shown once, stored only as a hash.
    pub token: String,
    /// The Connect page for this session. It works in the first browser that opens it, and
    /// for one successful connection.
    pub connect_url: String,
    /// When the link stops working (RFC 3339).
    pub expires_at: String,
}

/// Creates a connect session for one end user.
#[utoipa::path(post, path = "/v1/connect/sessions", tag = "connect", request_body = CreateSession,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = SessionCreated),
        (status = 400, description = "`invalid_end_user`, `integration_not_found`, `invalid_return_url`, `return_url_not_allowed`, `no_integrations`, `invalid_body`, `reconnect_connection_not_found`, `reconnect_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    body: Result<Json<CreateSession>, JsonRejection>,
) -> Result<(StatusCode, Json<SessionCreated>), ApiError> {
    let Json(body) = body?;
    let end_user = body.end_user.parse()?;
    let integrations = match &body.integrations {
        Some(keys) if keys.is_empty() => {
            return Err(ApiError::bad_request(
                "invalid_integrations",
                "integrations, when given, must name at least one integration",
            ));
        }
        Some(keys) => {
            for key in keys {
                if state.integration(key).is_none() {
                    return Err(ApiError::bad_request(
                        "integration_not_found",
                        format!("no integration is configured with key {key:?}"),
                    ));
                }
            }
            Some(serde_json::to_string(keys).expect("strings serialize"))
        }
        None => None,
    };
    if state.integrations.is_empty() {
        return Err(ApiError::bad_request(
            "no_integrations",
            "no integration is configured; add one to tether.toml",
        ));
    }
    // A reconnect names one of this end user's connections, to one of the session's
    // integrations; the session then offers that integration only.
    let reconnect = match &body.reconnect_connection_id {
        None => None,
        Some(id) => {
            let not_found = || {
                ApiError::bad_request(
                    "reconnect_connection_not_found",
                    "reconnect_connection_id names no connection",
                )
            };
            let id = crate::api::parse_connection_id(id).map_err(|_| not_found())?;
            let row = state
                .store
                .get_connection(id.as_str())
                .await?
                .ok_or_else(not_found)?;
            if row.end_user_id != end_user.id {
                return Err(ApiError::bad_request(
                    "reconnect_mismatch",
                    "reconnect_connection_id names another end user's connection",
                ));
            }
            if let Some(keys) = &body.integrations
                && !keys.contains(&row.integration)
            {
                return Err(ApiError::bad_request(
                    "reconnect_mismatch",
                    "reconnect_connection_id names a connection to an integration the session \
                     does not offer",
                ));
            }
            if state.integration(&row.integration).is_none() {
                return Err(ApiError::bad_request(
                    "integration_not_found",
                    "the connection's integration is no longer configured",
                ));
            }
            Some(row)
        }
    };
    let integrations = match &reconnect {
        Some(row) => {
            Some(serde_json::to_string(&[row.integration.as_str()]).expect("strings serialize"))
        }
        None => integrations,
    };
    let return_url = match &body.return_url {
        None => None,
        Some(text) => {
            let url = Url::parse(text).map_err(|_| {
                ApiError::bad_request("invalid_return_url", "return_url is not an absolute URL")
            })?;
            if !state.config.return_url_allowed(&url) {
                return Err(ApiError::bad_request(
                    "return_url_not_allowed",
                    "return_url's origin is not in [connect] allowed_return_origins",
                ));
            }
            Some(url.to_string())
        }
    };

    let token = random::prefixed_token("cs_");
    let now = state.clock.now();
    let expires_at =
        crate::connection_service::expiry::after(now, state.config.connect_session_ttl);
    let token_hash = TokenHash::of(&token);
    state
        .store
        .insert_connect_session(&ConnectSessionRow {
            token_hash: token_hash.clone(),
            end_user_id: end_user.id,
            end_user_email: end_user.email,
            end_user_display_name: end_user.display_name,
            integrations,
            return_url,
            expires_at,
            created_at: now,
            browser_hash: None,
            completed_at: None,
        })
        .await?;
    if let Some(row) = &reconnect {
        state
            .store
            .set_session_reconnect(token_hash.as_str(), &row.id)
            .await?;
    }
    let mut connect_url = state.config.public_path(&["connect"]);
    connect_url.query_pairs_mut().append_pair("session", &token);
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            token,
            connect_url: connect_url.to_string(),
            expires_at: unix_time::rfc3339(expires_at),
        }),
    ))
}
