//! `/v1/connections`: list, read, credentials, delete. Nothing here returns a secret except
//! the credentials endpoint, which exists for that purpose.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router, extract::rejection::QueryRejection};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_core::credentials::Credentials;
use tether_core::ids::ConnectionId;
use tether_core::unix_time::rfc3339;
use tether_store::{ConnectionFilter, ConnectionRow, ConnectionStatus, Store};
use utoipa::{IntoParams, ToSchema};

use crate::connection_service::provider_auth;
use crate::connection_service::refresh::{self, Freshness};
use crate::connection_service::removal;
use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/v1/connections", get(list::<S>))
        .route("/v1/connections/{id}", get(show::<S>).delete(delete::<S>))
        .route("/v1/connections/{id}/credentials", get(credentials::<S>))
        .route(
            "/v1/connections/{id}/verify",
            axum::routing::post(super::verify::verify::<S>),
        )
}

/// Parses a connection id from the path; a malformed one is simply not found.
pub fn parse_id(id: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::try_from(id).map_err(|_| ApiError::connection_not_found())
}

/// An end user as the app described them.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndUserView {
    pub id: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
}

/// A connection's lifecycle: `active`, `needs_reauth` (the end user must connect again; the
/// app was told by webhook) or `revoked`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatusView {
    Active,
    NeedsReauth,
    Revoked,
}

/// One end user's connection to one integration. Never a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    /// `conn_` and 32 hex digits.
    pub id: String,
    /// The integration's key.
    pub integration: String,
    pub end_user: EndUserView,
    pub status: ConnectionStatusView,
    /// When the access token expires (RFC 3339), if it does.
    pub expires_at: Option<String>,
    /// What the provider told about the account (ids, its API host, ...); never a secret.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, Value>,
    /// The last refresh failure's reason, or why the connection needs reauthorization.
    pub last_error: Option<String>,
    /// Whose credentials these are, as the provider said (its check call); absent until known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountView>,
    /// When the last health check ran (RFC 3339), if one did.
    pub last_checked_at: Option<String>,
    /// What it found: `ok`, or `refused: ...` / `unavailable: ...` with the reason.
    pub last_check: Option<String>,
    /// When the grant ends whatever is done (a provider's fixed refresh-token lifetime), if
    /// it does; `connection.expiring` is sent ahead of it.
    pub grant_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The provider's account a connection's credentials belong to. Each part only when the
/// provider names it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// The provider's id of the signed-in user.
    pub user_id: Option<String>,
    /// The provider's id of the organisation (company, portal, tenant).
    pub organization_id: Option<String>,
    /// Something a person recognises: an email, a company name.
    pub label: Option<String>,
}

impl From<&tether_store::StoredAccount> for AccountView {
    fn from(account: &tether_store::StoredAccount) -> Self {
        AccountView {
            user_id: account.user_id.clone(),
            organization_id: account.organization_id.clone(),
            label: account.label.clone(),
        }
    }
}

/// Views of `rows` with their lifecycle columns (account, checks, grant end), read in one
/// query.
pub(crate) async fn views<S: Store>(
    state: &AppState<S>,
    rows: &[ConnectionRow],
) -> Result<Vec<ConnectionView>, ApiError> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let lifecycles = state.store.connection_lifecycles(&ids).await?;
    let by_id: std::collections::HashMap<&str, &tether_store::ConnectionLifecycle> =
        lifecycles.iter().map(|l| (l.id.as_str(), l)).collect();
    Ok(rows
        .iter()
        .map(|row| {
            let mut view = view(row);
            if let Some(lifecycle) = by_id.get(row.id.as_str()) {
                view.account = lifecycle.account.as_ref().map(AccountView::from);
                view.last_checked_at = lifecycle.last_checked_at.map(rfc3339);
                view.last_check = lifecycle.last_check.clone();
                view.grant_expires_at = lifecycle.grant_expires_at.map(rfc3339);
            }
            view
        })
        .collect())
}

/// The public view of a connection: no secrets.
pub fn view(row: &ConnectionRow) -> ConnectionView {
    ConnectionView {
        id: row.id.clone(),
        integration: row.integration.clone(),
        end_user: EndUserView {
            id: row.end_user_id.clone(),
            email: row.end_user_email.clone(),
            display_name: row.end_user_display_name.clone(),
        },
        status: match row.status {
            ConnectionStatus::Active => ConnectionStatusView::Active,
            ConnectionStatus::NeedsReauth => ConnectionStatusView::NeedsReauth,
            ConnectionStatus::Revoked => ConnectionStatusView::Revoked,
        },
        expires_at: row.access_expires_at.map(rfc3339),
        metadata: provider_auth::metadata_of(row),
        last_error: row.last_error.clone(),
        account: None,
        last_checked_at: None,
        last_check: None,
        grant_expires_at: None,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    }
}

