//! PKCE (RFC 7636) checks: the shape of a `code_challenge` and S256 verification of a
//! `code_verifier`.
//!
//! Only S256 exists here; this module must never accept the `plain` method, which RFC 9700
//! 2.1.1 advises against.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// True when `verifier` has the RFC 7636 4.1 shape: 43 to 128 unreserved characters.
pub(crate) fn verifier_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// True when `challenge` looks like an S256 challenge: base64url of 32 bytes, no padding.
pub(crate) fn challenge_well_formed(challenge: &str) -> bool {
    challenge.len() == 43
        && URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// The S256 challenge of `verifier`: `BASE64URL(SHA256(ASCII(verifier)))` (RFC 7636 4.2).
pub(crate) fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 4.6: the verifier matches the challenge stored with the code.
pub(crate) fn verify_s256(verifier: &str, challenge: &str) -> bool {
    verifier_well_formed(verifier) && s256_challenge(verifier) == challenge
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 7636 Appendix B.
    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_7636_appendix_b_example_verifies() {
        assert_eq!(s256_challenge(RFC_VERIFIER), RFC_CHALLENGE);
        assert!(verify_s256(RFC_VERIFIER, RFC_CHALLENGE));
        assert!(challenge_well_formed(RFC_CHALLENGE));
    }

    #[test]
    fn wrong_or_malformed_verifiers_fail() {
        let other = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
        assert!(!verify_s256(other, RFC_CHALLENGE));
        assert!(!verify_s256("short", &s256_challenge("short")));
        let bad_chars = "dBjftJeZ4CVP+mB92K27uhbUJU1p1r/wW1gFWFOEjXk";
        assert!(!verify_s256(bad_chars, &s256_challenge(bad_chars)));
        // A "plain" challenge (the verifier itself) must not pass as S256.
        assert!(!verify_s256(RFC_VERIFIER, RFC_VERIFIER));
        assert!(!challenge_well_formed("not-a-challenge"));
    }
}
