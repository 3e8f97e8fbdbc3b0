//! PKCE (RFC 7636): a code verifier and its S256 challenge.
//!
//! Written by hand rather than taken from an OAuth crate because it is two lines over `sha2`
//! and `base64`, and the rest of such a crate (its token client) does not fit the providers'
//! quirks; see `oauth2::token`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::PkceVerifier;

/// A code verifier: 32 random bytes, base64url (43 characters, within RFC 7636 4.1's 43..=128
/// unreserved characters).
pub fn new_verifier() -> PkceVerifier {
    PkceVerifier::new(crate::random::token())
}

/// `BASE64URL(SHA256(verifier))`, the S256 challenge of RFC 7636 4.2.
pub fn s256_challenge(verifier: &PkceVerifier) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            s256_challenge(&verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
