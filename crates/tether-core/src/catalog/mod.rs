//! The catalog: provider definitions shipped with Tether (`providers/*.toml`, embedded in the
//! binary), parsed into a typed model and checked when Tether starts.
//!
//! Provider quirks live here as data (which client authentication a token endpoint wants,
//! which headers carry the credential, how the base URL is built), never as
//! `if provider == ...` in code.

mod check;
pub mod describe;
pub mod documented;
pub mod lifecycle;
mod model;
pub mod rate_limit;

pub use lifecycle::{AccountPointers, CheckDef, LifetimeDef};
pub use model::*;

use std::collections::BTreeMap;
use std::sync::Arc;

/// The catalog files compiled into the binary: (file name, contents), every
/// `providers/*.toml` of the workspace, listed by the build script.
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/embedded_providers.rs"));

/// A catalog file that does not parse or does not make sense. Names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: String,
        key: String,
        message: String,
    },
    #[error("{file}: provider id {id:?} is defined twice")]
    Duplicate { file: String, id: String },
}

/// All known providers, by id.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    providers: BTreeMap<String, Arc<ProviderDef>>,
}

impl Catalog {
    /// The catalog shipped in the binary.
    pub fn embedded() -> Result<Self, CatalogError> {
        Self::from_files(EMBEDDED.iter().copied())
    }

