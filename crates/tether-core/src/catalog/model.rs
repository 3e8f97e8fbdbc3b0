//! The typed model of one catalog file. Every struct denies unknown keys, so a typo in a
//! provider file is an error at start-up rather than a silently ignored setting.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::template::{Scope, Template};

/// One provider: how its users authenticate and how its API is called.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    /// Catalog id, referenced by `provider = "..."` in an integration.
    pub id: String,
    pub display_name: String,
    pub auth_mode: AuthMode,
    #[serde(default)]
    pub description: String,
    /// How the Connect page draws the provider's mark, without fetching anything.
    #[serde(default)]
    pub mark: Mark,
    #[serde(default)]
    pub api: ApiDef,
    #[serde(default)]
    pub oauth2: Option<OAuth2Def>,
    /// Values the operator configures on the integration (e.g. an API key that belongs to the
    /// integrating company). Their names become allowed keys of `[integrations.X]`.
    #[serde(default)]
    pub settings: Vec<SettingDef>,
    /// What the end user enters on the Connect form (non-OAuth modes).
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    /// `two_step`: the request that trades what the user entered for a long-lived credential.
    #[serde(default)]
    pub exchange: Option<RequestDef>,
    /// `api_key` / `basic`: a cheap call that proves the credentials work before storing them.
    #[serde(default)]
    pub probe: Option<RequestDef>,
}

/// The auth modes of DESIGN.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Oauth2,
    Oauth2ClientCredentials,
    ApiKey,
    TwoStep,
    Basic,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Oauth2 => "oauth2",
            AuthMode::Oauth2ClientCredentials => "oauth2_client_credentials",
            AuthMode::ApiKey => "api_key",
            AuthMode::TwoStep => "two_step",
            AuthMode::Basic => "basic",
        }
    }
}

/// Letters and a colour for the provider's mark on the Connect page.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    pub text: String,
    pub color: String,
}

impl Default for Mark {
    fn default() -> Self {
        Mark {
            text: "API".into(),
            color: "#4b5563".into(),
        }
    }
}

/// How the provider's API is called once connected.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDef {
    /// Base URL template; `None` when the integration must give `api_base_url`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Headers the proxy adds to every call (templates).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// OAuth 2.0 specifics (RFC 6749); endpoints may instead come from the integration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Def {
    #[serde(default)]
    pub authorization_url: Option<String>,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub revocation_url: Option<String>,
    /// The authorization server's issuer identifier (RFC 9207): when set, the callback
    /// requires an `iss` parameter equal to it and makes no token call otherwise.
    #[serde(default)]
    pub issuer: Option<String>,
    /// PKCE S256 (RFC 7636); switch off only for providers that reject it.
    #[serde(default = "yes")]
    pub pkce: bool,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default)]
    pub token_request_format: BodyFormat,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "space")]
    pub scope_separator: String,
    /// Extra parameters for the authorization request (e.g. `access_type = "offline"`).
    #[serde(default)]
    pub authorization_params: BTreeMap<String, String>,
    /// Token-endpoint error codes that mean the grant is gone and the user must reconnect.
    #[serde(default = "default_reauth_errors")]
    pub reauth_errors: Vec<String>,
}

impl Default for OAuth2Def {
    fn default() -> Self {
        OAuth2Def {
            authorization_url: None,
            token_url: None,
            revocation_url: None,
            issuer: None,
            pkce: true,
            client_auth: ClientAuth::default(),
            token_request_format: BodyFormat::default(),
            scopes: Vec::new(),
            scope_separator: space(),
            authorization_params: BTreeMap::new(),
            reauth_errors: default_reauth_errors(),
        }
    }
}

fn yes() -> bool {
    true
}

fn space() -> String {
    " ".into()
}

fn default_reauth_errors() -> Vec<String> {
    vec!["invalid_grant".into()]
}

/// Client authentication at the token endpoint (RFC 6749 2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// Encoding of a request body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    #[default]
    Form,
    Json,
}

/// An operator-configured value of an integration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingDef {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub secret: bool,
    #[serde(default = "yes")]
    pub required: bool,
}

/// A field of the Connect form.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// Form field name; part of the public contract (scripts post it).
    pub name: String,
    pub label: String,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub placeholder: String,
    /// Secrets are never echoed back to the form and are sealed when kept.
    #[serde(default)]
    pub secret: bool,
    #[serde(default = "yes")]
    pub required: bool,
    /// Normalisation applied before validation.
    #[serde(default)]
    pub trim: bool,
    #[serde(default)]
    pub lowercase: bool,
    #[serde(default)]
    pub strip_suffix: Option<String>,
    /// A regular expression the normalised value must match entirely.
    #[serde(default)]
    pub pattern: Option<String>,
    /// What the pattern means, for the error message.
    #[serde(default)]
    pub pattern_hint: Option<String>,
    /// Where the value is kept; by default secrets in the credential, others in metadata,
    /// except in `two_step`, where inputs are only used for the exchange.
    #[serde(default)]
    pub keep: Option<Keep>,
}

/// Where a field's value is kept after connecting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    Credential,
    Metadata,
    Nowhere,
}

