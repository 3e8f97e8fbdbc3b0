//! The credential form of the non-OAuth auth modes (`api_key`, `two_step`, `basic`), also
//! drawn for OAuth providers that need a value before their redirect (a subdomain, a data
//! centre): `GET /connect/{integration}?session=T` draws it (via `start`), and
//! `POST /connect/{integration}?session=T` starts the OAuth flow with the checked values, or
//! checks what was entered with the provider and
//! stores the connection.
//!
//! The fields, their normalisation and the provider calls are catalog data run by
//! [`tether_core::credential_flow`]; this module only draws pages. It must never echo a secret
//! back into a page, log what the user typed, or store anything the provider did not accept.
//!
//! CSRF: the session token in the form's URL is an unguessable bearer value a forging site
//! cannot know; on top of that a browser's `Sec-Fetch-Site` must say same-origin and an
//! `Origin` header, when the browser sends a real one, must be
//! the public URL's origin.

use std::collections::BTreeMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tether_core::SecretString;
use tether_core::catalog::AuthMode;
use tether_core::credential_flow::{self, FieldError, FlowError};
use tether_core::integration::{Grant, Integration};
use tether_store::Store;

use super::pages::{self, Chrome, Failure};
use super::session::{self, Session};
use super::start::{StartQuery, safe_color};
use crate::connection_service::persist::{EndUser, save_connection};
use crate::state::AppState;

/// One input of the form, ready to draw.
pub struct FormField {
    pub name: String,
    pub label: String,
    pub help: String,
    pub placeholder: String,
    /// `password` for secrets, `text` otherwise.
    pub input_type: &'static str,
    /// What the user typed, for non-secrets only; secrets are always drawn empty.
    pub value: String,
    pub required: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "form.html")]
pub struct FormPage {
    pub chrome: Chrome,
    pub name: String,
    pub description: String,
    pub mark_text: String,
    pub mark_color: String,
    /// The POST target: this URL with `?session=T` (and `display=popup`) kept.
    pub action: String,
    /// Back to the list of services.
    pub back_href: String,
    pub fields: Vec<FormField>,
    /// A problem with the whole form rather than one field.
    pub alert: Option<String>,
    pub reference: Option<String>,
}

/// What the form shows besides its fields after a failed attempt.
#[derive(Default)]
struct Problems {
    fields: Vec<FieldError>,
    alert: Option<String>,
    reference: Option<String>,
}

/// The blank form (from `GET /connect/{integration}`).
pub fn blank<S: Store>(
    state: &AppState<S>,
    session: &Session,
    integration: &Integration,
    popup: bool,
) -> Response {
    draw(
        state,
        session,
        integration,
        popup,
        StatusCode::OK,
        &BTreeMap::new(),
        Problems::default(),
    )
}

/// `POST /connect/{integration}?session=T`.
pub async fn submit<S: Store>(
    State(state): State<AppState<S>>,
    Path(integration_key): Path<String>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let popup = query.popup();
    if !crate::http::same_origin::same_origin(&state.config, &headers) {
        tracing::warn!(integration = %integration_key, "credential form posted from a foreign origin");
        return Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "This form was sent from another site",
            "For your security, connect only from the page the app opened. Go back to the app \
             and start connecting again.",
        )
        .into_page(&state.config);
    }
    let session = match session::load(&state, query.session.as_deref(), &headers).await {
        Ok(session) => session,
        Err(failure) => return failure.into_page(&state.config),
    };
    let response = submit_for(&state, &session, &integration_key, popup, &body).await;
    session.with_cookie(response)
}

