//! The JWT bearer grant (RFC 7523 2.1, 3) as Salesforce's server-to-server flow runs it: the
//! client posts `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and an `assertion`,
//! a compact JWS signed RS256 with the key whose certificate was uploaded to the connected
//! app; no client secret. The assertion is checked for real: the signature with the public
//! key, then `iss` (the consumer key), `sub` (the user), `aud` (the login host) and `exp`
//! (in the future, and no further ahead than the profile allows: Salesforce says 3 minutes).
//!
//! Every refusal is `invalid_grant` with a description naming the claim, never its value.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::Value;

use super::JwtBearerProfile;

/// The `grant_type` of RFC 7523 2.1.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Checks an assertion against the profile at `now` (Unix seconds); the error is an RFC 6749
/// error description.
pub(crate) fn verify(
    profile: &JwtBearerProfile,
    assertion: &str,
    now: i64,
) -> Result<(), &'static str> {
    let mut parts = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("The assertion is not a compact JWS");
    };
    let header = decode_object(header).ok_or("The assertion header is malformed")?;
    // RFC 8725 3.1: the algorithm is the one agreed, never what the token says it is.
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("The assertion must be signed with RS256");
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "The assertion signature is malformed")?;
    // What was signed: everything before the last dot (RFC 7515 5.2).
    let signing_input = assertion
        .rsplit_once('.')
        .map(|(input, _)| input)
        .unwrap_or_default();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &profile.public_key)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| "The assertion signature does not verify")?;
    let claims = decode_object(claims).ok_or("The assertion claims are malformed")?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(profile.issuer.as_str()) {
        return Err("The assertion issuer is not a known client");
    }
    if text("sub") != Some(profile.subject.as_str()) {
        return Err("The assertion subject is not an authorized user");
    }
    if text("aud") != Some(profile.audience.as_str()) {
        return Err("The assertion audience is not this server");
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("The assertion has no expiry")?;
    if exp <= now {
        return Err("The assertion has expired");
    }
    if exp > now.saturating_add(profile.max_lifetime_secs) {
        return Err("The assertion expires too far ahead");
    }
    Ok(())
}

fn decode_object(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}
