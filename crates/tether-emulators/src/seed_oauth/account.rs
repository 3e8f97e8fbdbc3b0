//! Who is signed in, and what a grant does over time, for the seed provider: each grant
//! family belongs to the account that was signing in when it began (tests switch accounts
//! with [`super::SeedOAuthControl::sign_in_as`]); `GET /v1/me` answers whose a token is, as
//! the "who am I" endpoints of real CRMs do (HubSpot's token introspection, Pipedrive's
//! `/users/me`, Salesforce's identity URL); refresh tokens may expire when unused (as
//! Salesforce's and Zoho's can); and the check endpoint can be made to fail the way an
//! unwell provider does (5xx, an HTML page), which says nothing about the token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Shared, lock};

/// A provider account: a user in an organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedAccount {
    pub user_id: u64,
    pub organization_id: String,
    pub email: String,
}

impl Default for SeedAccount {
    fn default() -> Self {
        SeedAccount {
            user_id: 1001,
            organization_id: "org-1".into(),
            email: "ada@example.com".into(),
        }
    }
}

/// How `GET /v1/me` misbehaves until cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckFault {
    /// 503 with a JSON error.
    ServiceUnavailable,
    /// 502 with an HTML page, as a proxy in front of a dead backend sends.
    HtmlPage,
    /// 403 `{"error":"insufficient_scope"}` to every token: a definite refusal (the user's
    /// seat or the app's access was taken away at the provider), which a refresh does not mend.
    Forbidden,
}

/// The accounts' part of the emulator's memory.
#[derive(Debug, Default)]
pub(crate) struct Accounts {
    /// Who the next authorization signs in as.
    pub signing_in: SeedAccount,
    by_family: HashMap<u64, SeedAccount>,
    /// When each refresh token was issued or last used.
    last_used: HashMap<String, Instant>,
    pub fault: Option<CheckFault>,
    pub me_calls: u64,
    /// `GET /v1/me` requests being answered now, and the most at once so far.
    pub me_in_flight: u64,
    pub me_peak: u64,
}

impl Accounts {
    /// A new family belongs to whoever is signing in now.
    pub(crate) fn assign(&mut self, family: u64) {
        self.by_family.insert(family, self.signing_in.clone());
    }

    pub(crate) fn of_family(&self, family: u64) -> Option<&SeedAccount> {
        self.by_family.get(&family)
    }

    /// A refresh token was issued or used: its idle clock restarts.
    pub(crate) fn touch(&mut self, refresh_token: &str) {
        self.last_used
            .insert(refresh_token.to_owned(), Instant::now());
    }

    /// Whether `refresh_token` went unused longer than `idle`.
    pub(crate) fn idle_expired(&self, refresh_token: &str, idle: Option<Duration>) -> bool {
        let (Some(idle), Some(last)) = (idle, self.last_used.get(refresh_token)) else {
            return false;
        };
        last.elapsed() > idle
    }

    /// Makes every refresh token look unused for `by` longer (for tests of idle expiry
    /// without waiting).
    pub(crate) fn age(&mut self, by: Duration) {
        for last in self.last_used.values_mut() {
            if let Some(earlier) = last.checked_sub(by) {
                *last = earlier;
            }
        }
    }
}

/// `GET /v1/me`: the token's account, `{"id", "email", "company": {"id"}}`; 401 for a token
/// that is not valid, the injected fault otherwise.
pub(crate) async fn me(
    State(shared): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let fault = {
        let mut state = lock(&shared);
        state.accounts.me_calls += 1;
        state.accounts.me_in_flight += 1;
        state.accounts.me_peak = state.accounts.me_peak.max(state.accounts.me_in_flight);
        state.accounts.fault
    };
    let response = answer(&shared, fault, &uri, &headers);
    lock(&shared).accounts.me_in_flight -= 1;
    response
}

fn answer(
    shared: &Shared,
    fault: Option<CheckFault>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    match whose(shared, fault, uri, headers) {
        Ok(account) => Json(json!({
            "id": account.user_id,
            "email": account.email,
            "company": {"id": account.organization_id},
        }))
        .into_response(),
        Err(response) => response,
    }
}

