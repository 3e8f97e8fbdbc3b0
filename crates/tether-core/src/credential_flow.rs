//! The credential-form auth modes (`two_step`, `api_key`, `basic`), driven entirely by the
//! catalog: normalise and validate what the end user typed, send the provider's exchange or
//! probe request, classify the answer, and build what is kept.
//!
//! Nothing here knows a provider by name; every difference between Redtail CRM, Salesmate and
//! the rest is catalog data ([`crate::catalog::RequestDef`], [`crate::catalog::FieldDef`]).
//! This module must never keep a value the catalog does not say to keep (a two-step password
//! is used once and dropped), never log what the user typed, and never trust the size or shape
//! of a provider's answer: anything but a well-formed answer is an error, never a connection.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::SecretString;
use crate::catalog::{AuthMode, FieldDef, Keep, ProviderDef, RequestDef, whole_value_regex};
use crate::credentials::Credentials;
use crate::integration::Integration;
use crate::outbound::{CappedResponse, Outbound, OutboundError};
use crate::template::{Scope, Template, Values};

/// Longest value accepted in a form field.
pub const MAX_FIELD_CHARS: usize = 1024;
/// Longest credential value accepted from a provider's answer.
const MAX_CREDENTIAL_CHARS: usize = 4096;
/// Longest metadata string accepted from a provider's answer.
const MAX_METADATA_CHARS: usize = 256;

/// What the end user entered, normalised and validated. Every value is held as a secret, so
/// that none can be printed by accident; non-secret ones are exposed only to be stored.
#[derive(Debug, Default)]
pub struct Inputs {
    values: BTreeMap<String, SecretString>,
}

impl Inputs {
    /// A field's normalised value, if the user gave one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(SecretString::expose)
    }

    /// The values the catalog keeps as connection metadata (what an OAuth provider asks before
    /// its redirect: a subdomain, a data centre), ready to be stored.
    pub fn metadata(&self, provider: &ProviderDef) -> Map<String, Value> {
        provider
            .fields
            .iter()
            .filter(|f| f.keep_in(provider.auth_mode) == Keep::Metadata)
            .filter_map(|f| {
                self.get(&f.name)
                    .map(|v| (f.name.clone(), Value::String(v.to_owned())))
            })
            .collect()
    }
}

/// A field the end user must correct, with a message saying what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// What a successful connect keeps: sealed credential values and plain metadata.
#[derive(Debug)]
pub struct Connected {
    pub credentials: Credentials,
    pub metadata: Map<String, Value>,
}

/// Why the provider did not give us a connection. Display strings never carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// What the end user entered is wrong: `field` names the form field to blame, if any,
    /// and `message` (catalog text) says what to do.
    #[error("the provider rejected the details entered (HTTP {status})")]
    Rejected {
        field: Option<String>,
        message: String,
        status: u16,
    },
    /// The provider is down, slow, rate limiting, or answered something unreadable: try again.
    #[error("the provider is unavailable: {reason}")]
    Unavailable { reason: String },
    /// The catalog or the integration cannot produce the request (operator's problem).
    #[error("the integration is misconfigured: {0}")]
    Misconfigured(String),
}

/// Message for a refusal the catalog has no words for.
const GENERIC_REJECTION: &str =
    "The service did not accept these details. Check what you entered and try again.";

