//! `POST /v1/connections`: import credentials the app obtained elsewhere (a migration from
//! another platform, tokens from the app's own OAuth flow). They are checked as strictly as a
//! connect: OAuth tokens parse like a token response, other modes go through the catalog's
//! fields and patterns. Importing for an end user who already has a connection to the
//! integration replaces its credentials and keeps its id.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::{Json, Router, routing::post};
use serde::Deserialize;
use serde_json::{Map, Value};
use tether_core::catalog::AuthMode;
use tether_core::credential_flow;
use tether_core::credentials::Credentials;
use tether_core::integration::Integration;
use tether_core::{SecretString, oauth2};
use tether_store::Store;
use utoipa::ToSchema;

use crate::api::connections::{ConnectionView, view};
use crate::api::end_user::EndUserBody;
use crate::api::metadata_bounds;
use crate::connection_service::persist::save_connection;
use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/v1/connections", post(import::<S>))
}

/// Credentials obtained elsewhere, checked as strictly as a connect.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// The integration's key.
    integration: String,
    end_user: EndUserBody,
    /// OAuth: `{access_token, refresh_token?, expires_in? | expires_at?, token_type?, scope?}`;
    /// other modes: the credential values the provider keeps, by name.
    #[schema(value_type = Object)]
    credentials: Map<String, Value>,
    /// What the provider's connection keeps beside them (for example Redtail's
    /// `database_id`, Salesmate's `link_name`): at most 16 KiB as JSON, 4 levels deep, 64
    /// keys per object, keys of at most 128 characters, no control characters.
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
}

/// Imports credentials obtained elsewhere (a migration from another system); an end user's
/// existing connection to the integration is replaced and keeps its id.
#[utoipa::path(post, path = "/v1/connections", tag = "connections", request_body = ImportBody,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = ConnectionView),
        (status = 200, description = "Replaced the end user's connection", body = ConnectionView),
        (status = 400, description = "`invalid_credentials`, `invalid_end_user`, `integration_not_found`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`metadata_out_of_bounds` (over 16 KiB, nested deeper than 4 levels, over 64 keys in an object, keys over 128 characters, control characters), `address_not_allowed` (the API base URL the metadata makes is on a refused address)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn import<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    body: Result<Json<ImportBody>, JsonRejection>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    let Json(body) = body?;
    metadata_bounds::check(&body.metadata)?;
    let end_user = body.end_user.parse()?;
    let integration = state.integration(&body.integration).ok_or_else(|| {
        ApiError::bad_request(
            "integration_not_found",
            format!(
                "no integration is configured with key {:?}",
                body.integration
            ),
        )
    })?;
    let now = state.clock.now();
    let (credentials, metadata) = match integration.auth_mode() {
        AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials => {
            let metadata = oauth_metadata(&integration, body.metadata)?;
            (oauth_credentials(body.credentials, now)?, metadata)
        }
        _ => {
            let values = string_values(&body.credentials)?;
            let connected = credential_flow::import(&integration.provider, &values, &body.metadata)
                .map_err(|errors| {
                    let detail = errors
                        .iter()
                        .map(|e| [e.field.as_str(), ": ", e.message.as_str()].concat())
                        .collect::<Vec<_>>()
                        .join("; ");
                    ApiError::bad_request("invalid_credentials", detail)
                })?;
            (connected.credentials, connected.metadata)
        }
    };
    imported_address(&state, &integration, &metadata)?;
    let existed = state
        .store
        .find_connection(integration.key.as_str(), end_user.id.as_str())
        .await?
        .is_some();
    let id = save_connection(
        &state,
        integration.key.as_str(),
        &end_user,
        &credentials,
        &metadata,
        None,
    )
    .await?;
    let row = state
        .store
        .get_connection(&id)
        .await?
        .ok_or_else(ApiError::connection_not_found)?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view(&row))))
}

/// Refuses an imported value that points the API base URL at an address the outbound policy
/// refuses (an IP literal or `localhost`; a name is checked when the proxy connects). An
/// import is the app's word, not the operator's, even for an integration on loopback.
fn imported_address<S: Store>(
    state: &AppState<S>,
    integration: &Integration,
    metadata: &Map<String, Value>,
) -> Result<(), ApiError> {
    let varies = integration
        .api_base_url
        .as_ref()
        .is_some_and(|t| t.host_varies());
    if !varies {
        return Ok(());
    }
    let Ok(url) = integration.base_url(&integration.vars(metadata, None)) else {
        return Ok(());
    };
    state
        .config
        .address_policy
        .check_url_now(&url)
        .map_err(|refused| ApiError::Unprocessable {
            code: "address_not_allowed",
            detail: format!("metadata: the API base URL it makes is refused: {refused}"),
        })
}

/// OAuth tokens as a token response would carry them; `expires_at` (RFC 3339) is accepted
/// too, since an exporting system usually knows the deadline rather than the lifetime.
fn oauth_credentials(mut object: Map<String, Value>, now: i64) -> Result<Credentials, ApiError> {
    if let Some(at) = object.remove("expires_at") {
        let text = at.as_str().ok_or_else(|| {
            ApiError::bad_request(
                "invalid_credentials",
                "expires_at must be an RFC 3339 string",
            )
        })?;
        let deadline =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_credentials",
                        "expires_at must be an RFC 3339 time",
                    )
                })?;
        object.insert(
            "expires_in".into(),
            Value::from(deadline.unix_timestamp() - now),
        );
    }
    oauth2::tokens_from_object(object, now)
        .map(Credentials::Oauth2)
        .map_err(|err| {
            // The parser speaks of a provider's "response"; here it is the app's body.
            let detail = err
                .to_string()
                .replace("the provider's token response is invalid: ", "");
            ApiError::bad_request("invalid_credentials", detail)
        })
}

fn string_values(
    object: &Map<String, Value>,
) -> Result<std::collections::BTreeMap<String, SecretString>, ApiError> {
    object
        .iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name.clone(), SecretString::new(text.as_str()))),
            _ => Err(ApiError::bad_request(
                "invalid_credentials",
                format!("credentials.{name} must be a string"),
            )),
        })
        .collect()
}

/// An imported OAuth connection's metadata, held to the same rules as the Connect page and
/// the token endpoint: values the provider asks before its redirect match their patterns, and
/// the API base URL they make (with an imported `instance_url` and the like) stays on a host
/// the provider's file allows.
fn oauth_metadata(
    integration: &Integration,
    mut metadata: Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let provider = &integration.provider;
    if !provider.fields.is_empty() {
        let raw = provider
            .fields
            .iter()
            .filter_map(|f| {
                metadata
                    .get(&f.name)
                    .and_then(Value::as_str)
                    .map(|v| (f.name.clone(), SecretString::new(v)))
            })
            .collect();
        let inputs = credential_flow::normalise(provider, &raw).map_err(|errors| {
            let detail = errors
                .iter()
                .map(|e| [e.field.as_str(), ": ", e.message.as_str()].concat())
                .collect::<Vec<_>>()
                .join("; ");
            ApiError::bad_request("invalid_metadata", detail)
        })?;
        metadata.extend(inputs.metadata(provider));
    }
    integration
        .check_connection_values(&metadata)
        .map_err(|message| ApiError::bad_request("invalid_metadata", message))?;
    Ok(metadata)
}
