//! `PUT /v1/integrations/{key}` and `DELETE /v1/integrations/{key}`: integrations managed
//! through the API, beside those of `tether.toml`.
//!
//! The body is the integration's table as `tether.toml` would hold it, checked exactly as at
//! start-up. Secrets are given as values: `env:` and `file:` references are refused here,
//! since they would let an API caller read the server's environment or files. The stored
//! table is sealed (it holds the client secret). Integrations of the configuration file are
//! read-only through the API; one that still has connections cannot be deleted. Other
//! instances sharing the database hear of a change within moments (see `coherence.rs`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value};
use tether_core::ids::IntegrationKey;
use tether_core::integration::Integration;
use tether_store::{ConnectionFilter, Sealed, Store};
use utoipa::ToSchema;

use crate::api::catalog::{IntegrationView, integration_view};
use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;
use crate::state::integrations::{Source, seal_config};

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route(
        "/v1/integrations/{key}",
        put(put_integration::<S>).delete(delete_integration::<S>),
    )
}

fn managed_by_config(key: &str) -> ApiError {
    ApiError::Conflict {
        code: "integration_managed_by_config",
        detail: format!("integration {key:?} is defined in tether.toml; change it there"),
    }
}

/// An integration's table, as `tether.toml` holds it under `[integrations.KEY]`, with secrets
/// as values (`env:` and `file:` references are refused here). `budget` (optional) caps the
/// proxied calls: at most `per_connection` per connection and `per_integration` in all, in
/// any `per_secs` seconds (default 1), per instance; over it the proxy answers 429
/// `budget_exceeded`.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object, example = json!({
    "provider": "oauth2", "client_id": "...", "client_secret": "...",
    "authorization_url": "https://crm.example.com/oauth/authorize",
    "token_url": "https://crm.example.com/oauth/token",
    "api_base_url": "https://crm.example.com", "scopes": ["read"],
    "budget": {"per_connection": 10, "per_integration": 100, "per_secs": 1}
}))]
pub struct IntegrationTable(Map<String, Value>);

/// Creates or replaces an integration managed through the API; checked as at start-up and
/// stored sealed.
#[utoipa::path(put, path = "/v1/integrations/{key}", tag = "integrations",
    params(("key" = String, Path, description = "The app's name for the integration")),
    request_body = IntegrationTable,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = IntegrationView),
        (status = 200, description = "Replaced", body = IntegrationView),
        (status = 400, description = "`invalid_integration`, `invalid_integration_key`, `secret_reference_not_allowed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`integration_managed_by_config`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`address_not_allowed`: an endpoint on a loopback, private or otherwise non-public address outside `[outbound] allowed_private_networks`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_integration<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(key): Path<String>,
    body: Result<Json<IntegrationTable>, JsonRejection>,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    let Json(IntegrationTable(table)) = body?;
    let key = IntegrationKey::try_from(key.as_str())
        .map_err(|e| ApiError::bad_request("invalid_integration_key", e.to_string()))?;
    if state.integrations.source(key.as_str()) == Some(Source::Config) {
        return Err(managed_by_config(key.as_str()));
    }
    if let Some(name) = secret_reference(&table) {
        return Err(ApiError::bad_request(
            "secret_reference_not_allowed",
            format!("{name}: give the value itself; env: and file: references are for tether.toml"),
        ));
    }
    let integration = Integration::from_config(key.as_str(), &table, &state.catalog)
        .map_err(|e| ApiError::bad_request("invalid_integration", e.to_string()))?;
    check_addresses(&state.config.address_policy, &integration)?;
    let sealed = seal_config(&state.vault, key.as_str(), &table).map_err(ApiError::cannot_seal)?;
    let sealed = Sealed::from_bytes(sealed);
    let created = state
        .store
        .put_integration(key.as_str(), &sealed, state.clock.now())
        .await?;
    let view = integration_view(&integration, Some(Source::Api));
    if !state.integrations.put_api(integration) {
        // The configuration file cannot gain a key while we run, so this is unreachable in
        // practice; answer as the check above would have.
        return Err(managed_by_config(key.as_str()));
    }
    tracing::info!(integration = %key, created, "integration saved through the API");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Refuses at once an endpoint whose host is an IP literal the outbound address policy
/// refuses, naming the field (422). Only a courtesy: a name (`localhost` included) can
/// resolve anywhere later, so every call of the integration is checked when it connects.
fn check_addresses(
    policy: &tether_core::outbound::AddressPolicy,
    integration: &Integration,
) -> Result<(), ApiError> {
    let oauth2 = integration.oauth2.as_ref();
    let endpoints = [
        ("api_base_url", integration.api_base_url.as_ref()),
        ("authorization_url", oauth2.map(|c| &c.authorization_url)),
        ("token_url", oauth2.map(|c| &c.token_url)),
        (
            "revocation_url",
            oauth2.and_then(|c| c.revocation_url.as_ref()),
        ),
    ];
    for (field, template) in endpoints {
        let Some(url) = template.and_then(|t| url::Url::parse(t.text()).ok()) else {
            continue;
        };
        if let Err(refused) = policy.check_url(&url) {
            return Err(ApiError::Unprocessable {
                code: "address_not_allowed",
                detail: format!("{field}: {refused}"),
            });
        }
    }
    Ok(())
}

/// Deletes an integration created through the API, once it has no connections.
#[utoipa::path(delete, path = "/v1/integrations/{key}", tag = "integrations",
    params(("key" = String, Path, description = "The app's name for the integration")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`integration_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`integration_managed_by_config`, `integration_in_use`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_integration<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.integrations.source(&key) {
        None => {
            return Err(ApiError::NotFound {
                code: "integration_not_found",
                detail: "no integration has this key".into(),
            });
        }
        Some(Source::Config) => return Err(managed_by_config(&key)),
        Some(Source::Api) => {}
    }
    let connections = state
        .store
        .list_connections(&ConnectionFilter {
            integration: Some(key.clone()),
            limit: 1,
            ..ConnectionFilter::default()
        })
        .await?;
    if !connections.is_empty() {
        return Err(ApiError::Conflict {
            code: "integration_in_use",
            detail: "the integration still has connections; delete them first".into(),
        });
    }
    state.store.delete_integration(&key).await?;
    state.integrations.remove_api(&key);
    tracing::info!(integration = %key, "integration deleted through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// The first key whose value is an `env:` or `file:` reference, looking into lists too.
fn secret_reference(table: &Map<String, Value>) -> Option<&str> {
    table.iter().find_map(|(name, value)| {
        let is_reference = |v: &Value| {
            v.as_str()
                .is_some_and(|s| s.starts_with("env:") || s.starts_with("file:"))
        };
        let found = match value {
            Value::Array(items) => items.iter().any(is_reference),
            other => is_reference(other),
        };
        found.then_some(name.as_str())
    })
}
