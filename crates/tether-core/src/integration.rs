//! An integration: the app's use of one catalog provider, resolved from its configuration
//! table (`[integrations.KEY]`) against the catalog. Everything is checked here, once, so a
//! typo or a missing secret stops start-up with a message naming the key.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use url::Url;

use crate::catalog::{
    AuthMode, BodyFormat, Catalog, CheckDef, ClientAuth, LifetimeDef, ProviderDef,
    host_port_matches, whole_value_regex,
};
use crate::credentials::Credentials;
use crate::ids::IntegrationKey;
use crate::outbound::Trust;
use crate::secret::{ClientSecret, SecretString, resolve_secret_ref};
use crate::template::{Scope, Template, TemplateError, Values};

/// Keys every integration table may have, whatever its provider.
const COMMON_KEYS: &[&str] = &[
    "provider",
    "display_name",
    "client_id",
    "client_secret",
    "authorization_url",
    "token_url",
    "revocation_url",
    "issuer",
    "api_base_url",
    "scopes",
    "client_auth",
    "token_request_format",
    "pkce",
    "field_patterns",
    "budget",
    "check",
    "lifetime",
];

/// A configuration problem in `[integrations.KEY]`.
#[derive(Debug, thiserror::Error)]
#[error("integrations.{integration}: {message}")]
pub struct IntegrationError {
    pub integration: String,
    pub message: String,
}

/// A ready-to-use integration.
#[derive(Debug)]
pub struct Integration {
    pub key: IntegrationKey,
    pub provider: Arc<ProviderDef>,
    pub display_name: String,
    /// Resolved OAuth client, for the OAuth modes.
    pub oauth2: Option<OAuth2Client>,
    /// Where API calls go (a template: it may read connection metadata).
    pub api_base_url: Option<UrlTemplate>,
    /// Which hosts a URL whose host comes from a connection value may name.
    pub hosts: HostRules,
    /// Headers the proxy adds, as templates.
    pub headers: Vec<(String, Template)>,
    /// Query parameters the proxy adds, as templates.
    pub query: Vec<(String, Template)>,
    /// Operator-configured values the catalog declares (e.g. an API key); all kept secret.
    pub settings: BTreeMap<String, SecretString>,
    /// The operator's own cap on proxied calls (`budget = {...}`), if any.
    pub budget: Option<ProxyBudget>,
    /// The call that proves a connection works and says whose it is: the integration's own
    /// `check` table, else the provider's `[check]`; `None` when neither declares one.
    pub check: Option<Arc<CheckDef>>,
    /// What the provider does to grants over time: the integration's `lifetime` table, else
    /// the provider's `[lifetime]`.
    pub lifetime: LifetimeDef,
}

/// `budget = { per_connection = N, per_integration = M, per_secs = S }`: at most N proxied
/// calls per connection and M for the whole integration in any S seconds (default 1), so one
/// customer cannot spend what the others need. Either limit may be left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyBudget {
    pub per_connection: Option<u32>,
    pub per_integration: Option<u32>,
    pub per_secs: u32,
}

impl ProxyBudget {
    /// Reads the `budget` table; `None` when absent.
    fn from_config(table: &serde_json::Map<String, Value>) -> Result<Option<Self>, String> {
        let Some(value) = table.get("budget") else {
            return Ok(None);
        };
        let Value::Object(budget) = value else {
            return Err(
                "budget must be a table { per_connection, per_integration, per_secs }".into(),
            );
        };
        let number = |name: &str| -> Result<Option<u32>, String> {
            match budget.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .map(|n| Some(n as u32))
                    .ok_or_else(|| {
                        format!("budget.{name} must be a whole number from 1 to 1000000")
                    }),
            }
        };
        if let Some(name) = budget
            .keys()
            .find(|k| !["per_connection", "per_integration", "per_secs"].contains(&k.as_str()))
        {
            return Err(format!(
                "unknown key budget.{name} (known: per_connection, per_integration, per_secs)"
            ));
        }
        let parsed = ProxyBudget {
            per_connection: number("per_connection")?,
            per_integration: number("per_integration")?,
            per_secs: number("per_secs")?.unwrap_or(1),
        };
        if parsed.per_connection.is_none() && parsed.per_integration.is_none() {
            return Err("budget needs per_connection or per_integration".into());
        }
        Ok(Some(parsed))
    }
}