/// Normalises (trim, lowercase, strip a suffix) and validates the form against the catalog's
/// fields. On failure returns every field's problem at once, in form order.
pub fn normalise(
    provider: &ProviderDef,
    raw: &BTreeMap<String, SecretString>,
) -> Result<Inputs, Vec<FieldError>> {
    let mut inputs = Inputs::default();
    let mut errors = Vec::new();
    for field in &provider.fields {
        let given = raw.get(&field.name).map(SecretString::expose).unwrap_or("");
        match normalise_field(field, given) {
            Ok(Some(value)) => {
                inputs.values.insert(field.name.clone(), value);
            }
            Ok(None) => {}
            Err(message) => errors.push(FieldError {
                field: field.name.clone(),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(inputs)
    } else {
        Err(errors)
    }
}

/// One field's normalised value (`None` when empty and optional), or what is wrong with it.
fn normalise_field(field: &FieldDef, given: &str) -> Result<Option<SecretString>, String> {
    let mut value = Zeroizing::new(if field.trim {
        given.trim().to_owned()
    } else {
        given.to_owned()
    });
    if field.lowercase {
        value = Zeroizing::new(value.to_lowercase());
    }
    if let Some(prefix) = &field.strip_prefix
        && value.len() > prefix.len()
        && value.is_char_boundary(prefix.len())
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        value = Zeroizing::new(value[prefix.len()..].to_owned());
    }
    if let Some(suffix) = &field.strip_suffix {
        let len = value.len();
        if len > suffix.len()
            && value.is_char_boundary(len - suffix.len())
            && value[len - suffix.len()..].eq_ignore_ascii_case(suffix)
        {
            value.truncate(len - suffix.len());
        }
    }
    if value.is_empty() {
        if field.required {
            return Err(format!("{} is required.", field.label));
        }
        return Ok(None);
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(format!(
            "{} is too long (at most {MAX_FIELD_CHARS} characters).",
            field.label
        ));
    }
    // Control characters have no place in a credential and could split a header.
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{} contains characters that are not allowed (such as line breaks).",
            field.label
        ));
    }
    if let Some(pattern) = &field.pattern {
        let matches = whole_value_regex(pattern).is_ok_and(|re| re.is_match(&value));
        if !matches {
            return Err(field
                .pattern_hint
                .clone()
                .unwrap_or_else(|| format!("{} is not in the expected format.", field.label)));
        }
    }
    Ok(Some(SecretString::new(value.as_str())))
}

/// The values an OAuth provider names in its redirect back (`oauth2.callback_values`, such as
/// Kommo's `referer`), normalised and held to their patterns. `pairs` is the callback's query.
/// An absent, repeated or non-matching value is an error naming the parameter, never the
/// value: nothing is redeemed with a code whose callback cannot be trusted.
pub fn callback_values(
    provider: &ProviderDef,
    pairs: &[(String, String)],
) -> Result<Map<String, Value>, String> {
    let mut kept = Map::new();
    let Some(def) = &provider.oauth2 else {
        return Ok(kept);
    };
    for value in &def.callback_values {
        let mut given = pairs.iter().filter(|(k, _)| *k == value.param);
        let raw = match (given.next(), given.next(), &value.default) {
            (Some((_, raw)), None, _) => raw,
            (None, _, Some(default)) => default,
            _ => {
                return Err(["the callback has no single ", &value.param, " parameter"].concat());
            }
        };
        let field = FieldDef {
            name: value.name.clone(),
            label: value.param.clone(),
            help: String::new(),
            placeholder: String::new(),
            secret: false,
            required: true,
            trim: true,
            lowercase: value.lowercase,
            strip_suffix: value.strip_suffix.clone(),
            strip_prefix: value.strip_prefix.clone(),
            pattern: Some(value.pattern.clone()),
            pattern_hint: None,
            keep: Some(Keep::Metadata),
        };
        let normalised = normalise_field(&field, raw)
            .ok()
            .flatten()
            .ok_or_else(|| ["the callback's ", &value.param, " is not acceptable"].concat())?;
        kept.insert(
            value.name.clone(),
            Value::String(normalised.expose().to_owned()),
        );
    }
    Ok(kept)
}

