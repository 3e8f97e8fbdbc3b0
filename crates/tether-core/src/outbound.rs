//! The outbound HTTP client for calls Tether makes on its own behalf (token endpoints,
//! exchanges, probes, revocation): no redirects followed (a token endpoint that redirects is
//! an error, not a hint; see RFC 9700 4.11 and oauth2-rs's SSRF warning), timeouts on connect
//! and on the whole request, and response bodies read only up to a cap.
//!
//! Certificates are checked against the platform's roots, plus [`ExtraRoots`] when the
//! operator names a private CA; verification itself is never switchable.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

/// Limits for calls to providers.
#[derive(Clone, Debug)]
pub struct OutboundLimits {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Largest response body read from a token endpoint, exchange or probe.
    pub max_response_bytes: usize,
}

impl Default for OutboundLimits {
    fn default() -> Self {
        OutboundLimits {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_response_bytes: 256 * 1024,
        }
    }
}

/// CA certificates trusted for calls to providers in addition to the platform's roots: for a
/// provider (or a test double) whose certificate comes from a private CA. Empty by default.
/// They only add trust anchors: every certificate is still verified, its chain and its name.
#[derive(Clone, Debug, Default)]
pub struct ExtraRoots {
    certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl ExtraRoots {
    /// The `CERTIFICATE` blocks of a PEM text (other blocks are skipped); at least one, each
    /// usable as a trust anchor, so a wrong file stops start-up instead of failing every call.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certificates = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("not a readable PEM file ({err})"))?;
        if certificates.is_empty() {
            return Err("no CERTIFICATE block in it".into());
        }
        let mut check = rustls::RootCertStore::empty();
        for (index, certificate) in certificates.iter().enumerate() {
            check
                .add(certificate.clone())
                .map_err(|err| format!("certificate {} is not a usable CA ({err})", index + 1))?;
        }
        Ok(ExtraRoots { certificates })
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// The certificates, DER-encoded.
    pub fn certificates(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        &self.certificates
    }
}

/// Installs rustls' ring provider as the process default (idempotent). reqwest is built
/// without a provider of its own to keep the dependency tree small.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client for Tether's own calls to providers.
#[derive(Clone, Debug)]
pub struct Outbound {
    client: reqwest::Client,
    limits: OutboundLimits,
}

/// A call to a provider that did not produce a readable response.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("the provider could not be reached")]
    Network(#[source] reqwest::Error),
    #[error("the provider's response exceeded {0} bytes")]
    TooLarge(usize),
}

impl OutboundError {
    fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            OutboundError::Timeout
        } else {
            // The URL may carry rendered form input in a catalog's query template; an error
            // that reaches a log must not.
            OutboundError::Network(err.without_url())
        }
    }
}

/// A provider's response, read up to the cap.
#[derive(Debug)]
pub struct CappedResponse {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl CappedResponse {
    /// The media type without parameters, lowercased (`application/json`).
    pub fn media_type(&self) -> String {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default()
    }
}

impl Outbound {
    pub fn new(limits: OutboundLimits) -> Self {
        Self::with_extra_roots(limits, &ExtraRoots::default())
    }

    /// The client, trusting `roots` beside the platform's (reqwest hands both to the same
    /// platform verifier as the proxy's client).
    pub fn with_extra_roots(limits: OutboundLimits, roots: &ExtraRoots) -> Self {
        install_crypto_provider();
        let extra = roots.certificates().iter().map(|der| {
            reqwest::Certificate::from_der(der).expect("checked by ExtraRoots::from_pem")
        });
        let client = reqwest::Client::builder()
            .tls_certs_merge(extra)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.request_timeout)
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the outbound HTTP client builds with static settings");
        Outbound { client, limits }
    }

    /// A request builder on the shared client.
    pub fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Sends a request and reads the response body up to the cap.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<CappedResponse, OutboundError> {
        let response = request.send().await.map_err(OutboundError::from_reqwest)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_capped(response, self.limits.max_response_bytes).await?;
        Ok(CappedResponse {
            status,
            headers,
            body,
        })
    }
}

/// Reads a body, failing as soon as it grows past `limit` (a declared Content-Length over
/// the limit fails before reading anything).
pub async fn read_capped(
    response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, OutboundError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(OutboundError::TooLarge(limit));
    }
    let mut body = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(OutboundError::from_reqwest)?;
        if body.len() + chunk.len() > limit {
            return Err(OutboundError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn network_errors_do_not_carry_the_url() {
        let outbound = Outbound::new(OutboundLimits::default());
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let url = url::Url::parse("http://127.0.0.1:1/probe?key=typed-secret").unwrap();
        let err = outbound
            .send(outbound.request(reqwest::Method::GET, url))
            .await
            .unwrap_err();
        let shown = format!("{err:?} {err}");
        assert!(matches!(err, OutboundError::Network(_)), "{shown}");
        assert!(!shown.contains("typed-secret"), "{shown}");
    }
}