/// Everything needed to run an OAuth 2.0 flow and refresh its tokens. Endpoints and scopes
/// are templates: they may read the integration's settings and the connection's values (what
/// the end user gave before the redirect, what the token response said).
#[derive(Debug, Clone)]
pub struct OAuth2Client {
    pub grant: Grant,
    pub client_id: String,
    pub client_secret: Option<ClientSecret>,
    pub authorization_url: UrlTemplate,
    pub token_url: UrlTemplate,
    pub revocation_url: Option<UrlTemplate>,
    /// RFC 9207: the `iss` the authorization response must carry; `None` when the provider
    /// declares none (then `iss` is not required).
    pub issuer: Option<String>,
    pub scopes: Vec<Template>,
    pub scope_separator: String,
    pub pkce: bool,
    pub client_auth: ClientAuth,
    pub token_request_format: BodyFormat,
    pub authorization_params: Vec<(String, Template)>,
    pub reauth_errors: Vec<String>,
    /// Connection values read from token responses: name and JSON pointers.
    pub token_metadata: Vec<(String, Vec<String>)>,
    pub redirect_uri_on_refresh: bool,
    /// Extra parameters on every token request, as templates.
    pub token_params: Vec<(String, Template)>,
    /// The hosts the authorization, token and revocation URLs may name: the catalog's
    /// `oauth2.allowed_hosts`, or the API's when it lists none.
    pub hosts: HostRules,
    /// The JWT bearer grant's key and claims (only with [`Grant::JwtBearer`]).
    pub jwt_bearer: Option<crate::oauth2::jwt_bearer::JwtBearerClient>,
}

/// How an OAuth 2.0 client obtains its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// RFC 6749 4.1, through the end user's browser; refreshed with the refresh token.
    AuthorizationCode,
    /// RFC 6749 4.4, server to server; "refreshed" by asking again.
    ClientCredentials,
    /// RFC 6749 4.3, the end user's username and password sent once from the Connect form;
    /// refreshed with the refresh token.
    Password,
    /// RFC 7523 2.1, server to server with an assertion signed by the app's own key;
    /// "refreshed" by signing a new one.
    JwtBearer,
}

impl OAuth2Client {
    /// The scopes, rendered and joined with the provider's separator (`None` when empty).
    pub fn scope(&self, values: &dyn Values) -> Result<Option<String>, UrlError> {
        if self.scopes.is_empty() {
            return Ok(None);
        }
        let rendered = self
            .scopes
            .iter()
            .map(|t| t.render(values).map_err(UrlError::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(rendered.join(&self.scope_separator)))
    }
}

/// Which hosts a URL may name when its host comes from a connection value, and whose word
/// the integration's addresses are.
#[derive(Clone, Debug, Default)]
pub struct HostRules {
    /// The provider's `api.allowed_hosts` (or `oauth2.allowed_hosts` for the OAuth URLs).
    pub patterns: Vec<String>,
    /// Loopback hosts too: the integration's token URL is on loopback (an emulator, a test).
    pub loopback: bool,
    /// The integration comes from the operator's `tether.toml`: its fixed addresses (and,
    /// with `loopback`, loopback URLs from its token responses) are used as written. False
    /// for integrations made through the API, and by default.
    pub operator: bool,
}

impl HostRules {
    pub fn allows(&self, url: &Url) -> bool {
        if self.loopback && is_loopback(url) {
            return true;
        }
        let Some(url::Host::Domain(host)) = url.host() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        url.scheme() == "https"
            && self
                .patterns
                .iter()
                .any(|p| host_port_matches(p, &host, port))
    }
}

/// A URL that cannot be built for this connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// A value the template reads is absent.
    #[error("no value for {0}")]
    Missing(String),
    /// The rendered URL is not acceptable (scheme, shape, or a host the catalog forbids).
    #[error("{0}")]
    Refused(String),
}

impl From<TemplateError> for UrlError {
    fn from(err: TemplateError) -> Self {
        match err {
            TemplateError::Missing(name) => UrlError::Missing(name),
            other => UrlError::Refused(other.to_string()),
        }
    }
}

/// A URL template, checked when it is rendered: https (or http on loopback), and, when its
/// host comes from a value, a host the provider's rules allow.
#[derive(Clone, Debug)]
pub struct UrlTemplate {
    template: Template,
    host_varies: bool,
}

