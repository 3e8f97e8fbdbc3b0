//! An integration: the app's use of one catalog provider, resolved from its configuration
//! table (`[integrations.KEY]`) against the catalog. Everything is checked here, once, so a
//! typo or a missing secret stops start-up with a message naming the key.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use url::Url;

use crate::catalog::{AuthMode, BodyFormat, Catalog, ClientAuth, ProviderDef};
use crate::ids::IntegrationKey;
use crate::secret::{SecretString, resolve_secret_ref};
use crate::template::Template;

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
    pub api_base_url: Option<Template>,
    /// Headers the proxy adds, as templates.
    pub headers: Vec<(String, Template)>,
    /// Operator-configured values the catalog declares (e.g. an API key); all kept secret.
    pub settings: BTreeMap<String, SecretString>,
}

/// Everything needed to run an authorization-code flow and refresh its tokens.
#[derive(Debug, Clone)]
pub struct OAuth2Client {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub authorization_url: Url,
    pub token_url: Url,
    pub revocation_url: Option<Url>,
    /// RFC 9207: the `iss` the authorization response must carry; `None` when the provider
    /// declares none (then `iss` is not required).
    pub issuer: Option<String>,
    pub scopes: Vec<String>,
    pub scope_separator: String,
    pub pkce: bool,
    pub client_auth: ClientAuth,
    pub token_request_format: BodyFormat,
    pub authorization_params: BTreeMap<String, String>,
    pub reauth_errors: Vec<String>,
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

        let mut settings = BTreeMap::new();
        for setting in &provider.settings {
            match string(table, &setting.name).map_err(&err)? {
                Some(value) => {
                    let secret = resolve_secret_ref(&value)
                        .map_err(|e| err(format!("{}: {e}", setting.name)))?;
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
                if !text.contains("${") {
                    parse_endpoint(&text).map_err(|m| err(format!("api_base_url: {m}")))?;
                }
                Template::parse(&text).map_err(|e| err(format!("api_base_url: {e}")))
            })
            .transpose()?;
        if api_base_url.is_none() {
            return Err(err("api_base_url is required".into()));
        }

        let headers = provider
            .api
            .headers
            .iter()
            .map(|(name, value)| {
                Template::parse(value)
                    .map(|t| (name.clone(), t))
                    .map_err(|e| err(format!("header {name}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let oauth2 = match provider.auth_mode {
            AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials => {
                Some(resolve_oauth2(integration_key.as_str(), table, &provider).map_err(&err)?)
            }
            _ => None,
        };

        let display_name = string(table, "display_name")
            .map_err(&err)?
            .unwrap_or_else(|| provider.display_name.clone());

        Ok(Integration {
            key: integration_key,
            provider,
            display_name,
            oauth2,
            api_base_url,
            headers,
            settings,
        })
    }

    pub fn auth_mode(&self) -> AuthMode {
        self.provider.auth_mode
    }
}

fn resolve_oauth2(
    key: &str,
    table: &serde_json::Map<String, Value>,
    provider: &ProviderDef,
) -> Result<OAuth2Client, String> {
    let def = provider.oauth2.clone().unwrap_or_default();
    let endpoint = |name: &str, fallback: &Option<String>| -> Result<Option<Url>, String> {
        match string(table, name)?.or_else(|| fallback.clone()) {
            Some(text) => parse_endpoint(&text)
                .map(Some)
                .map_err(|m| format!("{name}: {m}")),
            None => Ok(None),
        }
    };
    let authorization_url = endpoint("authorization_url", &def.authorization_url)?;
    let token_url =
        endpoint("token_url", &def.token_url)?.ok_or_else(|| "token_url is required".to_owned())?;
    let authorization_url = match (provider.auth_mode, authorization_url) {
        (AuthMode::Oauth2, None) => return Err("authorization_url is required".into()),
        // Client credentials never sends a browser anywhere; the token URL stands in.
        (_, url) => url.unwrap_or_else(|| token_url.clone()),
    };
    let revocation_url = endpoint("revocation_url", &def.revocation_url)?;
    let client_id = string(table, "client_id")?.ok_or("client_id is required")?;
    let client_secret = string(table, "client_secret")?
        .map(|value| resolve_secret_ref(&value).map_err(|e| format!("client_secret: {e}")))
        .transpose()?;
    let scopes = match table.get("scopes") {
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
    Ok(OAuth2Client {
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
        authorization_params: def.authorization_params,
        reauth_errors: def.reauth_errors,
    })
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
        let o = i.oauth2.unwrap();
        assert_eq!(o.scopes, ["read", "write"]);
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
        ];
        for (config, expected) in cases {
            let e = Integration::from_config("crm", &table(config), &catalog)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("integrations.crm: "), "{e}");
            assert!(e.contains(expected), "{e} should contain {expected}");
        }
    }
}
