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

mod agent_tokens;
mod charts;
mod connections;
mod mcp_clients;
mod overview;
mod reconnect;
mod session;
mod webhooks;

use askama::Template;
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tether_core::unix_time::rfc3339;
use tether_store::{
    ConnectionPage, ConnectionRow, ConnectionStatus, Store, WebhookEventFilter, WebhookStatus,
    history_kind,
};

use crate::connection_service::ConnectionError;
use crate::connection_service::refresh::{self, Freshness};
use crate::state::AppState;
use connections::*;
use mcp_clients::*;
use overview::*;
use session::Operator;
use webhooks::*;

/// Rows per page of the connections list.
const PAGE_SIZE: u32 = 50;
/// Timeline entries per page.
const TIMELINE_SIZE: u32 = 100;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new()
        .route("/dashboard", get(overview::<S>))
        .route("/dashboard/sign-in", post(sign_in::<S>))
        .route("/dashboard/sign-out", post(sign_out::<S>))
        .route(
            "/dashboard/sign-out-everywhere",
            post(sign_out_everywhere::<S>),
        )
        .route("/dashboard/connections", get(connections::<S>))
        .route("/dashboard/connections/{id}", get(connection::<S>))
        .route(
            "/dashboard/connections/{id}/refresh",
            post(refresh_now::<S>),
        )
        .route(
            "/dashboard/connections/{id}/reconnect",
            post(reconnect::reconnect_link::<S>),
        )
        .route(
            "/dashboard/connections/{id}/delete",
            get(confirm_delete::<S>).post(delete::<S>),
        )
        .route("/dashboard/mcp-clients", get(mcp_clients::<S>))
        .route(
            "/dashboard/mcp-clients/{id}/revoke",
            post(revoke_grant::<S>),
        )
        .route(
            "/dashboard/connections/{id}/agent-tokens/{token}/revoke",
            post(agent_tokens::revoke::<S>),
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
    pub sign_out_everywhere_href: String,
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
            sign_out_everywhere_href: dashboard_url(state, &["sign-out-everywhere"], &[]),
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
            Some("agent_token_revoked") => ("The agent token was revoked.", false),
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

/// Renders a console page with the pages' security headers; nobody may frame it.
fn page(status: StatusCode, nonce: &str, html: Result<String, askama::Error>) -> Response {
    let mut response =
        crate::connect::pages::html_response(status, html, &content_security_policy(nonce));
    response
        .headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
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
/// The page for a connection id that names no connection (malformed, unknown, or deleted
/// already); `text` says which, as the action knows it.
fn no_such_connection<S: Store>(state: &AppState<S>, operator: &Operator, text: &str) -> Response {
    message(
        state,
        Some(operator),
        StatusCode::NOT_FOUND,
        "No such connection",
        text,
    )
}

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
    let reference = crate::http::reference::new();
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
    if !crate::http::same_origin::same_origin(&state.config, &parts.headers) {
        return cross_origin(&state);
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
    let client = state.client_of(&parts);
    // The key first: a right key always signs in, whatever others guessed.
    let accepted = state.key_accepted(key).await;
    let Some(fingerprint) = state.api_keys.fingerprint(key).filter(|_| accepted) else {
        // Counted like a wrong key on the API: the form must not be a faster oracle.
        tracing::info!(client = ?client, "console sign-in with a wrong API key");
        if let Some(wait) = state
            .api_key_limiter
            .record_failure(&state.store, state.clock.as_ref(), client, key)
            .await
        {
            let mut response = sign_in_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                Some(format!("Too many wrong keys. Try again in {wait} seconds.")),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return response;
        }
        return sign_in_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("That is not an API key of this Tether.".into()),
        );
    };
    let Some(cookie) = session::issue(&state, fingerprint).await else {
        return internal(
            &state,
            "session cookie",
            &"could not record or build the session",
        );
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

/// Ends this session in the store (on every instance) and clears the cookie.
async fn sign_out<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    if let Err(err) = state.store.end_console_session(&operator.session_id).await {
        return internal(&state, "ending the console session", &err);
    }
    signed_out(&state)
}

/// Ends every console session, this one included, on every instance.
async fn sign_out_everywhere<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if let Err(response) = authorize_action(&state, &headers, &form).await {
        return response;
    }
    match state.store.end_all_console_sessions().await {
        Ok(ended) => tracing::info!(ended, "console: every session signed out"),
        Err(err) => return internal(&state, "ending every console session", &err),
    }
    signed_out(&state)
}

/// Back to the sign-in page, without the cookie.
fn signed_out<S: Store>(state: &AppState<S>) -> Response {
    let mut response = see_other(&dashboard_url(state, &[], &[]));
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
async fn authorize_action<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    form: &Result<Form<ActionForm>, FormRejection>,
) -> Result<Operator, Response> {
    if !crate::http::same_origin::same_origin(&state.config, headers) {
        return Err(cross_origin(state));
    }
    let Some(operator) = session::operator(state, headers).await else {
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
async fn viewer<S: Store>(state: &AppState<S>, headers: &HeaderMap) -> Result<Operator, Response> {
    session::operator(state, headers)
        .await
        .ok_or_else(|| see_other(&dashboard_url(state, &[], &[])))
}