    /// Parses and checks catalog files given as (name, contents).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, CatalogError> {
        let mut providers = BTreeMap::new();
        for (file, text) in files {
            let def: ProviderDef = toml::from_str(text).map_err(|e| CatalogError::Parse {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
            def.check()
                .map_err(|(key, message)| CatalogError::Invalid {
                    file: file.to_owned(),
                    key,
                    message,
                })?;
            if providers.contains_key(&def.id) {
                return Err(CatalogError::Duplicate {
                    file: file.to_owned(),
                    id: def.id,
                });
            }
            providers.insert(def.id.clone(), Arc::new(def));
        }
        Ok(Catalog { providers })
    }

    pub fn get(&self, id: &str) -> Option<&Arc<ProviderDef>> {
        self.providers.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ProviderDef>> {
        self.providers.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_loads() {
        let catalog = Catalog::embedded().unwrap();
        for id in ["oauth2", "redtail", "redtail-sandbox", "salesmate"] {
            assert!(catalog.get(id).is_some(), "{id}");
        }
    }

    /// Every file in `providers/` is embedded and loads: a new file needs no Rust change, and
    /// a broken one fails here.
    #[test]
    fn every_provider_file_on_disk_is_embedded_and_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../providers");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".toml"))
            .map(|name| ["providers/", &name].concat())
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = EMBEDDED.iter().map(|(name, _)| *name).collect();
        assert_eq!(embedded, on_disk);
        for name in &on_disk {
            let text = std::fs::read_to_string(dir.join(&name["providers/".len()..])).unwrap();
            let catalog = Catalog::from_files([(name.as_str(), text.as_str())])
                .unwrap_or_else(|e| panic!("{e}"));
            let provider = catalog.iter().next().unwrap();
            // The id is the file name, so `provider = "x"` is found in `providers/x.toml`.
            assert_eq!(
                ["providers/", &provider.id, ".toml"].concat(),
                *name,
                "file name and id differ"
            );
        }
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(catalog.iter().count(), on_disk.len());
    }

    #[test]
    fn unknown_keys_name_file_and_key() {
        let err = Catalog::from_files([(
            "providers/x.toml",
            "id = 'x'\ndisplay_name = 'X'\nauth_mode = 'oauth2'\nbogus = 1\n[api]\n",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("providers/x.toml"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn bad_templates_are_caught_at_load() {
        let err = Catalog::from_files([(
            "providers/y.toml",
            "id = 'y'\ndisplay_name = 'Y'\nauth_mode = 'oauth2'\n[api.headers]\nAuthorization = 'Bearer ${nope.x}'\n",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("api.headers.Authorization"), "{err}");
    }

    fn load_one(text: &str) -> Result<Catalog, String> {
        Catalog::from_files([("providers/z.toml", text)]).map_err(|e| e.to_string())
    }

    const OAUTH_HEAD: &str = "id = 'z'\ndisplay_name = 'Z'\nauth_mode = 'oauth2'\n";

    /// A field pattern is checked at load exactly as the form uses it (matching the whole
    /// value): one that compiles alone but not anchored (a trailing `(?x)` comment swallows
    /// the anchor) is refused, instead of loading and then turning down every value.
    #[test]
    fn field_patterns_are_checked_as_whole_value_patterns() {
        let text = [
            OAUTH_HEAD,
            "[api]\nbase_url = 'https://api.z.example'\n",
            "[[fields]]\nname = 'sub'\nlabel = 'Subdomain'\npattern = '(?x)[a-z]+ # subdomain'\n",
        ]
        .concat();
        assert!(regex_lite::Regex::new("(?x)[a-z]+ # subdomain").is_ok());
        let err = load_one(&text).unwrap_err();
        assert!(
            err.starts_with("providers/z.toml: fields.sub.pattern: "),
            "{err}"
        );
    }

    #[test]
    fn a_typed_host_without_a_pattern_is_refused_naming_file_and_key() {
        let text = [
            OAUTH_HEAD,
            "[api]\nbase_url = 'https://${connection.sub}.z.example'\n",
            "[[fields]]\nname = 'sub'\nlabel = 'Subdomain'\n",
        ]
        .concat();
        let err = load_one(&text).unwrap_err();
        assert_eq!(
            err,
            "providers/z.toml: fields.sub.pattern: a field used in api.base_url needs a pattern"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn a_token_response_url_without_host_rules_is_refused() {
        let text = [
            OAUTH_HEAD,
            "[api]\nbase_url = '${connection.instance_url}'\n",
            "[oauth2.token_metadata]\ninstance_url = '/instance_url'\n",
        ]
        .concat();
        let err = load_one(&text).unwrap_err();
        assert!(
            err.starts_with("providers/z.toml: api.base_url: connection.instance_url"),
            "{err}"
        );
        let fixed = [
            OAUTH_HEAD,
            "[api]\nbase_url = '${connection.instance_url}'\nallowed_hosts = ['*.my.z.example']\n",
            "[oauth2.token_metadata]\ninstance_url = '/instance_url'\n",
        ]
        .concat();
        load_one(&fixed).unwrap();
    }

    #[test]
    fn settings_in_urls_need_patterns_and_oauth_fields_cannot_be_secret() {
        let text = [
            OAUTH_HEAD,
            "[oauth2]\ntoken_url = 'https://login.z.example/${settings.tenant}/token'\n",
            "[[settings]]\nname = 'tenant'\n",
        ]
        .concat();
        assert!(
            load_one(&text)
                .unwrap_err()
                .contains("settings.tenant.pattern"),
        );
        let text = [
            OAUTH_HEAD,
            "[[fields]]\nname = 'sub'\nlabel = 'S'\nsecret = true\n",
        ]
        .concat();
        assert!(load_one(&text).unwrap_err().contains("fields.sub.secret"));
        let text = [OAUTH_HEAD, "[api.headers]\nX = '${connection.nope}'\n"].concat();
        assert!(
            load_one(&text)
                .unwrap_err()
                .contains("connection.nope is not defined")
        );
    }

    #[test]
    fn host_patterns_match_subdomains_only() {
        assert!(host_matches(
            "*.my.salesforce.com",
            "acme.my.salesforce.com"
        ));
        assert!(host_matches("*.my.salesforce.com", "a.b.my.salesforce.com"));
        assert!(!host_matches("*.my.salesforce.com", "my.salesforce.com"));
        assert!(!host_matches(
            "*.my.salesforce.com",
            "evilmy.salesforce.com"
        ));
        assert!(!host_matches(
            "*.my.salesforce.com",
            "acme.my.salesforce.com.evil.example"
        ));
        assert!(host_matches("api.hubapi.com", "api.hubapi.com"));
        assert!(!host_matches("api.hubapi.com", "x.api.hubapi.com"));
        assert!(
            host_pattern_ok("*.force.com") && !host_pattern_ok("*") && !host_pattern_ok("a.*.com")
        );
    }
}
