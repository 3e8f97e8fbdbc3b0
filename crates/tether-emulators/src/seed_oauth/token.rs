//! `POST /oauth/token` (RFC 6749 3.2, 4.1.3, 6; RFC 7636 4.5-4.6; RFC 9700 4.14.2) and
//! `POST /oauth/revoke` (RFC 7009), with client authentication by HTTP Basic or body
//! (RFC 6749 2.3.1) and bodies as form or JSON (the Salesmate article sends JSON).
//!
//! Every token call is counted and recorded before anything can fail, so tests can assert on
//! attempts. Errors are RFC 6749 5.2 JSON. This module must never echo a secret, never
//! accept a code or refresh token for another client, and never panic on the body.

use std::collections::BTreeSet;
use std::convert::Infallible;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use url::Url;

use super::state::{Issued, State as EmulatorState};
use super::{ClientAuthMethod, RecordedTokenRequest, Shared, TokenFault, lock, pkce};
use crate::html;
use crate::http_util::{authorization, decode_base64_text, first, form_decode_component};

/// Size of the streamed [`TokenFault::HugeBody`] body.
const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;
const HUGE_CHUNK: usize = 64 * 1024;
static HUGE_FILLER: [u8; HUGE_CHUNK] = [b'x'; HUGE_CHUNK];

/// An RFC 6749 5.2 error, ready to send.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    /// Set when the client tried HTTP Basic: a 401 must then carry `WWW-Authenticate`.
    basic_challenge: bool,
}

impl OAuthError {
    fn bad_request(error: &'static str, description: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description,
            basic_challenge: false,
        }
    }

    fn invalid_request(description: &'static str) -> Self {
        Self::bad_request("invalid_request", description)
    }

    fn invalid_grant(description: &'static str) -> Self {
        Self::bad_request("invalid_grant", description)
    }

    fn invalid_client(basic_challenge: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "Client authentication failed",
            basic_challenge,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        no_store(headers);
        if self.basic_challenge {
            // RFC 6749 5.2: a 401 after Basic auth includes the matching challenge.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"seed-oauth\""),
            );
        }
        response
    }
}

/// RFC 6749 5.1: token responses must not be cached.
fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Reads the body as form (the RFC's format, also assumed when no type is given) or JSON.
fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<(String, String)>, &'static str> {
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase());
    match media_type.as_deref() {
        None | Some("application/x-www-form-urlencoded") => {
            Ok(url::form_urlencoded::parse(body).into_owned().collect())
        }
        Some("application/json") => {
            let value: Value =
                serde_json::from_slice(body).map_err(|_| "The JSON body is malformed")?;
            let Value::Object(object) = value else {
                return Err("The JSON body must be an object");
            };
            let mut pairs = Vec::with_capacity(object.len());
            for (name, value) in object {
                match value {
                    Value::Null => {}
                    Value::String(text) => pairs.push((name, text)),
                    Value::Number(number) => pairs.push((name, number.to_string())),
                    Value::Bool(flag) => pairs.push((name, flag.to_string())),
                    Value::Array(_) | Value::Object(_) => {
                        return Err("Parameters must be strings");
                    }
                }
            }
            Ok(pairs)
        }
        Some(_) => Err("Unsupported content type"),
    }
}

/// The profile's rules for requested scopes.
pub(crate) struct ScopeRules {
    separator: String,
    required: Option<String>,
    known: Vec<String>,
}

impl ScopeRules {
    pub(crate) fn of(config: &super::SeedOAuthConfig) -> Self {
        ScopeRules {
            separator: config.scope_separator.clone(),
            required: config.required_scope.clone(),
            known: config.known_scopes.clone(),
        }
    }

    /// Checks a requested `scope` parameter; the error is an RFC 6749 description.
    pub(crate) fn check(&self, scope: &str) -> Result<(), &'static str> {
        let requested: Vec<&str> = scope
            .split(self.separator.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(required) = &self.required
            && !requested.contains(&required.as_str())
        {
            return Err("A required scope is missing");
        }
        if !self.known.is_empty() && requested.iter().any(|s| !self.known.iter().any(|k| k == s)) {
            return Err("Unknown scope");
        }
        Ok(())
    }
}

/// Splits decoded Basic credentials into client id and secret: split on the first colon,
/// then form-decode each part (RFC 6749 2.3.1), so ids and secrets may contain `:` when
/// encoded.
pub(crate) fn split_client_credentials(decoded: &str) -> Option<(String, String)> {
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode_component(id)?, form_decode_component(secret)?))
}

