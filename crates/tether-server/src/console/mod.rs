//! The operator console (`/dashboard`): server-rendered pages to see every integration's
//! connections, find one by its end user, read its history, and act on it (refresh now,
//! delete, redeliver a webhook). Signed in with an API key (see [`session`]).
//!
//! Pages follow the Connect pages' pattern: askama templates, a per-response CSP nonce, no
//! external fetch, no script but a few nonce'd lines. The console adds `frame-ancestors
//! 'none'` (nobody may frame it: its buttons act). It must never show a secret: rows are
//! shown through their public fields (ids, end-user details, status, expiry, the metadata
//! the API also shows), never the sealed credentials or anything opened from them.

// A refusal is a whole page, returned once per request: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod charts;
mod session;

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tether_core::unix_time::{self, rfc3339};
use tether_store::{
    ConnectionPage, ConnectionRow, ConnectionStatus, Store, WebhookEventFilter, WebhookStatus,
    history_kind,
};

use crate::rate_limit::client_address;
use crate::refresh::{self, Freshness};
use crate::state::AppState;
use session::Operator;

/// Rows per page of the connections list.
const PAGE_SIZE: u32 = 50;
/// Timeline entries per page.
const TIMELINE_SIZE: u32 = 100;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/dashboard", get(overview::<S>))
        .route("/dashboard/sign-in", post(sign_in::<S>))
        .route("/dashboard/sign-out", post(sign_out::<S>))
        .route("/dashboard/connections", get(connections::<S>))
        .route("/dashboard/connections/{id}", get(connection::<S>))
        .route(
            "/dashboard/connections/{id}/refresh",
            post(refresh_now::<S>),
        )
        .route(
            "/dashboard/connections/{id}/delete",
            get(confirm_delete::<S>).post(delete::<S>),
        )
        .route("/dashboard/webhooks", get(webhooks::<S>))
        .route("/dashboard/webhooks/{id}/redeliver", post(redeliver::<S>))
}

// ----- rendering -------------------------------------------------------------------------

/// What every console page shows around its content.
pub struct Frame {
    pub app_name: String,
    pub nonce: String,
    /// The session's CSRF token (sign-out form); `None` on the sign-in page.
    pub csrf: Option<String>,
    /// Which tab is current.
    pub nav: &'static str,
    /// A fixed message after an action (never text from the request).
    pub notice: Option<&'static str>,
    pub notice_bad: bool,
    pub home_href: String,
    pub connections_href: String,
    pub webhooks_href: String,
    pub sign_in_href: String,
    pub sign_out_href: String,
}

impl Frame {
    fn new<S: Store>(state: &AppState<S>, operator: Option<&Operator>, nav: &'static str) -> Self {
        Frame {
            app_name: state.config.app_name.clone(),
            nonce: tether_core::random::token(),
            csrf: operator.map(|o| o.csrf.clone()),
            nav,
            notice: None,
            notice_bad: false,
            home_href: dashboard_url(state, &[], &[]),
            connections_href: dashboard_url(state, &["connections"], &[]),
            webhooks_href: dashboard_url(state, &["webhooks"], &[]),
            sign_in_href: dashboard_url(state, &["sign-in"], &[]),
            sign_out_href: dashboard_url(state, &["sign-out"], &[]),
        }
    }

    fn with_notice(mut self, notice: Option<&str>) -> Self {
        let (text, bad) = match notice {
            Some("refreshed") => ("The connection was refreshed.", false),
            Some("refresh_failed") => (
                "The refresh failed; the timeline says why, with its reference.",
                true,
            ),
            Some("needs_reauth") => (
                "The provider refused the refresh: the end user must connect again.",
                true,
            ),
            Some("deleted") => ("The connection was deleted.", false),
            Some("redelivered") => ("The webhook was queued for delivery again.", false),
            Some("webhooks_off") => ("No webhook URL is configured: nothing to deliver.", true),
            _ => return self,
        };
        self.notice = Some(text);
        self.notice_bad = bad;
        self
    }
}

