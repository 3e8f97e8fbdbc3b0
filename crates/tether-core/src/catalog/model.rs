//! The typed model of one catalog file. Every struct denies unknown keys, so a typo in a
//! provider file is an error at start-up rather than a silently ignored setting.

use std::collections::BTreeMap;

use serde::Deserialize;

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
    /// The call that proves a connection's credentials work and says whose they are.
    #[serde(default)]
    pub check: Option<super::lifecycle::CheckDef>,
    /// What the provider does to grants over time.
    #[serde(default)]
    pub lifetime: Option<super::lifecycle::LifetimeDef>,
    /// The public documentation page the file's facts come from.
    #[serde(default)]
    pub docs_url: Option<String>,
    /// When the file's facts were last checked against the provider's own pages, and what
    /// could not be. Provider facts are claims about the world with a date.
    #[serde(default)]
    pub verified: Option<Verification>,
    /// What the provider's own pages say, for the catalog checks (see `documented.rs`).
    #[serde(default)]
    pub documented: Option<super::documented::Documented>,
    /// How the provider reports and enforces its request limits (see `rate_limit.rs`).
    #[serde(default)]
    pub rate_limit: Option<super::rate_limit::RateLimitDef>,
}

/// `[verified]`: the record of the last check of a provider file against its sources.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// The day of the check, `YYYY-MM-DD`.
    pub on: String,
    /// The provider's own pages read that day (https URLs).
    pub sources: Vec<String>,
    /// Independent second readings compared with the file (another gateway's public
    /// provider definition, an official SDK), each naming what and where.
    #[serde(default)]
    pub cross_checked: Vec<String>,
    /// Facts the check could not confirm, each with why; the file keeps its best reading
    /// and an operator can override it per integration.
    #[serde(default)]
    pub unverified: Vec<String>,
}

/// The auth modes a provider file can declare.
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
    /// Query parameters the proxy adds to every call (templates), for APIs that take the
    /// token as a parameter (Bitrix24's `auth`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Host patterns (`api.example.com`, `*.my.salesforce.com`) a URL may point at when its
    /// host comes from a connection value (a token response, or what the user typed). A
    /// template whose host reads a token-response value needs at least one.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
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
    /// Values kept from the token response as connection metadata (`connection.NAME` in
    /// templates), each read from the first JSON pointer that matches; a refresh that returns
    /// them again updates them. Salesforce's `/instance_url`, Pipedrive's `/api_domain`.
    #[serde(default)]
    pub token_metadata: BTreeMap<String, Pointers>,
    /// Send `redirect_uri` with refresh requests too (some providers insist).
    #[serde(default)]
    pub redirect_uri_on_refresh: bool,
    /// How an `oauth2` provider's tokens are first obtained.
    #[serde(default)]
    pub grant: GrantDef,
    /// Extra parameters on every token request (templates), such as SugarCRM's `platform`.
    #[serde(default)]
    pub token_params: BTreeMap<String, String>,
    /// Values the provider names in its redirect back (Kommo's `referer`: the account the
    /// user picked), kept as connection metadata and usable in the token and API URLs.
    #[serde(default)]
    pub callback_values: Vec<CallbackValueDef>,
    /// `grant = "jwt_bearer"`: what the signed assertion says (RFC 7523).
    #[serde(default)]
    pub jwt_bearer: Option<JwtBearerDef>,
    /// The hosts the authorization, token and revocation URLs may name when a value picks
    /// their host (Zoho's accounts server per data centre), when they are not the API's
    /// (`api.allowed_hosts`, the default). Same form: `host`, `*.suffix`, `:port` optional.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// A connection value read from a query parameter of the authorization response. Held to
/// a pattern, always: it may name a host, and whoever sends the browser back writes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackValueDef {
    pub name: String,
    /// The callback's query parameter.
    pub param: String,
    /// A regular expression the normalised value must match entirely.
    pub pattern: String,
    #[serde(default)]
    pub lowercase: bool,
    #[serde(default)]
    pub strip_prefix: Option<String>,
    #[serde(default)]
    pub strip_suffix: Option<String>,
    /// Used when the parameter is absent (never when it is present but does not match).
    #[serde(default)]
    pub default: Option<String>,
}

/// The first grant of an `oauth2` provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantDef {
    /// RFC 6749 4.1: the browser goes to the provider and comes back with a code.
    #[default]
    AuthorizationCode,
    /// RFC 6749 4.3: the Connect form's `username` and `password` are sent to the token
    /// endpoint once (and never kept), for providers with no authorization endpoint.
    Password,
    /// RFC 7523 2.1: the app signs a short-lived JWT with its own private key and trades it
    /// for an access token; server to server, like client credentials (`[oauth2.jwt_bearer]`).
    JwtBearer,
}