fn auth_method(headers: &HeaderMap, params: &[(String, String)]) -> ClientAuthMethod {
    let basic = authorization(headers, "Basic").is_some();
    let body = first(params, "client_secret").is_some();
    match (basic, body) {
        (true, true) => ClientAuthMethod::Both,
        (true, false) => ClientAuthMethod::Basic,
        (false, true) => ClientAuthMethod::Body,
        (false, false) => ClientAuthMethod::None,
    }
}

/// Authenticates the client (RFC 6749 2.3.1) and returns its id.
fn authenticate(
    state: &EmulatorState,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<String, OAuthError> {
    let body_id = first(params, "client_id");
    let (id, secret, basic) = match auth_method(headers, params) {
        ClientAuthMethod::Both => {
            return Err(OAuthError::invalid_request(
                "Use only one client authentication method",
            ));
        }
        ClientAuthMethod::Basic => {
            let credentials = authorization(headers, "Basic")
                .and_then(decode_base64_text)
                .and_then(|decoded| split_client_credentials(&decoded))
                .ok_or(OAuthError::invalid_client(true))?;
            if body_id.is_some_and(|id| id != credentials.0) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the Authorization header",
                ));
            }
            (credentials.0, credentials.1, true)
        }
        ClientAuthMethod::Body => (
            body_id.unwrap_or_default().to_owned(),
            first(params, "client_secret")
                .unwrap_or_default()
                .to_owned(),
            false,
        ),
        ClientAuthMethod::None => return Err(OAuthError::invalid_client(false)),
    };
    if id == state.config.client_id && secret == state.config.client_secret {
        Ok(id)
    } else {
        Err(OAuthError::invalid_client(basic))
    }
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed = parse_body(content_type.as_deref(), &body);
    let (fault, issuer) = {
        let mut state = lock(&shared);
        state.token_calls += 1;
        let empty = Vec::new();
        let params = parsed.as_ref().unwrap_or(&empty);
        let grant_type = first(params, "grant_type").map(str::to_owned);
        if let Some(grant) = &grant_type {
            *state.token_calls_by_grant.entry(grant.clone()).or_default() += 1;
        }
        let body_fields: BTreeSet<String> = params.iter().map(|(k, _)| k.clone()).collect();
        state.last_token_request = Some(RecordedTokenRequest {
            content_type: content_type.clone(),
            client_auth: auth_method(&headers, params),
            grant_type,
            scope: first(params, "scope").map(str::to_owned),
            body_fields: body_fields.into_iter().collect(),
        });
        (state.fault.clone(), state.issuer.clone())
    };
    if let Some(fault) = fault
        && let Some(response) = apply_fault(fault, &issuer).await
    {
        return response;
    }
    let params = match parsed {
        Ok(params) => params,
        Err(description) => return OAuthError::invalid_request(description).into_response(),
    };
    let json = content_type.as_deref().is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    if lock(&shared).config.require_json_body && !json {
        return OAuthError::invalid_request("Token requests must be JSON").into_response();
    }
    let required = lock(&shared).config.required_token_param.clone();
    if let Some((name, value)) = required
        && first(&params, &name) != Some(value.as_str())
    {
        return OAuthError::invalid_request("A required parameter is missing").into_response();
    }
    match grant(&shared, &headers, &params) {
        Ok(issued) => {
            hold_while_asked(&shared).await;
            success(&shared, &issued)
        }
        Err(error) => error.into_response(),
    }
}

/// Waits while the test holds token responses (the tokens are issued already).
async fn hold_while_asked(shared: &Shared) {
    let mut hold = {
        let mut state = lock(shared);
        let hold = state.hold_responses.subscribe();
        if !*hold.borrow() {
            return;
        }
        state.held_responses += 1;
        hold
    };
    let _ = hold.wait_for(|held| !*held).await;
    lock(shared).held_responses -= 1;
}

