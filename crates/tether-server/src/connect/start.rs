//! `GET /connect?session=T` (the list of integrations) and `GET /connect/{integration}`
//! (start: a redirect to the provider for OAuth, the credential form otherwise).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tether_core::catalog::AuthMode;
use tether_core::credentials::Credentials;
use tether_core::integration::Integration;
use tether_core::oauth2::{self, TokenError};
use tether_core::{PkceVerifier, SecretString, pkce, random};
use tether_store::{FlowStateRow, Sealed, Store, TokenHash};

use super::pages::{self, Chrome, ConnectItem, ConnectPage, Failure};
use super::session::{self, Session};
use crate::connection_service::persist::{EndUser, save_connection};
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
            let hint = if i.auth_mode() == AuthMode::Oauth2 && i.provider.fields.is_empty() {
                ["Sign in on ", &i.display_name, "'s own site"].concat()
            } else {
                ["Enter your ", &i.display_name, " details"].concat()
            };
            let mut href = state.config.public_path(&["connect", i.key.as_str()]);
            href.query_pairs_mut()
                .append_pair("session", session.token.expose());
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
    // A provider that needs something from the end user first (a subdomain, a data centre)
    // shows the form; OAuth starts when it is sent.
    if super::form::shows_form(&integration) {
        return super::form::blank(state, session, &integration, popup);
    }
    let nothing = serde_json::Map::new();
    match integration.auth_mode() {
        AuthMode::Oauth2 => start_oauth(state, session, &integration, popup, &nothing)
            .await
            .unwrap_or_else(|failure| failure.into_page(&state.config)),
        AuthMode::Oauth2ClientCredentials => {
            connect_direct(state, session, &integration, popup, nothing, None)
                .await
                .unwrap_or_else(|failure| failure.into_page(&state.config))
        }
        // Every other mode has fields, so `shows_form` took it.
        _ => super::form::blank(state, session, &integration, popup),
    }
}

/// What the end user reads when connecting fails on our side.
const CONNECT_FAILED: &str = "We could not connect your account. Try again in a moment.";

/// What a flow state seals: the PKCE verifier and what the end user gave before the
/// redirect, both needed (and both private) when the provider sends the browser back.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SealedFlow {
    #[serde(default)]
    pub verifier: Option<PkceVerifier>,
    #[serde(default)]
    pub connection: serde_json::Map<String, serde_json::Value>,
}

impl SealedFlow {
    /// Reads what [`start_oauth`] sealed; a flow stored by an older version holds the bare
    /// verifier (PKCE verifiers never start with `{`).
    pub fn from_plain(plain: &[u8]) -> Option<Self> {
        if plain.first() == Some(&b'{') {
            return serde_json::from_slice(plain).ok();
        }
        Some(SealedFlow {
            verifier: Some(PkceVerifier::new(String::from_utf8(plain.to_vec()).ok()?)),
            connection: serde_json::Map::new(),
        })
    }
}