impl UrlTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.contains("${") {
            parse_endpoint(text)?;
        }
        let template = Template::parse(text).map_err(|e| e.to_string())?;
        Ok(UrlTemplate {
            template,
            host_varies: host_varies(text),
        })
    }

    /// Whether a value (a setting, a connection value) picks the host.
    pub fn host_varies(&self) -> bool {
        self.host_varies
    }

    /// As written (shown to operators; may hold `${...}`).
    pub fn text(&self) -> &str {
        self.template.text()
    }

    /// Holds an operator's URL (an override) to the catalog's rule: a host that a connection
    /// value can change needs the provider's allowed hosts, unless only pattern-checked fields
    /// feed it; a URL never reads a credential or a secret setting (URLs reach logs, browsers
    /// and error messages).
    fn check_for(&self, provider: &ProviderDef) -> Result<(), String> {
        for r in self.template.references() {
            let secret_setting = r.scope == Scope::Settings
                && provider
                    .settings
                    .iter()
                    .any(|s| s.name == r.name && s.secret);
            if secret_setting || matches!(r.scope, Scope::Credential | Scope::Input) {
                return Err(format!(
                    "a URL must not read {}.{}",
                    r.scope.as_str(),
                    r.name
                ));
            }
            let patterned_field = provider
                .fields
                .iter()
                .any(|f| f.name == r.name && f.pattern.is_some())
                || provider
                    .oauth2
                    .as_ref()
                    .is_some_and(|d| d.callback_values.iter().any(|c| c.name == r.name));
            if self.host_varies
                && provider.api.allowed_hosts.is_empty()
                && r.scope == Scope::Connection
                && !patterned_field
            {
                return Err(format!(
                    "its host may come from connection.{}, but provider {:?} lists no allowed hosts",
                    r.name, provider.id
                ));
            }
        }
        Ok(())
    }

    /// Whose word a URL rendered from this template is (see [`Trust`]): the operator's when
    /// the integration is from `tether.toml` and either the host is fixed (no connection
    /// value can change it) or it is loopback under a loopback token URL; guarded otherwise.
    pub fn trust(&self, url: &Url, hosts: &HostRules) -> Trust {
        let fixed = !self.host_varies;
        if hosts.operator && (fixed || (hosts.loopback && is_loopback(url))) {
            Trust::Operator
        } else {
            Trust::Guarded
        }
    }

    /// Renders and checks the URL, and says whose word it is.
    pub fn render_with_trust(
        &self,
        values: &dyn Values,
        hosts: &HostRules,
    ) -> Result<(Url, Trust), UrlError> {
        let url = self.render(values, hosts)?;
        let trust = self.trust(&url, hosts);
        Ok((url, trust))
    }

    pub fn render(&self, values: &dyn Values, hosts: &HostRules) -> Result<Url, UrlError> {
        let text = self.template.render(values)?;
        let url = parse_endpoint(&text).map_err(UrlError::Refused)?;
        // With no patterns, only pattern-checked fields can reach the host (the catalog
        // loader refuses anything else), so the URL is as safe as those patterns.
        if self.host_varies && !hosts.patterns.is_empty() && !hosts.allows(&url) {
            return Err(UrlError::Refused(format!(
                "host {:?} is not one the provider allows",
                url.host_str().unwrap_or_default()
            )));
        }
        Ok(url)
    }
}

/// Whether the host part of a URL template holds an expression.
fn host_varies(text: &str) -> bool {
    match text.split_once("://") {
        None => true,
        Some((scheme, rest)) => {
            scheme.contains("${")
                || rest
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default()
                    .contains("${")
        }
    }
}

/// Template values of one connection (or of a flow that is becoming one).
pub struct Vars<'a> {
    pub settings: &'a BTreeMap<String, SecretString>,
    /// The connection's metadata, or what the end user gave before an OAuth redirect.
    pub connection: &'a serde_json::Map<String, Value>,
    pub credentials: Option<&'a Credentials>,
}

impl Values for Vars<'_> {
    fn get(&self, scope: Scope, name: &str) -> Option<&str> {
        match scope {
            Scope::Credential => self.credentials.and_then(|c| c.get(name)),
            Scope::Connection => self.connection.get(name).and_then(Value::as_str),
            Scope::Settings => self.settings.get(name).map(SecretString::expose),
            Scope::Input => None,
        }
    }
}

