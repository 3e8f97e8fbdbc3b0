//! `POST /v1/connections/{id}/verify`: the provider's check call, now, and what it found.
//! The same check the background checker runs (see `connection_service::health`), so a
//! verify moves the connection's status exactly as a scheduled check would.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use tether_core::unix_time::rfc3339;
use tether_store::{ConnectionStatus, Store};
use utoipa::ToSchema;

use super::connections::{AccountView, ConnectionStatusView, parse_id};
use crate::connection_service::health::{self, Caller};
use crate::http::auth::App;
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

/// What the check found.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    pub connection_id: String,
    /// `ok`: the credentials work. `refused`: the provider refused them (`reason` says why;
    /// after `check_failures_before_reauth` refusals in a row the connection is
    /// `needs_reauth`). `unavailable`: the provider could not answer (timeout, 5xx, rate
    /// limit): nothing is concluded and the status does not change.
    pub outcome: String,
    /// The provider's reason, for `refused` and `unavailable`.
    pub reason: Option<String>,
    /// The connection's status after the check.
    pub status: ConnectionStatusView,
    /// Whose credentials these are, when the check says.
    pub account: Option<AccountView>,
    /// Refusals in a row (0 after `ok`).
    pub consecutive_failures: i64,
    /// When the check ran (RFC 3339).
    pub checked_at: String,
}

/// Runs the provider's check call with the connection's credentials (refreshed first when
/// they expire soon, and once more after a 401) and answers what it found.
#[utoipa::path(post, path = "/v1/connections/{id}/verify", tag = "connections",
    params(("id" = String, Path, description = "The connection's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "What the check found", body = VerifyView),
        (status = 401, description = "No or wrong API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`connection_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`needs_reauth`: the end user must connect again; `check_not_declared`: the integration has no check call", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`provider_unavailable`: another check or refresh of this connection is running; try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify<S: Store>(
    _app: App,
    State(state): State<AppState<S>>,
    Path(id): Path<String>,
) -> Result<Json<VerifyView>, ApiError> {
    let id = parse_id(&id)?;
    let report = health::check(&state, id.as_str(), Caller::Verify)
        .await?
        .ok_or_else(|| ApiError::ProviderUnavailable("the connection is busy; try again".into()))?;
    Ok(Json(VerifyView {
        connection_id: report.connection_id,
        outcome: report.outcome.to_owned(),
        reason: report.reason,
        status: match report.status {
            ConnectionStatus::Active => ConnectionStatusView::Active,
            ConnectionStatus::NeedsReauth => ConnectionStatusView::NeedsReauth,
            ConnectionStatus::Revoked => ConnectionStatusView::Revoked,
        },
        account: report.account.map(|a| AccountView {
            user_id: a.user_id,
            organization_id: a.organization_id,
            label: a.label,
        }),
        consecutive_failures: report.consecutive_failures,
        checked_at: rfc3339(report.checked_at),
    }))
}
