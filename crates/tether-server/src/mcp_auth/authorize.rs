//! `GET /mcp/oauth/authorize`: the start of the authorization code flow (OAuth 2.1 with PKCE
//! S256 only, RFC 8707 resource indicators). Checks the client and its exact redirect URI
//! first: until both hold, errors are a page for the person (never a redirect to an unchecked
//! URI); after, they go back to the client with `error`, `state` and `iss`. A valid request is
//! stored (single use, short-lived) and the browser goes to the app's sign-in page with
//! `tether_request=<id>.<HMAC>`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use tether_store::{McpAuthRequestRow, Store};

use super::client::{self, ClientError};
use super::errors::{found, page, redirect_uri_with};
use super::{SCOPE_READ, SCOPE_WRITE, issuer, resource, signing};
use crate::connect::pages::Failure;
use crate::state::AppState;

/// The longest `state` a client may send (it comes back in the redirect).
const MAX_STATE_LEN: usize = 1024;

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/mcp/oauth/authorize", get(authorize::<S>))
}

/// Parameters, each at most once (RFC 6749 section 3.1).
fn parameters(query: Option<&str>) -> Result<HashMap<String, String>, &'static str> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| "the query string cannot be read")?;
    let mut out = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if out.insert(name, value).is_some() {
            return Err("a parameter is repeated");
        }
    }
    Ok(out)
}

/// A PKCE challenge as RFC 7636 section 4.2 shapes an S256 one: 43 base64url characters.
fn challenge_shaped(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The scopes asked for, checked; both when none are named.
pub fn parse_scope(scope: Option<&str>) -> Result<String, ()> {
    match scope.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(format!("{SCOPE_READ} {SCOPE_WRITE}")),
        Some(scope) => {
            let mut scopes: Vec<&str> = Vec::new();
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                if s != SCOPE_READ && s != SCOPE_WRITE {
                    return Err(());
                }
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
            Ok(scopes.join(" "))
        }
    }
}

async fn authorize<S: Store>(
    State(state): State<AppState<S>>,
    RawQuery(query): RawQuery,
) -> Response {
    let config = &state.config;
    let Some(sign_in_url) = config.mcp_auth.sign_in_url.clone() else {
        return page(
            config,
            StatusCode::NOT_FOUND,
            "mcp_authorization_not_configured",
            "This service does not let MCP clients sign in: its operator has not configured a \
             sign-in page.",
        );
    };
    let params = match parameters(query.as_deref()) {
        Ok(params) => params,
        Err(why) => return page(config, StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let get = |name: &str| params.get(name).map(String::as_str);

    // 1. Before the redirect URI is trusted: a page for the person.
    let Some(client_id) = get("client_id") else {
        return page(
            config,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request names no client (client_id is missing).",
        );
    };
    let client = match client::resolve(&state, client_id).await {
        Ok(client) => client,
        Err(ClientError::Store(err)) => {
            return Failure::internal("mcp authorize", &err, "We could not read this request.")
                .into_page(config);
        }
        Err(err) => {
            return page(
                config,
                StatusCode::BAD_REQUEST,
                "invalid_client",
                format!("The application asking for access is unknown: {err}."),
            );
        }
    };
    let redirect_uri = match get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        // Only one registered: it may be left out (OAuth 2.1 section 2.3.2).
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        _ => {
            return page(
                config,
                StatusCode::BAD_REQUEST,
                "invalid_redirect_uri",
                "The application's return address is not one it registered.",
            );
        }
    };

    // 2. The redirect URI is the client's own: errors go back to it.
    let client_state = get("state");
    let issuer = issuer(config);
    let back = |error: &str, description: &str| -> Response {
        match redirect_uri_with(
            &redirect_uri,
            &[("error", error), ("error_description", description)],
            client_state.filter(|s| s.len() <= MAX_STATE_LEN),
            &issuer,
        ) {
            Some(url) => found(url.as_str()),
            None => page(
                config,
                StatusCode::BAD_REQUEST,
                "invalid_redirect_uri",
                "The application's return address is not a URL.",
            ),
        }
    };
    if client_state.is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return back("invalid_request", "state is longer than 1024 characters");
    }
    if get("response_type") != Some("code") {
        return back("unsupported_response_type", "response_type must be code");
    }
    let Some(challenge) = get("code_challenge") else {
        return back(
            "invalid_request",
            "PKCE is required: code_challenge is missing",
        );
    };
    if get("code_challenge_method") != Some("S256") {
        return back("invalid_request", "code_challenge_method must be S256");
    }
    if !challenge_shaped(challenge) {
        return back("invalid_request", "code_challenge is not an S256 challenge");
    }
    let expected_resource = resource(config);
    if let Some(asked) = get("resource")
        && asked.trim_end_matches('/') != expected_resource.trim_end_matches('/')
    {
        return back(
            "invalid_target",
            "resource must be this server's MCP endpoint",
        );
    }
    let Ok(scope) = parse_scope(get("scope")) else {
        return back(
            "invalid_scope",
            "scope may only hold mcp:read and mcp:write",
        );
    };

    // 3. Keep the request for the app, and send the browser to the app's sign-in page.
    let signed = match signing::new_request(&state).await {
        Ok(signed) => signed,
        Err(err) => return back("server_error", &super::errors::internal(&err).description),
    };
    let now = state.clock.now();
    let row = McpAuthRequestRow {
        request_hash: signed.hash,
        client_id: client.client_id,
        client_name: client.client_name,
        redirect_uri: redirect_uri.clone(),
        state: client_state.map(str::to_owned),
        code_challenge: challenge.to_owned(),
        scope,
        resource: expected_resource,
        expires_at: now + config.mcp_auth.request_ttl.as_secs() as i64,
        created_at: now,
    };
    if let Err(err) = state.store.insert_mcp_request(&row, now).await {
        let err = super::errors::OAuthError::store(err);
        return back(err.error, &err.description);
    }
    let mut target = sign_in_url;
    target
        .query_pairs_mut()
        .append_pair("tether_request", &signed.parameter);
    found(target.as_str())
}
