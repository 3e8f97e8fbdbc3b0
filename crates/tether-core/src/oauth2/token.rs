//! The token endpoint client (RFC 6749 4.1.3, 6, 5.1, 5.2) and revocation (RFC 7009).
//!
//! Written over `reqwest` rather than taken from an OAuth crate because providers differ in
//! ways those crates do not tolerate: token requests as JSON (Salesmate's article), responses
//! as form encoding, `expires_in` as a numeric string, unknown fields that must be kept, and
//! a response size cap. What a provider sends is bad input until proven otherwise: an HTML
//! page, a 200 without `access_token` or a 10 MB body is an error, never a stored connection.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use url::Url;

use crate::catalog::{BodyFormat, ClientAuth};
use crate::credentials::OAuth2Tokens;
use crate::integration::{Grant, OAuth2Client, UrlError, Vars};
use crate::outbound::{CappedResponse, Outbound, OutboundError};
use crate::{AccessToken, PkceVerifier, RefreshToken, SecretString};

/// Why a token request failed. Messages never carry a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The provider refused with an RFC 6749 5.2 error (`invalid_grant`, `invalid_client`...).
    #[error("the provider refused the token request: {error}")]
    Rejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The provider is down, slow or rate limiting: try again later.
    #[error("the provider is unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The provider answered something that is not a token response.
    #[error("the provider's token response is invalid: {0}")]
    InvalidResponse(String),
}

impl From<UrlError> for TokenError {
    // A token URL that cannot be built, or a response naming a host the catalog forbids, is
    // never worth retrying as is.
    fn from(err: UrlError) -> Self {
        TokenError::InvalidResponse(err.to_string())
    }
}

impl TokenError {
    /// Whether this failure means the grant is gone and the end user must connect again.
    pub fn needs_reauth(&self, reauth_errors: &[String]) -> bool {
        matches!(self, TokenError::Rejected { error, .. } if reauth_errors.iter().any(|e| e == error))
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. })
    }

    /// A short, stable reason for logs, metrics and webhooks.
    pub fn reason(&self) -> String {
        match self {
            TokenError::Rejected { error, .. } => error.clone(),
            TokenError::Unavailable { reason, .. } => reason.clone(),
            TokenError::InvalidResponse(_) => "invalid_response".into(),
        }
    }
}

impl From<OutboundError> for TokenError {
    fn from(err: OutboundError) -> Self {
        match err {
            OutboundError::Timeout => TokenError::Unavailable {
                reason: "timeout".into(),
                retry_after: None,
            },
            OutboundError::Network(_) => TokenError::Unavailable {
                reason: "network_error".into(),
                retry_after: None,
            },
            OutboundError::TooLarge(limit) => {
                TokenError::InvalidResponse(format!("response larger than {limit} bytes"))
            }
            // Not worth retrying: the address stays refused until the operator allows it.
            refused @ OutboundError::Refused(_) => TokenError::InvalidResponse(refused.to_string()),
        }
    }
}

/// Exchanges an authorization code (RFC 6749 4.1.3; RFC 7636 4.5 adds the verifier).
pub async fn exchange_code(
    http: &Outbound,
    client: &OAuth2Client,
    vars: &Vars<'_>,
    code: &str,
    redirect_uri: &Url,
    code_verifier: Option<&PkceVerifier>,
    now: i64,
) -> Result<OAuth2Tokens, TokenError> {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
    ];
    if let Some(verifier) = code_verifier {
        params.push(("code_verifier", verifier.expose()));
    }
    let response = post_token_request(http, client, vars, &params).await?;
    parse_token_response(&response, now)
}

/// Asks for a token with the client's own credentials (RFC 6749 4.4.2).
pub async fn client_credentials(
    http: &Outbound,
    client: &OAuth2Client,
    vars: &Vars<'_>,
    now: i64,
) -> Result<OAuth2Tokens, TokenError> {
    // The JWT bearer grant is the other server-to-server grant: same place, signed assertion.
    if let Some(jwt) = client
        .jwt_bearer
        .as_ref()
        .filter(|_| client.grant == Grant::JwtBearer)
    {
        return super::jwt_bearer::request(http, client, jwt, vars, now).await;
    }
    let scope = client.scope(vars)?;
    let mut params = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &scope {
        params.push(("scope", scope));
    }
    let response = post_token_request(http, client, vars, &params).await?;
    parse_token_response(&response, now)
}

