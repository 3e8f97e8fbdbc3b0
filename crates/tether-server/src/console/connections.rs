//! The console's connection pages: the searchable list, one connection's facts and timeline,
//! and its actions (refresh now, delete after a confirmation).

use super::*;

/// A connection as the console lists it: public fields only.
pub(super) struct ConnectionItem {
    id: String,
    href: String,
    integration: String,
    end_user_id: String,
    email: String,
    name: String,
    status: &'static str,
    expires: String,
    updated: String,
}

pub(super) fn item<S: Store>(state: &AppState<S>, row: &ConnectionRow) -> ConnectionItem {
    ConnectionItem {
        id: row.id.clone(),
        href: dashboard_url(state, &["connections", &row.id], &[]),
        integration: row.integration.clone(),
        end_user_id: row.end_user_id.clone(),
        email: row.end_user_email.clone().unwrap_or_default(),
        name: row.end_user_display_name.clone().unwrap_or_default(),
        status: row.status.as_str(),
        expires: row
            .access_expires_at
            .map(rfc3339)
            .unwrap_or_else(|| "never".into()),
        updated: rfc3339(row.updated_at),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    integration: Option<String>,
    q: Option<String>,
    after: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/connections.html")]
pub(super) struct ConnectionsPage {
    frame: Frame,
    rows: Vec<ConnectionItem>,
    integrations: Vec<String>,
    statuses: [&'static str; 3],
    status: String,
    integration: String,
    q: String,
    next_href: Option<String>,
    first_href: Option<String>,
}

/// An empty text field means "any".
pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(super) async fn connections<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let operator = match viewer(&state, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let Ok(Query(query)) = query else {
        return message(
            &state,
            Some(&operator),
            StatusCode::BAD_REQUEST,
            "Not a search this page knows",
            "The address has filters this page does not know. Use the form on the connections page.",
        );
    };
    let status_text = non_empty(query.status);
    let status = match status_text.as_deref().map(ConnectionStatus::parse) {
        None => None,
        Some(Some(status)) => Some(status),
        Some(None) => {
            return message(
                &state,
                Some(&operator),
                StatusCode::BAD_REQUEST,
                "Unknown status",
                "A status is one of active, needs_reauth or revoked.",
            );
        }
    };
    let integration = non_empty(query.integration);
    let q = non_empty(query.q);
    let after = non_empty(query.after);
    let rows = match state
        .store
        .page_connections(&ConnectionPage {
            integration: integration.clone(),
            status,
            search: q.clone(),
            after_id: after.clone(),
            limit: PAGE_SIZE,
        })
        .await
    {
        Ok(rows) => rows,
        Err(err) => return internal(&state, "connections page", &err),
    };
    let filters = |extra: Option<&str>| {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = status_text.as_deref() {
            pairs.push(("status", s));
        }
        if let Some(i) = integration.as_deref() {
            pairs.push(("integration", i));
        }
        if let Some(q) = q.as_deref() {
            pairs.push(("q", q));
        }
        if let Some(after) = extra {
            pairs.push(("after", after));
        }
        dashboard_url(&state, &["connections"], &pairs)
    };
    let next_href = (rows.len() == PAGE_SIZE as usize)
        .then(|| rows.last().map(|r| filters(Some(&r.id))))
        .flatten();
    let first_href = after.is_some().then(|| filters(None));
    let mut integrations: Vec<String> = state
        .integrations
        .all()
        .iter()
        .map(|i| i.key.to_string())
        .collect();
    integrations.sort();
    let frame =
        Frame::new(&state, Some(&operator), "connections").with_notice(query.notice.as_deref());
    let nonce = frame.nonce.clone();
    let body = ConnectionsPage {
        frame,
        rows: rows.iter().map(|r| item(&state, r)).collect(),
        integrations,
        statuses: ["active", "needs_reauth", "revoked"],
        status: status_text.unwrap_or_default(),
        integration: integration.unwrap_or_default(),
        q: q.unwrap_or_default(),
        next_href,
        first_href,
    };
    page(StatusCode::OK, &nonce, body.render())
}

pub(super) struct TimelineEntry {
    kind: String,
    label: &'static str,
    bad: bool,
    when: String,
    detail: String,
    reference: String,
    webhook_event_id: String,
}

pub(super) fn kind_label(kind: &str) -> (&'static str, bool) {
    match kind {
        history_kind::CREATED => ("Connected", false),
        history_kind::RECONNECTED => ("Reconnected", false),
        history_kind::REFRESHED => ("Refreshed", false),
        history_kind::REFRESH_FAILED => ("Refresh failed", true),
        history_kind::NEEDS_REAUTH => ("Needs reauthorization", true),
        history_kind::DELETED => ("Deleted", true),
        history_kind::RECOVERED => ("Recovered", false),
        history_kind::EXPIRING => ("Grant ends soon", true),
        history_kind::CHECK_FAILED => ("Check refused", true),
        history_kind::REVOCATION => ("Revocation at the provider", false),
        history_kind::WEBHOOK_DELIVERED => ("Webhook delivered", false),
        history_kind::WEBHOOK_FAILED => ("Webhook failed", true),
        history_kind::RATE_LIMITED => ("Held back by the provider's rate limit", true),
        history_kind::AGENT_CALL => ("Agent call (MCP)", false),
        _ => ("Event", false),
    }
}

/// The connection's provider budget as this instance last heard it, when the provider has
/// reported one: what is left, and until when a spent one holds calls back.
fn budget_fact<S: Store>(state: &AppState<S>, row: &ConnectionRow) -> Option<Fact> {
    let (integration, connection) = (row.integration.as_str(), row.id.as_str());
    let scope = state
        .integrations
        .get(integration)?
        .provider
        .rate_limit
        .as_ref()
        .map(|r| r.scope)
        .unwrap_or_default();
    let account = row.provider_account.as_ref();
    let key = crate::proxy::provider_limits::budget_key(scope, integration, connection, account);
    let snapshot = state
        .provider_limits
        .get(key)?
        .snapshot(state.clock.instant());
    let mut value = match (snapshot.remaining, snapshot.limit) {
        (Some(left), Some(limit)) => format!("{left} of {limit} calls left"),
        (Some(left), None) => format!("{left} calls left"),
        _ => "no count reported".to_owned(),
    };
    if let Some(resets) = snapshot.resets_in {
        value.push_str(&format!(", resets in {} s", resets.as_secs()));
    }
    if let Some(blocked) = snapshot.blocked_for {
        value.push_str(&format!(
            "; held back for {} s (Retry-After)",
            blocked.as_secs().max(1)
        ));
    }
    let whose = match key {
        crate::proxy::provider_limits::BudgetKey::Account(..) => {
            "the account's budget, shared by its connections"
        }
        crate::proxy::provider_limits::BudgetKey::App(_) => "the integration's budget",
        crate::proxy::provider_limits::BudgetKey::Connection(_)
            if scope == tether_core::catalog::rate_limit::LimitScope::Account =>
        {
            "the connection's own budget until its account is known"
        }
        crate::proxy::provider_limits::BudgetKey::Connection(_) => "the connection's budget",
    };
    value.push_str(&format!(" ({whose}, as this instance heard it)"));
    Some(Fact {
        name: "provider budget".to_owned(),
        value,
    })
}

pub(super) struct Fact {
    name: String,
    value: String,
}

pub(super) struct DeliveryItem {
    pub(super) id: String,
    pub(super) event_type: String,
    pub(super) status: &'static str,
    pub(super) attempts: i64,
    pub(super) last: String,
    pub(super) created: String,
    pub(super) redeliver_href: String,
}

pub(super) fn delivery<S: Store>(
    state: &AppState<S>,
    row: &tether_store::WebhookEventRow,
) -> DeliveryItem {
    let last = match (row.last_status_code, &row.last_error) {
        (Some(code), _) => ["HTTP ", &code.to_string()].concat(),
        (None, Some(error)) => error.clone(),
        (None, None) => String::new(),
    };
    DeliveryItem {
        id: row.id.clone(),
        event_type: row.event_type.clone(),
        status: row.status.as_str(),
        attempts: row.attempts,
        last,
        created: rfc3339(row.created_at),
        redeliver_href: dashboard_url(state, &["webhooks", &row.id, "redeliver"], &[]),
    }
}

#[derive(Template)]
#[template(path = "console/connection.html")]
pub(super) struct ConnectionDetail {
    frame: Frame,
    id: String,
    /// `None` when the connection was deleted (its history remains until purged).
    row: Option<ConnectionItem>,
    facts: Vec<Fact>,
    last_error: String,
    timeline: Vec<TimelineEntry>,
    older_href: Option<String>,
    deliveries: Vec<DeliveryItem>,
    refresh_href: String,
    delete_href: String,
    /// The end user's MCP clients (OAuth grants), with their revoke buttons.
    mcp_clients_href: String,
    /// The provider account (label and ids), when known.
    account: String,
    /// What the last health check found, and when.
    last_check: String,
    /// Where to make a reconnect link, for a connection that needs its end user again.
    reconnect_href: Option<String>,
    /// The end user's agent tokens (MCP), with their revoke buttons.
    agent_tokens: Vec<super::agent_tokens::AgentTokenItem>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DetailQuery {
    before: Option<i64>,
    notice: Option<String>,
}

pub(super) async fn connection<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<DetailQuery>, QueryRejection>,
) -> Response {
    let operator = match viewer(&state, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let not_found = || {
        no_such_connection(
            &state,
            &operator,
            "No connection has this id, and no history is kept for one.",
        )
    };
    let Ok(id) = crate::api::parse_connection_id(&id) else {
        return not_found();
    };
    let Ok(Query(query)) = query else {
        return message(
            &state,
            Some(&operator),
            StatusCode::BAD_REQUEST,
            "Not a page this console knows",
            "The address has parameters this page does not know.",
        );
    };
    let row = match state.store.get_connection(id.as_str()).await {
        Ok(row) => row,
        Err(err) => return internal(&state, "connection", &err),
    };
    let events = match state
        .store
        .list_connection_events(id.as_str(), query.before.filter(|b| *b > 0), TIMELINE_SIZE)
        .await
    {
        Ok(events) => events,
        Err(err) => return internal(&state, "history", &err),
    };
    if row.is_none() && events.is_empty() {
        return not_found();
    }
    let deliveries = match state
        .store
        .list_webhook_events(&WebhookEventFilter {
            connection_id: Some(id.as_str().to_owned()),
            status: None,
            limit: 20,
        })
        .await
    {
        Ok(rows) => rows,
        Err(err) => return internal(&state, "deliveries", &err),
    };
    let facts = row
        .as_ref()
        .map(|row| {
            crate::connection_service::provider_auth::metadata_of(row)
                .into_iter()
                .map(|(name, value)| Fact {
                    name,
                    value: match value {
                        serde_json::Value::String(text) => text,
                        other => other.to_string(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let mut facts: Vec<Fact> = facts;
    if let Some(row) = &row {
        facts.extend(budget_fact(&state, row));
    }
    let older_href = (events.len() == TIMELINE_SIZE as usize)
        .then(|| {
            events.last().map(|e| {
                dashboard_url(
                    &state,
                    &["connections", id.as_str()],
                    &[("before", &e.seq.to_string())],
                )
            })
        })
        .flatten();
    let timeline = events
        .iter()
        .map(|e| {
            let (label, bad) = kind_label(&e.kind);
            TimelineEntry {
                kind: e.kind.clone(),
                label,
                bad,
                when: rfc3339(e.created_at),
                detail: e.detail.clone().unwrap_or_default(),
                reference: e.reference.clone().unwrap_or_default(),
                webhook_event_id: e.webhook_event_id.clone().unwrap_or_default(),
            }
        })
        .collect();
    let lifecycle = match state
        .store
        .connection_lifecycles(&[id.as_str().to_owned()])
        .await
    {
        Ok(found) => found.into_iter().next(),
        Err(err) => return internal(&state, "lifecycle", &err),
    };
    let account = lifecycle
        .as_ref()
        .and_then(|l| l.account.as_ref())
        .map(|a| {
            let ids: Vec<&str> = [a.user_id.as_deref(), a.organization_id.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            match &a.label {
                Some(label) => format!("{label} ({})", ids.join(", ")),
                None => ids.join(", "),
            }
        })
        .unwrap_or_default();
    let last_check = lifecycle
        .as_ref()
        .and_then(|l| {
            Some(format!(
                "{} at {}",
                l.last_check.as_ref()?,
                rfc3339(l.last_checked_at?)
            ))
        })
        .unwrap_or_default();
    let reconnect_href = row
        .as_ref()
        .filter(|r| r.status == tether_store::ConnectionStatus::NeedsReauth)
        .map(|_| dashboard_url(&state, &["connections", id.as_str(), "reconnect"], &[]));
    let agent_tokens = match &row {
        Some(row) => {
            match super::agent_tokens::of_end_user(&state, &row.end_user_id, id.as_str()).await {
                Ok(tokens) => tokens,
                Err(err) => return internal(&state, "agent tokens", &err),
            }
        }
        None => Vec::new(),
    };
    let frame =
        Frame::new(&state, Some(&operator), "connections").with_notice(query.notice.as_deref());
    let nonce = frame.nonce.clone();
    let body = ConnectionDetail {
        agent_tokens,
        frame,
        id: id.as_str().to_owned(),
        last_error: row
            .as_ref()
            .and_then(|r| r.last_error.clone())
            .unwrap_or_default(),
        row: row.as_ref().map(|r| item(&state, r)),
        facts,
        timeline,
        older_href,
        deliveries: deliveries.iter().map(|d| delivery(&state, d)).collect(),
        refresh_href: dashboard_url(&state, &["connections", id.as_str(), "refresh"], &[]),
        delete_href: dashboard_url(&state, &["connections", id.as_str(), "delete"], &[]),
        mcp_clients_href: dashboard_url(
            &state,
            &["mcp-clients"],
            &[(
                "end_user_id",
                row.as_ref()
                    .map(|r| r.end_user_id.as_str())
                    .unwrap_or_default(),
            )],
        ),
        account,
        last_check,
        reconnect_href,
    };
    page(StatusCode::OK, &nonce, body.render())
}

pub(super) async fn refresh_now<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let Ok(id) = crate::api::parse_connection_id(&id) else {
        return no_such_connection(&state, &operator, "No connection has this id.");
    };
    let notice = match refresh::live(&state, id.as_str(), Freshness::Force).await {
        Ok(_) => "refreshed",
        Err(ConnectionError::NotFound) => {
            return no_such_connection(&state, &operator, "No connection has this id.");
        }
        Err(ConnectionError::NeedsReauth) => "needs_reauth",
        Err(_) => "refresh_failed",
    };
    tracing::info!(connection_id = %id.as_str(), notice, "console: refresh now");
    see_other(&dashboard_url(
        &state,
        &["connections", id.as_str()],
        &[("notice", notice)],
    ))
}

#[derive(Template)]
#[template(path = "console/confirm_delete.html")]
pub(super) struct ConfirmDelete {
    frame: Frame,
    row: ConnectionItem,
    delete_href: String,
}

pub(super) async fn confirm_delete<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let operator = match viewer(&state, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let row = match crate::api::parse_connection_id(&id) {
        Ok(id) => match state.store.get_connection(id.as_str()).await {
            Ok(row) => row,
            Err(err) => return internal(&state, "connection", &err),
        },
        Err(_) => None,
    };
    let Some(row) = row else {
        return no_such_connection(
            &state,
            &operator,
            "No connection has this id; it may be deleted already.",
        );
    };
    let frame = Frame::new(&state, Some(&operator), "connections");
    let nonce = frame.nonce.clone();
    let body = ConfirmDelete {
        frame,
        delete_href: dashboard_url(&state, &["connections", &row.id, "delete"], &[]),
        row: item(&state, &row),
    };
    page(StatusCode::OK, &nonce, body.render())
}

pub(super) async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let gone = || {
        no_such_connection(
            &state,
            &operator,
            "No connection has this id; it may be deleted already.",
        )
    };
    let Ok(id) = crate::api::parse_connection_id(&id) else {
        return gone();
    };
    match crate::connection_service::removal::delete_connection(&state, id.as_str()).await {
        Ok(()) => {
            tracing::info!(connection_id = %id.as_str(), "console: connection deleted");
            see_other(&dashboard_url(
                &state,
                &["connections"],
                &[("notice", "deleted")],
            ))
        }
        Err(ConnectionError::NotFound) => gone(),
        Err(err) => internal(&state, "delete", &err),
    }
}
