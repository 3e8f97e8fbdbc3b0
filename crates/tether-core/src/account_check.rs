//! The check call: a connection's credentials tried on the provider's "who am I" endpoint
//! (the catalog's `[check]`), exactly like a proxied call (the integration's base URL and
//! auth headers and query), and what its answer means: the credentials work (and whose they
//! are: the [`Account`]), the provider refused them for good, or the provider could not say
//! (a timeout, a 5xx, an HTML page, a 429), which never counts against a connection.
//!
//! Here rather than in the server because the connect flow (before a connection exists) and
//! the verify endpoint (after) make the same call.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;
use zeroize::Zeroizing;

use crate::catalog::{CheckDef, Pointers};
use crate::credentials::Credentials;
use crate::integration::Integration;
use crate::outbound::{CappedResponse, Outbound, OutboundError};
use crate::template::Template;

/// Longest account value kept (ids and labels are short; a provider's essay is not).
const MAX_VALUE_CHARS: usize = 256;

/// Whose credentials these are, as the provider says. Every part is optional: a provider may
/// name only a user, or only an organisation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
    /// Something a person recognises: an email, a company name.
    pub label: Option<String>,
}

impl Account {
    /// Whether the provider named no id at all (a label alone identifies nobody).
    pub fn is_anonymous(&self) -> bool {
        self.user_id.is_none() && self.organization_id.is_none()
    }

    /// Whether `other` is the same account: every id both name is equal, and they share at
    /// least one. An account without ids matches nothing (it cannot be told apart).
    pub fn same_as(&self, other: &Account) -> bool {
        let pairs = [
            (&self.user_id, &other.user_id),
            (&self.organization_id, &other.organization_id),
        ];
        let mut shared = false;
        for (mine, theirs) in pairs {
            if let (Some(mine), Some(theirs)) = (mine, theirs) {
                if mine != theirs {
                    return false;
                }
                shared = true;
            }
        }
        shared
    }

    /// Reads the account from a check's JSON answer with the file's pointers; `None` when
    /// no pointer matched.
    pub fn read(pointers: &crate::catalog::AccountPointers, body: &Value) -> Option<Account> {
        let account = Account {
            user_id: pointers.user_id.as_ref().and_then(|p| first(p, body)),
            organization_id: pointers
                .organization_id
                .as_ref()
                .and_then(|p| first(p, body)),
            label: pointers.label.as_ref().and_then(|p| first(p, body)),
        };
        (account != Account::default()).then_some(account)
    }
}

/// The first pointer that names a string or a number (kept as its decimal text), trimmed
/// and bounded; empty strings count as absent.
fn first(pointers: &Pointers, body: &Value) -> Option<String> {
    pointers.as_slice().iter().find_map(|pointer| {
        let text = match body.pointer(pointer)? {
            Value::String(text) => text.trim().to_owned(),
            Value::Number(number) => number.to_string(),
            _ => return None,
        };
        (!text.is_empty()).then(|| text.chars().take(MAX_VALUE_CHARS).collect())
    })
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The credentials work; the account when the file says where it is.
    Ok(Option<Account>),
    /// The provider refused the credentials (401, 403, another 4xx, or a failure in a 2xx
    /// body): a definite answer about this connection.
    Refused { status: u16, reason: String },
    /// The provider could not answer (timeout, network, 5xx, 429, not JSON): says nothing
    /// about the connection; try again later.
    Unavailable { reason: String },
}

/// Why a check could not even be made: the configuration, not the provider.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckMisconfigured(pub String);

/// Makes the check call with a connection's values and credentials, and reads its answer.
pub async fn run(
    http: &Outbound,
    integration: &Integration,
    check: &CheckDef,
    metadata: &Map<String, Value>,
    credentials: &Credentials,
) -> Result<CheckOutcome, CheckMisconfigured> {
    let response = match send(http, integration, check, metadata, credentials).await? {
        Ok(response) => response,
        Err(outcome) => return Ok(outcome),
    };
    Ok(classify(check, &response))
}