/// One JSON pointer, or several tried in order.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Pointers {
    One(String),
    Many(Vec<String>),
}

impl Pointers {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Pointers::One(one) => std::slice::from_ref(one),
            Pointers::Many(many) => many,
        }
    }
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
            token_metadata: BTreeMap::new(),
            redirect_uri_on_refresh: false,
            grant: GrantDef::default(),
            token_params: BTreeMap::new(),
            callback_values: Vec::new(),
            jwt_bearer: None,
            allowed_hosts: Vec::new(),
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
    /// Used when the integration does not set it.
    #[serde(default)]
    pub default: Option<String>,
    /// A regular expression the value must match entirely; required when a URL reads it.
    #[serde(default)]
    pub pattern: Option<String>,
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
    #[serde(default)]
    pub strip_prefix: Option<String>,
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
    /// Values of that field that mean failure (a string, or `true`/`false` for a flag).
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
    /// Whether this provider connects through an OAuth 2.0 token endpoint.
    pub fn is_oauth(&self) -> bool {
        matches!(
            self.auth_mode,
            AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials
        )
    }

    /// Names of connection values that come from the provider's answers (token response,
    /// exchange or probe), as opposed to what the end user typed.
    pub fn provider_value_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        if self.is_oauth() {
            names.push("scope");
            if let Some(def) = &self.oauth2 {
                names.extend(def.token_metadata.keys().map(String::as_str));
                names.extend(def.callback_values.iter().map(|c| c.name.as_str()));
            }
        }
        for request in [&self.exchange, &self.probe].into_iter().flatten() {
            names.extend(request.metadata.keys().map(String::as_str));
        }
        names
    }

    /// The provider's quirks, in words, derived from the file (for `providers show` and the
    /// docs table): what Tether does differently from plain RFC 6749 for this provider.
    pub fn quirks(&self) -> Vec<String> {
        let code = |text: &str| ["`", text, "`"].concat();
        let mut quirks = Vec::new();
        if let Some(def) = self.oauth2.as_ref().filter(|_| self.is_oauth()) {
            if def.scope_separator != " " {
                quirks.push(["scopes joined by ", &code(&def.scope_separator)].concat());
            }
            if def.token_request_format == BodyFormat::Json {
                quirks.push("JSON token requests".into());
            }
            if def.client_auth == ClientAuth::ClientSecretPost {
                quirks.push("client secret in the body".into());
            }
            if !def.pkce {
                quirks.push("no PKCE".into());
            }
            if def.redirect_uri_on_refresh {
                quirks.push("`redirect_uri` on refresh".into());
            }
            if def.grant == GrantDef::Password {
                quirks.push("password grant: username and password sent once, never kept".into());
            }
            for (name, value) in &def.token_params {
                quirks.push(
                    [
                        &code(&[name.as_str(), "=", value].concat()),
                        " on token requests",
                    ]
                    .concat(),
                );
            }
            for (name, value) in &def.authorization_params {
                quirks.push(
                    [
                        &code(&[name.as_str(), "=", value].concat()),
                        " on authorization",
                    ]
                    .concat(),
                );
            }
            for value in &def.callback_values {
                quirks.push(
                    [
                        "keeps ",
                        &code(&value.name),
                        " from the redirect back (",
                        &code(&value.param),
                        ")",
                    ]
                    .concat(),
                );
            }
            for (name, pointers) in &def.token_metadata {
                let pointers: Vec<String> = pointers.as_slice().iter().map(|p| code(p)).collect();
                quirks.push(
                    [
                        "keeps ",
                        &code(name),
                        " from the token response (",
                        &pointers.join(" or "),
                        ")",
                    ]
                    .concat(),
                );
            }
            if def.revocation_url.is_some() {
                quirks.push("revokes on delete".into());
            }
        }
        if let Some(quirk) = self.jwt_bearer_quirk() {
            quirks.push(quirk);
        } else if self.auth_mode == AuthMode::Oauth2ClientCredentials {
            quirks.push("client-credentials grant, asked again instead of refreshed".into());
        }
        if self.is_oauth() && !self.fields.is_empty() {
            let names: Vec<String> = self.fields.iter().map(|f| code(&f.name)).collect();
            quirks.push(["asks ", &names.join(", "), " before the redirect"].concat());
        }
        for name in self.api.query.keys() {
            quirks.push(["query parameter ", &code(name), " on every call"].concat());
        }
        for name in self
            .api
            .headers
            .keys()
            .filter(|n| !n.eq_ignore_ascii_case("authorization"))
        {
            quirks.push(["header ", &code(name), " on every call"].concat());
        }
        if let Some(probe) = &self.probe {
            quirks.push(
                [
                    "checks the key with ",
                    &probe.method,
                    " ",
                    &code(&probe.path),
                ]
                .concat(),
            );
        }
        if let Some(exchange) = &self.exchange {
            quirks.push(
                [
                    "exchanges what is entered at ",
                    &exchange.method,
                    " ",
                    &code(&exchange.path),
                ]
                .concat(),
            );
        }
        if !self.api.allowed_hosts.is_empty() {
            let hosts: Vec<String> = self.api.allowed_hosts.iter().map(|h| code(h)).collect();
            quirks.push(["API host limited to ", &hosts.join(", ")].concat());
        }
        if let Some(limits) = &self.rate_limit {
            let read: Vec<String> = limits
                .headers
                .iter()
                .filter_map(|w| w.remaining.as_deref().or(w.reset.as_deref()))
                .chain(limits.usage.iter().map(|u| u.header.as_str()))
                .map(code)
                .collect();
            if !read.is_empty() {
                quirks.push(format!(
                    "rate limit ({} budget) read from {}",
                    limits.scope.as_str(),
                    read.join(", ")
                ));
            }
            for documented in &limits.documented {
                let scope = documented.scope.unwrap_or(limits.scope);
                quirks.push(format!(
                    "documented limit {} calls per {} s ({})",
                    documented.requests,
                    documented.per_secs,
                    scope.as_str()
                ));
            }
        }
        quirks
    }
}