impl Integration {
    /// Resolves `[integrations.KEY]` (given as a JSON object) against the catalog.
    pub fn from_config(
        key: &str,
        table: &serde_json::Map<String, Value>,
        catalog: &Catalog,
    ) -> Result<Self, IntegrationError> {
        let err = |message: String| IntegrationError {
            integration: key.to_owned(),
            message,
        };
        let integration_key = IntegrationKey::try_from(key).map_err(|e| err(e.to_string()))?;
        let provider_id = string(table, "provider")
            .map_err(&err)?
            .ok_or_else(|| err("provider is required (a catalog id such as \"oauth2\")".into()))?;
        let provider = catalog
            .get(&provider_id)
            .ok_or_else(|| {
                let known: Vec<&str> = catalog.iter().map(|p| p.id.as_str()).collect();
                err(format!(
                    "provider {provider_id:?} is not in the catalog (known: {})",
                    known.join(", ")
                ))
            })?
            .clone();

        for name in table.keys() {
            let known = COMMON_KEYS.contains(&name.as_str())
                || provider.settings.iter().any(|s| &s.name == name);
            if !known {
                return Err(err(format!(
                    "unknown key {name:?} for provider {:?}",
                    provider.id
                )));
            }
        }

        let mut provider = provider;
        apply_field_patterns(table, &mut provider).map_err(&err)?;

        let mut settings = BTreeMap::new();
        for setting in &provider.settings {
            match string(table, &setting.name)
                .map_err(&err)?
                .or_else(|| setting.default.clone())
            {
                Some(value) => {
                    let secret = resolve_secret_ref(&value)
                        .map_err(|e| err(format!("{}: {e}", setting.name)))?;
                    if let Some(pattern) = &setting.pattern {
                        let matches =
                            whole_value_regex(pattern).is_ok_and(|re| re.is_match(secret.expose()));
                        if !matches {
                            return Err(err(format!(
                                "{} does not match the pattern {pattern:?}",
                                setting.name
                            )));
                        }
                    }
                    settings.insert(setting.name.clone(), secret);
                }
                None if setting.required => {
                    return Err(err(format!(
                        "{} is required for provider {:?} ({})",
                        setting.name, provider.id, setting.label
                    )));
                }
                None => {}
            }
        }

        let api_base_url = match string(table, "api_base_url").map_err(&err)? {
            Some(url) => Some(url),
            None => provider.api.base_url.clone(),
        };
        let api_base_url = api_base_url
            .map(|text| {
                UrlTemplate::parse(&text)
                    .and_then(|t| t.check_for(&provider).map(|()| t))
                    .map_err(|m| err(format!("api_base_url: {m}")))
            })
            .transpose()?;
        if api_base_url.is_none() {
            return Err(err("api_base_url is required".into()));
        }

        let headers = named_templates("header ", &provider.api.headers).map_err(&err)?;
        let query = named_templates("query parameter ", &provider.api.query).map_err(&err)?;

        let oauth2 = match provider.auth_mode {
            AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials => Some(
                resolve_oauth2(integration_key.as_str(), table, &provider, &settings)
                    .map_err(&err)?,
            ),
            _ => None,
        };
        let hosts = HostRules {
            patterns: provider.api.allowed_hosts.clone(),
            loopback: oauth2.as_ref().is_some_and(|client| client.hosts.loopback),
            operator: false,
        };

        let display_name = string(table, "display_name")
            .map_err(&err)?
            .unwrap_or_else(|| provider.display_name.clone());

        let budget = ProxyBudget::from_config(table).map_err(&err)?;
        let check = match table.get("check") {
            Some(value) => {
                let def: CheckDef = serde_json::from_value(value.clone())
                    .map_err(|e| err(format!("check: {e}")))?;
                def.validate(&provider)
                    .map_err(|(key, message)| err(format!("check.{key}: {message}")))?;
                Some(Arc::new(def))
            }
            None => provider.check.clone().map(Arc::new),
        };
        let lifetime = match table.get("lifetime") {
            Some(value) => {
                let def: LifetimeDef = serde_json::from_value(value.clone())
                    .map_err(|e| err(format!("lifetime: {e}")))?;
                def.validate()
                    .map_err(|(key, message)| err(format!("lifetime.{key}: {message}")))?;
                def
            }
            None => provider.lifetime.unwrap_or_default(),
        };

        Ok(Integration {
            key: integration_key,
            provider,
            display_name,
            oauth2,
            api_base_url,
            hosts,
            headers,
            query,
            settings,
            budget,
            check,
            lifetime,
        })
    }

