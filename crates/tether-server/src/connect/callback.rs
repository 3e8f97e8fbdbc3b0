//! `GET /oauth/callback`: finishes an authorization-code flow (RFC 6749 4.1.2).
//!
//! The `state` is consumed exactly once and only by the browser that started the flow; an
//! unknown, replayed, expired or foreign state stores nothing. The code is exchanged with the
//! PKCE verifier, the tokens are sealed and stored, and the browser goes back to the app.

use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use tether_core::credential_flow;
use tether_core::credentials::{Credentials, OAuth2Tokens};
use tether_core::integration::Integration;
use tether_core::oauth2::{self, TokenError};
use tether_store::{ConsumeOutcome, FlowStateRow, Store, TokenHash};
use url::Url;

use super::pages::{self, Failure};
use super::session::{self, cookie_name, expired_failure, read_cookie, used_failure};
use super::start::{SealedFlow, verifier_context};
use crate::connection_service::persist::{EndUser, save_connection};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// RFC 9207: the issuer of this authorization response.
    iss: Option<String>,
}

pub async fn callback<S: Store>(
    State(state): State<AppState<S>>,
    Query(query): Query<CallbackQuery>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let flow = match take_flow(&state, &query, &headers).await {
        Ok(flow) => flow,
        Err(failure) => return failure.into_page(&state.config),
    };
    let popup = flow.display == "popup";
    // Every parameter, for the values a provider names in its redirect (Kommo's `referer`).
    let pairs: Vec<(String, String)> = raw
        .as_deref()
        .map(|raw| {
            url::form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    match finish(&state, &query, &pairs, &flow).await {
        Ok(connection_id) => connected(&state, &flow, &connection_id, popup),
        Err(failure) => failure.into_page(&state.config),
    }
}

async fn take_flow<S: Store>(
    state: &AppState<S>,
    query: &CallbackQuery,
    headers: &HeaderMap,
) -> Result<FlowStateRow, Failure> {
    let Some(state_value) = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_state",
            "This sign-in could not be completed",
            "The provider sent you back without the information we need. Go back to the app and \
             start connecting again.",
        ));
    };
    let browser = read_cookie(headers, cookie_name(&state.config)).unwrap_or_default();
    let outcome = state
        .store
        .consume_flow_state(&TokenHash::of(state_value), &TokenHash::of(&browser))
        .await
        .map_err(|err| internal("consuming flow state", &err))?;
    match outcome {
        ConsumeOutcome::Consumed(flow) if flow.expires_at > state.clock.now() => Ok(flow),
        ConsumeOutcome::Consumed(_) => Err(expired_failure()),
        ConsumeOutcome::WrongBrowser => {
            tracing::warn!("oauth callback presented by a browser that did not start the flow");
            Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "wrong_browser",
                "This sign-in was started elsewhere",
                "Finish connecting in the same browser you started in, or go back to the app and \
                 start again here.",
            ))
        }
        ConsumeOutcome::Unknown => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_state",
            "This sign-in link was already used",
            "Each sign-in link works once. Go back to the app and start connecting again.",
        )),
    }
}