/// `host.example` or `*.example.com`: lowercase DNS names, a wildcard only as the first label.
pub fn host_pattern_ok(pattern: &str) -> bool {
    let (pattern, port) = split_port(pattern);
    if port == Some(None) {
        return false;
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A catalog pattern (a field's, a setting's, a callback value's) compiled to match a whole
/// value, never a part of it. The loader compiles each one with this, so a pattern that loads
/// is one the checks can use.
pub fn whole_value_regex(pattern: &str) -> Result<regex_lite::Regex, regex_lite::Error> {
    regex_lite::Regex::new(&["^(?:", pattern, ")$"].concat())
}

/// A host pattern's name and its port: `None` when it names none, `Some(None)` when what
/// follows the colon is not a port.
fn split_port(pattern: &str) -> (&str, Option<Option<u16>>) {
    match pattern.rsplit_once(':') {
        Some((name, port)) => (
            name,
            Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0 && !port.starts_with('0')),
            ),
        ),
        None => (pattern, None),
    }
}

/// Whether a host and port (lowercase host; the port a URL connects to) match a pattern: the
/// name as [`host_matches`] says, and the port the pattern names, or 443 when it names none
/// (allowed hosts are https hosts; a provider on another port says so in its file).
pub fn host_port_matches(pattern: &str, host: &str, port: Option<u16>) -> bool {
    let (name, pattern_port) = split_port(pattern);
    let wanted = match pattern_port {
        None => 443,
        Some(Some(port)) => port,
        Some(None) => return false,
    };
    port == Some(wanted) && host_matches(name, host)
}

/// Whether `host` (lowercase) matches a pattern's name: equal, or for `*.suffix` one or more
/// labels before the suffix.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.ends_with('.')),
        None => host == pattern,
    }
}

impl FieldDef {
    /// Where this field's value goes, given the provider's auth mode.
    pub fn keep_in(&self, mode: AuthMode) -> Keep {
        match (self.keep, mode) {
            (Some(keep), _) => keep,
            (None, AuthMode::TwoStep) => Keep::Nowhere,
            // An OAuth provider's secret fields (the password grant's password) are used once.
            (None, AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials) if self.secret => {
                Keep::Nowhere
            }
            (None, _) if self.secret => Keep::Credential,
            (None, _) => Keep::Metadata,
        }
    }
}

/// `[oauth2.jwt_bearer]`: the claims of the assertion an app signs for the JWT bearer grant
/// (RFC 7523 3). `iss` is always the integration's `client_id`; the key is an operator
/// secret, named here by its setting, so the file never holds one.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtBearerDef {
    /// The `aud` claim (a template over settings): the authorization server's identifier.
    pub audience: String,
    /// The `sub` claim (a template over settings): whom the token acts for.
    pub subject: String,
    /// The name of the secret setting holding the PEM private key (RS256).
    pub private_key_setting: String,
    /// How long the assertion is valid, in seconds (`exp` = now + this).
    #[serde(default = "jwt_lifetime")]
    pub lifetime_secs: u64,
}

fn jwt_lifetime() -> u64 {
    180
}

impl ProviderDef {
    fn jwt_bearer_quirk(&self) -> Option<String> {
        let jwt = self.oauth2.as_ref()?.jwt_bearer.as_ref()?;
        Some(
            [
                "JWT bearer grant (RFC 7523): an RS256 assertion signed with the app's key, valid ",
                &jwt.lifetime_secs.to_string(),
                " s, asked again instead of refreshed",
            ]
            .concat(),
        )
    }
}
