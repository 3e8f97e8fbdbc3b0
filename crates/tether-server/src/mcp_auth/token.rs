//! `POST /mcp/oauth/token`: the token endpoint (RFC 6749 section 3.2, OAuth 2.1). Two grants:
//!
//! - `authorization_code`: the code is used once (a second use revokes everything the first
//!   got), within its short lifetime, by the client it was issued to, with the same
//!   `redirect_uri`, the PKCE verifier of its challenge (RFC 7636 section 4.6, S256 only) and,
//!   when given, the same `resource` (RFC 8707);
//! - `refresh_token`: the token rotates on every use; a used one presented again revokes the
//!   whole grant, its refresh tokens and its access tokens (RFC 9700 section 4.14.2).
//!
//! Access tokens are agent tokens bound to the grant (end user, access, integrations). Every
//! answer is `Cache-Control: no-store`; errors are RFC 6749 section 5.2 JSON.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tether_core::{PkceVerifier, pkce, random};
use tether_store::{
    CodeRedemption, McpAccessToken, McpGrantRow, McpRefreshToken, RefreshRotation, Store, TokenHash,
};

use super::errors::{OAuthError, no_store};
use crate::state::AppState;

/// The prefix of access tokens issued here (as every agent token's), so leak scanners see them.
const ACCESS_PREFIX: &str = "tat_";
/// The prefix of refresh tokens.
const REFRESH_PREFIX: &str = "tmr_";

pub fn router<S: Store>() -> Router<AppState<S>> {
    Router::new().route("/mcp/oauth/token", post(token::<S>))
}

/// A form body's parameters, each at most once (RFC 6749 section 3.2).
pub fn form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        OAuthError::invalid_request("the body must be application/x-www-form-urlencoded")
    })?;
    let mut out = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if out.insert(name, value).is_some() {
            return Err(OAuthError::invalid_request("a parameter is repeated"));
        }
    }
    Ok(out)
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

async fn token<S: Store>(State(state): State<AppState<S>>, body: Bytes) -> Response {
    let outcome = match form(&body) {
        Ok(params) => match params.get("grant_type").map(String::as_str) {
            Some("authorization_code") => authorization_code(&state, &params).await,
            Some("refresh_token") => refresh_token(&state, &params).await,
            Some(_) => Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )),
            None => Err(OAuthError::invalid_request("grant_type is required")),
        },
        Err(err) => Err(err),
    };
    match outcome {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

/// The S256 transform of a verifier, compared in constant time with the stored challenge.
fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    // RFC 7636 section 4.1: 43 to 128 unreserved characters.
    let shaped = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = pkce::s256_challenge(&PkceVerifier::new(verifier));
    shaped && random::constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// A `resource` parameter, when sent, must name the grant's resource.
fn check_resource(params: &HashMap<String, String>, grant: &McpGrantRow) -> Result<(), OAuthError> {
    match params.get("resource") {
        Some(asked) if asked.trim_end_matches('/') != grant.resource.trim_end_matches('/') => {
            Err(OAuthError::new(
                "invalid_target",
                "resource must be this server's MCP endpoint",
            ))
        }
        _ => Ok(()),
    }
}

async fn authorization_code<S: Store>(
    state: &AppState<S>,
    params: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let code = required(params, "code")?;
    let client_id = required(params, "client_id")?;
    let redirect_uri = required(params, "redirect_uri")?;
    let verifier = required(params, "code_verifier")?;
    let now = state.clock.now();
    let (code_row, grant) = match state
        .store
        .redeem_mcp_code(&TokenHash::of(code), now)
        .await?
    {
        CodeRedemption::Redeemed(code, grant) => (code, grant),
        CodeRedemption::Reused { grant_id } => {
            tracing::warn!(grant_id = %grant_id, "mcp authorization code used twice: grant revoked");
            return Err(OAuthError::invalid_grant("the code was already used"));
        }
        CodeRedemption::Invalid => {
            return Err(OAuthError::invalid_grant("the code is unknown or expired"));
        }
    };
    // The code is used up from here: a failed check does not leave it for another try.
    if grant.client_id != client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if code_row.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri is not the one of the authorization request",
        ));
    }
    if !verifier_matches(verifier, &code_row.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "the PKCE code_verifier does not match",
        ));
    }
    check_resource(params, &grant)?;
    issue(state, &grant, now).await
}

async fn refresh_token<S: Store>(
    state: &AppState<S>,
    params: &HashMap<String, String>,
) -> Result<Response, OAuthError> {
    let refresh = required(params, "refresh_token")?;
    let client_id = required(params, "client_id")?;
    let now = state.clock.now();
    let grant = match state
        .store
        .rotate_mcp_refresh_token(&TokenHash::of(refresh), now)
        .await?
    {
        RefreshRotation::Rotated(grant) => grant,
        RefreshRotation::Reused { grant_id } => {
            tracing::warn!(grant_id = %grant_id, "mcp refresh token reused: grant revoked");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; every token of this authorization is revoked",
            ));
        }
        RefreshRotation::Invalid => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is unknown or expired",
            ));
        }
    };
    if grant.client_id != client_id {
        // Someone else's token: the family is no longer safe to keep.
        state.store.revoke_mcp_grant(&grant.id, now).await?;
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    check_resource(params, &grant)?;
    if let Some(scope) = params.get("scope")
        && scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .any(|s| !grant.scope.split(' ').any(|g| g == s))
    {
        return Err(OAuthError::new(
            "invalid_scope",
            "scope may not exceed the one granted",
        ));
    }
    issue(state, &grant, now).await
}

/// A new access token and refresh token for the grant, as the JSON answer.
async fn issue<S: Store>(
    state: &AppState<S>,
    grant: &McpGrantRow,
    now: i64,
) -> Result<Response, OAuthError> {
    let config = &state.config.mcp_auth;
    let access_token = random::prefixed_token(ACCESS_PREFIX);
    let refresh_token = random::prefixed_token(REFRESH_PREFIX);
    let access_ttl = config.access_ttl.as_secs() as i64;
    let access = McpAccessToken {
        id: random::prefixed_token("agt_"),
        token_hash: TokenHash::of(&access_token),
        expires_at: now + access_ttl,
    };
    let refresh = McpRefreshToken {
        token_hash: TokenHash::of(&refresh_token),
        expires_at: now + config.refresh_ttl.as_secs() as i64,
    };
    if !state
        .store
        .issue_mcp_tokens(&grant.id, &access, &refresh, now)
        .await?
    {
        return Err(OAuthError::invalid_grant("the authorization was revoked"));
    }
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": access_ttl,
        "refresh_token": refresh_token,
        "scope": grant.scope,
    });
    Ok(no_store(Json(body).into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_of_the_rfc_7636_example() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verifier_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verifier_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!verifier_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