/// The console's Content-Security-Policy: the Connect pages' policy, but nobody may frame it.
fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         img-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// Renders a console page with its security headers.
fn page(status: StatusCode, nonce: &str, html: Result<String, askama::Error>) -> Response {
    let html = match html {
        Ok(html) => html,
        Err(err) => {
            let reference = crate::reference::new();
            tracing::error!(reference = %reference, error = %err, "console page failed to render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "page failed to render").into_response();
        }
    };
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&content_security_policy(nonce)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    frame: Frame,
    heading: String,
    message: String,
    reference: Option<String>,
}

/// A readable page for a refusal or a failure.
fn message<S: Store>(
    state: &AppState<S>,
    operator: Option<&Operator>,
    status: StatusCode,
    heading: &str,
    text: &str,
) -> Response {
    let frame = Frame::new(state, operator, "");
    let nonce = frame.nonce.clone();
    let body = MessagePage {
        frame,
        heading: heading.into(),
        message: text.into(),
        reference: None,
    };
    page(status, &nonce, body.render())
}

/// An internal error: logged with a reference that the page shows.
fn internal<S: Store>(state: &AppState<S>, what: &str, err: &dyn std::fmt::Debug) -> Response {
    let reference = crate::reference::new();
    tracing::error!(reference = %reference, error = ?err, "console: {what}");
    let frame = Frame::new(state, None, "");
    let nonce = frame.nonce.clone();
    let body = MessagePage {
        frame,
        heading: "Something went wrong".into(),
        message: "The console could not do that. Try again; if it keeps failing, quote the \
                  reference to whoever runs Tether."
            .into(),
        reference: Some(reference),
    };
    page(StatusCode::INTERNAL_SERVER_ERROR, &nonce, body.render())
}

fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// Builds a console link under the public URL (keeping its path prefix) with a query,
/// percent-encoded by `url`, never by `format!`. Path and query only: links stay on this origin.
fn dashboard_url<S: Store>(
    state: &AppState<S>,
    segments: &[&str],
    query: &[(&str, &str)],
) -> String {
    let mut all = vec!["dashboard"];
    all.extend_from_slice(segments);
    let mut url = state.config.public_path(&all);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    match url.query() {
        Some(q) => [url.path(), "?", q].concat(),
        None => url.path().to_owned(),
    }
}

// ----- sign-in and sign-out ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    frame: Frame,
    error: Option<String>,
}

fn sign_in_page<S: Store>(
    state: &AppState<S>,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let frame = Frame::new(state, None, "");
    let nonce = frame.nonce.clone();
    page(status, &nonce, SignInPage { frame, error }.render())
}

#[derive(Deserialize)]
struct SignInForm {
    api_key: String,
}

async fn sign_in<S: Store>(
    State(state): State<AppState<S>>,
    parts: axum::http::request::Parts,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    if !crate::same_origin::same_origin(&state.config, &parts.headers) {
        return cross_origin(&state);
    }
    let client = client_address(&parts, &state.config.trusted_proxies);
    if let Some(wait) = client.and_then(|c| state.api_key_limiter.blocked(c)) {
        let mut response = sign_in_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many wrong keys from this address. Try again in {wait} seconds."
            )),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    let Ok(Form(form)) = form else {
        return sign_in_page(
            &state,
            StatusCode::BAD_REQUEST,
            Some("Enter an API key.".into()),
        );
    };
    let key = form.api_key.trim();
    if key.is_empty() {
        return sign_in_page(
            &state,
            StatusCode::BAD_REQUEST,
            Some("Enter an API key.".into()),
        );
    }
    let Some(fingerprint) = state.api_keys.fingerprint(key) else {
        // Counted like a wrong key on the API: the form must not be a faster oracle.
        if let Some(client) = client {
            state.api_key_limiter.record_failure(client);
        }
        tracing::info!(client = ?client, "console sign-in with a wrong API key");
        return sign_in_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("That is not an API key of this Tether.".into()),
        );
    };
    let Some(cookie) = session::issue(&state, fingerprint) else {
        return internal(&state, "session cookie", &"could not build the cookie");
    };
    tracing::info!(client = ?client, "console sign-in");
    let mut response = see_other(&dashboard_url(&state, &[], &[]));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: Option<String>,
}

