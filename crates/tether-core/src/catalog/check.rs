//! The checks of one provider file that serde cannot make: templates parse and read only
//! what exists, URLs cannot be steered to a host the file does not allow, fields are consistent
//! with the auth mode. Apart from the model so that the model reads as the file's shape and
//! this as its rules.

use std::collections::BTreeMap;

use crate::template::{Scope, Template};

use super::model::*;

/// The longest assertion lifetime a file may ask for: a stolen assertion is a token for
/// this long, and providers refuse long ones anyway (Salesforce: 3 minutes).
const MAX_JWT_LIFETIME_SECS: u64 = 300;

impl ProviderDef {
    /// Checks what serde cannot: templates parse and read only what exists, URLs cannot be
    /// steered to a host the file does not allow, fields are consistent with the auth mode.
    /// Returns (key, message) of the first problem.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: String, message: String| Err((key, message));
        if self.id.is_empty() {
            return bad("id".into(), "must not be empty".into());
        }
        let id_ok = self.id.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if !id_ok {
            return bad("id".into(), "must be lowercase kebab case".into());
        }
        // The Connect page draws the mark in a small square: a few letters and a plain colour.
        let mark_ok = (1..=4).contains(&self.mark.text.chars().count())
            && self.mark.color.len() == 7
            && self.mark.color.starts_with('#')
            && self.mark.color[1..].bytes().all(|b| b.is_ascii_hexdigit());
        if !mark_ok {
            return bad(
                "mark".into(),
                "needs text of 1 to 4 characters and a #rrggbb color".into(),
            );
        }
        let setting_names: Vec<&str> = self.settings.iter().map(|s| s.name.as_str()).collect();
        let field_names: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
        let provider_values = self.provider_value_names();
        let check_template = |key: String, text: &str, allow_input: bool| {
            let template = Template::parse(text).map_err(|e| (key.clone(), e.to_string()))?;
            for r in template.references() {
                let name = r.name.as_str();
                let known = match r.scope {
                    Scope::Settings => setting_names.contains(&name),
                    Scope::Input => allow_input && field_names.contains(&name),
                    Scope::Connection => {
                        field_names.contains(&name) || provider_values.contains(&name)
                    }
                    Scope::Credential => true,
                };
                if !known {
                    return Err((
                        key,
                        format!("{}.{} is not defined", r.scope.as_str(), r.name),
                    ));
                }
            }
            Ok(template)
        };
        // A URL may read a value someone typed only when a pattern holds that value, and a
        // value from a provider's answer only when the file lists the hosts it may name: so
        // neither can ever point Tether at a host the file does not allow.
        let check_url = |key: String, text: &str| -> Result<(), (String, String)> {
            let template = check_template(key.clone(), text, false)?;
            for r in template.references() {
                match r.scope {
                    Scope::Settings => {
                        let setting = self.settings.iter().find(|s| s.name == r.name);
                        if setting.is_some_and(|s| s.pattern.is_none()) {
                            return Err((
                                format!("settings.{}.pattern", r.name),
                                format!("a setting used in {key} needs a pattern"),
                            ));
                        }
                        // URLs end up in logs and browsers; a secret has no place in one.
                        if setting.is_some_and(|s| s.secret) {
                            return Err((
                                format!("settings.{}.secret", r.name),
                                format!("a secret setting cannot be used in {key}"),
                            ));
                        }
                    }
                    Scope::Connection => {
                        let from_callback = self
                            .oauth2
                            .as_ref()
                            .is_some_and(|d| d.callback_values.iter().any(|c| c.name == r.name));
                        if from_callback {
                            // Held to its pattern when the callback is read.
                        } else if let Some(field) = self.fields.iter().find(|f| f.name == r.name) {
                            if field.pattern.is_none() {
                                return Err((
                                    format!("fields.{}.pattern", r.name),
                                    format!("a field used in {key} needs a pattern"),
                                ));
                            }
                        } else if self.api.allowed_hosts.is_empty() {
                            return Err((
                                key,
                                format!(
                                    "connection.{} comes from the provider's answer: list the \
                                     hosts it may name in api.allowed_hosts",
                                    r.name
                                ),
                            ));
                        }
                    }
                    Scope::Credential | Scope::Input => {
                        return Err((
                            key,
                            format!("a URL must not read {}.{}", r.scope.as_str(), r.name),
                        ));
                    }
                }
            }
            Ok(())
        };
        let oauth_hosts = self.oauth2.iter().flat_map(|d| &d.allowed_hosts);
        let all_hosts = (self.api.allowed_hosts.iter().map(|p| ("api", p)))
            .chain(oauth_hosts.map(|p| ("oauth2", p)));
        let mut index_of = BTreeMap::<&str, usize>::new();
        for (table, pattern) in all_hosts {
            let index = index_of.entry(table).or_default();
            if !host_pattern_ok(pattern) {
                return bad(
                    format!("{table}.allowed_hosts[{index}]"),
                    format!(
                        "{pattern:?} is not a host name or *.suffix pattern (with :port optional)"
                    ),
                );
            }
            *index += 1;
        }
        if let Some(base) = &self.api.base_url {
            check_url("api.base_url".into(), base)?;
        }
        for (name, value) in &self.api.headers {
            check_template(format!("api.headers.{name}"), value, false)?;
        }
        for (name, value) in &self.api.query {
            check_template(format!("api.query.{name}"), value, false)?;
        }
        if let Some(check) = &self.check {
            check
                .validate(self)
                .map_err(|(key, message)| (["check.", &key].concat(), message))?;
        }
        if let Some(lifetime) = &self.lifetime {
            lifetime
                .validate()
                .map_err(|(key, message)| (["lifetime.", &key].concat(), message))?;
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
                whole_value_regex(pattern)
                    .map_err(|e| (format!("fields.{}.pattern", field.name), e.to_string()))?;
            }
            let password_grant = self
                .oauth2
                .as_ref()
                .is_some_and(|d| d.grant == GrantDef::Password);
            if self.is_oauth() && field.secret && !password_grant {
                return bad(
                    format!("fields.{}.secret", field.name),
                    "fields asked before an OAuth redirect are kept as metadata, so they cannot \
                     be secret"
                        .into(),
                );
            }
        }
        for setting in &self.settings {
            if let Some(pattern) = &setting.pattern {
                let re = whole_value_regex(pattern)
                    .map_err(|e| (format!("settings.{}.pattern", setting.name), e.to_string()))?;
                if let Some(default) = &setting.default
                    && !re.is_match(default)
                {
                    return bad(
                        format!("settings.{}.default", setting.name),
                        "does not match the setting's pattern".into(),
                    );
                }
            }
        }
        if let Some(url) = &self.docs_url
            && !url.starts_with("https://")
        {
            return bad("docs_url".into(), "must be an https URL".into());
        }
        if let Some(verified) = &self.verified {
            let day = time::macros::format_description!("[year]-[month]-[day]");
            if time::Date::parse(&verified.on, day).is_err() {
                return bad("verified.on".into(), "must be a date, YYYY-MM-DD".into());
            }
            if verified.sources.is_empty() {
                return bad(
                    "verified.sources".into(),
                    "must name at least one page".into(),
                );
            }
            if let Some(source) = verified.sources.iter().find(|s| !s.starts_with("https://")) {
                return bad(
                    "verified.sources".into(),
                    format!("{source:?} must be an https URL"),
                );
            }
        }
        if self.is_oauth() {
            let def = self.oauth2.clone().unwrap_or_default();
            let urls = [
                ("oauth2.authorization_url", &def.authorization_url),
                ("oauth2.token_url", &def.token_url),
                ("oauth2.revocation_url", &def.revocation_url),
            ];
            for (key, url) in urls {
                if let Some(url) = url {
                    check_url(key.into(), url)?;
                }
            }
            for (index, scope) in def.scopes.iter().enumerate() {
                check_template(format!("oauth2.scopes[{index}]"), scope, false)?;
            }
            for (name, value) in &def.authorization_params {
                check_template(format!("oauth2.authorization_params.{name}"), value, false)?;
            }
            for (name, value) in &def.token_params {
                check_template(format!("oauth2.token_params.{name}"), value, false)?;
            }
            for value in &def.callback_values {
                let key = ["oauth2.callback_values.", &value.name].concat();
                let re =
                    whole_value_regex(&value.pattern).map_err(|e| (key.clone(), e.to_string()))?;
                if value.default.as_ref().is_some_and(|d| !re.is_match(d)) {
                    return bad(key, "default does not match the pattern".into());
                }
                if field_names.contains(&value.name.as_str())
                    || def.token_metadata.contains_key(&value.name)
                {
                    return bad(key, "has the name of a field or token value".into());
                }
            }
            if def.grant == GrantDef::Password {
                if self.auth_mode != AuthMode::Oauth2 {
                    return bad(
                        "oauth2.grant".into(),
                        "the password grant needs auth_mode = \"oauth2\"".into(),
                    );
                }
                for name in ["username", "password"] {
                    if !field_names.contains(&name) {
                        return bad(
                            "oauth2.grant".into(),
                            format!("the password grant needs a field named {name:?}"),
                        );
                    }
                }
            }
            for (name, pointers) in &def.token_metadata {
                if pointers.as_slice().is_empty()
                    || pointers.as_slice().iter().any(|p| !p.starts_with('/'))
                {
                    return bad(
                        format!("oauth2.token_metadata.{name}"),
                        "must be JSON pointers such as \"/instance_url\"".into(),
                    );
                }
                if field_names.contains(&name.as_str()) {
                    return bad(
                        format!("oauth2.token_metadata.{name}"),
                        "has the name of a field".into(),
                    );
                }
            }
            if def.scope_separator.is_empty() {
                return bad("oauth2.scope_separator".into(), "must not be empty".into());
            }
            self.check_jwt_bearer(&def)?;
        } else if self.oauth2.is_some() {
            return bad(
                "oauth2".into(),
                "only the oauth2 auth modes take an [oauth2] table".into(),
            );
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
        if let Some(rate_limit) = &self.rate_limit {
            rate_limit.check()?;
        }
        super::documented::check(self)
    }

    /// The JWT bearer grant's rules: server to server only, with its claims table, claims
    /// that read only settings, and a key held in a secret setting.
    fn check_jwt_bearer(&self, def: &OAuth2Def) -> Result<(), (String, String)> {
        let key = || "oauth2.jwt_bearer".to_owned();
        let Some(jwt) = &def.jwt_bearer else {
            if def.grant == GrantDef::JwtBearer {
                return Err((key(), "the jwt_bearer grant needs this table".into()));
            }
            return Ok(());
        };
        if def.grant != GrantDef::JwtBearer || self.auth_mode != AuthMode::Oauth2ClientCredentials {
            return Err((
                key(),
                "needs grant = \"jwt_bearer\" and auth_mode = \"oauth2_client_credentials\"".into(),
            ));
        }
        let secret = self
            .settings
            .iter()
            .any(|s| s.name == jwt.private_key_setting && s.secret);
        if !secret {
            return Err((
                key(),
                format!(
                    "private_key_setting {:?} must name a secret setting",
                    jwt.private_key_setting
                ),
            ));
        }
        if !(1..=MAX_JWT_LIFETIME_SECS).contains(&jwt.lifetime_secs) {
            return Err((
                key(),
                format!("lifetime_secs must be 1 to {MAX_JWT_LIFETIME_SECS}"),
            ));
        }
        for (name, text) in [("audience", &jwt.audience), ("subject", &jwt.subject)] {
            let template = Template::parse(text).map_err(|e| (key(), e.to_string()))?;
            for r in template.references() {
                let plain_setting = r.scope == Scope::Settings
                    && self.settings.iter().any(|s| s.name == r.name && !s.secret);
                if !plain_setting {
                    return Err((
                        key(),
                        format!(
                            "{name} may read only non-secret settings, not {}.{}",
                            r.scope.as_str(),
                            r.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
