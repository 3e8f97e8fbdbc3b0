//! Secret values: a newtype whose `Debug` and `Display` print `[redacted]`, zeroized on drop,
//! and the `env:NAME` / `file:/path` references that configuration uses to name secrets.
//!
//! A secret must never reach a log line or an error message; the only way to see the value
//! is [`SecretString::expose`], which makes every use greppable.

use std::fmt;
use zeroize::Zeroize;

/// A string that must not be printed. Cloning is allowed (the vault and caches need copies).
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself. Call it only where the value leaves for its one destination.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Declares a secret newtype over [`SecretString`]: one type per kind of secret, so an access
/// token cannot be passed where a refresh token or a PKCE verifier belongs, and each keeps
/// `SecretString`'s redacted `Debug`/`Display` and zeroize-on-drop.
macro_rules! secret_newtype {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(SecretString);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                $name(SecretString::new(value))
            }

            /// The secret itself. Call it only where the value leaves for its one destination.
            pub fn expose(&self) -> &str {
                self.0.expose()
            }
        }

        impl From<SecretString> for $name {
            fn from(secret: SecretString) -> Self {
                $name(secret)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }
    )+};
}

secret_newtype! {
    /// An OAuth 2.0 access token (RFC 6749 1.4).
    AccessToken;
    /// An OAuth 2.0 refresh token (RFC 6749 1.5).
    RefreshToken;
    /// An OAuth 2.0 client secret (RFC 6749 2.3.1), from the operator's configuration.
    ClientSecret;
    /// A PKCE code verifier (RFC 7636 4.1).
    PkceVerifier;
    /// A bearer token that names a connect session or a console session.
    SessionToken;
}

/// Why a secret reference could not be resolved. Names the variable or file, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretRefError {
    #[error("environment variable {0} is not set (set it, or put the value in a .env file)")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret reference {0:?} is empty")]
    Empty(String),
}

/// Resolves a configured secret: `env:NAME` reads the variable, `file:/path` reads the file
/// (trailing newline trimmed), anything else is the literal value.
pub fn resolve_secret_ref(value: &str) -> Result<SecretString, SecretRefError> {
    let resolved = if let Some(name) = value.strip_prefix("env:") {
        std::env::var(name).map_err(|_| SecretRefError::MissingEnv(name.to_owned()))?
    } else if let Some(path) = value.strip_prefix("file:") {
        let text = std::fs::read_to_string(path).map_err(|source| SecretRefError::File {
            path: path.to_owned(),
            source,
        })?;
        text.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        value.to_owned()
    };
    if resolved.is_empty() {
        // Name the reference (env:NAME / file:path) but never a literal value.
        let shown = if value.starts_with("env:") || value.starts_with("file:") {
            value.to_owned()
        } else {
            "(literal)".to_owned()
        };
        return Err(SecretRefError::Empty(shown));
    }
    Ok(SecretString(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn typed_secrets_and_hashes_hide_their_values() {
        let token = AccessToken::new("hunter2");
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        assert_eq!(format!("{token}"), "[redacted]");
        assert_eq!(token.expose(), "hunter2");
        let verifier = PkceVerifier::new("hunter2");
        assert!(!format!("{verifier:?} {verifier}").contains("hunter2"));
    }

    #[test]
    fn literal_and_file_refs() {
        assert_eq!(resolve_secret_ref("plain").unwrap().expose(), "plain");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file\n").unwrap();
        let r = format!("file:{}", path.display());
        assert_eq!(resolve_secret_ref(&r).unwrap().expose(), "from-file");
        assert!(matches!(
            resolve_secret_ref("env:TETHER_TEST_SURELY_UNSET_VAR"),
            Err(SecretRefError::MissingEnv(_))
        ));
    }
}