    pub fn auth_mode(&self) -> AuthMode {
        self.provider.auth_mode
    }

    /// Template values for a connection's metadata (and credentials, when rendering headers).
    pub fn vars<'a>(
        &'a self,
        connection: &'a serde_json::Map<String, Value>,
        credentials: Option<&'a Credentials>,
    ) -> Vars<'a> {
        Vars {
            settings: &self.settings,
            connection,
            credentials,
        }
    }

    /// The API base URL for a connection's values.
    pub fn base_url(&self, vars: &Vars<'_>) -> Result<Url, UrlError> {
        self.base_url_with_trust(vars).map(|(url, _)| url)
    }

    /// The API base URL for a connection's values, and whose word it is.
    pub fn base_url_with_trust(&self, vars: &Vars<'_>) -> Result<(Url, Trust), UrlError> {
        let template = self
            .api_base_url
            .as_ref()
            .ok_or_else(|| UrlError::Refused("the integration has no api_base_url".into()))?;
        template.render_with_trust(vars, &self.hosts)
    }

    /// Like [`Integration::check_connection_values`], but a value the API base URL needs and
    /// that is missing is refused too: for a connection being made, whose values are all in.
    pub fn check_complete_connection_values(
        &self,
        connection: &serde_json::Map<String, Value>,
    ) -> Result<(), String> {
        match self.base_url(&self.vars(connection, None)) {
            Ok(_) => Ok(()),
            Err(UrlError::Missing(name)) => {
                Err(format!("no value for {name}, which the API base URL needs"))
            }
            Err(UrlError::Refused(message)) => Err(message),
        }
    }

    /// Marks the integration as the operator's (from `tether.toml`): its fixed addresses are
    /// then used as written. Only the configuration file's integrations get this.
    pub fn trust_as_operator(&mut self) {
        self.hosts.operator = true;
        if let Some(client) = &mut self.oauth2 {
            client.hosts.operator = true;
        }
    }

    /// Checks, before a connection is stored, that its values give an API base URL on a host
    /// the provider allows (a value still missing is left for the proxy to report).
    pub fn check_connection_values(
        &self,
        connection: &serde_json::Map<String, Value>,
    ) -> Result<(), String> {
        match self.base_url(&self.vars(connection, None)) {
            Ok(_) | Err(UrlError::Missing(_)) => Ok(()),
            Err(UrlError::Refused(message)) => Err(message),
        }
    }
}

