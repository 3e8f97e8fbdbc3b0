//! `[check]` and `[lifetime]`: what a provider file says about a connection's life after the
//! connect. The check is the call that proves a connection's credentials still work and says
//! whose they are (the account); the lifetime is what the provider does to grants over time
//! (an access token's lifetime when it does not say, refresh tokens that expire unused or
//! after a fixed time). Shape and rules in one module, apart from `model.rs`, because an
//! operator may declare both per integration (`[integrations.KEY.check]`) for the generic
//! `oauth2` provider, and the same rules hold there.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::template::{Scope, Template};

use super::model::{BodyFailure, Pointers, ProviderDef};

/// Longest lifetime a file may declare, in days: ten years. Beyond it the number is a typo.
const MAX_DAYS: u64 = 3650;

/// `[check]`: the call made with the connection's credentials, like a proxied call.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDef {
    /// `GET` (default), `HEAD` or `POST`: a check must not change anything at the provider.
    #[serde(default = "get")]
    pub method: String,
    /// Relative to the connection's API base URL; each segment is a template.
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Form fields of a `POST` check (templates).
    #[serde(default)]
    pub body: BTreeMap<String, String>,
    /// A JSON document sent as the body of a `POST` check, as written (no templates), for
    /// APIs whose every call is a JSON POST (GraphQL, JSON-RPC); not with `body`.
    #[serde(default)]
    pub json: Option<String>,
    /// A failure reported inside a 2xx body.
    #[serde(default)]
    pub failure: Option<BodyFailure>,
    /// Where the account's ids are in the check's JSON answer.
    #[serde(default)]
    pub account: AccountPointers,
}

fn get() -> String {
    "GET".into()
}

/// `[check.account]`: JSON pointers (RFC 6901) into the check's answer, each tried in order.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountPointers {
    #[serde(default)]
    pub user_id: Option<Pointers>,
    #[serde(default)]
    pub organization_id: Option<Pointers>,
    #[serde(default)]
    pub label: Option<Pointers>,
}

impl AccountPointers {
    /// Whether any pointer is declared (a check without one proves the credentials only).
    pub fn is_empty(&self) -> bool {
        self.user_id.is_none() && self.organization_id.is_none() && self.label.is_none()
    }

    fn all(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("user_id", &self.user_id),
            ("organization_id", &self.organization_id),
            ("label", &self.label),
        ]
        .into_iter()
        .flat_map(|(name, pointers)| {
            pointers
                .iter()
                .flat_map(|p| p.as_slice())
                .map(move |p| (name, p))
        })
    }
}

/// `[lifetime]`: what the provider does to grants over time.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LifetimeDef {
    /// Assumed when a token response carries no `expires_in`.
    #[serde(default)]
    pub access_token_secs: Option<u64>,
    /// A refresh token unused this long expires: refresh before it does.
    #[serde(default)]
    pub refresh_token_idle_days: Option<u64>,
    /// The grant ends this long after consent whatever is done.
    #[serde(default)]
    pub refresh_token_max_days: Option<u64>,
}

impl LifetimeDef {
    /// The rules serde cannot check; (key, message) of the first problem, keys relative to
    /// the table.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(secs) = self.access_token_secs
            && !(60..=MAX_DAYS * 86_400).contains(&secs)
        {
            return Err((
                "access_token_secs".into(),
                "must be between 60 seconds and ten years".into(),
            ));
        }
        for (key, days) in [
            ("refresh_token_idle_days", self.refresh_token_idle_days),
            ("refresh_token_max_days", self.refresh_token_max_days),
        ] {
            if let Some(days) = days
                && !(1..=MAX_DAYS).contains(&days)
            {
                return Err((key.into(), "must be between 1 and 3650 days".into()));
            }
        }
        if let (Some(idle), Some(max)) = (self.refresh_token_idle_days, self.refresh_token_max_days)
            && idle > max
        {
            return Err((
                "refresh_token_idle_days".into(),
                "cannot be longer than refresh_token_max_days".into(),
            ));
        }
        Ok(())
    }
}

impl CheckDef {
    /// The rules serde cannot check, against the provider whose connections it is made
    /// with; (key, message) of the first problem, keys relative to the table.
    pub fn validate(&self, provider: &ProviderDef) -> Result<(), (String, String)> {
        if !matches!(self.method.as_str(), "GET" | "HEAD" | "POST") {
            return Err((
                "method".into(),
                "must be \"GET\", \"HEAD\" or \"POST\"".into(),
            ));
        }
        if !self.body.is_empty() && self.method != "POST" {
            return Err(("body".into(), "only a POST check has a body".into()));
        }
        if let Some(json) = &self.json {
            if self.method != "POST" || !self.body.is_empty() {
                return Err((
                    "json".into(),
                    "only a POST check has a body, and either `body` or `json`".into(),
                ));
            }
            match serde_json::from_str::<serde_json::Value>(json) {
                Ok(serde_json::Value::Object(_) | serde_json::Value::Array(_)) => {}
                _ => {
                    return Err((
                        "json".into(),
                        "must be a JSON object or array, written as a string".into(),
                    ));
                }
            }
        }
        if self.method == "HEAD" && !self.account.is_empty() {
            return Err((
                "account".into(),
                "a HEAD check has no body to read an account from".into(),
            ));
        }
        if self.path.contains("://") || self.path.contains('?') || self.path.contains('#') {
            return Err((
                "path".into(),
                "must be a path relative to the API base URL, without query or fragment".into(),
            ));
        }
        let settings: Vec<&str> = provider.settings.iter().map(|s| s.name.as_str()).collect();
        let fields: Vec<&str> = provider.fields.iter().map(|f| f.name.as_str()).collect();
        let provider_values = provider.provider_value_names();
        let check_template = |key: String, text: &str, url: bool| {
            let template = Template::parse(text).map_err(|e| (key.clone(), e.to_string()))?;
            for r in template.references() {
                let name = r.name.as_str();
                let known = match r.scope {
                    Scope::Settings => settings.contains(&name),
                    Scope::Connection => fields.contains(&name) || provider_values.contains(&name),
                    // A secret has no place in a URL (logs, the provider's access logs).
                    Scope::Credential => !url,
                    Scope::Input => false,
                };
                if !known {
                    return Err((
                        key,
                        format!("{}.{} cannot be read here", r.scope.as_str(), r.name),
                    ));
                }
            }
            Ok(())
        };
        check_template("path".into(), &self.path, true)?;
        for (name, value) in &self.query {
            check_template(format!("query.{name}"), value, true)?;
        }
        for (name, value) in &self.headers {
            check_template(format!("headers.{name}"), value, false)?;
        }
        for (name, value) in &self.body {
            check_template(format!("body.{name}"), value, false)?;
        }
        if let Some(failure) = &self.failure
            && !is_pointer(&failure.field)
        {
            return Err((
                "failure.field".into(),
                "must be a JSON pointer (RFC 6901)".into(),
            ));
        }
        for (name, pointer) in self.account.all() {
            if !is_pointer(pointer) {
                return Err((
                    ["account.", name].concat(),
                    format!("{pointer:?} is not a JSON pointer (RFC 6901): it starts with /"),
                ));
            }
        }
        Ok(())
    }
}