/// The resource owner password credentials grant (RFC 6749 4.3.2): the end user's username
/// and password, sent once from the Connect form and never kept.
pub async fn password(
    http: &Outbound,
    client: &OAuth2Client,
    vars: &Vars<'_>,
    username: &str,
    password: &SecretString,
    now: i64,
) -> Result<OAuth2Tokens, TokenError> {
    let scope = client.scope(vars)?;
    let mut params = vec![
        ("grant_type", "password"),
        ("username", username),
        ("password", password.expose()),
    ];
    if let Some(scope) = &scope {
        params.push(("scope", scope));
    }
    let response = post_token_request(http, client, vars, &params).await?;
    parse_token_response(&response, now)
}

/// Refreshes (RFC 6749 6). A response without a new refresh token keeps the old one. A
/// client-credentials client simply asks again (RFC 6749 4.4.3: no refresh token), and so
/// does a JWT bearer client, with a new assertion.
/// `redirect_uri` is sent only to providers whose catalog file asks for it.
pub async fn refresh(
    http: &Outbound,
    client: &OAuth2Client,
    vars: &Vars<'_>,
    current: &OAuth2Tokens,
    redirect_uri: &Url,
    now: i64,
) -> Result<OAuth2Tokens, TokenError> {
    if matches!(client.grant, Grant::ClientCredentials | Grant::JwtBearer) {
        return client_credentials(http, client, vars, now).await;
    }
    let refresh_token = current
        .refresh_token
        .as_ref()
        .ok_or_else(|| TokenError::Rejected {
            status: 0,
            error: "invalid_grant".into(),
            description: Some("no refresh token was issued for this connection".into()),
        })?;
    let mut params = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
    ];
    if client.redirect_uri_on_refresh {
        params.push(("redirect_uri", redirect_uri.as_str()));
    }
    let response = post_token_request(http, client, vars, &params).await?;
    let mut tokens = parse_token_response(&response, now)?;
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = current.refresh_token.clone();
    }
    if tokens.scope.is_none() {
        tokens.scope = current.scope.clone();
    }
    Ok(tokens)
}

/// The token to revoke; its kind gives the `token_type_hint` (RFC 7009 2.1), so the hint
/// cannot disagree with the token.
#[derive(Debug, Clone, Copy)]
pub enum Revocable<'a> {
    Refresh(&'a RefreshToken),
    Access(&'a AccessToken),
}

/// Revokes a token (RFC 7009 2.1). Success or an unsupported token type both end the matter.
pub async fn revoke(
    http: &Outbound,
    client: &OAuth2Client,
    vars: &Vars<'_>,
    token: Revocable<'_>,
) -> Result<(), TokenError> {
    let Some(template) = &client.revocation_url else {
        return Ok(());
    };
    let (url, trust) = template.render_with_trust(vars, &client.hosts)?;
    let (token, token_type_hint) = match token {
        Revocable::Refresh(token) => (token.expose(), "refresh_token"),
        Revocable::Access(token) => (token.expose(), "access_token"),
    };
    let params = [("token", token), ("token_type_hint", token_type_hint)];
    let request = authenticated(
        http.request(reqwest::Method::POST, url, trust)?,
        client,
        &params,
    );
    let response = http.send(request).await?;
    if response.status.is_success() {
        return Ok(());
    }
    Err(classify_failure(&response))
}

async fn post_token_request(
    http: &Outbound,
    client: &OAuth2Client,
    vars: &Vars<'_>,
    params: &[(&str, &str)],
) -> Result<CappedResponse, TokenError> {
    let (url, trust) = client.token_url.render_with_trust(vars, &client.hosts)?;
    // The catalog's own parameters (SugarCRM's `platform`) go with every token request.
    let extra = client
        .token_params
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.render(vars).map_err(UrlError::from)?)))
        .collect::<Result<Vec<_>, TokenError>>()?;
    let mut params = params.to_vec();
    params.extend(extra.iter().map(|(name, value)| (*name, value.as_str())));
    let params = params.as_slice();
    let request = authenticated(
        http.request(reqwest::Method::POST, url, trust)?,
        client,
        params,
    );
    Ok(http.send(request).await?)
}