fn resolve_oauth2(
    key: &str,
    table: &serde_json::Map<String, Value>,
    provider: &ProviderDef,
    settings: &BTreeMap<String, SecretString>,
) -> Result<OAuth2Client, String> {
    let def = provider.oauth2.clone().unwrap_or_default();
    let text = |name: &str, fallback: &Option<String>| -> Result<Option<String>, String> {
        Ok(string(table, name)?.or_else(|| fallback.clone()))
    };
    let template = |name: &str, text: &str| -> Result<UrlTemplate, String> {
        UrlTemplate::parse(text)
            .and_then(|t| t.check_for(provider).map(|()| t))
            .map_err(|m| format!("{name}: {m}"))
    };
    let optional = |name: &str, fallback: &Option<String>| {
        text(name, fallback)?
            .map(|t| template(name, &t))
            .transpose()
    };
    let token_text = text("token_url", &def.token_url)?.ok_or("token_url is required")?;
    // An integration pointed at an emulator or a test server on this machine accepts
    // loopback URLs from that server's token responses too.
    let loopback = Url::parse(&token_text).is_ok_and(|url| is_loopback(&url));
    let patterns = if def.allowed_hosts.is_empty() {
        provider.api.allowed_hosts.clone()
    } else {
        def.allowed_hosts.clone()
    };
    let hosts = HostRules {
        patterns,
        loopback,
        operator: false,
    };
    let token_url = template("token_url", &token_text)?;
    let grant = match (provider.auth_mode, def.grant) {
        (AuthMode::Oauth2ClientCredentials, crate::catalog::GrantDef::JwtBearer) => {
            Grant::JwtBearer
        }
        (AuthMode::Oauth2ClientCredentials, _) => Grant::ClientCredentials,
        (_, crate::catalog::GrantDef::Password) => Grant::Password,
        _ => Grant::AuthorizationCode,
    };
    let authorization_url = optional("authorization_url", &def.authorization_url)?;
    let authorization_url = match (grant, authorization_url) {
        (Grant::AuthorizationCode, None) => return Err("authorization_url is required".into()),
        // Neither client credentials nor the password grant sends a browser anywhere; the
        // token URL stands in.
        (_, url) => url.unwrap_or_else(|| token_url.clone()),
    };
    let revocation_url = optional("revocation_url", &def.revocation_url)?;
    let client_id = string(table, "client_id")?.ok_or("client_id is required")?;
    let client_secret = string(table, "client_secret")?
        .map(|value| resolve_secret_ref(&value).map_err(|e| format!("client_secret: {e}")))
        .transpose()?
        .map(ClientSecret::from);
    let scopes: Vec<String> = match table.get("scopes") {
        None => def.scopes.clone(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or("scopes must be strings")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("scopes must be a list of strings".into()),
    };
    let scopes = scopes
        .iter()
        .map(|s| Template::parse(s).map_err(|e| format!("scopes: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let client_auth = match string(table, "client_auth")?.as_deref() {
        None => def.client_auth,
        Some("client_secret_basic") => ClientAuth::ClientSecretBasic,
        Some("client_secret_post") => ClientAuth::ClientSecretPost,
        Some(other) => {
            return Err(format!(
                "client_auth {other:?} is not one of client_secret_basic, client_secret_post"
            ));
        }
    };
    let token_request_format = match string(table, "token_request_format")?.as_deref() {
        None => def.token_request_format,
        Some("form") => BodyFormat::Form,
        Some("json") => BodyFormat::Json,
        Some(other) => {
            return Err(format!(
                "token_request_format {other:?} is not form or json"
            ));
        }
    };
    let pkce = match table.get("pkce") {
        None => def.pkce,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("pkce must be true or false".into()),
    };
    let authorization_params = named_templates("authorization_params.", &def.authorization_params)?;
    if !pkce && provider.auth_mode == AuthMode::Oauth2 {
        // Allowed for providers that reject PKCE, but never silently: without it a stolen
        // authorization code can be redeemed by whoever holds the client secret.
        // The integration key says which table of the configuration to look at.
        tracing::warn!(
            integration = %key,
            provider = %provider.id,
            "PKCE is switched off for this integration (pkce = false); keep it on unless the provider rejects it"
        );
    }
    let issuer = match string(table, "issuer")?.or_else(|| def.issuer.clone()) {
        Some(issuer) if issuer.trim().is_empty() => {
            return Err("issuer must not be empty".into());
        }
        other => other,
    };
    let jwt_bearer = jwt_bearer_client(&def, settings)?;
    Ok(OAuth2Client {
        grant,
        client_id,
        client_secret,
        authorization_url,
        token_url,
        revocation_url,
        issuer,
        scopes,
        scope_separator: def.scope_separator,
        pkce,
        client_auth,
        token_request_format,
        authorization_params,
        reauth_errors: def.reauth_errors,
        token_metadata: def
            .token_metadata
            .iter()
            .map(|(name, pointers)| (name.clone(), pointers.as_slice().to_vec()))
            .collect(),
        redirect_uri_on_refresh: def.redirect_uri_on_refresh,
        token_params: named_templates("token_params.", &def.token_params)?,
        hosts,
        jwt_bearer,
    })
}

/// The JWT bearer grant's signing key, parsed now so that a bad key stops start-up (the
/// message names the setting, never its value), and its claims' templates.
fn jwt_bearer_client(
    def: &crate::catalog::OAuth2Def,
    settings: &BTreeMap<String, SecretString>,
) -> Result<Option<crate::oauth2::jwt_bearer::JwtBearerClient>, String> {
    use crate::oauth2::jwt_bearer::{JwtBearerClient, SigningKey};
    let Some(jwt) = def
        .jwt_bearer
        .as_ref()
        .filter(|_| def.grant == crate::catalog::GrantDef::JwtBearer)
    else {
        return Ok(None);
    };
    let name = &jwt.private_key_setting;
    let pem = settings
        .get(name)
        .ok_or_else(|| format!("{name} is required (the app's private key, PEM)"))?;
    let key = SigningKey::from_pem(pem.expose()).map_err(|m| format!("{name} {m}"))?;
    let template = |text: &str| Template::parse(text).map_err(|e| format!("jwt_bearer: {e}"));
    Ok(Some(JwtBearerClient {
        key: Arc::new(key),
        audience: template(&jwt.audience)?,
        subject: template(&jwt.subject)?,
        lifetime_secs: jwt.lifetime_secs,
    }))
}

/// A catalog table of named templates (headers, query or token parameters), parsed in order;
/// an error names the entry after `what`.
fn named_templates(
    what: &str,
    entries: &BTreeMap<String, String>,
) -> Result<Vec<(String, Template)>, String> {
    entries
        .iter()
        .map(|(name, value)| {
            Template::parse(value)
                .map(|t| (name.clone(), t))
                .map_err(|e| format!("{what}{name}: {e}"))
        })
        .collect()
}

/// `field_patterns = { FIELD = "regex" }`: the operator replaces the pattern a Connect form
/// field is held to, for a provider whose published hosts could not all be verified
/// (ActiveCampaign's API domains): the provider file's pattern is the safe default, and the
/// operator who knows where their users' accounts live widens it. Only fields that already
/// have a pattern can be given one (a field without one never reaches a URL), and the new
/// pattern must compile. Hosts named through it are still held to the outbound address
/// policy like any value an end user types.
fn apply_field_patterns(
    table: &serde_json::Map<String, Value>,
    provider: &mut Arc<ProviderDef>,
) -> Result<(), String> {
    let Some(value) = table.get("field_patterns") else {
        return Ok(());
    };
    // This integration's own copy of the provider; the catalog's stays as published.
    let provider = Arc::make_mut(provider);
    let Value::Object(patterns) = value else {
        return Err("field_patterns must be a table of field name = \"pattern\"".into());
    };
    for (name, pattern) in patterns {
        let Value::String(pattern) = pattern else {
            return Err(format!("field_patterns.{name} must be a string"));
        };
        let field = provider
            .fields
            .iter_mut()
            .find(|field| &field.name == name && field.pattern.is_some())
            .ok_or_else(|| {
                format!(
                    "field_patterns.{name}: provider {:?} has no form field {name:?} held to a pattern",
                    provider.id
                )
            })?;
        whole_value_regex(pattern)
            .map_err(|e| format!("field_patterns.{name} is not a valid pattern ({e})"))?;
        field.pattern = Some(pattern.clone());
        // The provider's hint describes the provider's own pattern.
        field.pattern_hint = None;
    }
    Ok(())
}

fn string(table: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match table.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// Parses an endpoint URL: https, or http only to a loopback host (emulators, local tests).
pub fn parse_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{text:?} must use https (http is allowed only on loopback)"
            ));
        }
        other => return Err(format!("{text:?} has unsupported scheme {other:?}")),
    }
    if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?} must have a host and no user information"));
    }
    if url.fragment().is_some() {
        return Err(format!("{text:?} must not have a fragment"));
    }
    Ok(url)
}

