//! A connection's credentials: what is sealed in the `credentials` column, and how it is
//! sealed (the row id is the associated data, so a ciphertext cannot move between rows).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::vault::{Vault, VaultError};
use crate::{AccessToken, RefreshToken, SecretString};

/// The secret part of a connection. Non-secret facts go to the connection's metadata.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credentials {
    /// Tokens from an OAuth 2.0 token endpoint.
    Oauth2(OAuth2Tokens),
    /// Named secret values (an access key, a user key, a username and password).
    Fields {
        values: BTreeMap<String, SecretString>,
    },
}

/// An OAuth 2.0 token set (RFC 6749 5.1). Its `Debug` is derived: the tokens are redacted by
/// their types, and `extra` shows its field names only.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OAuth2Tokens {
    pub access_token: AccessToken,
    #[serde(default)]
    pub refresh_token: Option<RefreshToken>,
    #[serde(default = "bearer")]
    pub token_type: String,
    #[serde(default)]
    pub scope: Option<String>,
    /// Unix seconds; `None` when the provider did not say.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Fields of the token response Tether does not interpret, kept as the provider sent them
    /// (sealed with the rest, since they may hold an `id_token` or similar).
    #[serde(default)]
    pub extra: TokenExtras,
}

/// The fields of a token response Tether does not interpret. A provider may put a secret
/// among them (an `id_token`), so `Debug` shows their names, never their values. It reads as
/// the JSON object it is (deref).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenExtras(pub serde_json::Map<String, serde_json::Value>);

impl std::fmt::Debug for TokenExtras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl std::ops::Deref for TokenExtras {
    type Target = serde_json::Map<String, serde_json::Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for TokenExtras {
    fn from(fields: serde_json::Map<String, serde_json::Value>) -> Self {
        TokenExtras(fields)
    }
}

fn bearer() -> String {
    "Bearer".into()
}

/// The vault context of a connection's credentials column.
pub fn context(connection_id: &str) -> String {
    let mut ctx = String::from("connections/");
    ctx.push_str(connection_id);
    ctx.push_str("/credentials");
    ctx
}

impl Credentials {
    /// Seals for the row `connection_id`; fails only when the vault does not hold the sealing
    /// key the database announced.
    pub fn seal(&self, vault: &Vault, connection_id: &str) -> Result<Vec<u8>, VaultError> {
        let mut plain = serde_json::to_vec(self).expect("credentials always serialize");
        let sealed = vault.seal(&context(connection_id), &plain);
        plain.zeroize();
        sealed
    }

    /// Opens what [`Credentials::seal`] sealed for the same row.
    pub fn open(vault: &Vault, connection_id: &str, sealed: &[u8]) -> Result<Self, VaultError> {
        let mut plain = vault.open(&context(connection_id), sealed)?;
        let parsed = serde_json::from_slice(&plain).map_err(|_| VaultError::Malformed);
        plain.zeroize();
        parsed
    }

    /// Re-encrypts a row's sealed credentials under the vault's sealing key (key rotation),
    /// without interpreting them.
    pub fn reseal(
        vault: &Vault,
        connection_id: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let ctx = context(connection_id);
        let mut plain = vault.open(&ctx, sealed)?;
        let resealed = vault.seal(&ctx, &plain);
        plain.zeroize();
        resealed
    }

    /// A credential value by name, as templates read it (`credential.NAME`).
    pub fn get(&self, name: &str) -> Option<&str> {
        match self {
            Credentials::Oauth2(tokens) => match name {
                "access_token" => Some(tokens.access_token.expose()),
                "refresh_token" => tokens.refresh_token.as_ref().map(|t| t.expose()),
                "token_type" => Some(&tokens.token_type),
                _ => None,
            },
            Credentials::Fields { values } => values.get(name).map(|v| v.expose()),
        }
    }

    /// When the access token expires, for OAuth tokens that say so.
    pub fn expires_at(&self) -> Option<i64> {
        match self {
            Credentials::Oauth2(tokens) => tokens.expires_at,
            Credentials::Fields { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_credentials_open_only_in_their_row() {
        let vault = Vault::from_spec(&Vault::generate_key_entry()).unwrap();
        let creds = Credentials::Oauth2(OAuth2Tokens {
            access_token: AccessToken::new("at"),
            refresh_token: Some(RefreshToken::new("rt")),
            token_type: "Bearer".into(),
            scope: Some("read".into()),
            expires_at: Some(10),
            extra: Default::default(),
        });
        let sealed = creds.seal(&vault, "conn_a").unwrap();
        let opened = Credentials::open(&vault, "conn_a", &sealed).unwrap();
        assert_eq!(opened.get("access_token"), Some("at"));
        assert_eq!(opened.get("refresh_token"), Some("rt"));
        assert!(Credentials::open(&vault, "conn_b", &sealed).is_err());
        assert!(!format!("{opened:?}").contains("at\""));
    }

    #[test]
    fn debug_never_shows_unknown_token_response_fields() {
        let mut extra = serde_json::Map::new();
        extra.insert("id_token".into(), serde_json::json!("eyJ.secret.jwt"));
        let tokens = OAuth2Tokens {
            access_token: AccessToken::new("at-value"),
            refresh_token: None,
            token_type: "Bearer".into(),
            scope: None,
            expires_at: None,
            extra: extra.into(),
        };
        let shown = format!("{tokens:?}");
        assert!(shown.contains("id_token"), "{shown}");
        assert!(
            !shown.contains("eyJ.secret.jwt") && !shown.contains("at-value"),
            "{shown}"
        );
    }
}
