//! Unguessable values and their hashes: session tokens, `state`, browser bindings, API keys.
//!
//! Every value comes from the operating system's CSPRNG (`rand::rngs::OsRng` via `rng()`), 256
//! bits, base64url without padding. What the store keeps is the SHA-256 of such a value, so a
//! database dump does not hand out live tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh 256-bit random token, base64url (43 characters).
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh random token with a readable prefix, e.g. `tether_sk_...`.
pub fn prefixed_token(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 43);
    out.push_str(prefix);
    out.push_str(&token());
    out
}

/// SHA-256 of a value, lowercase hex: how tokens are stored and looked up.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Compares two byte strings in constant time (for hashes of secrets).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_and_distinct() {
        let a = super::token();
        let b = super::token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(super::prefixed_token("tether_sk_").starts_with("tether_sk_"));
    }
}