/// Adds client authentication (RFC 6749 2.3.1) and the body in the provider's format.
fn authenticated(
    request: reqwest::RequestBuilder,
    client: &OAuth2Client,
    params: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let mut body: Vec<(&str, &str)> = params.to_vec();
    let mut request = request.header(reqwest::header::ACCEPT, "application/json");
    match (&client.client_secret, client.client_auth) {
        (Some(secret), ClientAuth::ClientSecretBasic) => {
            // 2.3.1: id and secret are form-urlencoded before being joined and base64-encoded.
            let mut joined: String =
                url::form_urlencoded::byte_serialize(client.client_id.as_bytes()).collect();
            joined.push(':');
            joined.extend(url::form_urlencoded::byte_serialize(
                secret.expose().as_bytes(),
            ));
            let mut value = String::from("Basic ");
            value.push_str(&STANDARD.encode(joined.as_bytes()));
            zeroize::Zeroize::zeroize(&mut joined);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        (Some(secret), ClientAuth::ClientSecretPost) => {
            body.push(("client_id", &client.client_id));
            body.push(("client_secret", secret.expose()));
        }
        // A public client identifies itself in the body (RFC 6749 4.1.3).
        (None, _) => body.push(("client_id", &client.client_id)),
    }
    match client.token_request_format {
        BodyFormat::Form => request.form(&body),
        BodyFormat::Json => {
            let object: Map<String, Value> = body
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect();
            request.json(&object)
        }
    }
}

/// Reads a token endpoint response: a token set on success, a classified error otherwise.
pub fn parse_token_response(
    response: &CappedResponse,
    now: i64,
) -> Result<OAuth2Tokens, TokenError> {
    if !response.status.is_success() {
        return Err(classify_failure(response));
    }
    let object = body_object(response).ok_or_else(|| {
        TokenError::InvalidResponse(format!(
            "expected a JSON or form-encoded token response, got {}",
            shown_media_type(response)
        ))
    })?;
    // Some providers report errors with a 200 (RFC 6749 5.2 says 400, not all listen).
    if let Some(error) = object.get("error").and_then(Value::as_str) {
        return Err(TokenError::Rejected {
            status: response.status.as_u16(),
            error: error.to_owned(),
            description: description(&object),
        });
    }
    tokens_from_object(object, now)
}

/// The longest lifetime believed (10 years); longer ones are clamped to it.
const MAX_LIFETIME_SECS: f64 = 315_360_000.0;

/// A token set from a JSON object shaped like RFC 6749 5.1 (`access_token`, `expires_in` as
/// a number or numeric string, ...); unknown fields are kept in `extra`.
pub fn tokens_from_object(
    mut object: Map<String, Value>,
    now: i64,
) -> Result<OAuth2Tokens, TokenError> {
    let access_token = match object.remove("access_token") {
        Some(Value::String(token)) if !token.is_empty() => {
            header_safe("access_token", &token)?;
            AccessToken::new(token)
        }
        Some(_) => {
            return Err(TokenError::InvalidResponse(
                "access_token is not a string".into(),
            ));
        }
        None => {
            return Err(TokenError::InvalidResponse(
                "access_token is missing".into(),
            ));
        }
    };
    let refresh_token = match object.remove("refresh_token") {
        Some(Value::String(token)) if !token.is_empty() => {
            header_safe("refresh_token", &token)?;
            Some(RefreshToken::new(token))
        }
        None | Some(Value::Null) => None,
        Some(Value::String(_)) => None,
        Some(_) => {
            return Err(TokenError::InvalidResponse(
                "refresh_token is not a string".into(),
            ));
        }
    };
    let token_type = match object.remove("token_type") {
        Some(Value::String(t)) if !t.is_empty() => {
            header_safe("token_type", &t)?;
            t
        }
        _ => "Bearer".into(),
    };
    let scope = match object.remove("scope") {
        Some(Value::String(s)) => Some(s),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    };
    let expires_in = match object.remove("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        // `f64::from_str` also takes "NaN" and "inf", which are no lifetime at all.
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|secs| secs.is_finite())
                .ok_or_else(|| TokenError::InvalidResponse("expires_in is not a number".into()))?,
        ),
        Some(_) => {
            return Err(TokenError::InvalidResponse(
                "expires_in is not a number".into(),
            ));
        }
    };
    // A negative or absurd lifetime is clamped rather than trusted: 0 s to 10 years.
    let expires_at =
        expires_in.map(|secs| now.saturating_add(secs.clamp(0.0, MAX_LIFETIME_SECS) as i64));
    Ok(OAuth2Tokens {
        access_token,
        refresh_token,
        token_type,
        scope,
        expires_at,
        extra: object.into(),
    })
}

