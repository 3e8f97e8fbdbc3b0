//! The JWT bearer grant (RFC 7523 2.1): the app proves who it is with a short-lived JWT signed
//! by its own private key (RS256, RFC 7518 3.3) and trades it at the token endpoint for an
//! access token. Salesforce's server-to-server flow; no browser, no refresh token: a new
//! assertion is signed whenever a new token is needed.
//!
//! Signed with `ring` (already in the tree through rustls) rather than a JWT crate: the one
//! thing needed is a compact JWS over four claims, and a general JWT library would bring a
//! second crypto stack. The key is an operator secret: it is parsed once at start-up (a bad
//! PEM stops start-up with one line naming the setting, never the value) and never logged.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use super::token::{TokenError, parse_token_response};
use crate::credentials::OAuth2Tokens;
use crate::integration::{OAuth2Client, UrlError, Vars};
use crate::outbound::Outbound;
use crate::template::Template;

/// The `grant_type` of RFC 7523 2.1.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// An RSA private key that signs assertions. Its `Debug` shows nothing of the key.
pub struct SigningKey(RsaKeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// Reads a PEM private key: PKCS#8 (a `PRIVATE KEY` block, what `openssl req -newkey`
    /// writes) or PKCS#1 (an `RSA PRIVATE KEY` block). A key pasted into an environment variable
    /// with its line breaks written as `\n` is accepted too. Errors never quote the input.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let pem = pem.trim().replace("\\n", "\n");
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            "is not a PEM private key (a PKCS#8 PRIVATE KEY or PKCS#1 RSA PRIVATE KEY block)"
                .to_owned()
        })?;
        let pair = match &der {
            PrivateKeyDer::Pkcs8(key) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der()),
            _ => return Err("is not an RSA private key (RS256 needs one)".into()),
        }
        .map_err(|e| format!("is not a usable RSA private key ({e})"))?;
        Ok(SigningKey(pair))
    }

    /// The public half, as a DER `RSAPublicKey` (PKCS#1): what the provider checks with.
    pub fn public_key_der(&self) -> &[u8] {
        self.0.public().as_ref()
    }

    /// A compact JWS (RFC 7515 7.1) of `claims`, signed RS256.
    fn sign(&self, claims: &serde_json::Value) -> Result<String, TokenError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = [header.as_str(), ".", &body].concat();
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| TokenError::InvalidResponse("the assertion could not be signed".into()))?;
        Ok([
            signing_input.as_str(),
            ".",
            &URL_SAFE_NO_PAD.encode(signature),
        ]
        .concat())
    }
}

/// What an integration signs with: the key and the claims' templates.
#[derive(Clone, Debug)]
pub struct JwtBearerClient {
    pub key: Arc<SigningKey>,
    pub audience: Template,
    pub subject: Template,
    pub lifetime_secs: u64,
}

impl JwtBearerClient {
    /// The assertion for now: `iss` the client id, `sub` and `aud` from the integration's
    /// settings, `exp` a few minutes ahead (RFC 7523 3).
    pub fn assertion(
        &self,
        client_id: &str,
        vars: &Vars<'_>,
        now: i64,
    ) -> Result<String, TokenError> {
        let subject = self.subject.render(vars).map_err(UrlError::from)?;
        let audience = self.audience.render(vars).map_err(UrlError::from)?;
        let lifetime = i64::try_from(self.lifetime_secs).unwrap_or(i64::MAX);
        let claims = json!({
            "iss": client_id,
            "sub": subject,
            "aud": audience,
            "exp": now.saturating_add(lifetime),
        });
        self.key.sign(&claims)
    }
}

/// Asks for a token with a fresh assertion (RFC 7523 2.1). No client secret is sent: the
/// signature authenticates the client (RFC 7523 3.1).
pub async fn request(
    http: &Outbound,
    client: &OAuth2Client,
    jwt: &JwtBearerClient,
    vars: &Vars<'_>,
    now: i64,
) -> Result<OAuth2Tokens, TokenError> {
    let (url, trust) = client.token_url.render_with_trust(vars, &client.hosts)?;
    let assertion = jwt.assertion(&client.client_id, vars, now)?;
    let mut params: Vec<(String, String)> = vec![
        ("grant_type".into(), GRANT_TYPE.into()),
        ("assertion".into(), assertion),
    ];
    for (name, value) in &client.token_params {
        params.push((name.clone(), value.render(vars).map_err(UrlError::from)?));
    }
    let request = http
        .request(reqwest::Method::POST, url, trust)?
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&params);
    let response = http.send(request).await?;
    parse_token_response(&response, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn keys_that_are_not_rsa_pem_are_refused_without_quoting_them() {
        for (input, expected) in [
            ("sekrit", "is not a PEM private key"),
            (
                "-----BEGIN PRIVATE KEY-----\nc2Vrcml0\n-----END PRIVATE KEY-----\n",
                "is not a usable RSA private key",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nc2Vrcml0\n-----END CERTIFICATE-----\n",
                "is not a PEM private key",
            ),
        ] {
            let message = SigningKey::from_pem(input).unwrap_err();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("sekrit") && !message.contains("c2Vrcml0"));
        }
    }

    /// A provider file with `[oauth2]` as given, for the loader's JWT bearer rules.
    fn load(auth_mode: &str, oauth2: &str) -> Result<Catalog, String> {
        let text = [
            "id = \"x\"\ndisplay_name = \"X\"\nauth_mode = \"",
            auth_mode,
            "\"\n[api]\nbase_url = \"https://api.example.com\"\n",
            "[[settings]]\nname = \"user\"\n[[settings]]\nname = \"key\"\nsecret = true\n",
            "[oauth2]\ntoken_url = \"https://login.example.com/token\"\n",
            oauth2,
        ]
        .concat();
        Catalog::from_files([("x.toml", text.as_str())]).map_err(|e| e.to_string())
    }

    #[test]
    fn the_catalog_holds_jwt_bearer_files_to_their_rules() {
        let table = |subject: &str, key: &str, lifetime: u64| {
            [
                "grant = \"jwt_bearer\"\n[oauth2.jwt_bearer]\naudience = \"https://login.example.com\"\n",
                "subject = \"",
                subject,
                "\"\nprivate_key_setting = \"",
                key,
                "\"\nlifetime_secs = ",
                &lifetime.to_string(),
                "\n",
            ]
            .concat()
        };
        let good = table("${settings.user}", "key", 180);
        assert!(load("oauth2_client_credentials", &good).is_ok());
        let cases = [
            ("oauth2", good.clone(), "needs grant = \"jwt_bearer\""),
            (
                "oauth2_client_credentials",
                "grant = \"jwt_bearer\"\n".into(),
                "needs this table",
            ),
            (
                "oauth2_client_credentials",
                table("${settings.user}", "user", 180),
                "must name a secret setting",
            ),
            (
                "oauth2_client_credentials",
                table("${settings.key}", "key", 180),
                "only non-secret settings",
            ),
            (
                "oauth2_client_credentials",
                table("${connection.user}", "key", 180),
                "only non-secret settings",
            ),
            (
                "oauth2_client_credentials",
                table("${settings.user}", "key", 3600),
                "lifetime_secs must be 1 to 300",
            ),
        ];
        for (mode, oauth2, expected) in cases {
            let message = load(mode, &oauth2).unwrap_err();
            assert!(message.contains("oauth2.jwt_bearer"), "{message}");
            assert!(
                message.contains(expected),
                "{message} should say {expected}"
            );
        }
    }
}
