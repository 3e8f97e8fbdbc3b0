//! The app's API keys: held in memory as SHA-256 hashes only, checked in constant time. The
//! extractor that handlers take to prove the caller is the app is `http::auth`.

use sha2::{Digest, Sha256};
use tether_core::SecretString;
use tether_core::random::constant_time_eq;

/// Hashes of the keys that may call the API.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    hashes: Vec<[u8; 32]>,
    /// Those of `hashes` that came from the store (the first-run key): they can be revoked
    /// while the server runs (see [`crate::state::key_revocation`]).
    stored: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a SecretString>) -> Self {
        ApiKeys {
            hashes: keys.into_iter().map(|k| hash(k.expose())).collect(),
            stored: Vec::new(),
        }
    }

    /// From hashes stored earlier (hex SHA-256), e.g. the key made on first run.
    pub fn with_hex_hashes<'a>(mut self, hex_hashes: impl IntoIterator<Item = &'a str>) -> Self {
        for h in hex_hashes {
            let mut bytes = [0u8; 32];
            if hex_decode(h, &mut bytes) {
                self.hashes.push(bytes);
                self.stored.push(bytes);
            }
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Checks a presented key against every hash, without an early exit.
    pub fn verify(&self, presented: &str) -> bool {
        let presented = hash(presented);
        self.hashes
            .iter()
            .fold(false, |found, h| constant_time_eq(h, &presented) | found)
    }
}

impl ApiKeys {
    /// The hex SHA-256 of `presented` when it is a key that came from the store (whose
    /// revocation must be checked there); `None` for any other key.
    pub fn stored_hash(&self, presented: &str) -> Option<String> {
        let presented = hash(presented);
        self.stored
            .iter()
            .fold(false, |found, h| constant_time_eq(h, &presented) | found)
            .then(|| hex::encode(presented))
    }

    /// A short fingerprint of the presented key when it is valid: what the console session
    /// remembers instead of the key, so removing the key ends its sessions.
    pub fn fingerprint(&self, presented: &str) -> Option<String> {
        self.verify(presented)
            .then(|| fingerprint_of(&hash(presented)))
    }

    /// The fingerprint of a stored key (hex SHA-256 of the key), as [`ApiKeys::fingerprint`]
    /// gives for the key itself: for ending the sessions of a revoked key.
    pub fn fingerprint_of_hex_hash(hex_hash: &str) -> Option<String> {
        let mut bytes = [0u8; 32];
        hex_decode(hex_hash, &mut bytes).then(|| fingerprint_of(&bytes))
    }

    /// Whether a fingerprint from [`ApiKeys::fingerprint`] is of a key still configured.
    pub fn has_fingerprint(&self, fingerprint: &str) -> bool {
        self.hashes.iter().fold(false, |found, h| {
            constant_time_eq(fingerprint_of(h).as_bytes(), fingerprint.as_bytes()) | found
        })
    }
}

/// The first 16 bytes of SHA-256 over the key's hash, hex: names a key, reveals nothing of it.
fn fingerprint_of(key_hash: &[u8; 32]) -> String {
    let digest = Sha256::digest(key_hash);
    hex::encode(&digest[..16])
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex_decode(text: &str, out: &mut [u8; 32]) -> bool {
    text.len() == 64
        && (0..32).all(|i| match u8::from_str_radix(&text[2 * i..2 * i + 2], 16) {
            Ok(b) => {
                out[i] = b;
                true
            }
            Err(_) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_name_only_configured_keys() {
        let keys = ApiKeys::from_keys([&SecretString::new("k1")]);
        let fingerprint = keys.fingerprint("k1").unwrap();
        assert_eq!(fingerprint.len(), 32);
        assert!(!fingerprint.contains("k1"));
        assert!(keys.has_fingerprint(&fingerprint));
        assert_eq!(keys.fingerprint("k2"), None);
        // The key removed from the configuration: its sessions' fingerprint no longer passes.
        let other = ApiKeys::from_keys([&SecretString::new("k2")]);
        assert!(!other.has_fingerprint(&fingerprint));
    }

    #[test]
    fn verifies_only_known_keys() {
        let keys = ApiKeys::from_keys([&SecretString::new("k1")]);
        assert!(keys.verify("k1"));
        assert!(!keys.verify("k2"));
        let hex = tether_core::random::sha256_hex("k3");
        let keys = keys.with_hex_hashes([hex.as_str()]);
        assert!(keys.verify("k3"));
    }
}
