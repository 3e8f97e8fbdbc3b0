//! `GET /oauth/authorize` and the consent page's `POST /oauth/authorize/decision`
//! (RFC 6749 4.1.1-4.1.2, RFC 7636 4.3, RFC 9207 `iss`).
//!
//! Errors about the client or the redirect URI get a 400 HTML page: this module must never
//! redirect to a `redirect_uri` before the client is known and the URI is a valid absolute
//! http(s) URL without fragment (RFC 6749 4.1.2.1, 3.1.2). Other errors go back to the
//! client as `error=...&state=...`.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use url::Url;

use super::{Consent, Issuer, Shared, lock, pkce};
use crate::html;
use crate::http_util::{first, query_pairs};

/// The parameters the authorize endpoint understands; only these travel through the consent
/// page's hidden fields.
const PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// A validated authorization request.
struct AuthorizeRequest {
    client_id: String,
    redirect_uri_raw: String,
    redirect_uri: Url,
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
}

/// Why a request was refused, and how the refusal must be delivered.
enum Refusal {
    /// The redirect URI cannot be trusted: show an error page (RFC 6749 4.1.2.1).
    Page(&'static str),
    /// Tell the client through its redirect URI.
    Redirect {
        redirect_uri: Url,
        error: &'static str,
        description: &'static str,
        state: Option<String>,
    },
}

/// `GET /oauth/authorize`.
pub(crate) async fn authorize(State(shared): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let params = query_pairs(raw.as_deref());
    let (consent, issuer) = {
        let mut state = lock(&shared);
        state.last_authorize_params = params.clone();
        (state.config.consent, sent_issuer(&state))
    };
    let request = match validate(&shared, &params) {
        Ok(request) => request,
        Err(refusal) => return refuse(refusal, issuer.as_deref(), StatusCode::FOUND),
    };
    match consent {
        Consent::AutoApprove => approve(&shared, &request, issuer.as_deref(), StatusCode::FOUND),
        Consent::Page => consent_page(&request, &params),
    }
}

/// `POST /oauth/authorize/decision`: the consent form's Approve or Deny.
pub(crate) async fn decision(State(shared): State<Shared>, body: Bytes) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let issuer = sent_issuer(&lock(&shared));
    let approved = first(&pairs, "decision") == Some("approve");
    let params: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(name, _)| PARAMS.contains(&name.as_str()))
        .collect();
    // The form is re-validated: hidden fields are client-controlled like any other input.
    // 303 makes the browser follow with GET after this POST (RFC 9700 4.12).
    let status = StatusCode::SEE_OTHER;
    let request = match validate(&shared, &params) {
        Ok(request) => request,
        Err(refusal) => return refuse(refusal, issuer.as_deref(), status),
    };
    if approved {
        approve(&shared, &request, issuer.as_deref(), status)
    } else {
        refuse(
            Refusal::Redirect {
                redirect_uri: request.redirect_uri,
                error: "access_denied",
                description: "The user denied the request",
                state: request.state,
            },
            issuer.as_deref(),
            status,
        )
    }
}

/// The `iss` value authorization responses carry, if any (see [`super::Issuer`]).
fn sent_issuer(state: &super::state::State) -> Option<String> {
    match &state.config.issuer {
        Issuer::BaseUrl => Some(state.issuer.as_str().to_owned()),
        Issuer::Omitted => None,
        Issuer::Value(value) => Some(value.clone()),
    }
}