async fn submit_for<S: Store>(
    state: &AppState<S>,
    session: &Session,
    integration_key: &str,
    popup: bool,
    body: &[u8],
) -> Response {
    let Some(integration) = state
        .integration(integration_key)
        .filter(|i| session.allows(i.key.as_str()) && shows_form(i))
    else {
        return Failure::new(
            StatusCode::NOT_FOUND,
            "integration_not_found",
            "This service is not available",
            "This connect link does not offer that service. Go back to the app and choose again.",
        )
        .into_page(&state.config);
    };
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) else {
        return Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_form",
            "The form could not be read",
            "Go back, fill in the form again and send it.",
        )
        .into_page(&state.config);
    };
    // Wrapped at once so a password cannot reach a log through a stray `Debug`.
    let raw: BTreeMap<String, SecretString> = pairs
        .into_iter()
        .map(|(name, value)| (name, SecretString::new(value)))
        .collect();
    let draw_again =
        |status, problems| draw(state, session, &integration, popup, status, &raw, problems);

    let inputs = match credential_flow::normalise(&integration.provider, &raw) {
        Ok(inputs) => inputs,
        Err(fields) => {
            return draw_again(
                StatusCode::UNPROCESSABLE_ENTITY,
                Problems {
                    fields,
                    ..Problems::default()
                },
            );
        }
    };
    // OAuth providers ask first for what their URLs need (or, with the password grant, for
    // the username and password), then go on as usual.
    if let Some(client) = &integration.oauth2 {
        let connection = inputs.metadata(&integration.provider);
        let result = match client.grant {
            Grant::AuthorizationCode => {
                super::start::start_oauth(state, session, &integration, popup, &connection).await
            }
            Grant::ClientCredentials | Grant::JwtBearer => {
                super::start::connect_direct(state, session, &integration, popup, connection, None)
                    .await
            }
            Grant::Password => {
                let username = inputs.get("username").unwrap_or_default();
                let password = SecretString::new(inputs.get("password").unwrap_or_default());
                super::start::connect_direct(
                    state,
                    session,
                    &integration,
                    popup,
                    connection,
                    Some((username, &password)),
                )
                .await
            }
        };
        return result.unwrap_or_else(|failure| failure.into_page(&state.config));
    }
    // Counted before the provider is asked: each check spends the operator's keys and tells
    // whether a password is right.
    if let Err(failure) = session::count_attempt(state, session).await {
        return failure.into_page(&state.config);
    }
    let connected = match credential_flow::connect(&state.outbound, &integration, &inputs).await {
        Ok(connected) => connected,
        Err(err) => {
            let (status, problems) = explain(&integration, &err);
            return draw_again(status, problems);
        }
    };
    let end_user = EndUser {
        id: session.row.end_user_id.clone(),
        email: session.row.end_user_email.clone(),
        display_name: session.row.end_user_display_name.clone(),
    };
    if let Err(failure) = session::complete(state, &session.row.token_hash).await {
        return failure.into_page(&state.config);
    }
    let reconnect = match super::reconnect::target(state, session.row.token_hash.as_str()).await {
        Ok(reconnect) => reconnect,
        Err(failure) => {
            session::reopen(state, &session.row.token_hash).await;
            return failure.into_page(&state.config);
        }
    };
    let connection_id = match save_connection(
        state,
        integration.key.as_str(),
        &end_user,
        &connected.credentials,
        &connected.metadata,
        reconnect.as_deref(),
    )
    .await
    {
        Ok(id) => id,
        Err(err) => {
            session::reopen(state, &session.row.token_hash).await;
            if let Some(failure) = super::reconnect::account_failure(&err) {
                return failure.into_page(&state.config);
            }
            let reference = crate::http::reference::new();
            tracing::error!(reference = %reference, error = ?err, "saving connection");
            return draw_again(
                StatusCode::INTERNAL_SERVER_ERROR,
                Problems {
                    alert: Some("We could not save the connection. Try again in a moment.".into()),
                    reference: Some(reference),
                    ..Problems::default()
                },
            );
        }
    };
    pages::connected(
        &state.config,
        &pages::Outcome {
            integration: integration.key.as_str(),
            display_name: &integration.display_name,
            return_url: session.row.return_url.as_deref(),
            connection_id: &connection_id,
            popup,
        },
    )
}

