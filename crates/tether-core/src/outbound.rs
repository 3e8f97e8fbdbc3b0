//! The outbound HTTP client for calls Tether makes on its own behalf (token endpoints,
//! exchanges, probes, revocation): no redirects followed (a token endpoint that redirects is
//! an error, not a hint; see RFC 9700 4.11 and oauth2-rs's SSRF warning), timeouts on connect
//! and on the whole request, and response bodies read only up to a cap.
//!
//! Certificates are checked against the platform's roots, plus [`ExtraRoots`] when the
//! operator names a private CA; verification itself is never switchable.
//!
//! Two clients share those settings: one for the operator's own addresses, one whose resolver
//! holds every connection to the [`AddressPolicy`] (see `address_policy`); a request names
//! its [`Trust`] and goes through the matching one.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

pub use crate::address_policy::{AddressPolicy, RefusedAddress, Trust};
pub use crate::name_resolver::{NameResolver, PinnedResolver, SystemResolver};

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
    /// For the operator's own addresses ([`Trust::Operator`]).
    client: reqwest::Client,
    /// Everything else: names resolve only to addresses the policy permits.
    guarded: reqwest::Client,
    policy: Arc<AddressPolicy>,
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
    /// The address is one the outbound address policy refuses; nothing was sent.
    #[error("the provider's address is not allowed: {0}")]
    Refused(RefusedAddress),
}

impl OutboundError {
    fn from_reqwest(err: reqwest::Error) -> Self {
        if let Some(refused) = refused_address(&err) {
            OutboundError::Refused(refused)
        } else if err.is_timeout() {
            OutboundError::Timeout
        } else {
            // The URL may carry rendered form input in a catalog's query template; an error
            // that reaches a log must not.
            OutboundError::Network(err.without_url())
        }
    }
}

/// The policy's refusal, when the resolver refused every address of the host.
pub fn refused_address(err: &(dyn std::error::Error + 'static)) -> Option<RefusedAddress> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedAddress>() {
            return Some(refused.clone());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(refused) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<RefusedAddress>())
        {
            return Some(refused.clone());
        }
        source = cause.source();
    }
    None
}

/// The guarded client's resolver: the system's, minus the addresses the policy refuses.
#[derive(Clone, Debug)]
struct GuardedResolver(Arc<AddressPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs = policy.resolve(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
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
        Self::with_policy(limits, &ExtraRoots::default(), AddressPolicy::default())
    }

    /// The clients, trusting `roots` beside the platform's (reqwest hands both to the same
    /// platform verifier as the proxy's client); guarded calls held to `policy`.
    pub fn with_policy(limits: OutboundLimits, roots: &ExtraRoots, policy: AddressPolicy) -> Self {
        install_crypto_provider();
        let policy = Arc::new(policy);
        let builder = || {
            let extra = roots.certificates().iter().map(|der| {
                reqwest::Certificate::from_der(der).expect("checked by ExtraRoots::from_pem")
            });
            reqwest::Client::builder()
                .tls_certs_merge(extra)
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(limits.connect_timeout)
                .timeout(limits.request_timeout)
                .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
        };
        let client = builder()
            .build()
            .expect("the outbound HTTP client builds with static settings");
        let guarded = builder()
            .dns_resolver(GuardedResolver(policy.clone()))
            // A proxy from the environment would connect on the guarded call's behalf, to
            // wherever the URL says, past the resolver.
            .no_proxy()
            .build()
            .expect("the outbound HTTP client builds with static settings");
        Outbound {
            client,
            guarded,
            policy,
            limits,
        }
    }

    /// A request builder on the client `trust` calls for. A guarded URL whose host is an IP
    /// literal the policy refuses fails here, before anything is sent.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: url::Url,
        trust: Trust,
    ) -> Result<reqwest::RequestBuilder, OutboundError> {
        match trust {
            Trust::Operator => Ok(self.client.request(method, url)),
            Trust::Guarded => {
                self.policy
                    .check_url(&url)
                    .map_err(OutboundError::Refused)?;
                Ok(self.guarded.request(method, url))
            }
        }
    }

    /// The address policy guarded calls are held to.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
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
            .send(
                outbound
                    .request(reqwest::Method::GET, url, Trust::Operator)
                    .unwrap(),
            )
            .await
            .unwrap_err();
        let shown = format!("{err:?} {err}");
        assert!(matches!(err, OutboundError::Network(_)), "{shown}");
        assert!(!shown.contains("typed-secret"), "{shown}");
    }

    #[tokio::test]
    async fn guarded_calls_never_connect_to_refused_addresses() {
        let outbound = Outbound::new(OutboundLimits::default());
        // An IP literal fails before a request exists; a name when it resolves.
        let literal = url::Url::parse("http://127.0.0.1:1/token").unwrap();
        let err = outbound
            .request(reqwest::Method::POST, literal.clone(), Trust::Guarded)
            .unwrap_err();
        assert!(matches!(err, OutboundError::Refused(_)), "{err}");
        let name = url::Url::parse("http://localhost:1/token").unwrap();
        let request = outbound
            .request(reqwest::Method::POST, name, Trust::Guarded)
            .unwrap();
        let err = outbound.send(request).await.unwrap_err();
        assert!(matches!(err, OutboundError::Refused(_)), "{err}");
        // The operator's own address is used as written (nothing listens: refused by TCP).
        let request = outbound
            .request(reqwest::Method::POST, literal, Trust::Operator)
            .unwrap();
        let err = outbound.send(request).await.unwrap_err();
        assert!(matches!(err, OutboundError::Network(_)), "{err}");
    }
}