/// A request the gateway makes to verify or exchange what the user entered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    #[serde(default = "get")]
    pub method: String,
    /// Path relative to the API base URL.
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Credential values to keep, each read from the first JSON pointer that matches.
    #[serde(default)]
    pub credential: BTreeMap<String, Vec<String>>,
    /// Metadata values to keep, likewise.
    #[serde(default)]
    pub metadata: BTreeMap<String, Vec<String>>,
    /// A failure reported inside a successful HTTP response.
    #[serde(default)]
    pub failure: Option<BodyFailure>,
    /// Statuses that mean "what you entered is wrong", with the field to blame.
    #[serde(default)]
    pub rejections: Vec<Rejection>,
}

fn get() -> String {
    "GET".into()
}

/// How to see a failure in a 2xx body (e.g. `{"Status":"failure"}` with HTTP 200).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyFailure {
    /// JSON pointer of the field to read.
    pub field: String,
    /// Values of that field that mean failure.
    pub values: Vec<String>,
    /// The form field to blame, if one can be named; otherwise the whole form is blamed.
    #[serde(default)]
    pub blame: Option<String>,
    /// What the end user is told (what to check, what to do).
    #[serde(default)]
    pub message: Option<String>,
}

/// An HTTP status that blames a form field.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    pub status: Vec<u16>,
    pub field: String,
    pub message: String,
}

impl ProviderDef {
    /// Checks what serde cannot: templates parse and read only what exists, fields are
    /// consistent with the auth mode. Returns (key, message) of the first problem.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: String, message: String| Err((key, message));
        if self.id.is_empty() {
            return bad("id".into(), "must not be empty".into());
        }
        let setting_names: Vec<&str> = self.settings.iter().map(|s| s.name.as_str()).collect();
        let field_names: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
        let check_template = |key: String, text: &str, allow_input: bool| {
            let template = Template::parse(text).map_err(|e| (key.clone(), e.to_string()))?;
            for r in template.references() {
                let known = match r.scope {
                    Scope::Settings => setting_names.contains(&r.name.as_str()),
                    Scope::Input => allow_input && field_names.contains(&r.name.as_str()),
                    Scope::Credential | Scope::Connection => true,
                };
                if !known {
                    return Err((
                        key,
                        format!("{}.{} is not defined", r.scope.as_str(), r.name),
                    ));
                }
            }
            Ok(())
        };
        if let Some(base) = &self.api.base_url {
            check_template("api.base_url".into(), base, false)?;
            // A value the end user typed must never be able to steer the proxy to another
            // host, so every form field the base URL reads must be held to a pattern.
            let template =
                Template::parse(base).map_err(|e| ("api.base_url".into(), e.to_string()))?;
            for r in template.references() {
                let field = self.fields.iter().find(|f| f.name == r.name);
                if r.scope == Scope::Connection && field.is_some_and(|f| f.pattern.is_none()) {
                    return bad(
                        format!("fields.{}.pattern", r.name),
                        "a field used in api.base_url needs a pattern".into(),
                    );
                }
            }
        }
        for (name, value) in &self.api.headers {
            check_template(format!("api.headers.{name}"), value, false)?;
        }
        for (label, request) in [("exchange", &self.exchange), ("probe", &self.probe)] {
            let Some(request) = request else { continue };
            for (name, value) in &request.headers {
                check_template(format!("{label}.headers.{name}"), value, true)?;
            }
            for (name, value) in &request.query {
                check_template(format!("{label}.query.{name}"), value, true)?;
            }
            if !matches!(request.method.as_str(), "GET" | "POST") {
                return bad(
                    format!("{label}.method"),
                    "must be \"GET\" or \"POST\"".into(),
                );
            }
            let blamed = request
                .rejections
                .iter()
                .map(|r| Some(&r.field))
                .chain(request.failure.iter().map(|f| f.blame.as_ref()));
            for field in blamed.flatten() {
                if !field_names.contains(&field.as_str()) {
                    return bad(
                        format!("{label}.rejections"),
                        format!("field {field:?} is not defined"),
                    );
                }
            }
        }
        for field in &self.fields {
            if let Some(pattern) = &field.pattern {
                regex_lite::Regex::new(pattern)
                    .map_err(|e| (format!("fields.{}.pattern", field.name), e.to_string()))?;
            }
        }
        match self.auth_mode {
            AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials => {}
            AuthMode::TwoStep if self.exchange.is_none() => {
                return bad(
                    "exchange".into(),
                    "two_step providers need [exchange]".into(),
                );
            }
            AuthMode::ApiKey | AuthMode::Basic | AuthMode::TwoStep if self.fields.is_empty() => {
                return bad("fields".into(), "this auth mode needs [[fields]]".into());
            }
            _ => {}
        }
        Ok(())
    }
}

impl FieldDef {
    /// Where this field's value goes, given the provider's auth mode.
    pub fn keep_in(&self, mode: AuthMode) -> Keep {
        match (self.keep, mode) {
            (Some(keep), _) => keep,
            (None, AuthMode::TwoStep) => Keep::Nowhere,
            (None, _) if self.secret => Keep::Credential,
            (None, _) => Keep::Metadata,
        }
    }
}