fn grant(
    shared: &Shared,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<Issued, OAuthError> {
    let mut state = lock(shared);
    // RFC 7523 3.1: the signed assertion authenticates the client; no secret is sent.
    if first(params, "grant_type") == Some(super::jwt::GRANT_TYPE)
        && let Some(profile) = state.config.jwt_bearer.clone()
    {
        let assertion = first(params, "assertion")
            .ok_or(OAuthError::invalid_request("assertion is required"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        super::jwt::verify(&profile, assertion, now).map_err(OAuthError::invalid_grant)?;
        let family = state.new_family();
        return Ok(state.issue_tokens(family, &profile.issuer, "api", false));
    }
    let client_id = authenticate(&state, headers, params)?;
    // RFC 6749 3.2: parameters must not be repeated.
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(OAuthError::invalid_request("A parameter was repeated"));
    }
    match first(params, "grant_type") {
        None => Err(OAuthError::invalid_request("grant_type is required")),
        Some("authorization_code") => authorization_code(&mut state, &client_id, params),
        Some("refresh_token") => refresh(&mut state, &client_id, params),
        Some("password") if state.config.password_login.is_some() => {
            // RFC 6749 4.3.2: the resource owner's own credentials, once.
            let (username, password) = state.config.password_login.clone().unwrap_or_default();
            if first(params, "username") != Some(username.as_str())
                || first(params, "password") != Some(password.as_str())
            {
                return Err(OAuthError::invalid_grant("Wrong username or password"));
            }
            let scope = first(params, "scope").unwrap_or_default().to_owned();
            let family = state.new_family();
            Ok(state.issue_tokens(family, &client_id, &scope, true))
        }
        Some("client_credentials") if state.config.client_credentials => {
            // RFC 6749 4.4.3: an access token only; the client simply asks again.
            let scope = first(params, "scope").unwrap_or_default().to_owned();
            ScopeRules::of(&state.config)
                .check(&scope)
                .map_err(|d| OAuthError::bad_request("invalid_scope", d))?;
            let family = state.new_family();
            Ok(state.issue_tokens(family, &client_id, &scope, false))
        }
        Some(_) => Err(OAuthError::bad_request(
            "unsupported_grant_type",
            "This grant type is not enabled",
        )),
    }
}

/// RFC 6749 4.1.3 with RFC 7636 4.6.
fn authorization_code(
    state: &mut EmulatorState,
    client_id: &str,
    params: &[(String, String)],
) -> Result<Issued, OAuthError> {
    let code = first(params, "code").ok_or(OAuthError::invalid_request("code is required"))?;
    let redirect_uri = first(params, "redirect_uri")
        .ok_or(OAuthError::invalid_request("redirect_uri is required"))?;
    let verifier = first(params, "code_verifier");
    let Some(grant) = state.codes.get_mut(code) else {
        return Err(OAuthError::invalid_grant("Unknown authorization code"));
    };
    if grant.used {
        // RFC 6749 4.1.2: a reused code revokes what it produced.
        let family = grant.family;
        state.revoke_family(family);
        return Err(OAuthError::invalid_grant("Authorization code already used"));
    }
    if grant.expires_at <= std::time::Instant::now() {
        return Err(OAuthError::invalid_grant("Authorization code expired"));
    }
    if grant.client_id != client_id {
        return Err(OAuthError::invalid_grant(
            "Code was issued to another client",
        ));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant("redirect_uri does not match"));
    }
    match (&grant.code_challenge, verifier) {
        (Some(challenge), Some(verifier)) if pkce::verify_s256(verifier, challenge) => {}
        (Some(_), Some(_)) => return Err(OAuthError::invalid_grant("PKCE verification failed")),
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is required")),
        // RFC 9700 2.1.1: a verifier without a challenge is a downgrade attempt.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "No code_challenge was sent for this code",
            ));
        }
        (None, None) => {}
    }
    grant.used = true;
    let (family, scope) = (grant.family, grant.scope.clone());
    let with_refresh = !state.config.no_refresh_token;
    Ok(state.issue_tokens(family, client_id, &scope, with_refresh))
}