/// Credentials obtained elsewhere (`POST /v1/connections`), checked against the catalog as
/// strictly as the form: only names the provider keeps are accepted, form fields are
/// normalised and pattern-checked (so an imported link name cannot point the proxy at another
/// host either), and everything the proxy's templates read must be present.
pub fn import(
    provider: &ProviderDef,
    credentials: &BTreeMap<String, SecretString>,
    metadata: &Map<String, Value>,
) -> Result<Connected, Vec<FieldError>> {
    let mode = provider.auth_mode;
    let requests = [&provider.exchange, &provider.probe];
    let keeps = |name: &str, keep: Keep| {
        provider
            .fields
            .iter()
            .any(|f| f.name == name && f.keep_in(mode) == keep)
            || requests
                .iter()
                .filter_map(|r| r.as_ref())
                .any(|r| match keep {
                    Keep::Credential => r.credential.contains_key(name),
                    Keep::Metadata => r.metadata.contains_key(name),
                    Keep::Nowhere => false,
                })
    };
    let mut errors = Vec::new();
    let mut kept_credentials = BTreeMap::new();
    for (name, value) in credentials {
        if !keeps(name, Keep::Credential) {
            errors.push(field_error(
                name,
                format!("{name} is not a credential this provider keeps"),
            ));
            continue;
        }
        let checked = match provider.fields.iter().find(|f| &f.name == name) {
            Some(field) => normalise_field(field, value.expose()),
            None if value.is_empty() || value.expose().len() > MAX_CREDENTIAL_CHARS => Err(
                format!("{name} must be 1 to {MAX_CREDENTIAL_CHARS} characters"),
            ),
            None if value.expose().chars().any(char::is_control) => {
                Err(format!("{name} contains control characters"))
            }
            None => Ok(Some(value.clone())),
        };
        match checked {
            Ok(Some(v)) => {
                kept_credentials.insert(name.clone(), v);
            }
            Ok(None) => {}
            Err(message) => errors.push(field_error(name, message)),
        }
    }
    let mut kept_metadata = Map::new();
    for (name, value) in metadata {
        if !keeps(name, Keep::Metadata) {
            errors.push(field_error(
                name,
                format!("{name} is not metadata this provider keeps"),
            ));
            continue;
        }
        match (provider.fields.iter().find(|f| &f.name == name), value) {
            (Some(field), Value::String(text)) => match normalise_field(field, text) {
                Ok(Some(v)) => {
                    kept_metadata.insert(name.clone(), Value::String(v.expose().to_owned()));
                }
                Ok(None) => {}
                Err(message) => errors.push(field_error(name, message)),
            },
            (Some(_), _) => errors.push(field_error(name, format!("{name} must be a string"))),
            (None, Value::String(text)) if text.len() <= MAX_METADATA_CHARS => {
                kept_metadata.insert(name.clone(), value.clone());
            }
            (None, Value::Number(_) | Value::Bool(_)) => {
                kept_metadata.insert(name.clone(), value.clone());
            }
            (None, _) => errors.push(field_error(
                name,
                format!("{name} must be a short string, a number or a boolean"),
            )),
        }
    }
    // Everything the proxy will read must be there, or every call would fail later.
    let templates = provider
        .api
        .headers
        .values()
        .chain(provider.api.base_url.iter());
    for text in templates {
        let Ok(template) = Template::parse(text) else {
            continue;
        };
        for reference in template.references() {
            let present = match reference.scope {
                Scope::Credential => kept_credentials.contains_key(&reference.name),
                Scope::Connection => kept_metadata.contains_key(&reference.name),
                Scope::Settings | Scope::Input => true,
            };
            let already = errors.iter().any(|e| e.field == reference.name);
            if !present && !already {
                errors.push(field_error(
                    &reference.name,
                    format!("{} is required", reference.name),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Connected {
        credentials: Credentials::Fields {
            values: kept_credentials,
        },
        metadata: kept_metadata,
    })
}

/// A problem with one named value.
fn field_error(field: &str, message: String) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message,
    }
}

#[tracing::instrument(skip_all, fields(integration = %integration.key, provider = %integration.provider.id))]
pub async fn connect(
    http: &Outbound,
    integration: &Integration,
    inputs: &Inputs,
) -> Result<Connected, FlowError> {
    let provider = &integration.provider;
    let request = match provider.auth_mode {
        AuthMode::TwoStep => Some(provider.exchange.as_ref().ok_or_else(|| {
            FlowError::Misconfigured("two_step provider without [exchange]".into())
        })?),
        AuthMode::ApiKey | AuthMode::Basic => provider.probe.as_ref(),
        AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials => {
            return Err(FlowError::Misconfigured(
                "OAuth integrations are not connected with a form".into(),
            ));
        }
    };
    let values = FlowValues {
        integration,
        inputs,
    };
    let answer = match request {
        Some(request) => {
            let response = send(http, &values, request).await?;
            Some(classify(request, &response)?)
        }
        None => None,
    };
    assemble(provider, inputs, request.zip(answer.as_ref()))
}

/// Template values while connecting: the form's inputs, and the connection's values as they
/// will be once stored (so a base URL that reads `connection.link_name` works for the probe).
struct FlowValues<'a> {
    integration: &'a Integration,
    inputs: &'a Inputs,
}

impl Values for FlowValues<'_> {
    fn get(&self, scope: Scope, name: &str) -> Option<&str> {
        let kept_as = |keep: Keep| {
            let provider = &self.integration.provider;
            let field = provider.fields.iter().find(|f| f.name == name)?;
            (field.keep_in(provider.auth_mode) == keep)
                .then(|| self.inputs.get(name))
                .flatten()
        };
        match scope {
            Scope::Settings => self
                .integration
                .settings
                .get(name)
                .map(SecretString::expose),
            Scope::Input => self.inputs.get(name),
            Scope::Connection => kept_as(Keep::Metadata),
            Scope::Credential => kept_as(Keep::Credential),
        }
    }
}