/// Whether connecting starts with this form: always for the credential modes, and for the
/// OAuth modes when the provider needs something from the end user before its redirect.
pub fn shows_form(integration: &Integration) -> bool {
    match integration.auth_mode() {
        AuthMode::ApiKey | AuthMode::TwoStep | AuthMode::Basic => true,
        AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials => {
            !integration.provider.fields.is_empty()
        }
    }
}

/// Turns a failed exchange or probe into what the form says, logging outages under a
/// reference the page shows.
fn explain(integration: &Integration, err: &FlowError) -> (StatusCode, Problems) {
    match err {
        FlowError::Rejected {
            field,
            message,
            status,
        } => {
            tracing::info!(integration = %integration.key, status, "provider rejected the credentials entered");
            let problems = match field {
                Some(field) => Problems {
                    fields: vec![FieldError {
                        field: field.clone(),
                        message: message.clone(),
                    }],
                    ..Problems::default()
                },
                None => Problems {
                    alert: Some(message.clone()),
                    ..Problems::default()
                },
            };
            (StatusCode::UNPROCESSABLE_ENTITY, problems)
        }
        FlowError::Unavailable { reason } => {
            let reference = crate::http::reference::new();
            tracing::warn!(reference = %reference, integration = %integration.key, reason = %reason,
                "provider unavailable during connect");
            let alert = [
                &integration.display_name,
                " is unavailable right now, so your account was not connected. Try again in a \
                 few minutes.",
            ]
            .concat();
            (
                StatusCode::BAD_GATEWAY,
                Problems {
                    alert: Some(alert),
                    reference: Some(reference),
                    ..Problems::default()
                },
            )
        }
        FlowError::Misconfigured(detail) => {
            let reference = crate::http::reference::new();
            tracing::error!(reference = %reference, integration = %integration.key, detail = %detail,
                "credential flow misconfigured");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Problems {
                    alert: Some(
                        "This service is not set up correctly, so it cannot be connected. \
                         Contact the app's support with the reference below."
                            .into(),
                    ),
                    reference: Some(reference),
                    ..Problems::default()
                },
            )
        }
    }
}

fn draw<S: Store>(
    state: &AppState<S>,
    session: &Session,
    integration: &Integration,
    popup: bool,
    status: StatusCode,
    typed: &BTreeMap<String, SecretString>,
    problems: Problems,
) -> Response {
    let provider = &integration.provider;
    let with_session = |segments: &[&str]| {
        let mut url = state.config.public_path(segments);
        url.query_pairs_mut()
            .append_pair("session", session.token.expose());
        if popup {
            url.query_pairs_mut().append_pair("display", "popup");
        }
        url.to_string()
    };
    let fields = provider
        .fields
        .iter()
        .map(|field| FormField {
            name: field.name.clone(),
            label: field.label.clone(),
            help: field.help.clone(),
            placeholder: field.placeholder.clone(),
            input_type: if field.secret { "password" } else { "text" },
            value: if field.secret {
                String::new()
            } else {
                typed
                    .get(&field.name)
                    .map(|v| v.expose().trim().to_owned())
                    .unwrap_or_default()
            },
            required: field.required,
            error: problems
                .fields
                .iter()
                .find(|e| e.field == field.name)
                .map(|e| e.message.clone()),
        })
        .collect();
    let chrome = Chrome::new(&state.config);
    let nonce = chrome.nonce.clone();
    let page = FormPage {
        chrome,
        name: integration.display_name.clone(),
        description: provider.description.clone(),
        mark_text: provider.mark.text.clone(),
        mark_color: safe_color(&provider.mark.color),
        action: with_session(&["connect", integration.key.as_str()]),
        back_href: with_session(&["connect"]),
        fields,
        alert: problems.alert.or_else(|| match problems.fields.len() {
            0 => None,
            1 => Some("Check the field marked below, then try again.".into()),
            _ => Some("Check the fields marked below, then try again.".into()),
        }),
        reference: problems.reference,
    };
    pages::render(&state.config, status, &nonce, page.render())
}
