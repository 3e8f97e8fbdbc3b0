//! Request parsing helpers shared by the emulators: query pairs, `Authorization` header
//! schemes, and Basic credentials.
//!
//! These helpers never fail on bad input: they return `None` or an empty list, and each
//! emulator answers with its provider's documented error body. Nothing here logs a credential.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Decodes a raw query string into name/value pairs (percent- and `+`-decoded). Never fails.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    match raw {
        Some(raw) => url::form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect(),
        None => Vec::new(),
    }
}

/// The first value of `name` among `pairs`.
pub(crate) fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The credentials part of `Authorization: <scheme> <credentials>` when the scheme matches
/// `scheme` case-insensitively (RFC 9110 11.1: auth schemes are case-insensitive).
/// `None` when the header is missing, not UTF-8, or uses another scheme.
pub(crate) fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.trim().split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|rest| !rest.is_empty())
}

/// Decodes base64 credentials (standard alphabet, padding required as RFC 7617 says) to text.
pub(crate) fn decode_base64_text(encoded: &str) -> Option<String> {
    let bytes = STANDARD.decode(encoded.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

/// The whole header value of `name` as text, if present and UTF-8.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space and `%XX` a
/// byte. A `%` not followed by two hex digits is kept literally rather than rejected, as
/// lenient servers do. `None` when the result is not UTF-8.
pub(crate) fn form_decode_component(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|pair| std::str::from_utf8(pair).ok())
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_components_decode() {
        assert_eq!(form_decode_component("a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(form_decode_component("100%").as_deref(), Some("100%"));
        assert_eq!(form_decode_component("%zz").as_deref(), Some("%zz"));
        assert_eq!(form_decode_component("%C3%A9").as_deref(), Some("é"));
        assert_eq!(form_decode_component("%FF"), None);
    }

    #[test]
    fn authorization_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bEaReR  abc ".parse().unwrap());
        assert_eq!(authorization(&headers, "Bearer"), Some("abc"));
        assert_eq!(authorization(&headers, "Basic"), None);
        headers.insert(header::AUTHORIZATION, "Bearer".parse().unwrap());
        assert_eq!(authorization(&headers, "Bearer"), None);
    }
}