/// `POST /v1/graphql` with `{"query": "... me ..."}` as JSON: the same account in the shape
/// of a GraphQL API (`{"data": {"me": {"id", "email", "account": {"id"}}}}`), for checks that
/// must send a JSON body; 400 for anything but a JSON object with a `query` naming `me`.
pub(crate) async fn graphql_me(
    State(shared): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let asks_for_me = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("query")
                .and_then(|q| q.as_str())
                .map(|q| q.contains("me"))
        })
        .unwrap_or(false);
    if !is_json || !asks_for_me {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": [{"message": "a JSON body with a query is required"}]})),
        )
            .into_response();
    }
    let fault = lock(&shared).accounts.fault;
    match whose(&shared, fault, &uri, &headers) {
        Ok(account) => Json(json!({"data": {"me": {
            "id": account.user_id,
            "email": account.email,
            "account": {"id": account.organization_id},
        }}}))
        .into_response(),
        Err(response) => response,
    }
}

/// Whose the bearer token is, or the injected fault, or 401.
fn whose(
    shared: &Shared,
    fault: Option<CheckFault>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<SeedAccount, Response> {
    match fault {
        Some(CheckFault::ServiceUnavailable) => {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "temporarily_unavailable"})),
            )
                .into_response());
        }
        Some(CheckFault::HtmlPage) => {
            return Err((
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response());
        }
        Some(CheckFault::Forbidden) => {
            return Err((
                StatusCode::FORBIDDEN,
                Json(json!({"error": "insufficient_scope", "error_description": "access removed"})),
            )
                .into_response());
        }
        None => {}
    }
    super::api::check_bearer(shared, headers, uri.query())?;
    let state = lock(shared);
    Ok(
        crate::http_util::authorization(headers, &state.config.token_scheme)
            .and_then(|token| state.access_token_family(token))
            .and_then(|family| state.accounts.of_family(family))
            .cloned()
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::{SeedOAuthConfig, spawn};
    use super::*;

    async fn refresh(base: &url::Url, token: &str) -> serde_json::Value {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
            .post(base.join("oauth/token").unwrap())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "seed-client"),
                ("client_secret", "seed-secret"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn me(base: &url::Url, access: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .get(base.join("v1/me").unwrap())
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    #[tokio::test]
    async fn grants_belong_to_who_signed_in_and_idle_tokens_expire() {
        let emu = spawn(SeedOAuthConfig {
            refresh_token_idle: Some(Duration::from_secs(3600)),
            ..SeedOAuthConfig::default()
        })
        .await
        .unwrap();
        let ada = emu.control.issue_refresh_token("read");
        emu.control.sign_in_as(SeedAccount {
            user_id: 2002,
            organization_id: "org-2".into(),
            email: "grace@example.com".into(),
        });
        let grace = emu.control.issue_refresh_token("read");
        let access = |body: serde_json::Value| body["access_token"].as_str().unwrap().to_owned();
        let ada_access = access(refresh(&emu.base_url, &ada).await);
        let (status, body) = me(&emu.base_url, &ada_access).await;
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["id"], 1001);
        assert_eq!(body["company"]["id"], "org-1");
        let grace_access = access(refresh(&emu.base_url, &grace).await);
        let (_, body) = me(&emu.base_url, &grace_access).await;
        assert!(body.contains("grace@example.com"), "{body}");
        assert_eq!(me(&emu.base_url, "nope").await.0, 401);

        emu.control.set_check_fault(Some(CheckFault::HtmlPage));
        let (status, body) = me(&emu.base_url, &ada_access).await;
        assert_eq!(status, 502);
        assert!(body.starts_with("<html>"));
        emu.control.set_check_fault(None);
        assert_eq!(emu.control.me_calls(), 4);

        // Used a moment ago: still fine after most of the idle time; unused past it: refused.
        emu.control.age_refresh_tokens(Duration::from_secs(3000));
        assert!(refresh(&emu.base_url, &ada).await["access_token"].is_string());
        emu.control.age_refresh_tokens(Duration::from_secs(3601));
        assert_eq!(refresh(&emu.base_url, &ada).await["error"], "invalid_grant");
    }
}