/// The grants without a browser trip to the provider: client credentials (RFC 6749 4.4, the
/// integration's own client) or, when `login` is given, the password grant (RFC 6749 4.3,
/// the end user's username and password from the Connect form, used once). Like a
/// credential form, it counts as an attempt and completes the session once.
pub async fn connect_direct<S: Store>(
    state: &AppState<S>,
    session: &Session,
    integration: &Integration,
    popup: bool,
    connection: serde_json::Map<String, serde_json::Value>,
    login: Option<(&str, &SecretString)>,
) -> Result<Response, Failure> {
    let client = integration.oauth2.as_ref().ok_or_else(|| {
        Failure::internal(
            "direct grant without a client",
            &"misconfigured",
            CONNECT_FAILED,
        )
    })?;
    session::count_attempt(state, session).await?;
    let vars = integration.vars(&connection, None);
    let now = state.clock.now();
    let tokens = match login {
        Some((username, password)) => {
            oauth2::password(&state.outbound, client, &vars, username, password, now).await
        }
        None => oauth2::client_credentials(&state.outbound, client, &vars, now).await,
    }
    .map_err(|err| match &err {
        // RFC 6749 5.2: a refused password grant means the username or password is wrong.
        TokenError::Rejected { error, .. } if login.is_some() && error == "invalid_grant" => {
            tracing::info!(integration = %integration.key, "password grant refused");
            let mut failure = Failure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_login",
                "These sign-in details were not accepted",
                "The service did not accept this username and password. Go back, check both \
                 and try again.",
            );
            failure.retry_last_start = true;
            failure
        }
        _ => super::callback::exchange_failure(integration.key.as_str(), &err),
    })?;
    let metadata = super::callback::connection_metadata(integration, connection, &tokens)
        .map_err(|err| super::callback::exchange_failure(integration.key.as_str(), &err))?;
    let end_user = EndUser {
        id: session.row.end_user_id.clone(),
        email: session.row.end_user_email.clone(),
        display_name: session.row.end_user_display_name.clone(),
    };
    session::complete(state, &session.row.token_hash).await?;
    let reconnect = match super::reconnect::target(state, session.row.token_hash.as_str()).await {
        Ok(reconnect) => reconnect,
        Err(failure) => {
            session::reopen(state, &session.row.token_hash).await;
            return Err(failure);
        }
    };
    let connection_id = match save_connection(
        state,
        integration.key.as_str(),
        &end_user,
        &Credentials::Oauth2(tokens),
        &metadata,
        reconnect.as_deref(),
    )
    .await
    {
        Ok(id) => id,
        Err(err) => {
            session::reopen(state, &session.row.token_hash).await;
            return Err(super::reconnect::account_failure(&err)
                .unwrap_or_else(|| Failure::internal("saving connection", &err, CONNECT_FAILED)));
        }
    };
    Ok(pages::connected(
        &state.config,
        &pages::Outcome {
            integration: integration.key.as_str(),
            display_name: &integration.display_name,
            return_url: session.row.return_url.as_deref(),
            connection_id: &connection_id,
            popup,
        },
    ))
}

/// Stores a flow state and sends the browser to the provider (RFC 6749 4.1.1, RFC 7636).
/// `connection` holds what the end user gave first (a subdomain, a tenant), if anything.
pub async fn start_oauth<S: Store>(
    state: &AppState<S>,
    session: &Session,
    integration: &Integration,
    popup: bool,
    connection: &serde_json::Map<String, serde_json::Value>,
) -> Result<Response, Failure> {
    let integration_key = integration.key.as_str();
    let client = integration.oauth2.as_ref().ok_or_else(|| {
        Failure::internal(
            "OAuth flow without a client",
            &"misconfigured",
            CONNECT_FAILED,
        )
    })?;
    let state_value = random::token();
    let state_hash = TokenHash::of(&state_value);
    let verifier = client.pkce.then(pkce::new_verifier);
    let challenge = verifier.as_ref().map(pkce::s256_challenge);
    let redirect_uri = state.config.callback_url();
    let now = state.clock.now();
    // Built before anything is stored: a value that makes an unusable URL stops here.
    let vars = integration.vars(connection, None);
    let url = tether_core::oauth2::authorization_url(
        client,
        &vars,
        &state_value,
        &redirect_uri,
        challenge.as_deref(),
    )
    .map_err(|err| Failure::internal("building the authorization URL", &err, CONNECT_FAILED))?;
    let sealed = SealedFlow {
        verifier,
        connection: connection.clone(),
    };
    let mut plain = serde_json::to_vec(&sealed).expect("a flow always serializes");
    let sealed_flow = state
        .vault
        .seal(&verifier_context(state_hash.as_str()), &plain);
    zeroize::Zeroize::zeroize(&mut plain);
    // Refused only when this instance lacks the sealing key the database announces.
    let sealed_flow =
        sealed_flow.map_err(|err| Failure::internal("sealing the flow", &err, CONNECT_FAILED))?;
    let flow = FlowStateRow {
        state_hash: state_hash.clone(),
        browser_hash: TokenHash::of(&session.browser),
        session_token_hash: session.row.token_hash.clone(),
        integration: integration_key.to_owned(),
        end_user_id: session.row.end_user_id.clone(),
        pkce_verifier: Sealed::from_bytes(sealed_flow),
        redirect_uri: redirect_uri.to_string(),
        return_url: session.row.return_url.clone(),
        display: if popup { "popup" } else { "page" }.into(),
        expires_at: crate::connection_service::expiry::after(now, state.config.flow_ttl),
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

/// Vault context of a flow's sealed part (PKCE verifier, values given before the redirect):
/// bound to its flow row.
pub fn verifier_context(state_hash: &str) -> String {
    let mut ctx = String::from("flow_states/");
    ctx.push_str(state_hash);
    ctx.push_str("/pkce_verifier");
    ctx
}