async fn send(
    http: &Outbound,
    integration: &Integration,
    check: &CheckDef,
    metadata: &Map<String, Value>,
    credentials: &Credentials,
) -> Result<Result<CappedResponse, CheckOutcome>, CheckMisconfigured> {
    let bad = |what: &str, e: &dyn std::fmt::Display| CheckMisconfigured(format!("{what}: {e}"));
    let values = integration.vars(metadata, Some(credentials));
    let render = |text: &str| -> Result<String, CheckMisconfigured> {
        Template::parse(text)
            .and_then(|t| t.render(&values))
            .map_err(|e| bad("check template", &e))
    };
    let (mut url, trust) = integration
        .base_url_with_trust(&values)
        .map_err(|e| bad("api base URL", &e))?;
    // Each segment rendered on its own and pushed as a segment: a value cannot add a `/`,
    // a `?` or `..` that changes where the call goes.
    let mut segments = Vec::new();
    for segment in check.path.split('/').filter(|s| !s.is_empty()) {
        segments.push(render(segment)?);
    }
    append_path(&mut url, &segments, check.path.ends_with('/'))?;
    {
        let mut pairs = url.query_pairs_mut();
        for (name, template) in &integration.query {
            let value = Zeroizing::new(template.render(&values).map_err(|e| bad("query", &e))?);
            pairs.append_pair(name, &value);
        }
        for (name, value) in &check.query {
            pairs.append_pair(name, &render(value)?);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let mut headers = HeaderMap::new();
    let auth = integration
        .headers
        .iter()
        .map(|(name, template)| (name, template.render(&values)))
        .collect::<Vec<_>>();
    for (name, value) in auth {
        let value = Zeroizing::new(value.map_err(|e| bad("auth header", &e))?);
        insert_header(&mut headers, name, &value)?;
    }
    for (name, value) in &check.headers {
        let value = Zeroizing::new(render(value)?);
        insert_header(&mut headers, name, &value)?;
    }
    let method = reqwest::Method::from_bytes(check.method.as_bytes())
        .map_err(|e| bad("check method", &e))?;
    let mut builder = match http.request(method, url, trust) {
        Ok(builder) => builder,
        Err(err) => return Err(bad("api base URL", &err)),
    };
    builder = builder
        .headers(headers)
        .header(reqwest::header::ACCEPT, "application/json");
    if !check.body.is_empty() {
        let mut form = Vec::with_capacity(check.body.len());
        for (name, value) in &check.body {
            form.push((name.clone(), Zeroizing::new(render(value)?)));
        }
        let pairs: Vec<(&str, &str)> = form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        builder = builder.form(&pairs);
    }
    if let Some(json) = &check.json {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json.clone());
    }
    Ok(match http.send(builder).await {
        Ok(response) => Ok(response),
        Err(OutboundError::Refused(refused)) => return Err(bad("api base URL", &refused)),
        Err(OutboundError::Timeout) => Err(unavailable("timeout")),
        Err(OutboundError::Network(_)) => Err(unavailable("network error")),
        Err(OutboundError::TooLarge(limit)) => {
            Err(unavailable(&format!("response larger than {limit} bytes")))
        }
    })
}

/// Appends the rendered segments to the base URL's path, keeping a trailing slash the check
/// path ends with (Close answers `/me/` and redirects `/me`, and redirects are not followed).
fn append_path(
    url: &mut Url,
    segments: &[String],
    trailing_slash: bool,
) -> Result<(), CheckMisconfigured> {
    let mut path = url
        .path_segments_mut()
        .map_err(|()| CheckMisconfigured("the api base URL cannot have a path".into()))?;
    path.pop_if_empty()
        .extend(segments.iter().map(String::as_str));
    if trailing_slash {
        path.push("");
    }
    Ok(())
}

fn insert_header(
    headers: &mut HeaderMap,
    name: &str,
    value: &str,
) -> Result<(), CheckMisconfigured> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|e| CheckMisconfigured(format!("header name {name:?}: {e}")))?;
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| CheckMisconfigured(format!("header {name} is not a valid value")))?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

fn unavailable(reason: &str) -> CheckOutcome {
    CheckOutcome::Unavailable {
        reason: reason.to_owned(),
    }
}

/// Reads a check's answer. Only a 4xx or a declared failure value is a definite refusal;
/// anything the provider's infrastructure may say when it is unwell is not.
pub fn classify(check: &CheckDef, response: &CappedResponse) -> CheckOutcome {
    let status = response.status.as_u16();
    match status {
        200..=299 => {}
        // Rate limited, or timed out on its side: nothing about the credentials.
        408 | 425 | 429 => return unavailable(&format!("HTTP {status}")),
        400..=499 => {
            return CheckOutcome::Refused {
                status,
                reason: refusal_reason(status, &response.body),
            };
        }
        // 3xx too: redirects are not followed, so one here is not an answer.
        _ => return unavailable(&format!("HTTP {status}")),
    }
    if check.method == "HEAD" {
        return CheckOutcome::Ok(None);
    }
    let body: Value = match serde_json::from_slice(&response.body) {
        Ok(body) => body,
        Err(_) if check.account.is_empty() && check.failure.is_none() => {
            return CheckOutcome::Ok(None);
        }
        Err(_) => {
            return unavailable(&format!(
                "HTTP {status} with a body that is not JSON (content type {:?})",
                response.media_type()
            ));
        }
    };
    if let Some(failure) = &check.failure {
        let said = match body.pointer(&failure.field) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Bool(flag)) => Some(flag.to_string()),
            _ => None,
        };
        if said.is_some_and(|s| failure.values.iter().any(|v| v.eq_ignore_ascii_case(&s))) {
            return CheckOutcome::Refused {
                status,
                reason: failure
                    .message
                    .clone()
                    .unwrap_or_else(|| "the provider reported a failure".into()),
            };
        }
    }
    CheckOutcome::Ok(Account::read(&check.account, &body))
}