/// Renders and sends an exchange or probe request.
async fn send(
    http: &Outbound,
    values: &FlowValues<'_>,
    request: &RequestDef,
) -> Result<CappedResponse, FlowError> {
    let misconfigured = |what: &str, e: &dyn std::fmt::Display| {
        FlowError::Misconfigured([what, ": ", &e.to_string()].concat())
    };
    let render = |text: &str| -> Result<String, FlowError> {
        Template::parse(text)
            .and_then(|t| t.render(values))
            .map_err(|e| misconfigured("template", &e))
    };
    let (mut url, trust) = values
        .integration
        .api_base_url
        .as_ref()
        .ok_or_else(|| FlowError::Misconfigured("no api_base_url".into()))?
        .render_with_trust(values, &values.integration.hosts)
        .map_err(|e| misconfigured("api_base_url", &e))?;
    url.path_segments_mut()
        .map_err(|()| FlowError::Misconfigured("api_base_url cannot have a path".into()))?
        .pop_if_empty()
        .extend(request.path.split('/').filter(|s| !s.is_empty()));
    if !request.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &request.query {
            pairs.append_pair(name, &render(value)?);
        }
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| misconfigured("header name", &e))?;
        let rendered = Zeroizing::new(render(value)?);
        let mut value =
            HeaderValue::from_str(&rendered).map_err(|e| misconfigured("header value", &e))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|e| misconfigured("method", &e))?;
    let refused = |err: OutboundError| misconfigured("api_base_url", &err);
    let builder = http
        .request(method, url, trust)
        .map_err(refused)?
        .headers(headers)
        .header(reqwest::header::ACCEPT, "application/json");
    http.send(builder).await.map_err(|err| match err {
        refused_address @ OutboundError::Refused(_) => refused(refused_address),
        OutboundError::Timeout => FlowError::Unavailable {
            reason: "timeout".into(),
        },
        OutboundError::Network(_) => FlowError::Unavailable {
            reason: "network_error".into(),
        },
        OutboundError::TooLarge(limit) => FlowError::Unavailable {
            reason: format!("response larger than {limit} bytes"),
        },
    })
}

/// Reads a provider's answer: a rejection (by status or by a failure value in the body), an
/// outage, or the JSON body of a success.
fn classify(request: &RequestDef, response: &CappedResponse) -> Result<Value, FlowError> {
    let status = response.status.as_u16();
    if let Some(rejection) = request
        .rejections
        .iter()
        .find(|r| r.status.contains(&status))
    {
        return Err(FlowError::Rejected {
            field: Some(rejection.field.clone()),
            message: rejection.message.clone(),
            status,
        });
    }
    let unavailable = |reason: String| Err(FlowError::Unavailable { reason });
    match status {
        200..=299 => {}
        429 => return unavailable("rate limited (HTTP 429)".into()),
        400..=499 => {
            return Err(FlowError::Rejected {
                field: None,
                message: GENERIC_REJECTION.into(),
                status,
            });
        }
        // 3xx too: redirects are not followed, so one here is not an answer.
        _ => return unavailable(format!("HTTP {status}")),
    }
    let body: Value = if response.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&response.body).map_err(|_| FlowError::Unavailable {
            reason: format!(
                "HTTP {status} with a body that is not JSON (content type {:?})",
                response.media_type()
            ),
        })?
    };
    if let Some(failure) = &request.failure {
        // A string, or a flag (Apollo's `"is_logged_in": false`) read as `true`/`false`.
        let said = match body.pointer(&failure.field) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Bool(flag)) => Some(flag.to_string()),
            _ => None,
        };
        if said.is_some_and(|s| failure.values.iter().any(|v| v.eq_ignore_ascii_case(&s))) {
            return Err(FlowError::Rejected {
                field: failure.blame.clone(),
                message: failure
                    .message
                    .clone()
                    .unwrap_or_else(|| GENERIC_REJECTION.into()),
                status,
            });
        }
    }
    Ok(body)
}

