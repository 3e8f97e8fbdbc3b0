//! The catalog: provider definitions shipped with Tether (`providers/*.toml`, embedded in the
//! binary), parsed into a typed model and checked when Tether starts.
//!
//! Provider quirks live here as data (which client authentication a token endpoint wants,
//! which headers carry the credential, how the base URL is built), never as
//! `if provider == ...` in code.

mod model;

pub use model::*;

use std::collections::BTreeMap;
use std::sync::Arc;

/// The catalog files compiled into the binary: (file name, contents).
const EMBEDDED: &[(&str, &str)] = &[
    (
        "providers/oauth2.toml",
        include_str!("../../../../providers/oauth2.toml"),
    ),
    (
        "providers/redtail.toml",
        include_str!("../../../../providers/redtail.toml"),
    ),
    (
        "providers/redtail-sandbox.toml",
        include_str!("../../../../providers/redtail-sandbox.toml"),
    ),
    (
        "providers/salesmate.toml",
        include_str!("../../../../providers/salesmate.toml"),
    ),
];

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
}