/// A JSON pointer (RFC 6901 3): empty (the whole document) or `/`-separated tokens.
fn is_pointer(text: &str) -> bool {
    text.is_empty() || text.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth2() -> ProviderDef {
        crate::catalog::Catalog::embedded()
            .unwrap()
            .get("oauth2")
            .unwrap()
            .as_ref()
            .clone()
    }

    fn check(toml_text: &str) -> Result<(), (String, String)> {
        let def: CheckDef = toml::from_str(toml_text).map_err(|e| ("".into(), e.to_string()))?;
        def.validate(&oauth2())
    }

    #[test]
    fn a_check_is_a_safe_call_with_pointers() {
        check("path = \"/v1/me\"\n[account]\nuser_id = \"/id\"\nlabel = [\"/email\", \"/name\"]")
            .unwrap();
        let bad = check("method = \"DELETE\"\npath = \"/v1/me\"").unwrap_err();
        assert_eq!(bad.0, "method");
        let bad = check("path = \"https://evil.example/me\"").unwrap_err();
        assert_eq!(bad.0, "path");
        let bad = check("path = \"/me\"\n[account]\nuser_id = \"id\"").unwrap_err();
        assert_eq!(bad.0, "account.user_id");
        let bad = check("path = \"/me\"\n[query]\nt = \"${credential.access_token}\"").unwrap_err();
        assert_eq!(bad.0, "query.t", "a secret is never put in a URL");
        let bad = check("path = \"/me\"\n[headers]\nx = \"${input.password}\"").unwrap_err();
        assert_eq!(bad.0, "headers.x");
        let bad = check("method = \"GET\"\npath = \"/me\"\n[body]\na = \"b\"").unwrap_err();
        assert_eq!(bad.0, "body");
        assert!(check("path = \"/me\"\nunknown = 1").is_err());
        check("method = \"POST\"\npath = \"/\"\njson = '{\"query\": \"{ me { id } }\"}'").unwrap();
        let bad = check("path = \"/me\"\njson = '{}'").unwrap_err();
        assert_eq!(bad.0, "json", "a GET has no body");
        let bad = check("method = \"POST\"\npath = \"/me\"\njson = 'not json'").unwrap_err();
        assert_eq!(bad.0, "json");
    }

    /// Providers with no check yet: Nutshell's only who-am-I call is a JSON-RPC `getUser`
    /// whose parameters for "the signed-in user" its pages do not settle (the file says so
    /// above where its `[check]` would be).
    const NO_CHECK_YET: [&str; 1] = ["nutshell"];

    #[test]
    fn every_catalog_provider_declares_a_check() {
        let catalog = crate::catalog::Catalog::embedded().unwrap();
        let mut missing = Vec::new();
        for provider in catalog.iter() {
            let exempt = provider.id == "oauth2" || NO_CHECK_YET.contains(&provider.id.as_str());
            match (&provider.check, exempt) {
                (Some(_), true) => panic!(
                    "{} declares a [check] now: take it off the exemptions",
                    provider.id
                ),
                (None, false) => missing.push(provider.id.clone()),
                _ => {}
            }
        }
        assert!(missing.is_empty(), "no [check]: {missing:?}");
        let oauth2 = catalog.get("oauth2").unwrap();
        assert!(
            oauth2.check.is_none(),
            "the operator declares the generic provider's"
        );
    }

    #[test]
    fn lifetimes_are_held_to_sense() {
        let ok = LifetimeDef {
            access_token_secs: Some(3600),
            refresh_token_idle_days: Some(90),
            refresh_token_max_days: Some(365),
        };
        ok.validate().unwrap();
        let zero = LifetimeDef {
            refresh_token_idle_days: Some(0),
            ..ok
        };
        assert_eq!(zero.validate().unwrap_err().0, "refresh_token_idle_days");
        let short = LifetimeDef {
            access_token_secs: Some(5),
            ..ok
        };
        assert_eq!(short.validate().unwrap_err().0, "access_token_secs");
        let inverted = LifetimeDef {
            refresh_token_idle_days: Some(400),
            ..ok
        };
        assert!(inverted.validate().is_err());
    }
}