/// The provider's own words for a refusal, when it gives a short OAuth-style or plain
/// `error` / `message` in JSON; else the status. Bounded and on one line: it is shown and
/// stored.
fn refusal_reason(status: u16, body: &[u8]) -> String {
    let said = serde_json::from_slice::<Value>(body).ok().and_then(|body| {
        ["/error_description", "/error", "/message", "/error/message"]
            .iter()
            .find_map(|p| body.pointer(p).and_then(Value::as_str).map(str::to_owned))
    });
    let mut reason = format!("HTTP {status}");
    if let Some(said) = said {
        let said: String = said.chars().filter(|c| !c.is_control()).take(200).collect();
        reason.push_str(": ");
        reason.push_str(&said);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::AccountPointers;

    fn check(toml_text: &str) -> CheckDef {
        toml::from_str(toml_text).unwrap()
    }

    fn response(status: u16, content_type: &str, body: &str) -> CappedResponse {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, content_type.parse().unwrap());
        CappedResponse {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn the_account_is_read_with_fallbacks_and_numbers_as_text() {
        let pointers: AccountPointers = toml::from_str(
            "user_id = \"/data/id\"\norganization_id = [\"/data/company_id\", \"/company/id\"]\n\
             label = [\"/data/email\", \"/data/name\"]",
        )
        .unwrap();
        let body =
            serde_json::json!({"data": {"id": 42, "name": " Ada "}, "company": {"id": "c-9"}});
        assert_eq!(
            Account::read(&pointers, &body),
            Some(Account {
                user_id: Some("42".into()),
                organization_id: Some("c-9".into()),
                label: Some("Ada".into()),
            })
        );
        assert_eq!(Account::read(&pointers, &serde_json::json!({"x": 1})), None);
        let objects = serde_json::json!({"data": {"id": {"nested": 1}, "email": ""}});
        assert_eq!(Account::read(&pointers, &objects), None);
    }

    #[test]
    fn accounts_match_on_the_ids_they_share() {
        let a = |u: Option<&str>, o: Option<&str>| Account {
            user_id: u.map(Into::into),
            organization_id: o.map(Into::into),
            label: Some("whoever".into()),
        };
        assert!(a(Some("1"), Some("o")).same_as(&a(Some("1"), Some("o"))));
        assert!(a(Some("1"), None).same_as(&a(Some("1"), Some("o"))));
        assert!(!a(Some("1"), Some("o")).same_as(&a(Some("2"), Some("o"))));
        assert!(!a(None, None).same_as(&a(None, None)), "no ids: nobody");
        assert!(!a(Some("1"), None).same_as(&a(None, Some("o"))));
    }

    #[test]
    fn the_check_path_keeps_its_trailing_slash() {
        let segments = vec!["me".to_owned()];
        let mut url = Url::parse("https://api.close.com/api/v1").unwrap();
        append_path(&mut url, &segments, true).unwrap();
        assert_eq!(url.as_str(), "https://api.close.com/api/v1/me/");
        let mut url = Url::parse("https://api.close.com/api/v1/").unwrap();
        append_path(&mut url, &segments, false).unwrap();
        assert_eq!(url.as_str(), "https://api.close.com/api/v1/me");
    }

    #[test]
    fn only_definite_answers_refuse() {
        let def = check("path = \"/me\"\n[account]\nuser_id = \"/id\"");
        let json = "application/json";
        assert_eq!(
            classify(&def, &response(200, json, r#"{"id":"u1"}"#)),
            CheckOutcome::Ok(Some(Account {
                user_id: Some("u1".into()),
                ..Account::default()
            }))
        );
        match classify(&def, &response(401, json, r#"{"error":"invalid_token"}"#)) {
            CheckOutcome::Refused { status, reason } => {
                assert_eq!(status, 401);
                assert_eq!(reason, "HTTP 401: invalid_token");
            }
            other => panic!("{other:?}"),
        }
        for (status, ct, body) in [
            (500, json, "{}"),
            (503, "text/html", "<html>down</html>"),
            (429, json, "{}"),
            (302, "text/html", ""),
            (200, "text/html", "<html>login</html>"),
        ] {
            assert!(
                matches!(
                    classify(&def, &response(status, ct, body)),
                    CheckOutcome::Unavailable { .. }
                ),
                "{status} {body}"
            );
        }
        let failing = check(
            "path = \"/me\"\n[failure]\nfield = \"/ok\"\nvalues = [\"false\"]\nmessage = \"no\"",
        );
        assert!(matches!(
            classify(&failing, &response(200, json, r#"{"ok":false}"#)),
            CheckOutcome::Refused { status: 200, .. }
        ));
    }
}
