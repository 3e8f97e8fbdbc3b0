//! Shared test helpers: an HTTP client that never follows redirects, PKCE values, and URL
//! joining.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};
use url::Url;

/// A reqwest client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// `base` joined with a relative `path`.
pub fn at(base: &Url, path: &str) -> Url {
    base.join(path).expect("valid path")
}

/// A fixed, well-formed PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = "test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz".to_owned();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Standard base64, for hand-built `Authorization` headers.
pub fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// The query pairs of a `Location` header value.
pub fn location_pairs(response: &reqwest::Response) -> (Url, Vec<(String, String)>) {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .expect("Location header")
        .to_str()
        .expect("ASCII Location");
    let url = Url::parse(location).expect("absolute Location");
    let pairs = url.query_pairs().into_owned().collect();
    (url, pairs)
}

/// The value of `name` in `pairs`.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