/// Builds what is kept: inputs where their field says, then values read from the answer.
fn assemble(
    provider: &ProviderDef,
    inputs: &Inputs,
    answer: Option<(&RequestDef, &Value)>,
) -> Result<Connected, FlowError> {
    let mut credential = BTreeMap::new();
    let mut metadata = Map::new();
    for field in &provider.fields {
        let Some(value) = inputs.values.get(&field.name) else {
            continue;
        };
        match field.keep_in(provider.auth_mode) {
            Keep::Credential => {
                credential.insert(field.name.clone(), value.clone());
            }
            Keep::Metadata => {
                metadata.insert(field.name.clone(), Value::String(value.expose().to_owned()));
            }
            Keep::Nowhere => {}
        }
    }
    if let Some((request, body)) = answer {
        for (name, pointers) in &request.credential {
            let value = first(body, pointers)
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                // A control character (CR/LF) would make every later header built from the
                // value invalid: refused now, nothing stored, rather than a broken connection.
                .filter(|s| {
                    !s.is_empty()
                        && s.len() <= MAX_CREDENTIAL_CHARS
                        && !s.chars().any(char::is_control)
                })
                .ok_or_else(|| FlowError::Unavailable {
                    reason: ["the answer has no usable ", name].concat(),
                })?;
            credential.insert(name.clone(), SecretString::new(value));
        }
        for (name, pointers) in &request.metadata {
            // Metadata is informative; a missing or odd value is left out, not fatal.
            let value = match first(body, pointers) {
                Some(Value::String(s)) if s.len() <= MAX_METADATA_CHARS => Value::String(s.clone()),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.clone(),
                _ => continue,
            };
            metadata.insert(name.clone(), value);
        }
    }
    if credential.is_empty() {
        return Err(FlowError::Misconfigured(
            "the catalog keeps no credential value for this provider".into(),
        ));
    }
    Ok(Connected {
        credentials: Credentials::Fields { values: credential },
        metadata,
    })
}