async fn finish<S: Store>(
    state: &AppState<S>,
    query: &CallbackQuery,
    pairs: &[(String, String)],
    flow: &FlowStateRow,
) -> Result<String, Failure> {
    let Some(integration) = state.integration(&flow.integration) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "integration_not_found",
            "This service is no longer available",
            "The app no longer offers this service.",
        ));
    };
    let client = integration
        .oauth2
        .as_ref()
        .ok_or_else(|| internal("callback for a non-OAuth integration", &"misconfigured"))?;
    // RFC 9207 2.4: with a declared issuer, a response without `iss` or with another one may
    // come from a mixed-up or malicious authorization server; its code is never redeemed.
    // This holds for error responses too.
    if let Some(expected) = &client.issuer
        && query.iss.as_deref() != Some(expected.as_str())
    {
        let reference = crate::http::reference::new();
        tracing::warn!(reference = %reference, integration = %flow.integration,
            present = query.iss.is_some(), "authorization response issuer does not match; no token call made");
        let mut failure = Failure::new(
            StatusCode::BAD_REQUEST,
            "issuer_mismatch",
            "This sign-in could not be trusted",
            "The response did not come from the service you started signing in with, so \
             nothing was connected. Go back to the app and start again.",
        );
        failure.reference = Some(reference);
        return Err(failure);
    }
    if let Some(error) = &query.error {
        // RFC 6749 4.1.2.1: the provider (or the user) refused.
        tracing::info!(integration = %flow.integration, error = %error, "authorization refused at the provider");
        let mut failure = if error == "access_denied" {
            Failure::new(
                StatusCode::OK,
                "access_denied",
                "Access was not granted",
                "You chose not to connect your account. You can try again whenever you like.",
            )
        } else {
            let reference = crate::http::reference::new();
            tracing::warn!(reference = %reference, integration = %flow.integration, error = %error,
                description = ?query.error_description, "authorization error from the provider");
            let mut f = Failure::new(
                StatusCode::BAD_GATEWAY,
                "provider_error",
                "The service reported a problem",
                "The service could not authorize the connection. Try again, and contact the \
                 app's support if it keeps happening.",
            );
            f.reference = Some(reference);
            f
        };
        failure.retry_last_start = true;
        return Err(failure);
    }
    let Some(code) = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
    else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "This sign-in could not be completed",
            "The provider sent you back without an authorization code. Go back to the app and \
             start again.",
        ));
    };
    let session = state
        .store
        .get_connect_session(&flow.session_token_hash)
        .await
        .map_err(|err| internal("loading connect session", &err))?
        .ok_or_else(expired_failure)?;
    if session.completed_at.is_some() {
        return Err(used_failure());
    }
    let sealed = if flow.pkce_verifier.is_empty() {
        SealedFlow {
            verifier: None,
            connection: serde_json::Map::new(),
        }
    } else {
        let mut plain = state
            .vault
            .open(&verifier_context(&flow.state_hash), &flow.pkce_verifier)
            .map_err(|err| internal("opening the sealed flow", &err))?;
        let sealed = SealedFlow::from_plain(&plain);
        zeroize::Zeroize::zeroize(&mut plain);
        sealed.ok_or_else(|| internal("sealed flow", &"malformed"))?
    };
    let verifier = sealed.verifier;
    let mut connection = sealed.connection;
    // Checked before the code is redeemed: a value that fails its pattern (a host it must not
    // name) stops the flow with no token call.
    match credential_flow::callback_values(&integration.provider, pairs) {
        Ok(values) => connection.extend(values),
        Err(problem) => {
            let reference = crate::http::reference::new();
            tracing::warn!(reference = %reference, integration = %flow.integration,
                problem = %problem, "authorization response refused; no token call made");
            let mut failure = Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid_callback",
                "This sign-in could not be completed",
                "The service sent you back with details we cannot use, so nothing was \
                 connected. Go back to the app and start again.",
            );
            failure.reference = Some(reference);
            return Err(failure);
        }
    }
    let vars = integration.vars(&connection, None);
    let redirect_uri =
        Url::parse(&flow.redirect_uri).map_err(|err| internal("stored redirect_uri", &err))?;
    // The session is claimed before the code is redeemed, so two flows of one session racing
    // to the callback store one connection between them.
    session::complete(state, &session.token_hash).await?;
    let tokens = match oauth2::exchange_code(
        &state.outbound,
        client,
        &vars,
        code,
        &redirect_uri,
        verifier.as_ref(),
        state.clock.now(),
    )
    .await
    .and_then(|tokens| {
        let metadata = connection_metadata(&integration, connection, &tokens)?;
        Ok((tokens, metadata))
    }) {
        Ok(answer) => answer,
        Err(err) => {
            session::reopen(state, &session.token_hash).await;
            return Err(exchange_failure(&flow.integration, &err));
        }
    };
    let (tokens, metadata) = tokens;
    let end_user = EndUser {
        id: flow.end_user_id.clone(),
        email: session.end_user_email.clone(),
        display_name: session.end_user_display_name.clone(),
    };
    let reconnect = super::reconnect::target(state, session.token_hash.as_str()).await;
    let saved = match reconnect {
        Ok(reconnect) => save_connection(
            state,
            &flow.integration,
            &end_user,
            &Credentials::Oauth2(tokens),
            &metadata,
            reconnect.as_deref(),
        )
        .await
        .map_err(|err| {
            super::reconnect::account_failure(&err)
                .unwrap_or_else(|| internal("saving connection", &err))
        }),
        Err(failure) => Err(failure),
    };
    if saved.is_err() {
        session::reopen(state, &session.token_hash).await;
    }
    saved
}

/// A new connection's metadata: what the end user gave before the redirect, the granted
/// scope, and the values the catalog keeps from the token response, refused when they would
/// point the proxy at a host the provider's file does not allow.
pub(crate) fn connection_metadata(
    integration: &Integration,
    mut metadata: serde_json::Map<String, serde_json::Value>,
    tokens: &OAuth2Tokens,
) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    if let Some(scope) = &tokens.scope {
        metadata.insert("scope".into(), serde_json::Value::String(scope.clone()));
    }
    if let Some(client) = &integration.oauth2 {
        metadata.extend(oauth2::token_metadata(client, tokens)?);
    }
    // A new connection must make its API base URL now: stored without one, every call
    // through it would fail.
    integration
        .check_complete_connection_values(&metadata)
        .map_err(TokenError::InvalidResponse)?;
    Ok(metadata)
}

pub(crate) fn exchange_failure(integration: &str, err: &TokenError) -> Failure {
    let reference = crate::http::reference::new();
    tracing::warn!(reference = %reference, integration, error = %err, "token exchange failed");
    let mut failure = Failure::new(
        StatusCode::BAD_GATEWAY,
        "provider_error",
        "The service did not complete the connection",
        "The service could not finish connecting your account. Go back to the app and try \
         again; if it keeps happening, contact the app's support with the reference below.",
    );
    failure.reference = Some(reference);
    // A new attempt starts a new flow, so offering one is safe.
    failure.retry_last_start = true;
    failure
}

fn internal<E: std::fmt::Debug + std::any::Any>(what: &str, err: &E) -> Failure {
    let mut failure = Failure::internal(
        what,
        err,
        "We could not finish connecting your account. Try again in a moment.",
    );
    // A new attempt starts a new flow, so offering one is safe.
    failure.retry_last_start = true;
    failure
}

/// The success outcome for an OAuth flow (shared with the credential form).
fn connected<S: Store>(
    state: &AppState<S>,
    flow: &FlowStateRow,
    connection_id: &str,
    popup: bool,
) -> Response {
    let name = state
        .integration(&flow.integration)
        .map(|i| i.display_name.clone())
        .unwrap_or_else(|| flow.integration.clone());
    pages::connected(
        &state.config,
        &pages::Outcome {
            integration: &flow.integration,
            display_name: &name,
            return_url: flow.return_url.as_deref(),
            connection_id,
            popup,
        },
    )
}
