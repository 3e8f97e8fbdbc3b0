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
    prefixed_token("")
}

/// A fresh random token with a readable prefix, e.g. `tether_sk_...`.
pub fn prefixed_token(prefix: &str) -> String {
    prefixed_random::<32>(prefix)
}

/// `prefix` and `N` fresh random bytes in base64url, in one string. For values that only
/// tell things apart (request ids: 16 bytes) rather than guard anything, which take
/// [`token`]'s 32.
pub fn prefixed_random<const N: usize>(prefix: &str) -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    let mut out = String::with_capacity(prefix.len() + N.div_ceil(3) * 4);
    out.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
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
        let id = super::prefixed_random::<16>("req_");
        assert_eq!(id.len(), 4 + 22);
        assert!(id.starts_with("req_"));
    }
}