/// RFC 6749 6, with rotation and reuse detection (RFC 9700 4.14.2).
fn refresh(
    state: &mut EmulatorState,
    client_id: &str,
    params: &[(String, String)],
) -> Result<Issued, OAuthError> {
    let presented = first(params, "refresh_token")
        .ok_or(OAuthError::invalid_request("refresh_token is required"))?
        .to_owned();
    if state.config.require_redirect_uri_on_refresh && first(params, "redirect_uri").is_none() {
        return Err(OAuthError::invalid_request(
            "redirect_uri is required on refresh",
        ));
    }
    let Some(entry) = state.refresh_tokens.get(&presented) else {
        return Err(OAuthError::invalid_grant(
            "Unknown or revoked refresh token",
        ));
    };
    if entry.client_id != client_id {
        return Err(OAuthError::invalid_grant(
            "Refresh token was issued to another client",
        ));
    }
    let family = entry.family;
    if state.is_family_revoked(family) {
        return Err(OAuthError::invalid_grant(
            "Unknown or revoked refresh token",
        ));
    }
    if state
        .accounts
        .idle_expired(&presented, state.config.refresh_token_idle)
    {
        return Err(OAuthError::invalid_grant(
            "Refresh token expired: unused for too long",
        ));
    }
    if !entry.current {
        state.reuse_events += 1;
        state.revoke_family(family);
        return Err(OAuthError::invalid_grant("Refresh token reuse detected"));
    }
    let granted = entry.scope.clone();
    // RFC 6749 6: a requested scope must not exceed the original grant.
    let scope = match first(params, "scope") {
        Some(requested) => {
            let allowed: BTreeSet<&str> = granted.split_whitespace().collect();
            if !requested.split_whitespace().all(|s| allowed.contains(s)) {
                return Err(OAuthError::bad_request(
                    "invalid_scope",
                    "Requested scope exceeds the original grant",
                ));
            }
            requested.to_owned()
        }
        None => granted,
    };
    if state.config.rotate_refresh_tokens {
        if let Some(entry) = state.refresh_tokens.get_mut(&presented) {
            entry.current = false;
        }
        return Ok(state.issue_tokens(family, client_id, &scope, true));
    }
    let mut issued = state.issue_tokens(family, client_id, &scope, false);
    state.accounts.touch(&presented);
    if state.config.issue_refresh_token_on_refresh {
        issued.refresh_token = Some(presented);
    }
    Ok(issued)
}

/// The RFC 6749 5.1 success body, as JSON or (when configured) as a form.
fn success(shared: &Shared, issued: &Issued) -> Response {
    let (as_string, as_form, omit_expires_in, instance, extra) = {
        let state = lock(shared);
        let instance = state.config.instance_field.as_ref().map(|field| {
            if let Some(url) = &state.instance_url_override {
                return (field.clone(), url.clone());
            }
            // Another host name for this same emulator, as a real provider's instance host
            // differs from its login host.
            let mut url = state.issuer.clone();
            let _ = url.set_host(Some("localhost"));
            url.set_path(&["/x/", &state.config.instance, "/"].concat());
            (field.clone(), Value::String(url.to_string()))
        });
        (
            state.config.expires_in_as_string,
            state.config.token_response_form,
            state.config.omit_expires_in,
            instance,
            state.config.extra_token_fields.clone(),
        )
    };
    let expires_in = if as_string {
        Value::String(issued.expires_in.to_string())
    } else {
        Value::from(issued.expires_in)
    };
    let mut body = Map::new();
    body.insert("access_token".into(), issued.access_token.clone().into());
    body.insert("token_type".into(), "Bearer".into());
    if !omit_expires_in {
        body.insert("expires_in".into(), expires_in);
    }
    if let Some((field, url)) = instance {
        body.insert(field, url);
    }
    if let Some(refresh_token) = &issued.refresh_token {
        body.insert("refresh_token".into(), refresh_token.clone().into());
    }
    if !issued.scope.is_empty() {
        body.insert("scope".into(), issued.scope.clone().into());
    }
    // A field no client knows: clients must keep what they do not understand.
    body.insert("account_id".into(), "acct_1".into());
    for (name, value) in extra {
        body.insert(name, value);
    }

    let mut response = if as_form {
        let pairs: Vec<(String, String)> = body
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(text) => (k, text),
                other => (k, other.to_string()),
            })
            .collect();
        let encoded = serde_urlencoded::to_string(pairs).unwrap_or_default();
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
            encoded,
        )
            .into_response()
    } else {
        (StatusCode::OK, Json(Value::Object(body))).into_response()
    };
    no_store(response.headers_mut());
    response
}

