//! What a provider asks of whom, in words: the operator's settings, the end user's fields and
//! the quirks Tether handles, for `tether providers show`, `GET /v1/providers` and
//! `docs/providers.md`. Derived from the provider file only, so the three always agree with
//! it; nothing here may print a secret (the catalog holds none).

use super::{AuthMode, Catalog, GrantDef, ProviderDef};

/// One thing someone configures or enters.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub name: String,
    pub label: String,
    pub required: bool,
    pub secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

impl ProviderDef {
    /// What the operator puts in `[integrations.KEY]` (besides `provider`).
    pub fn operator_items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        if self.is_oauth() {
            items.push(Item {
                name: "client_id".into(),
                label: "OAuth client id from the provider's developer console".into(),
                required: true,
                secret: false,
                default: None,
                pattern: None,
            });
            let def = self.oauth2.clone().unwrap_or_default();
            // The JWT bearer grant signs with the app's key instead (RFC 7523 3.1).
            if def.grant != GrantDef::JwtBearer {
                items.push(Item {
                    name: "client_secret".into(),
                    label: "OAuth client secret (env: or file: reference)".into(),
                    required: true,
                    secret: true,
                    default: None,
                    pattern: None,
                });
            }
            if def.authorization_url.is_none()
                && self.auth_mode == AuthMode::Oauth2
                && def.grant == GrantDef::AuthorizationCode
            {
                items.push(required_url("authorization_url"));
            }
            if def.token_url.is_none() {
                items.push(required_url("token_url"));
            }
        }
        if self.api.base_url.is_none() {
            items.push(required_url("api_base_url"));
        }
        items.extend(self.settings.iter().map(|s| Item {
            name: s.name.clone(),
            label: s.label.clone(),
            required: s.required && s.default.is_none(),
            secret: s.secret,
            default: s.default.clone(),
            pattern: s.pattern.clone(),
        }));
        items
    }

    /// What the end user enters on the Connect page (before the redirect, for OAuth).
    pub fn end_user_items(&self) -> Vec<Item> {
        self.fields
            .iter()
            .map(|f| Item {
                name: f.name.clone(),
                label: f.label.clone(),
                required: f.required,
                secret: f.secret,
                default: None,
                pattern: f.pattern.clone(),
            })
            .collect()
    }
}

fn required_url(name: &str) -> Item {
    Item {
        name: name.into(),
        label: "the provider's URL (no catalog default)".into(),
        required: true,
        secret: false,
        default: None,
        pattern: None,
    }
}

/// `docs/providers.md`: one table of every provider in the catalog.
pub fn markdown(catalog: &Catalog) -> String {
    let mut out = String::from(
        "# Providers\n\n\
         Generated from `providers/*.toml` by `UPDATE_DOCS=1 cargo test -p tether-core \
         providers_doc`; a test fails when this file and the catalog disagree. \
         `tether providers show ID` prints the same for one provider.\n\n\
         Every integration may also override `authorization_url`, `token_url`, \
         `api_base_url`, `revocation_url` and `scopes` (OAuth), for sandboxes and emulators.\n\n\
         *Verified* is the day the file was last checked against the provider's own pages \
         (its `[verified]` block, which lists the pages, any independent second reading, and \
         what could not be confirmed); *unconfirmed* counts those facts.\n\n\
         | id | name | auth mode | operator sets | end user enters | quirks handled | source | verified |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for p in catalog.iter() {
        let names = |items: Vec<Item>| {
            let shown: Vec<String> = items
                .into_iter()
                .map(|i| {
                    let mut name = ["`", &i.name, "`"].concat();
                    if !i.required {
                        name.push_str(" (optional)");
                    }
                    name
                })
                .collect();
            if shown.is_empty() {
                "none".to_owned()
            } else {
                shown.join(", ")
            }
        };
        let quirks = p.quirks();
        let row = [
            ["`", &p.id, "`"].concat(),
            p.display_name.clone(),
            p.auth_mode.as_str().to_owned(),
            names(p.operator_items()),
            names(p.end_user_items()),
            if quirks.is_empty() {
                "none".to_owned()
            } else {
                quirks.join("; ")
            },
            p.docs_url
                .as_deref()
                .map(|u| ["<", u, ">"].concat())
                .unwrap_or_else(|| "none".to_owned()),
            verification_cell(p),
        ];
        out.push_str("| ");
        out.push_str(
            &row.iter()
                .map(|cell| cell.replace('|', "\\|"))
                .collect::<Vec<_>>()
                .join(" | "),
        );
        out.push_str(" |\n");
    }
    out
}

/// `2026-12-07` or `2026-12-07 (2 unconfirmed)`, or `never`.
fn verification_cell(provider: &ProviderDef) -> String {
    match &provider.verified {
        None => "never".to_owned(),
        Some(v) if v.unverified.is_empty() => v.on.clone(),
        Some(v) => format!("{} ({} unconfirmed)", v.on, v.unverified.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/providers.md` is the catalog: regenerate it with `UPDATE_DOCS=1`.
    #[test]
    fn providers_doc_matches_the_catalog() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/providers.md");
        let expected = markdown(&Catalog::embedded().unwrap());
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == expected,
            "docs/providers.md is out of date: run UPDATE_DOCS=1 cargo test -p tether-core providers_doc"
        );
    }

    #[test]
    fn oauth_providers_ask_the_operator_for_a_client() {
        let catalog = Catalog::embedded().unwrap();
        let salesforce = catalog.get("salesforce").unwrap();
        let names: Vec<String> = salesforce
            .operator_items()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["client_id", "client_secret", "login_host"]);
        assert!(salesforce.end_user_items().is_empty());
        let kommo = catalog.get("kommo").unwrap();
        assert!(kommo.end_user_items().is_empty());
        assert!(kommo.quirks().iter().any(|q| q.contains("`referer`")));
        let bitrix = catalog.get("bitrix24").unwrap();
        assert_eq!(bitrix.end_user_items()[0].name, "portal");
        assert!(
            kommo
                .quirks()
                .iter()
                .any(|q| q.contains("JSON token requests"))
        );
    }
}