/// A page of connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this end user's connections.
    end_user_id: Option<String>,
    /// Only this integration's.
    integration: Option<String>,
    /// Only connections in this status: `active`, `needs_reauth` or `revoked`.
    status: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// Lists connections, oldest first; no secrets.
#[utoipa::path(get, path = "/v1/connections", tag = "connections", params(ListQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Matching connections", body = ConnectionList),
        (status = 400, description = "A bad filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ConnectionList>, ApiError> {
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
    Ok(Json(ConnectionList {
        connections: views(&state, &rows).await?,
    }))
}

/// One connection; no secrets.
#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "The connection's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`connection_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn show<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    let id = parse_id(&id)?;
    let row = state
        .store
        .get_connection(id.as_str())
        .await?
        .ok_or_else(ApiError::connection_not_found)?;
    let mut one = views(&state, std::slice::from_ref(&row)).await?;
    Ok(Json(one.remove(0)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CredentialsQuery {
    /// Refresh the tokens now, whatever their expiry.
    #[serde(default)]
    force_refresh: bool,
}

/// What to send to the provider yourself: its base URL, the headers (and query parameters)
/// that authenticate, and for OAuth the access token.
// No `Debug`: it holds secrets.
#[derive(Serialize, ToSchema)]
pub struct CredentialsView {
    pub connection_id: String,
    pub integration: String,
    /// `oauth2`, `oauth2_client_credentials`, `api_key`, `two_step` or `basic`.
    pub auth_mode: String,
    /// The provider's API base URL for this connection.
    pub base_url: String,
    /// Headers to add to every call.
    pub headers: BTreeMap<String, String>,
    /// Query parameters to add to every call (few providers need any).
    pub query: BTreeMap<String, String>,
    /// When the access token expires (RFC 3339), if it does.
    pub expires_at: Option<String>,
    /// OAuth connections only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// OAuth connections only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

/// Fresh credentials for calling the provider directly (refreshed first when they expire
/// soon, or when asked).
#[utoipa::path(get, path = "/v1/connections/{id}/credentials", tag = "connections",
    params(("id" = String, Path, description = "The connection's id"), CredentialsQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Fresh credentials", body = CredentialsView),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`connection_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`needs_reauth`: the end user must connect again", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`provider_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn credentials<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
    query: Result<Query<CredentialsQuery>, QueryRejection>,
) -> Result<Json<CredentialsView>, ApiError> {
    let Query(query) = query?;
    read_credentials(&state, &id, query.force_refresh)
        .await
        .map(Json)
}

/// A connection's fresh credentials (refreshed first when they expire soon, or when `force`
/// asks): the API's credentials endpoint and [`crate::Gateway::credentials`] alike.
pub(crate) async fn read_credentials<S: Store>(
    state: &AppState<S>,
    id: &str,
    force: bool,
) -> Result<CredentialsView, ApiError> {
    let id = parse_id(id)?;
    let freshness = if force {
        Freshness::Force
    } else {
        Freshness::Normal
    };
    let live = refresh::live(state, id.as_str(), freshness).await?;
    let prepared = provider_auth::prepared(&live)?;
    let headers = prepared
        .headers
        .iter()
        .map(|h| {
            // Rendered from UTF-8 text, so the bytes are that text again.
            let value = String::from_utf8_lossy(h.value.as_bytes()).into_owned();
            (h.written.clone(), value)
        })
        .collect();
    let (access_token, token_type) = match live.credentials.as_ref() {
        Credentials::Oauth2(tokens) => (
            Some(tokens.access_token.expose().to_owned()),
            Some(tokens.token_type.clone()),
        ),
        _ => (None, None),
    };
    Ok(CredentialsView {
        connection_id: live.row.id.clone(),
        integration: live.row.integration.clone(),
        auth_mode: live.integration.auth_mode().as_str().to_owned(),
        base_url: prepared.base_url.to_string(),
        headers,
        query: prepared.query.iter().cloned().collect(),
        expires_at: live.credentials.expires_at().map(rfc3339),
        access_token,
        token_type,
    })
}

/// Revokes the connection at the provider where it can, then deletes it (a
/// `connection.deleted` webhook follows).
#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "The connection's id")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`connection_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    removal::delete_connection(&state, id.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}