/// Longest connection value taken from a token response.
const MAX_TOKEN_METADATA_CHARS: usize = 2048;

/// The connection values the catalog keeps from a token response (`oauth2.token_metadata`),
/// each from the first pointer present. A value that is present but unusable (not a string,
/// empty, too long, with control characters) fails the whole response: kept or dropped, it
/// would leave a connection whose every call fails. Pointers are read against the fields
/// Tether does not itself interpret (`instance_url`, `api_domain`). The message names the
/// value, never shows it.
pub fn token_metadata(
    client: &OAuth2Client,
    tokens: &OAuth2Tokens,
) -> Result<Map<String, Value>, TokenError> {
    let response = Value::Object(tokens.extra.0.clone());
    let mut kept = Map::new();
    for (name, pointers) in &client.token_metadata {
        let Some(found) = pointers.iter().find_map(|p| response.pointer(p)) else {
            continue;
        };
        let usable = found
            .as_str()
            .filter(|v| !v.is_empty() && v.chars().count() <= MAX_TOKEN_METADATA_CHARS)
            // Like token values (see `header_safe`): a line break has no place in a URL or a
            // header, and the URL parser would silently drop it.
            .filter(|v| !v.chars().any(char::is_control));
        let Some(value) = usable else {
            return Err(TokenError::InvalidResponse(format!(
                "{name} is not a string of 1 to {MAX_TOKEN_METADATA_CHARS} printable characters"
            )));
        };
        kept.insert(name.clone(), Value::String(value.to_owned()));
    }
    Ok(kept)
}

/// Refuses a token value with control characters (RFC 6749 A.12 and A.17 allow only
/// printable characters): sent in a header, CR/LF would make every later call fail, or split
/// the header if anything ever let it through. The message names the field, never the value.
fn header_safe(name: &str, value: &str) -> Result<(), TokenError> {
    if value.chars().any(char::is_control) {
        return Err(TokenError::InvalidResponse(format!(
            "{name} contains control characters"
        )));
    }
    Ok(())
}

/// Turns a non-success response into an error, reading RFC 6749 5.2 bodies when present.
fn classify_failure(response: &CappedResponse) -> TokenError {
    let status = response.status.as_u16();
    if status == 429 || response.status.is_server_error() {
        let retry_after = response
            .headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reason = if status == 429 {
            "rate_limited".to_owned()
        } else {
            format!("http_{status}")
        };
        return TokenError::Unavailable {
            reason,
            retry_after,
        };
    }
    match body_object(response) {
        Some(object) => match object.get("error").and_then(Value::as_str) {
            Some(error) => TokenError::Rejected {
                status,
                error: error.to_owned(),
                description: description(&object),
            },
            None => TokenError::InvalidResponse(format!("HTTP {status} without an error code")),
        },
        None if response.status.is_redirection() => {
            TokenError::InvalidResponse(format!("HTTP {status} redirect (not followed)"))
        }
        None => TokenError::InvalidResponse(format!(
            "HTTP {status} with {}",
            shown_media_type(response)
        )),
    }
}

