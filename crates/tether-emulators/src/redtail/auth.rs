//! Redtail's two authentication schemes: `Basic base64(APIKEY:USERNAME:PASSWORD)` on
//! `GET /authentication`, and `UserKeyAuth base64(APIKEY:USERKEY)` everywhere else, with the
//! scheme matched case-insensitively because real clients spell it several ways.
//!
//! Failures become Redtail's 401 `{"message": "..."}`. This module must never say which of the
//! API key, username or password was wrong beyond what Redtail itself reveals, and never log
//! a credential.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{RedtailConfig, RedtailUser};
use crate::http_util::{authorization, decode_base64_text};

/// Redtail's error body `{"message": ...}` with `status`.
pub(crate) fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

fn unauthorized(text: &str) -> Response {
    message(StatusCode::UNAUTHORIZED, text)
}

/// Splits `APIKEY:USERNAME:PASSWORD` on the first and second colon only: the password keeps
/// any colons it contains.
pub(crate) fn split_basic_credentials(decoded: &str) -> Option<(&str, &str, &str)> {
    let mut parts = decoded.splitn(3, ':');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Checks the Basic header of `GET /authentication` and returns the user it names.
pub(crate) fn authenticate_password(
    config: &RedtailConfig,
    headers: &HeaderMap,
) -> Result<RedtailUser, Response> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(unauthorized("Authorization header missing"));
    }
    let decoded = authorization(headers, "Basic")
        .and_then(decode_base64_text)
        .ok_or_else(|| unauthorized("Invalid Authorization header"))?;
    let (api_key, username, password) = split_basic_credentials(&decoded)
        .ok_or_else(|| unauthorized("Invalid Authorization header"))?;
    if api_key != config.api_key {
        return Err(unauthorized("Invalid API key"));
    }
    config
        .users
        .iter()
        .find(|user| user.username == username && user.password == password)
        .cloned()
        .ok_or_else(|| unauthorized("Invalid username or password"))
}

/// Checks `Authorization: UserKeyAuth base64(APIKEY:USERKEY)` and returns the key's user.
pub(crate) fn authenticate_user_key(
    config: &RedtailConfig,
    headers: &HeaderMap,
) -> Result<RedtailUser, Response> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(unauthorized("Authorization header missing"));
    }
    let decoded = authorization(headers, "UserKeyAuth")
        .and_then(decode_base64_text)
        .ok_or_else(|| unauthorized("Invalid Authorization header"))?;
    // Neither an API key nor a user key contains a colon.
    let (api_key, user_key) = decoded
        .split_once(':')
        .ok_or_else(|| unauthorized("Invalid Authorization header"))?;
    if api_key != config.api_key {
        return Err(unauthorized("Invalid API key"));
    }
    config
        .users
        .iter()
        .find(|user| user.user_key == user_key)
        .cloned()
        .ok_or_else(|| unauthorized("Invalid user key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_split_keeps_colons_in_the_password() {
        assert_eq!(
            split_basic_credentials("key:demo:pa:ss:word"),
            Some(("key", "demo", "pa:ss:word"))
        );
        assert_eq!(
            split_basic_credentials("key:demo:"),
            Some(("key", "demo", ""))
        );
        assert_eq!(split_basic_credentials("key:demo"), None);
        assert_eq!(split_basic_credentials(""), None);
    }

    #[test]
    fn user_key_scheme_is_case_insensitive() {
        use base64::Engine as _;
        let config = RedtailConfig::default();
        let user = &config.users[0];
        let mut raw = config.api_key.clone();
        raw.push(':');
        raw.push_str(&user.user_key);
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        for scheme in ["UserKeyAuth", "Userkeyauth", "userkeyauth", "UserkeyAuth"] {
            let mut headers = HeaderMap::new();
            let value = [scheme, encoded.as_str()].join(" ");
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert!(authenticate_user_key(&config, &headers).is_ok(), "{scheme}");
        }
    }
}