async fn sign_out<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if let Err(response) = authorize_action(&state, &headers, &form) {
        return response;
    }
    let mut response = see_other(&dashboard_url(&state, &[], &[]));
    if let Some(cookie) = session::clear(&state.config) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn cross_origin<S: Store>(state: &AppState<S>) -> Response {
    message(
        state,
        None,
        StatusCode::FORBIDDEN,
        "Refused",
        "This request came from another site. Use the console's own buttons.",
    )
}

/// The checks of every state-changing form: same origin, signed in, and the session's CSRF
/// token, in that order.
fn authorize_action<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    form: &Result<Form<ActionForm>, FormRejection>,
) -> Result<Operator, Response> {
    if !crate::same_origin::same_origin(&state.config, headers) {
        return Err(cross_origin(state));
    }
    let Some(operator) = session::operator(state, headers) else {
        return Err(message(
            state,
            None,
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your console session ended. Sign in again, then repeat what you were doing.",
        ));
    };
    let presented = form.as_ref().ok().and_then(|f| f.csrf.as_deref());
    if !operator.csrf_ok(presented) {
        return Err(message(
            state,
            Some(&operator),
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's security token is missing or stale. Reload the page and try again.",
        ));
    }
    Ok(operator)
}

/// The operator of a page view, or the response that sends the browser to sign in.
fn viewer<S: Store>(state: &AppState<S>, headers: &HeaderMap) -> Result<Operator, Response> {
    session::operator(state, headers).ok_or_else(|| see_other(&dashboard_url(state, &[], &[])))
}

// ----- overview ----------------------------------------------------------------------------