/// The body as a JSON object, from JSON or form encoding; `None` for anything else.
fn body_object(response: &CappedResponse) -> Option<Map<String, Value>> {
    let media_type = response.media_type();
    if media_type == "application/x-www-form-urlencoded" {
        let pairs: Map<String, Value> = url::form_urlencoded::parse(&response.body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        return (!pairs.is_empty()).then_some(pairs);
    }
    // JSON, or an unlabelled body that is JSON (some providers send text/plain).
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

fn description(object: &Map<String, Value>) -> Option<String> {
    object
        .get("error_description")
        .and_then(Value::as_str)
        .map(|d| d.chars().take(300).collect())
}

fn shown_media_type(response: &CappedResponse) -> String {
    let media_type = response.media_type();
    if media_type.is_empty() {
        "no content type".into()
    } else {
        media_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

    fn response(status: u16, content_type: &str, body: &str) -> CappedResponse {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        CappedResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn json_with_string_expiry_and_unknown_fields() {
        let r = response(
            200,
            "application/json; charset=utf-8",
            r#"{"access_token":"a","refresh_token":"r","expires_in":"3600","account_id":"x"}"#,
        );
        let t = parse_token_response(&r, 1000).unwrap();
        assert_eq!(t.access_token.expose(), "a");
        assert_eq!(t.expires_at, Some(4600));
        assert_eq!(t.extra["account_id"], "x");
        assert_eq!(t.token_type, "Bearer");
    }

    #[test]
    fn form_encoded_response() {
        let r = response(
            200,
            "application/x-www-form-urlencoded",
            "access_token=a&token_type=bearer&expires_in=60",
        );
        let t = parse_token_response(&r, 0).unwrap();
        assert_eq!(t.expires_at, Some(60));
        assert!(t.refresh_token.is_none());
    }

    #[test]
    fn failures_are_classified() {
        let reauth = vec!["invalid_grant".to_owned()];
        let e = parse_token_response(
            &response(400, "application/json", r#"{"error":"invalid_grant"}"#),
            0,
        )
        .unwrap_err();
        assert!(e.needs_reauth(&reauth));
        let e = parse_token_response(&response(500, "text/html", "<html>"), 0).unwrap_err();
        assert!(e.is_transient());
        let e = parse_token_response(&response(200, "text/html", "<html>"), 0).unwrap_err();
        assert!(matches!(e, TokenError::InvalidResponse(_)));
        let e = parse_token_response(&response(200, "application/json", "{}"), 0).unwrap_err();
        assert!(e.to_string().contains("access_token is missing"));
        let e = parse_token_response(
            &response(401, "application/json", r#"{"error":"invalid_client"}"#),
            0,
        )
        .unwrap_err();
        assert!(!e.needs_reauth(&reauth) && !e.is_transient());
        let e = parse_token_response(
            &response(200, "application/json", r#"{"error":"invalid_grant"}"#),
            0,
        )
        .unwrap_err();
        assert!(e.needs_reauth(&reauth));
    }

    mod properties {
        //! Property tests: whatever a token endpoint sends (any status, content type or
        //! bytes), parsing returns a value or an error and never panics; well-formed JSON and
        //! form responses yield exactly the values they carry; lifetimes are clamped to
        //! 0 s..10 years and never overflow.

        use super::*;
        use proptest::prelude::*;

        fn raw(status: u16, content_type: Option<&str>, body: Vec<u8>) -> CappedResponse {
            let mut headers = HeaderMap::new();
            if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(ct).ok()) {
                headers.insert(CONTENT_TYPE, ct);
            }
            CappedResponse {
                status: StatusCode::from_u16(status).unwrap(),
                headers,
                body: bytes::Bytes::from(body),
            }
        }

        fn content_type() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(prop_oneof![
                Just("application/json".to_owned()),
                Just("application/json; charset=utf-8".to_owned()),
                Just("application/x-www-form-urlencoded".to_owned()),
                Just("APPLICATION/X-WWW-FORM-URLENCODED ; charset=x".to_owned()),
                Just("text/plain".to_owned()),
                Just("text/html".to_owned()),
                "[ -~]{0,40}",
            ])
        }

        /// A token value as providers issue them: printable, including `&`, `=`, `+`, `%`.
        fn token() -> impl Strategy<Value = String> {
            "[!-~]{1,40}"
        }

        /// `expires_in` as sent (a JSON number or numeric string) and the seconds it means.
        #[derive(Clone, Debug)]
        enum Expiry {
            Number(i64),
            Text(String, f64),
        }

        fn expiry() -> impl Strategy<Value = Expiry> {
            prop_oneof![
                any::<i64>().prop_map(Expiry::Number),
                (-10_000i64..10_000_000).prop_map(Expiry::Number),
                (-10_000i64..10_000_000).prop_map(|n| Expiry::Text(n.to_string(), n as f64)),
                (0u32..100_000, 0u32..1000).prop_map(|(a, b)| {
                    let text = format!(" {a}.{b:03} ");
                    let secs = text.trim().parse::<f64>().unwrap();
                    Expiry::Text(text, secs)
                }),
                Just(Expiry::Text("1e300".into(), 1e300)),
                Just(Expiry::Text("-1e300".into(), -1e300)),
            ]
        }

        impl Expiry {
            fn seconds(&self) -> f64 {
                match self {
                    Expiry::Number(n) => *n as f64,
                    Expiry::Text(_, secs) => *secs,
                }
            }
        }

        #[derive(Clone, Debug)]
        struct Issued {
            access_token: String,
            token_type: Option<String>,
            expires_in: Option<Expiry>,
            refresh_token: Option<String>,
            scope: Option<String>,
        }

        fn issued() -> impl Strategy<Value = Issued> {
            (
                token(),
                proptest::option::of("[A-Za-z]{1,10}"),
                proptest::option::of(expiry()),
                proptest::option::of(token()),
                proptest::option::of("[a-z:.]{1,8}( [a-z:.]{1,8}){0,3}"),
            )
                .prop_map(
                    |(access_token, token_type, expires_in, refresh_token, scope)| Issued {
                        access_token,
                        token_type,
                        expires_in,
                        refresh_token,
                        scope,
                    },
                )
        }

        fn json_body(issued: &Issued) -> Vec<u8> {
            let mut object = Map::new();
            object.insert("access_token".into(), issued.access_token.clone().into());
            if let Some(t) = &issued.token_type {
                object.insert("token_type".into(), t.clone().into());
            }
            match &issued.expires_in {
                Some(Expiry::Number(n)) => {
                    object.insert("expires_in".into(), (*n).into());
                }
                Some(Expiry::Text(text, _)) => {
                    object.insert("expires_in".into(), text.clone().into());
                }
                None => {}
            }
            if let Some(r) = &issued.refresh_token {
                object.insert("refresh_token".into(), r.clone().into());
            }
            if let Some(s) = &issued.scope {
                object.insert("scope".into(), s.clone().into());
            }
            serde_json::to_vec(&object).unwrap()
        }

        fn form_body(issued: &Issued) -> Vec<u8> {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("access_token", &issued.access_token);
            if let Some(t) = &issued.token_type {
                form.append_pair("token_type", t);
            }
            match &issued.expires_in {
                Some(Expiry::Number(n)) => {
                    form.append_pair("expires_in", &n.to_string());
                }
                Some(Expiry::Text(text, _)) => {
                    form.append_pair("expires_in", text);
                }
                None => {}
            }
            if let Some(r) = &issued.refresh_token {
                form.append_pair("refresh_token", r);
            }
            if let Some(s) = &issued.scope {
                form.append_pair("scope", s);
            }
            form.finish().into_bytes()
        }

        fn check(tokens: &OAuth2Tokens, issued: &Issued, now: i64) -> Result<(), TestCaseError> {
            prop_assert_eq!(tokens.access_token.expose(), issued.access_token.as_str());
            prop_assert_eq!(
                tokens.refresh_token.as_ref().map(RefreshToken::expose),
                issued.refresh_token.as_deref()
            );
            prop_assert_eq!(
                tokens.token_type.as_str(),
                issued.token_type.as_deref().unwrap_or("Bearer")
            );
            prop_assert_eq!(tokens.scope.as_deref(), issued.scope.as_deref());
            let expected = issued
                .expires_in
                .as_ref()
                .map(|e| now.saturating_add(e.seconds().clamp(0.0, MAX_LIFETIME_SECS) as i64));
            prop_assert_eq!(tokens.expires_at, expected);
            if let Some(at) = tokens.expires_at {
                // Never in the past, never more than ten years ahead.
                prop_assert!(at >= now && at - now <= MAX_LIFETIME_SECS as i64 || at == i64::MAX);
            }
            prop_assert!(tokens.extra.is_empty());
            Ok(())
        }

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_responses(
                status in 100u16..600,
                content_type in content_type(),
                body in proptest::collection::vec(any::<u8>(), 0..256),
                now in any::<i64>(),
            ) {
                let response = raw(status, content_type.as_deref(), body);
                if let Ok(tokens) = parse_token_response(&response, now) {
                    prop_assert!((200..300).contains(&status));
                    prop_assert!(!tokens.access_token.expose().is_empty());
                }
            }

            #[test]
            fn never_panics_on_arbitrary_json_objects(
                fields in proptest::collection::btree_map(
                    prop_oneof![
                        Just("access_token".to_owned()),
                        Just("refresh_token".to_owned()),
                        Just("expires_in".to_owned()),
                        Just("token_type".to_owned()),
                        Just("scope".to_owned()),
                        Just("error".to_owned()),
                        "[a-z_]{1,8}",
                    ],
                    prop_oneof![
                        Just(Value::Null),
                        any::<bool>().prop_map(Value::from),
                        any::<i64>().prop_map(Value::from),
                        any::<u64>().prop_map(Value::from),
                        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
                        "[ -~]{0,12}".prop_map(Value::from),
                        prop_oneof![Just("NaN"), Just("inf"), Just("-inf"), Just("1e999"), Just("-0")].prop_map(Value::from),
                        proptest::collection::vec("[a-z]{0,4}".prop_map(Value::from), 0..3).prop_map(Value::Array),
                    ],
                    0..7,
                ),
                now in any::<i64>(),
            ) {
                let object: Map<String, Value> = fields.into_iter().collect();
                if let Ok(tokens) = tokens_from_object(object, now)
                    && let Some(at) = tokens.expires_at
                {
                    prop_assert!(at >= now);
                }
            }

            #[test]
            fn json_responses_carry_exactly_their_values(issued in issued(), now in 0i64..4_000_000_000) {
                let response = raw(200, Some("application/json"), json_body(&issued));
                let tokens = parse_token_response(&response, now).unwrap();
                check(&tokens, &issued, now)?;
            }

            #[test]
            fn form_responses_carry_exactly_their_values(issued in issued(), now in 0i64..4_000_000_000) {
                let response = raw(200, Some("application/x-www-form-urlencoded"), form_body(&issued));
                let tokens = parse_token_response(&response, now).unwrap();
                check(&tokens, &issued, now)?;
            }

            /// A lifetime far in the future from a clock near the end of time saturates.
            #[test]
            fn lifetimes_never_overflow(secs in any::<i64>(), now in (i64::MAX - 1_000_000)..=i64::MAX) {
                let mut object = Map::new();
                object.insert("access_token".into(), "a".into());
                object.insert("expires_in".into(), secs.into());
                let tokens = tokens_from_object(object, now).unwrap();
                prop_assert!(tokens.expires_at.unwrap() >= now);
            }

            /// A control character anywhere in a token or its type refuses the response,
            /// and the error never carries the value.
            #[test]
            fn tokens_with_control_characters_are_rejected(
                field in prop_oneof![Just("access_token"), Just("refresh_token"), Just("token_type")],
                // Upper case and digits: never part of the (lower case) message by chance.
                before in "[A-Z0-9]{8,12}",
                control in prop_oneof![Just('\r'), Just('\n'), Just('\0'), Just('\t'), Just('\u{7f}'), Just('\u{85}')],
                after in "[A-Za-z0-9: -]{0,12}",
            ) {
                let mut value = before.clone();
                value.push(control);
                value.push_str(&after);
                let mut object = Map::new();
                object.insert("access_token".into(), "a".into());
                object.insert(field.to_owned(), value.clone().into());
                let err = tokens_from_object(object, 0).unwrap_err();
                prop_assert!(matches!(err, TokenError::InvalidResponse(_)));
                let message = err.to_string();
                prop_assert!(message.contains(field), "{}", message);
                prop_assert!(!message.contains(&before), "{}", message);
            }

            #[test]
            fn non_numeric_lifetimes_are_rejected(
                text in prop_oneof![
                    Just("NaN".to_owned()), Just("inf".to_owned()), Just("-infinity".to_owned()),
                    Just("1e999".to_owned()), Just("".to_owned()), Just("3600s".to_owned()),
                    "[a-z]{1,8}",
                ],
            ) {
                let mut object = Map::new();
                object.insert("access_token".into(), "a".into());
                object.insert("expires_in".into(), text.into());
                let err = tokens_from_object(object, 0).unwrap_err();
                prop_assert!(err.to_string().contains("expires_in is not a number"), "{}", err);
            }
        }
    }
}