/// Whether a URL points at this machine.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn generic_oauth2_resolves() {
        let catalog = Catalog::embedded().unwrap();
        let i = Integration::from_config(
            "crm",
            &table(json!({
                "provider": "oauth2", "client_id": "c", "client_secret": "s",
                "authorization_url": "https://crm.example.com/oauth/authorize",
                "token_url": "https://crm.example.com/oauth/token",
                "api_base_url": "https://crm.example.com",
                "scopes": ["read", "write"], "client_auth": "client_secret_post"
            })),
            &catalog,
        )
        .unwrap();
        let o = i.oauth2.as_ref().unwrap();
        let none = serde_json::Map::new();
        assert_eq!(
            o.scope(&i.vars(&none, None)).unwrap().as_deref(),
            Some("read write")
        );
        assert_eq!(o.client_auth, ClientAuth::ClientSecretPost);
        assert!(o.pkce);
        assert!(!format!("{:?}", o.client_secret).contains('s'));
    }

    #[test]
    fn errors_name_the_key() {
        let catalog = Catalog::embedded().unwrap();
        let cases = [
            (json!({"provider": "nope"}), "not in the catalog"),
            (
                json!({"provider": "oauth2", "tokn_url": "x"}),
                "unknown key \"tokn_url\"",
            ),
            (
                json!({"provider": "oauth2", "client_id": "c", "api_base_url": "https://a",
                    "authorization_url": "https://a/auth"}),
                "token_url is required",
            ),
            (
                json!({"provider": "oauth2", "client_id": "c", "api_base_url": "http://crm.example.com",
                    "authorization_url": "https://a/auth", "token_url": "https://a/t"}),
                "must use https",
            ),
            (
                json!({"provider": "oauth2", "client_id": "c",
                    "api_base_url": "${connection.instance_url}/api",
                    "authorization_url": "https://a/auth", "token_url": "https://a/t"}),
                "api_base_url: its host may come from connection.instance_url",
            ),
            (
                json!({"provider": "oauth2", "client_id": "c",
                    "api_base_url": "https://a/${credential.access_token}",
                    "authorization_url": "https://a/auth", "token_url": "https://a/t"}),
                "a URL must not read credential.access_token",
            ),
            (
                json!({"provider": "redtail", "api_key": "k",
                    "api_base_url": "https://a/${settings.api_key}"}),
                "api_base_url: a URL must not read settings.api_key",
            ),
        ];
        for (config, expected) in cases {
            let e = Integration::from_config("crm", &table(config), &catalog)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("integrations.crm: "), "{e}");
            assert!(e.contains(expected), "{e} should contain {expected}");
        }
    }

    #[test]
    fn host_rules_refuse_values_outside_the_allowed_hosts() {
        let template = UrlTemplate::parse("${connection.instance_url}").unwrap();
        let strict = HostRules {
            patterns: vec!["*.my.salesforce.com".into()],
            ..HostRules::default()
        };
        let render = |value: &str, hosts: &HostRules| {
            let settings = BTreeMap::new();
            let mut connection = serde_json::Map::new();
            connection.insert("instance_url".into(), json!(value));
            let vars = Vars {
                settings: &settings,
                connection: &connection,
                credentials: None,
            };
            template.render(&vars, hosts)
        };
        assert!(render("https://acme.my.salesforce.com", &strict).is_ok());
        assert!(render("https://acme.my.salesforce.com:443/x", &strict).is_ok());
        let with_port = HostRules {
            patterns: vec!["api.example.com:8443".into()],
            ..HostRules::default()
        };
        assert!(render("https://api.example.com:8443", &with_port).is_ok());
        assert!(render("https://api.example.com", &with_port).is_err());
        for bad in [
            "https://evil.example",
            "https://acme.my.salesforce.com.evil.example",
            "https://acme.my.salesforce.com@evil.example",
            "http://acme.my.salesforce.com",
            "http://127.0.0.1:9",
            "https://acme.my.salesforce.com:6379",
            "https://acme.my.salesforce.com:22/x",
            "https://acme.my.salesforce.com:8443",
        ] {
            assert!(
                matches!(render(bad, &strict), Err(UrlError::Refused(_))),
                "{bad} accepted"
            );
        }
        let with_loopback = HostRules {
            loopback: true,
            ..strict
        };
        assert!(render("http://localhost:9/x", &with_loopback).is_ok());
        assert!(render("https://evil.example", &with_loopback).is_err());
        assert!(host_varies("${connection.x}/a") && host_varies("https://${connection.x}.z.io"));
        assert!(!host_varies("https://login.z.io/${settings.tenant}/token"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Values an attacker might put in a token response's instance URL.
        fn hostile() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC{0,40}",
                "https://[a-z.@:/%?#-]{0,30}",
                "(https|http)://[a-z0-9-]{1,8}\\.my\\.salesforce\\.com[@:/.a-z0-9%#?-]{0,20}",
                "https://[a-z0-9.-]{0,12}salesforce\\.com[a-z0-9.@-]{0,12}",
            ]
        }

        proptest! {
            /// Whatever a token response says, a URL built from it is either refused or on a
            /// host the provider allows, over https.
            #[test]
            fn instance_urls_stay_on_allowed_hosts(value in hostile(), path in "[a-z/]{0,10}") {
                let template = UrlTemplate::parse(&["${connection.instance_url}", &path].concat()).unwrap();
                let hosts = HostRules {
                    patterns: vec!["*.my.salesforce.com".into()],
                    ..HostRules::default()
                };
                let settings = BTreeMap::new();
                let mut connection = serde_json::Map::new();
                connection.insert("instance_url".into(), json!(value));
                let vars = Vars { settings: &settings, connection: &connection, credentials: None };
                if let Ok(url) = template.render(&vars, &hosts) {
                    prop_assert_eq!(url.scheme(), "https");
                    let host = url.host_str().unwrap_or_default().to_owned();
                    prop_assert!(host.ends_with(".my.salesforce.com"), "{}", url);
                    prop_assert!(url.username().is_empty() && url.password().is_none());
                }
            }
        }
    }
}