struct IntegrationCounts {
    key: String,
    name: String,
    active: i64,
    needs_reauth: i64,
    revoked: i64,
    total: i64,
    href: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    frame: Frame,
    integrations: Vec<IntegrationCounts>,
    total: i64,
    status_bar: Vec<charts::Segment>,
    /// (heading, charts): the last 24 hours per hour, the last 30 days per day.
    chart_groups: Vec<(&'static str, Vec<charts::BucketChart>)>,
}

const CHART_KINDS: [&str; 3] = [
    history_kind::REFRESHED,
    history_kind::REFRESH_FAILED,
    history_kind::NEEDS_REAUTH,
];

fn hour_label(t: i64) -> String {
    let text = rfc3339(t);
    // "YYYY-MM-DDTHH:MM:SSZ" -> "YYYY-MM-DD HH:00 UTC"
    text.get(..13)
        .map(|d| d.replace('T', " ") + ":00 UTC")
        .unwrap_or(text)
}

fn day_label(t: i64) -> String {
    let text = rfc3339(t);
    text.get(..10).map(str::to_owned).unwrap_or(text)
}

async fn overview<S: Store>(State(state): State<AppState<S>>, headers: HeaderMap) -> Response {
    let Some(operator) = session::operator(&state, &headers) else {
        return sign_in_page(&state, StatusCode::OK, None);
    };
    let counts = match state.store.connection_status_counts().await {
        Ok(counts) => counts,
        Err(err) => return internal(&state, "status counts", &err),
    };
    let mut integrations: Vec<IntegrationCounts> = state
        .integrations
        .all()
        .iter()
        .map(|i| IntegrationCounts {
            key: i.key.to_string(),
            name: i.display_name.clone(),
            active: 0,
            needs_reauth: 0,
            revoked: 0,
            total: 0,
            href: String::new(),
        })
        .collect();
    for count in &counts {
        let index = match integrations.iter().position(|i| i.key == count.integration) {
            Some(index) => index,
            None => {
                // Connections of an integration no longer configured still count.
                integrations.push(IntegrationCounts {
                    key: count.integration.clone(),
                    name: count.integration.clone(),
                    active: 0,
                    needs_reauth: 0,
                    revoked: 0,
                    total: 0,
                    href: String::new(),
                });
                integrations.len() - 1
            }
        };
        let row = &mut integrations[index];
        match count.status {
            ConnectionStatus::Active => row.active += count.count,
            ConnectionStatus::NeedsReauth => row.needs_reauth += count.count,
            ConnectionStatus::Revoked => row.revoked += count.count,
        }
        row.total += count.count;
    }
    integrations.sort_by(|a, b| a.key.cmp(&b.key));
    for row in &mut integrations {
        row.href = dashboard_url(&state, &["connections"], &[("integration", &row.key)]);
    }
    let now = unix_time::now();
    // Whole hours and days, so a bucket's bounds read well.
    let day_since = (now - 23 * 3600).div_euclid(3600) * 3600;
    let month_since = (now - 29 * 86_400).div_euclid(86_400) * 86_400;
    let day = state
        .store
        .connection_event_buckets(day_since, 3600, &CHART_KINDS)
        .await;
    let month = state
        .store
        .connection_event_buckets(month_since, 86_400, &CHART_KINDS)
        .await;
    let (day, month) = match (day, month) {
        (Ok(day), Ok(month)) => (day, month),
        (Err(err), _) | (_, Err(err)) => return internal(&state, "event buckets", &err),
    };
    let frame = Frame::new(&state, Some(&operator), "overview");
    let nonce = frame.nonce.clone();
    let body = OverviewPage {
        frame,
        total: counts.iter().map(|c| c.count).sum(),
        status_bar: charts::status_bar(&counts),
        chart_groups: vec![
            (
                "last 24 hours, per hour",
                charts::bucket_charts(&day, day_since, 3600, 24, "last 24 hours", hour_label),
            ),
            (
                "last 30 days, per day",
                charts::bucket_charts(&month, month_since, 86_400, 30, "last 30 days", day_label),
            ),
        ],
        integrations,
    };
    page(StatusCode::OK, &nonce, body.render())
}

// ----- connections -------------------------------------------------------------------------

/// A connection as the console lists it: public fields only.
struct ConnectionItem {
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

fn item<S: Store>(state: &AppState<S>, row: &ConnectionRow) -> ConnectionItem {
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
struct ListQuery {
    status: Option<String>,
    integration: Option<String>,
    q: Option<String>,
    after: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/connections.html")]
struct ConnectionsPage {
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
fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

async fn connections<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let operator = match viewer(&state, &headers) {
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

struct TimelineEntry {
    kind: String,
    label: &'static str,
    bad: bool,
    when: String,
    detail: String,
    reference: String,
    webhook_event_id: String,
}

fn kind_label(kind: &str) -> (&'static str, bool) {
    match kind {
        history_kind::CREATED => ("Connected", false),
        history_kind::RECONNECTED => ("Reconnected", false),
        history_kind::REFRESHED => ("Refreshed", false),
        history_kind::REFRESH_FAILED => ("Refresh failed", true),
        history_kind::NEEDS_REAUTH => ("Needs reauthorization", true),
        history_kind::DELETED => ("Deleted", true),
        history_kind::WEBHOOK_DELIVERED => ("Webhook delivered", false),
        history_kind::WEBHOOK_FAILED => ("Webhook failed", true),
        _ => ("Event", false),
    }
}

struct Fact {
    name: String,
    value: String,
}

struct DeliveryItem {
    id: String,
    event_type: String,
    status: &'static str,
    attempts: i64,
    last: String,
    created: String,
    redeliver_href: String,
}

fn delivery<S: Store>(state: &AppState<S>, row: &tether_store::WebhookEventRow) -> DeliveryItem {
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
struct ConnectionDetail {
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DetailQuery {
    before: Option<i64>,
    notice: Option<String>,
}

async fn connection<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<DetailQuery>, QueryRejection>,
) -> Response {
    let operator = match viewer(&state, &headers) {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let not_found = || {
        message(
            &state,
            Some(&operator),
            StatusCode::NOT_FOUND,
            "No such connection",
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
            crate::provider_auth::metadata_of(row)
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
    let frame =
        Frame::new(&state, Some(&operator), "connections").with_notice(query.notice.as_deref());
    let nonce = frame.nonce.clone();
    let body = ConnectionDetail {
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
    };
    page(StatusCode::OK, &nonce, body.render())
}

async fn refresh_now<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form) {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let Ok(id) = crate::api::parse_connection_id(&id) else {
        return message(
            &state,
            Some(&operator),
            StatusCode::NOT_FOUND,
            "No such connection",
            "No connection has this id.",
        );
    };
    let notice = match refresh::live(&state, id.as_str(), Freshness::Force).await {
        Ok(_) => "refreshed",
        Err(err) if err.code() == "connection_not_found" => {
            return message(
                &state,
                Some(&operator),
                StatusCode::NOT_FOUND,
                "No such connection",
                "No connection has this id.",
            );
        }
        Err(err) if err.code() == "needs_reauth" => "needs_reauth",
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
struct ConfirmDelete {
    frame: Frame,
    row: ConnectionItem,
    delete_href: String,
}

async fn confirm_delete<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let operator = match viewer(&state, &headers) {
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
        return message(
            &state,
            Some(&operator),
            StatusCode::NOT_FOUND,
            "No such connection",
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

async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form) {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let gone = || {
        message(
            &state,
            Some(&operator),
            StatusCode::NOT_FOUND,
            "No such connection",
            "No connection has this id; it may be deleted already.",
        )
    };
    let Ok(id) = crate::api::parse_connection_id(&id) else {
        return gone();
    };
    match crate::removal::delete_connection(&state, id.as_str()).await {
        Ok(()) => {
            tracing::info!(connection_id = %id.as_str(), "console: connection deleted");
            see_other(&dashboard_url(
                &state,
                &["connections"],
                &[("notice", "deleted")],
            ))
        }
        Err(err) if err.code() == "connection_not_found" => gone(),
        Err(err) => internal(&state, "delete", &err),
    }
}

// ----- webhooks ----------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WebhookQuery {
    status: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/webhooks.html")]
struct WebhooksPage {
    frame: Frame,
    configured: bool,
    rows: Vec<(DeliveryItem, String, String)>,
    status: String,
}

async fn webhooks<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    query: Result<Query<WebhookQuery>, QueryRejection>,
) -> Response {
    let operator = match viewer(&state, &headers) {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let query = query.map(|q| q.0).unwrap_or_default();
    let status_text = non_empty(query.status);
    let status = match status_text.as_deref().map(WebhookStatus::parse) {
        None => None,
        Some(Some(status)) => Some(status),
        Some(None) => {
            return message(
                &state,
                Some(&operator),
                StatusCode::BAD_REQUEST,
                "Unknown status",
                "A delivery status is one of pending, delivered or failed.",
            );
        }
    };
    let rows = match state
        .store
        .list_webhook_events(&WebhookEventFilter {
            connection_id: None,
            status,
            limit: 200,
        })
        .await
    {
        Ok(rows) => rows,
        Err(err) => return internal(&state, "deliveries", &err),
    };
    let frame =
        Frame::new(&state, Some(&operator), "webhooks").with_notice(query.notice.as_deref());
    let nonce = frame.nonce.clone();
    let body = WebhooksPage {
        frame,
        configured: state.config.webhooks.is_some(),
        rows: rows
            .iter()
            .map(|r| {
                (
                    delivery(&state, r),
                    r.connection_id.clone(),
                    dashboard_url(&state, &["connections", &r.connection_id], &[]),
                )
            })
            .collect(),
        status: status_text.unwrap_or_default(),
    };
    page(StatusCode::OK, &nonce, body.render())
}

async fn redeliver<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form) {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    if state.config.webhooks.is_none() {
        return see_other(&dashboard_url(
            &state,
            &["webhooks"],
            &[("notice", "webhooks_off")],
        ));
    }
    match state
        .store
        .redeliver_webhook_event(&id, unix_time::now())
        .await
    {
        Ok(true) => {
            state.webhook_wake.notify_one();
            tracing::info!(event_id = %id, "console: webhook redelivery queued");
            see_other(&dashboard_url(
                &state,
                &["webhooks"],
                &[("notice", "redelivered")],
            ))
        }
        Ok(false) => message(
            &state,
            Some(&operator),
            StatusCode::NOT_FOUND,
            "No such delivery",
            "No webhook delivery has this id.",
        ),
        Err(err) => internal(&state, "redeliver", &err),
    }
}