/// The first non-null value among JSON pointers, tried in order.
fn first<'a>(body: &'a Value, pointers: &[String]) -> Option<&'a Value> {
    pointers
        .iter()
        .find_map(|p| body.pointer(p).filter(|v| !v.is_null()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretString::new(*v)))
            .collect()
    }

    fn provider(id: &str) -> std::sync::Arc<ProviderDef> {
        Catalog::embedded().unwrap().get(id).unwrap().clone()
    }

    fn response(status: u16, content_type: &str, body: &str) -> CappedResponse {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        CappedResponse {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn link_names_normalise_to_a_plain_label() {
        let salesmate = provider("salesmate");
        for typed in ["acme", " ACME ", "acme.salesmate.io", "Acme.Salesmate.IO"] {
            let inputs = normalise(
                &salesmate,
                &raw(&[("access_key", " k "), ("link_name", typed)]),
            )
            .unwrap();
            assert_eq!(inputs.get("link_name"), Some("acme"), "{typed}");
            assert_eq!(inputs.get("access_key"), Some("k"));
        }
    }

    #[test]
    fn link_names_that_could_steer_the_host_are_refused() {
        let salesmate = provider("salesmate");
        for typed in [
            "evil.com/x",
            "acme.evil.com",
            "a.b",
            "acme.salesmate.io.evil.com",
            "evil.com#",
            "user@evil",
            "-acme",
            "acme-",
            "ac me",
            "acme:8080",
            ".salesmate.io",
            "%2e",
        ] {
            let errors = normalise(
                &salesmate,
                &raw(&[("access_key", "k"), ("link_name", typed)]),
            )
            .unwrap_err();
            assert_eq!(errors.len(), 1, "{typed}");
            assert_eq!(errors[0].field, "link_name", "{typed}");
        }
    }

    #[test]
    fn missing_fields_are_all_reported_by_name() {
        let errors = normalise(&provider("redtail"), &raw(&[("username", "  ")])).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["username", "password"]);
        assert!(errors[0].message.contains("Redtail username"));
        let errors = normalise(
            &provider("redtail"),
            &raw(&[("username", "demo"), ("password", "a\r\nb")]),
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "password");
    }

    #[test]
    fn passwords_keep_their_spaces_and_colons() {
        let inputs = normalise(
            &provider("redtail"),
            &raw(&[("username", " demo "), ("password", " pa:ss ")]),
        )
        .unwrap();
        assert_eq!(inputs.get("username"), Some("demo"));
        assert_eq!(inputs.get("password"), Some(" pa:ss "));
    }

    #[test]
    fn classify_reads_status_rules_and_body_failures() {
        let salesmate = provider("salesmate");
        let probe = salesmate.probe.as_ref().unwrap();
        let cases = [
            (403, "application/json", "{}", Some("access_key")),
            (404, "application/json", "{}", Some("link_name")),
        ];
        for (status, ct, body, field) in cases {
            match classify(probe, &response(status, ct, body)) {
                Err(FlowError::Rejected { field: f, .. }) => assert_eq!(f.as_deref(), field),
                other => panic!("{status}: {other:?}"),
            }
        }
        let failure = r#"{"Status":"failure","Error":{"Name":"X"}}"#;
        assert!(matches!(
            classify(probe, &response(200, "application/json", failure)),
            Err(FlowError::Rejected {
                field: None,
                status: 200,
                ..
            })
        ));
        for (status, ct, body) in [
            (500, "application/json", "{}"),
            (502, "text/html", "<html>bad gateway</html>"),
            (200, "text/html", "<html>login</html>"),
            (429, "application/json", "{}"),
            (302, "text/html", ""),
        ] {
            assert!(
                matches!(
                    classify(probe, &response(status, ct, body)),
                    Err(FlowError::Unavailable { .. })
                ),
                "{status} {ct}"
            );
        }
        let ok = r#"{"Status":"success","Data":[]}"#;
        assert!(classify(probe, &response(200, "application/json", ok)).is_ok());
    }

    #[test]
    fn redtail_keeps_the_user_key_and_ids_never_the_password() {
        let redtail = provider("redtail");
        let exchange = redtail.exchange.as_ref().unwrap();
        let inputs = normalise(
            &redtail,
            &raw(&[("username", "demo"), ("password", "secret-pw")]),
        )
        .unwrap();
        for body in [
            json!({"authenticated_user": {"user_key": "UK", "redtail_database_id": 1, "redtail_user_id": 2}}),
            json!({"user_key": "UK", "redtail_database_id": 1, "redtail_user_id": 2}),
        ] {
            let connected = assemble(&redtail, &inputs, Some((exchange, &body))).unwrap();
            assert_eq!(connected.credentials.get("user_key"), Some("UK"));
            assert_eq!(connected.credentials.get("password"), None);
            assert_eq!(connected.credentials.get("username"), None);
            assert_eq!(connected.metadata.get("database_id"), Some(&json!(1)));
            assert_eq!(connected.metadata.get("user_id"), Some(&json!(2)));
            let dump = serde_json::to_string(&connected.metadata).unwrap();
            assert!(!dump.contains("secret-pw"));
        }
        for body in [
            json!({}),
            json!({"user_key": ""}),
            json!({"user_key": {"x": 1}}),
            json!({"user_key": "UK\r\nX-Injected: 1"}),
            json!({"user_key": "UK\u{0}"}),
        ] {
            assert!(matches!(
                assemble(&redtail, &inputs, Some((exchange, &body))),
                Err(FlowError::Unavailable { .. })
            ));
        }
    }

    #[test]
    fn callback_values_are_normalised_and_held_to_their_pattern() {
        let kommo = provider("kommo");
        let pairs = |referer: &[&str]| -> Vec<(String, String)> {
            let mut pairs = vec![("code".to_owned(), "c".to_owned())];
            pairs.extend(
                referer
                    .iter()
                    .map(|r| ("referer".to_owned(), (*r).to_owned())),
            );
            pairs
        };
        let kept = callback_values(&kommo, &pairs(&["ACME.kommo.com"])).unwrap();
        assert_eq!(kept["subdomain"], "acme");
        for bad in [
            vec![],
            vec!["acme.kommo.com", "other.kommo.com"],
            vec!["evil.example"],
            vec!["acme.kommo.com.evil.example"],
            vec!["a@b.kommo.com"],
            vec!["acme\n.kommo.com"],
        ] {
            let err = callback_values(&kommo, &pairs(&bad)).unwrap_err();
            assert!(err.contains("referer") && !err.contains("evil"), "{err}");
        }
        // Zoho's data centre: from accounts-server, or the default when Zoho sends none.
        let zoho = provider("zoho-crm");
        let named = vec![(
            "accounts-server".to_owned(),
            "https://accounts.zoho.com.au".to_owned(),
        )];
        assert_eq!(
            callback_values(&zoho, &named).unwrap()["data_center"],
            "zoho.com.au"
        );
        assert_eq!(
            callback_values(&zoho, &[]).unwrap()["data_center"],
            "zoho.com"
        );
        // Canada's accounts server is not on zoho.*.
        let canada = vec![(
            "accounts-server".to_owned(),
            "https://accounts.zohocloud.ca".to_owned(),
        )];
        assert_eq!(
            callback_values(&zoho, &canada).unwrap()["data_center"],
            "zohocloud.ca"
        );
        let foreign = vec![(
            "accounts-server".to_owned(),
            "https://accounts.zoho.evil.example".to_owned(),
        )];
        assert!(callback_values(&zoho, &foreign).is_err());
        // Providers without callback values read nothing.
        assert!(
            callback_values(&provider("salesforce"), &pairs(&["x"]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn salesmate_keeps_key_as_credential_and_link_as_metadata() {
        let salesmate = provider("salesmate");
        let inputs = normalise(
            &salesmate,
            &raw(&[("access_key", "KEY"), ("link_name", "acme.salesmate.io")]),
        )
        .unwrap();
        let connected = assemble(&salesmate, &inputs, None).unwrap();
        assert_eq!(connected.credentials.get("access_key"), Some("KEY"));
        assert_eq!(connected.metadata.get("link_name"), Some(&json!("acme")));
        assert!(connected.metadata.get("access_key").is_none());
    }

    #[test]
    fn basic_mode_is_catalog_data_too() {
        let toml = r#"
            id = "basicish"
            display_name = "Basic"
            auth_mode = "basic"
            [api]
            base_url = "https://api.example.com"
            [api.headers]
            Authorization = "Basic ${base64(credential.username, ':', credential.password)}"
            [[fields]]
            name = "username"
            label = "Username"
            keep = "credential"
            [[fields]]
            name = "password"
            label = "Password"
            secret = true
        "#;
        let catalog = Catalog::from_files([("providers/basic.toml", toml)]).unwrap();
        let def = catalog.get("basicish").unwrap();
        let inputs = normalise(def, &raw(&[("username", "u"), ("password", "p")])).unwrap();
        let connected = assemble(def, &inputs, None).unwrap();
        assert_eq!(connected.credentials.get("username"), Some("u"));
        assert_eq!(connected.credentials.get("password"), Some("p"));
    }

    #[test]
    fn base_url_fields_need_a_pattern() {
        let toml = r#"
            id = "loose"
            display_name = "Loose"
            auth_mode = "api_key"
            [api]
            base_url = "https://${connection.tenant}.example.com"
            [[fields]]
            name = "tenant"
            label = "Tenant"
            [[fields]]
            name = "key"
            label = "Key"
            secret = true
        "#;
        let err = Catalog::from_files([("providers/loose.toml", toml)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("fields.tenant.pattern"), "{err}");
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    fn provider(id: &str) -> std::sync::Arc<ProviderDef> {
        Catalog::embedded().unwrap().get(id).unwrap().clone()
    }

    fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretString::new(*v)))
            .collect()
    }

    fn metadata(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn salesmate_import_is_normalised_and_checked_like_the_form() {
        let p = provider("salesmate");
        let ok = import(
            &p,
            &secrets(&[("access_key", " key ")]),
            &metadata(json!({"link_name": "Acme.salesmate.io"})),
        )
        .unwrap();
        assert_eq!(ok.credentials.get("access_key"), Some("key"));
        assert_eq!(ok.metadata["link_name"], "acme");
        let errors = import(
            &p,
            &secrets(&[("access_key", "key")]),
            &metadata(json!({"link_name": "evil.example/x"})),
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "link_name");
        let errors = import(&p, &secrets(&[("access_key", "key")]), &Map::new()).unwrap_err();
        assert!(errors.iter().any(|e| e.field == "link_name"), "{errors:?}");
    }

    #[test]
    fn redtail_import_takes_the_user_key_but_never_a_password() {
        let p = provider("redtail");
        let ok = import(
            &p,
            &secrets(&[("user_key", "UK")]),
            &metadata(json!({"database_id": 7})),
        )
        .unwrap();
        assert_eq!(ok.credentials.get("user_key"), Some("UK"));
        let errors = import(
            &p,
            &secrets(&[("user_key", "UK"), ("password", "hunter2")]),
            &Map::new(),
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "password");
        assert!(!format!("{errors:?}").contains("hunter2"));
    }
}
