//! `GET /connect?session=T` (the list of integrations) and `GET /connect/{integration}`
//! (start: a redirect to the provider for OAuth, the credential form otherwise).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tether_core::catalog::AuthMode;
use tether_core::{pkce, random, unix_time};
use tether_store::{FlowStateRow, Store};

use super::pages::{self, Chrome, ConnectItem, ConnectPage, Failure};
use super::session::{self, Session};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct StartQuery {
    pub session: Option<String>,
    /// `popup` when the app opened the Connect page with `window.open`.
    pub display: Option<String>,
}

impl StartQuery {
    pub fn popup(&self) -> bool {
        self.display.as_deref() == Some("popup")
    }
}

pub async fn connect_page<S: Store>(
    State(state): State<AppState<S>>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let popup = query.popup();
    let session = match session::load(&state, query.session.as_deref(), &headers).await {
        Ok(session) => session,
        Err(failure) => return failure.into_page(&state.config),
    };
    let items = state
        .integrations
        .all()
        .into_iter()
        .filter(|i| session.allows(i.key.as_str()))
        .map(|i| {
            let hint = if i.auth_mode() == AuthMode::Oauth2 {
                ["Sign in on ", &i.display_name, "'s own site"].concat()
            } else {
                ["Enter your ", &i.display_name, " details"].concat()
            };
            let mut href = state.config.public_path(&["connect", i.key.as_str()]);
            href.query_pairs_mut()
                .append_pair("session", &session.token);
            if popup {
                href.query_pairs_mut().append_pair("display", "popup");
            }
            ConnectItem {
                key: i.key.to_string(),
                name: i.display_name.clone(),
                href: href.to_string(),
                mark_text: i.provider.mark.text.clone(),
                mark_color: safe_color(&i.provider.mark.color),
                hint,
            }
        })
        .collect();
    let chrome = Chrome::new(&state.config);
    let nonce = chrome.nonce.clone();
    let page = ConnectPage {
        chrome,
        items,
        for_whom: session.for_whom(),
    };
    session.with_cookie(pages::render(
        &state.config,
        StatusCode::OK,
        &nonce,
        page.render(),
    ))
}

/// A CSS colour from the catalog, or a neutral one if it is not plain `#rgb`/`#rrggbb`.
pub fn safe_color(color: &str) -> String {
    if crate::config::is_hex_color(color) {
        color.to_owned()
    } else {
        "#4b5563".into()
    }
}

pub async fn start<S: Store>(
    State(state): State<AppState<S>>,
    Path(integration_key): Path<String>,
    Query(query): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let popup = query.popup();
    let session = match session::load(&state, query.session.as_deref(), &headers).await {
        Ok(session) => session,
        Err(failure) => return failure.into_page(&state.config),
    };
    let response = start_for(&state, &session, &integration_key, popup).await;
    session.with_cookie(response)
}

async fn start_for<S: Store>(
    state: &AppState<S>,
    session: &Session,
    integration_key: &str,
    popup: bool,
) -> Response {
    let Some(integration) = state
        .integration(integration_key)
        .filter(|_| session.allows(integration_key))
    else {
        return Failure::new(
            StatusCode::NOT_FOUND,
            "integration_not_found",
            "This service is not available",
            "This connect link does not offer that service. Go back to the app and choose again.",
        )
        .into_page(&state.config);
    };
    match integration.auth_mode() {
        AuthMode::Oauth2 => start_oauth(state, session, integration_key, popup)
            .await
            .unwrap_or_else(|failure| failure.into_page(&state.config)),
        mode if super::form::is_form_mode(mode) => {
            super::form::blank(state, session, &integration, popup)
        }
        _ => Failure::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported_auth_mode",
            "This service cannot be connected here yet",
            "Ask the app's team to check their Tether configuration.",
        )
        .into_page(&state.config),
    }
}

/// Stores a flow state and sends the browser to the provider (RFC 6749 4.1.1, RFC 7636).
async fn start_oauth<S: Store>(
    state: &AppState<S>,
    session: &Session,
    integration_key: &str,
    popup: bool,
) -> Result<Response, Failure> {
    let integration = state
        .integration(integration_key)
        .expect("checked by caller");
    let client = integration
        .oauth2
        .as_ref()
        .expect("oauth2 integrations have a client");
    let state_value = random::token();
    let state_hash = random::sha256_hex(&state_value);
    let verifier = client.pkce.then(pkce::new_verifier);
    let challenge = verifier.as_ref().map(pkce::s256_challenge);
    let redirect_uri = state.config.callback_url();
    let now = unix_time::now();
    let sealed_verifier = verifier
        .as_ref()
        .map(|v| {
            state
                .vault
                .seal(&verifier_context(&state_hash), v.expose().as_bytes())
        })
        .unwrap_or_default();
    let flow = FlowStateRow {
        state_hash: state_hash.clone(),
        browser_hash: random::sha256_hex(&session.browser),
        session_token_hash: session.row.token_hash.clone(),
        integration: integration_key.to_owned(),
        end_user_id: session.row.end_user_id.clone(),
        pkce_verifier: sealed_verifier,
        redirect_uri: redirect_uri.to_string(),
        return_url: session.row.return_url.clone(),
        display: if popup { "popup" } else { "page" }.into(),
        expires_at: now + state.config.flow_ttl.as_secs() as i64,
        created_at: now,
    };
    match state
        .store
        .insert_flow_state(&flow, state.config.max_flows_per_session)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(integration = %integration_key, "connect session over its flow limit");
            return Err(Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_flows",
                "Too many attempts",
                "This link was used to start signing in too many times. Go back to the app and \
                 start connecting again.",
            ));
        }
        Err(err) => {
            return Err(Failure::internal(
                "storing flow state",
                &err,
                "We could not start connecting. Try again in a moment.",
            ));
        }
    }
    let url = tether_core::oauth2::authorization_url(
        client,
        &state_value,
        &redirect_uri,
        challenge.as_deref(),
    );
    tracing::info!(integration = %integration_key, "oauth flow started");
    let mut response = Redirect::to(url.as_str()).into_response();
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Vault context of a flow's PKCE verifier: bound to its flow row.
pub fn verifier_context(state_hash: &str) -> String {
    let mut ctx = String::from("flow_states/");
    ctx.push_str(state_hash);
    ctx.push_str("/pkce_verifier");
    ctx
}