/// The response a fault produces, or `None` when the call should proceed (after a delay).
async fn apply_fault(fault: TokenFault, issuer: &Url) -> Option<Response> {
    let response = match fault {
        TokenFault::InvalidClient => OAuthError::invalid_client(false).into_response(),
        TokenFault::InvalidGrant => {
            OAuthError::invalid_grant("The grant is invalid (injected fault)").into_response()
        }
        TokenFault::ServerError => OAuthError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "The server encountered an unexpected condition",
            basic_challenge: false,
        }
        .into_response(),
        TokenFault::HtmlPage => html::bad_gateway_page(),
        TokenFault::OkWithoutAccessToken => {
            (StatusCode::OK, Json(json!({ "token_type": "bearer" }))).into_response()
        }
        TokenFault::HugeBody => huge_body(),
        TokenFault::Delay(duration) => {
            tokio::time::sleep(duration).await;
            return None;
        }
        TokenFault::TooManyRequests { retry_after_secs } => {
            let mut response = OAuthError {
                status: StatusCode::TOO_MANY_REQUESTS,
                error: "temporarily_unavailable",
                description: "Too many requests",
                basic_challenge: false,
            }
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        TokenFault::Redirect => {
            let target = issuer
                .join("oauth/elsewhere")
                .unwrap_or_else(|_| issuer.clone());
            (StatusCode::FOUND, [(header::LOCATION, target.as_str())]).into_response()
        }
    };
    Some(response)
}

/// 10 MiB of a JSON-looking token response, streamed in chunks without `Content-Length`, so a
/// client must cap what it reads rather than trust a length header.
fn huge_body() -> Response {
    let head = Bytes::from_static(b"{\"access_token\":\"");
    let tail = Bytes::from_static(b"\",\"token_type\":\"Bearer\"}");
    let chunks = HUGE_BODY_BYTES / HUGE_CHUNK;
    let filler = (0..chunks).map(|_| Bytes::from_static(&HUGE_FILLER));
    let stream = futures_util::stream::iter(
        std::iter::once(head)
            .chain(filler)
            .chain(std::iter::once(tail))
            .map(Ok::<Bytes, Infallible>),
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Where [`TokenFault::Redirect`] points: a token a well-behaved client never sees.
pub(crate) async fn elsewhere() -> Response {
    let body = json!({
        "access_token": "stolen-by-redirect",
        "token_type": "Bearer",
        "expires_in": 3600,
    });
    let mut response = (StatusCode::OK, Json(body)).into_response();
    no_store(response.headers_mut());
    response
}

/// `POST /oauth/revoke` (RFC 7009 2.1-2.2): 200 for any token once the client is
/// authenticated, including unknown tokens; revoking a refresh token revokes its family.
pub(crate) async fn revoke(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = parse_body(content_type, &body);
    let mut state = lock(&shared);
    state.revoke_calls += 1;
    let params = match parsed {
        Ok(params) => params,
        Err(description) => return OAuthError::invalid_request(description).into_response(),
    };
    let client_id = match authenticate(&state, &headers, &params) {
        Ok(id) => id,
        Err(error) => return error.into_response(),
    };
    let Some(token) = first(&params, "token") else {
        return OAuthError::invalid_request("token is required").into_response();
    };
    // token_type_hint is only a hint (RFC 7009 2.1): both kinds are searched.
    let family = state
        .refresh_tokens
        .get(token)
        .filter(|entry| entry.client_id == client_id)
        .map(|entry| entry.family);
    match family {
        Some(_) if state.config.revoke_single_tokens => {
            state.refresh_tokens.remove(token);
        }
        Some(family) => state.revoke_family(family),
        None => {
            state.revoke_access_token(token);
        }
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_client_credentials_split_on_first_colon_and_decode() {
        assert_eq!(
            split_client_credentials("seed-client:seed-secret"),
            Some(("seed-client".into(), "seed-secret".into()))
        );
        assert_eq!(
            split_client_credentials("my%3Aclient:se%3Acr+et:x"),
            Some(("my:client".into(), "se:cr et:x".into()))
        );
        assert_eq!(split_client_credentials("no-colon"), None);
    }

    #[test]
    fn bodies_parse_as_form_or_json() {
        let form = parse_body(None, b"grant_type=refresh_token&scope=read+write").unwrap();
        assert_eq!(first(&form, "scope"), Some("read write"));
        let json = parse_body(
            Some("application/json; charset=utf-8"),
            br#"{"grant_type":"authorization_code","n":1,"skip":null}"#,
        )
        .unwrap();
        assert_eq!(first(&json, "grant_type"), Some("authorization_code"));
        assert_eq!(first(&json, "n"), Some("1"));
        assert!(parse_body(Some("application/json"), b"[1]").is_err());
        assert!(parse_body(Some("text/plain"), b"a=b").is_err());
    }
}
