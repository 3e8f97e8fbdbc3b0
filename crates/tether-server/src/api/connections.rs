//! `/v1/connections`: list, read, credentials, delete. Nothing here returns a secret except
//! the credentials endpoint, which exists for that purpose.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router, extract::rejection::QueryRejection};
use serde::Deserialize;
use serde_json::{Value, json};
use tether_core::credentials::Credentials;
use tether_core::ids::ConnectionId;
use tether_core::unix_time::rfc3339;
use tether_store::{ConnectionFilter, ConnectionRow, ConnectionStatus, Store};

use crate::api_keys::App;
use crate::error::ApiError;
use crate::provider_auth;
use crate::refresh::{self, Freshness};
use crate::removal;
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/v1/connections", get(list::<S>))
        .route("/v1/connections/{id}", get(show::<S>).delete(delete::<S>))
        .route("/v1/connections/{id}/credentials", get(credentials::<S>))
}

/// Parses a connection id from the path; a malformed one is simply not found.
pub fn parse_id(id: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::try_from(id).map_err(|_| ApiError::connection_not_found())
}

/// The public view of a connection: no secrets.
pub fn view(row: &ConnectionRow) -> Value {
    json!({
        "id": row.id,
        "integration": row.integration,
        "end_user": {
            "id": row.end_user_id,
            "email": row.end_user_email,
            "display_name": row.end_user_display_name,
        },
        "status": row.status.as_str(),
        "expires_at": row.access_expires_at.map(rfc3339),
        "metadata": provider_auth::metadata_of(row),
        "last_error": row.last_error,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    end_user_id: Option<String>,
    integration: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

async fn list<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            ConnectionStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_status",
                    "status is one of active, needs_reauth, revoked",
                )
            })
        })
        .transpose()?;
    let rows = state
        .store
        .list_connections(&ConnectionFilter {
            end_user_id: query.end_user_id,
            integration: query.integration,
            status,
            limit: query.limit.unwrap_or(100).min(1000),
        })
        .await?;
    Ok(Json(
        json!({ "connections": rows.iter().map(view).collect::<Vec<_>>() }),
    ))
}

async fn show<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let row = state
        .store
        .get_connection(id.as_str())
        .await?
        .ok_or_else(ApiError::connection_not_found)?;
    Ok(Json(view(&row)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsQuery {
    #[serde(default)]
    force_refresh: bool,
}

async fn credentials<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    query: Result<Query<CredentialsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let id = parse_id(&id)?;
    let freshness = if query.force_refresh {
        Freshness::Force
    } else {
        Freshness::Normal
    };
    let live = refresh::live(&state, id.as_str(), freshness).await?;
    let prepared = provider_auth::prepared(&live)?;
    let headers: serde_json::Map<String, Value> = prepared
        .headers
        .iter()
        .map(|h| {
            // Rendered from UTF-8 text, so the bytes are that text again.
            let value = String::from_utf8_lossy(h.value.as_bytes()).into_owned();
            (h.written.clone(), Value::String(value))
        })
        .collect();
    let base_url = &prepared.base_url;
    let mut body = json!({
        "connection_id": live.row.id,
        "integration": live.row.integration,
        "auth_mode": live.integration.auth_mode().as_str(),
        "base_url": base_url.as_str(),
        "headers": headers,
        "query": prepared
            .query
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect::<serde_json::Map<String, Value>>(),
        "expires_at": live.credentials.expires_at().map(rfc3339),
    });
    if let Credentials::Oauth2(tokens) = live.credentials.as_ref() {
        body["access_token"] = Value::String(tokens.access_token.expose().to_owned());
        body["token_type"] = Value::String(tokens.token_type.clone());
    }
    Ok(Json(body))
}

async fn delete<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    removal::delete_connection(&state, id.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}