fn validate(shared: &Shared, params: &[(String, String)]) -> Result<AuthorizeRequest, Refusal> {
    let count = |name: &str| params.iter().filter(|(k, _)| k == name).count();
    let state_value = first(params, "state").map(str::to_owned);

    // Client and redirect URI first: until both are trusted, nothing may be redirected.
    if count("client_id") > 1 || count("redirect_uri") > 1 {
        return Err(Refusal::Page(
            "client_id and redirect_uri may appear only once.",
        ));
    }
    let (expected_client, require_pkce, scope_rules, documented) = {
        let state = lock(shared);
        (
            state.config.client_id.clone(),
            state.config.require_pkce,
            super::token::ScopeRules::of(&state.config),
            state.config.authorize_params.clone(),
        )
    };
    let client_id = match first(params, "client_id") {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => return Err(Refusal::Page("The request has no client_id.")),
    };
    if client_id != expected_client {
        return Err(Refusal::Page("Unknown client_id."));
    }
    let Some(redirect_uri_raw) = first(params, "redirect_uri").map(str::to_owned) else {
        return Err(Refusal::Page("The request has no redirect_uri."));
    };
    let redirect_uri = match Url::parse(&redirect_uri_raw) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.fragment().is_none()
                && url.host().is_some() =>
        {
            url
        }
        _ => {
            return Err(Refusal::Page(
                "redirect_uri must be an absolute http(s) URL without a fragment.",
            ));
        }
    };

    let redirect = |error: &'static str, description: &'static str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: state_value.clone(),
    };
    // RFC 6749 3.1: parameters must not be repeated.
    if PARAMS.iter().any(|name| count(name) > 1) {
        return Err(redirect("invalid_request", "A parameter was repeated"));
    }
    // A provider that knows only the parameters it documents refuses any other.
    if let Some(documented) = &documented
        && params
            .iter()
            .any(|(name, _)| !documented.iter().any(|d| d == name))
    {
        return Err(redirect(
            "invalid_request",
            "The request has a parameter this server does not know",
        ));
    }
    match first(params, "response_type") {
        None => return Err(redirect("invalid_request", "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(redirect(
                "unsupported_response_type",
                "Only response_type=code is supported",
            ));
        }
    }
    let code_challenge = first(params, "code_challenge").map(str::to_owned);
    match (&code_challenge, first(params, "code_challenge_method")) {
        (None, None) if require_pkce => {
            return Err(redirect("invalid_request", "code_challenge is required"));
        }
        (None, None) => {}
        (None, Some(_)) => {
            return Err(redirect("invalid_request", "code_challenge is required"));
        }
        // A missing method means "plain" (RFC 7636 4.3), which is not supported here.
        (Some(_), method) if method != Some("S256") => {
            return Err(redirect(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        (Some(challenge), _) if !pkce::challenge_well_formed(challenge) => {
            return Err(redirect("invalid_request", "code_challenge is malformed"));
        }
        (Some(_), _) => {}
    }
    let scope = first(params, "scope").unwrap_or_default();
    if let Err(description) = scope_rules.check(scope) {
        return Err(redirect("invalid_scope", description));
    }
    Ok(AuthorizeRequest {
        client_id,
        redirect_uri_raw,
        redirect_uri,
        scope: first(params, "scope").unwrap_or_default().to_owned(),
        state: state_value.clone(),
        code_challenge,
    })
}

/// Issues a code and sends the browser back with `code`, `state` and `iss`.
fn approve(
    shared: &Shared,
    request: &AuthorizeRequest,
    issuer: Option<&str>,
    status: StatusCode,
) -> Response {
    let (code, extra) = {
        let mut state = lock(shared);
        let code = state.issue_code(
            &request.client_id,
            &request.redirect_uri_raw,
            request.code_challenge.as_deref(),
            &request.scope,
        );
        (code, state.config.callback_params.clone())
    };
    let mut target = request.redirect_uri.clone();
    {
        let mut query = target.query_pairs_mut();
        query.append_pair("code", &code);
        if let Some(state) = &request.state {
            query.append_pair("state", state);
        }
        if let Some(issuer) = issuer {
            query.append_pair("iss", issuer);
        }
        for (name, value) in &extra {
            query.append_pair(name, value);
        }
    }
    redirect_response(status, &target)
}

fn refuse(refusal: Refusal, issuer: Option<&str>, status: StatusCode) -> Response {
    match refusal {
        Refusal::Page(message) => {
            let body = format!(
                "<h1>Invalid authorization request</h1>\n<p id=\"error\">{}</p>",
                html::escape(message)
            );
            html::page(
                StatusCode::BAD_REQUEST,
                html::document("Authorization error", &body),
            )
        }
        Refusal::Redirect {
            mut redirect_uri,
            error,
            description,
            state,
        } => {
            {
                let mut query = redirect_uri.query_pairs_mut();
                query.append_pair("error", error);
                query.append_pair("error_description", description);
                if let Some(state) = &state {
                    query.append_pair("state", state);
                }
                if let Some(issuer) = issuer {
                    query.append_pair("iss", issuer);
                }
            }
            redirect_response(status, &redirect_uri)
        }
    }
}

fn redirect_response(status: StatusCode, target: &Url) -> Response {
    (
        status,
        [
            (header::LOCATION, target.as_str()),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}

/// The consent page: who asks, for which scopes, and two buttons posting the request back.
fn consent_page(request: &AuthorizeRequest, params: &[(String, String)]) -> Response {
    let mut body = String::new();
    body.push_str("<h1>Authorize application</h1>\n");
    body.push_str("<p>The application <strong id=\"client-id\">");
    body.push_str(&html::escape(&request.client_id));
    body.push_str("</strong> asks for access to your account.</p>\n<ul id=\"scopes\">\n");
    for scope in request.scope.split_whitespace() {
        body.push_str("<li>");
        body.push_str(&html::escape(scope));
        body.push_str("</li>\n");
    }
    body.push_str("</ul>\n<form method=\"post\" action=\"/oauth/authorize/decision\">\n");
    for (name, value) in params {
        if PARAMS.contains(&name.as_str()) {
            body.push_str("<input type=\"hidden\" name=\"");
            body.push_str(&html::escape(name));
            body.push_str("\" value=\"");
            body.push_str(&html::escape(value));
            body.push_str("\">\n");
        }
    }
    body.push_str(
        "<button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\">Approve</button>\n\
         <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Deny</button>\n</form>",
    );
    let mut response = html::page(
        StatusCode::OK,
        html::document("Authorize application", &body),
    );
    // The page must not be framed (clickjacking, RFC 6749 10.13) nor cached.
    let headers = response.headers_mut();
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
