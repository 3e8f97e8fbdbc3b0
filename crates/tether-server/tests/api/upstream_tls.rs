//! Providers over TLS: the proxy's client speaks HTTP/2 to a provider that offers `h2` by ALPN
//! (every call on one connection) and HTTP/1.1 to one that offers only `http/1.1`; a private CA
//! is trusted only when the gateway is given it (`GatewayConfig::extra_root_certificates`,
//! `[outbound] extra_ca_file`), by the proxy and by Tether's own calls alike; a certificate
//! from any other CA fails the handshake, so no request reaches that provider.
//!
//! The providers are hyper servers on loopback behind tokio-rustls, with certificates made by
//! rcgen when the test runs. They count the TCP connections they accept and the requests in
//! flight at once (each API answer waits a moment, so calls sent together overlap), and record
//! the HTTP version and `Authorization` of every request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tether_core::outbound::ExtraRoots;
use url::Url;

use tether_test_support::eventually;

use crate::helpers::*;

/// A certificate authority made for one test; its key never leaves memory.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The gateway's view of this CA, read back from its PEM like `extra_ca_file` is.
    fn roots(&self) -> ExtraRoots {
        ExtraRoots::from_pem(self.pem.as_bytes()).unwrap()
    }

    /// A TLS server for `localhost` with a certificate from this CA, offering `alpn`.
    fn server(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

/// One request as the provider saw it.
#[derive(Clone, Debug)]
struct Seen {
    version: http::Version,
    path: String,
    authorization: Option<String>,
}

/// A TLS provider on loopback, stopped when dropped.
struct Upstream {
    base: Url,
    /// TCP connections accepted, handshake or not.
    accepted: Arc<AtomicUsize>,
    /// TLS handshakes that failed (the client refused the certificate).
    handshake_failures: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The most requests it was answering at once.
    in_flight: Arc<InFlight>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    async fn spawn(config: rustls::ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // The certificate names localhost, so the gateway is given that name.
        let base = Url::parse(&format!("https://localhost:{port}/")).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let handshake_failures = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(InFlight::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn({
            let (accepted, handshake_failures, seen, in_flight) = (
                accepted.clone(),
                handshake_failures.clone(),
                seen.clone(),
                in_flight.clone(),
            );
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, handshake_failures, seen, in_flight) = (
                        acceptor.clone(),
                        handshake_failures.clone(),
                        seen.clone(),
                        in_flight.clone(),
                    );
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            handshake_failures.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        let service = service_fn(move |request| {
                            let (seen, in_flight) = (seen.clone(), in_flight.clone());
                            async move {
                                Ok::<_, hyper::Error>(answer(&seen, &in_flight, request).await)
                            }
                        });
                        // The auto builder serves whichever protocol the client speaks: h2
                        // after ALPN chose it, HTTP/1.1 otherwise.
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        });
        Upstream {
            base,
            accepted,
            handshake_failures,
            seen,
            in_flight,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> usize {
        self.in_flight.max.load(Ordering::SeqCst)
    }
}

/// Records the request; answers a token response on `/oauth/token`, else a small JSON body
/// after 50 ms.
async fn answer(
    seen: &Mutex<Vec<Seen>>,
    in_flight: &InFlight,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let path = request.uri().path().to_owned();
    let version = request.version();
    seen.lock().unwrap().push(Seen {
        version,
        path: path.clone(),
        authorization,
    });
    let body = if path == "/oauth/token" {
        json!({"access_token": "tok-refreshed", "token_type": "Bearer", "expires_in": 3600})
    } else {
        let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
        in_flight.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        in_flight.now.fetch_sub(1, Ordering::SeqCst);
        json!({"deals": [{"id": 1}], "version": format!("{version:?}")})
    };
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// An OAuth 2.0 integration whose API (and token endpoint) is `upstream`.
fn integration(upstream: &Upstream) -> Value {
    json!({"provider": "oauth2", "client_id": "c", "client_secret": "s",
           "authorization_url": upstream.base.join("oauth/authorize").unwrap().as_str(),
           "token_url": upstream.base.join("oauth/token").unwrap().as_str(),
           "api_base_url": upstream.base.as_str()})
}

/// A gateway with `integrations`, trusting `roots` beside the platform's.
async fn gateway(integrations: Vec<(String, Value)>, roots: Option<ExtraRoots>) -> TestApp {
    spawn_app_with(AppOptions {
        integrations,
        configure: roots.map(|roots| -> Configure {
            Arc::new(move |c| c.extra_root_certificates = roots.clone())
        }),
        ..AppOptions::default()
    })
    .await
}

async fn proxied_deals(app: &TestApp, id: &str) -> Value {
    let response = app.proxy_get(id, "v1/deals").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

// The tests run on tokio's default current-thread runtime, the gateway included, so the
// proxy's pool per thread is one pool for the whole test and connection counts are its own.

#[tokio::test]
async fn a_provider_offering_h2_is_called_over_http2_on_one_connection() {
    let ca = TestCa::new("Tether test CA");
    let upstream = Upstream::spawn(ca.server(&[b"h2", b"http/1.1"])).await;
    let app = gateway(
        vec![("h2crm".into(), integration(&upstream))],
        Some(ca.roots()),
    )
    .await;
    let id = app.import_token("h2crm", "tok-h2", Some("r")).await;

    let body = proxied_deals(&app, &id).await;
    assert_eq!(body["deals"][0]["id"], 1, "{body}");
    assert_eq!(body["version"], "HTTP/2.0");
    // Once a connection is up, calls at once are multiplexed on it: HTTP/1.1 would need a
    // connection per call in flight.
    let calls = (0..8).map(|_| proxied_deals(&app, &id));
    for body in futures_util::future::join_all(calls).await {
        assert_eq!(body["version"], "HTTP/2.0");
    }
    proxied_deals(&app, &id).await;

    let seen = upstream.seen();
    assert_eq!(seen.len(), 10);
    for request in &seen {
        assert_eq!(request.version, http::Version::HTTP_2, "{request:?}");
        assert_eq!(request.path, "/v1/deals");
        assert_eq!(request.authorization.as_deref(), Some("Bearer tok-h2"));
    }
    assert!(upstream.max_in_flight() > 1, "the calls overlapped");
    assert_eq!(upstream.accepted(), 1, "every call on one connection");
    assert_eq!(upstream.handshake_failures.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_provider_offering_only_http1_is_called_over_http1() {
    let ca = TestCa::new("Tether test CA");
    let upstream = Upstream::spawn(ca.server(&[b"http/1.1"])).await;
    let app = gateway(
        vec![("h1crm".into(), integration(&upstream))],
        Some(ca.roots()),
    )
    .await;
    let id = app.import_token("h1crm", "tok-h1", Some("r")).await;
    for _ in 0..3 {
        let body = proxied_deals(&app, &id).await;
        assert_eq!(body["version"], "HTTP/1.1");
    }
    // One after the other, the kept-alive connection is reused.
    assert_eq!(upstream.accepted(), 1);
    // At once, each call in flight needs a connection of its own.
    let calls = (0..8).map(|_| proxied_deals(&app, &id));
    for body in futures_util::future::join_all(calls).await {
        assert_eq!(body["version"], "HTTP/1.1");
    }
    assert!(upstream.max_in_flight() > 1, "the calls overlapped");
    assert!(upstream.accepted() >= upstream.max_in_flight());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 11);
    for request in &seen {
        assert_eq!(request.version, http::Version::HTTP_11, "{request:?}");
        assert_eq!(request.authorization.as_deref(), Some("Bearer tok-h1"));
    }
}

#[tokio::test]
async fn tethers_own_calls_trust_the_same_extra_roots() {
    // A refresh goes to the token endpoint through Tether's own client (reqwest), then the
    // proxy sends the new token: both clients trust the CA the gateway was given.
    let ca = TestCa::new("Tether test CA");
    let upstream = Upstream::spawn(ca.server(&[b"h2", b"http/1.1"])).await;
    let app = gateway(
        vec![("h2crm".into(), integration(&upstream))],
        Some(ca.roots()),
    )
    .await;
    let id = app.import_token("h2crm", "tok-old", Some("r")).await;
    let credentials = app.credentials_json(&id, true).await;
    assert_eq!(credentials["access_token"], "tok-refreshed");
    proxied_deals(&app, &id).await;
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].path, "/oauth/token");
    // reqwest offers h2 by ALPN as well.
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert_eq!(seen[1].path, "/v1/deals");
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some("Bearer tok-refreshed")
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_a_503_and_no_request_reaches_the_provider() {
    let trusted = TestCa::new("Tether test CA");
    let other = TestCa::new("Someone else's CA");
    let upstream = Upstream::spawn(other.server(&[b"h2", b"http/1.1"])).await;
    let app = gateway(
        vec![("elsewhere".into(), integration(&upstream))],
        Some(trusted.roots()),
    )
    .await;
    let id = app.import_token("elsewhere", "tok-x", Some("r")).await;
    let response = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "provider_unavailable", "{problem}");
    assert!(upstream.seen().is_empty(), "no request got through");
    // It was the certificate: the connection was made, its handshake refused (the server
    // notices the client's alert a moment after the gateway has answered).
    assert!(upstream.accepted() >= 1);
    eventually(LIMIT, "every handshake refused", || async {
        upstream.handshake_failures.load(Ordering::SeqCst) == upstream.accepted()
    })
    .await;
}

#[tokio::test]
async fn without_extra_roots_a_private_ca_is_not_trusted() {
    // The default: only the platform's roots, so the test CA means nothing to the gateway.
    let ca = TestCa::new("Tether test CA");
    let upstream = Upstream::spawn(ca.server(&[b"h2", b"http/1.1"])).await;
    let app = gateway(vec![("h2crm".into(), integration(&upstream))], None).await;
    let id = app.import_token("h2crm", "tok-h2", Some("r")).await;
    let response = app.proxy_get(&id, "v1/deals").await;
    assert_eq!(response.status(), 503);
    assert!(upstream.seen().is_empty());
}

#[test]
fn extra_roots_need_a_usable_certificate() {
    let ca = TestCa::new("Tether test CA");
    let two = format!("{}{}", ca.pem, TestCa::new("Second CA").pem);
    assert_eq!(
        ExtraRoots::from_pem(two.as_bytes())
            .unwrap()
            .certificates()
            .len(),
        2
    );
    assert!(ExtraRoots::from_pem(b"").is_err());
    assert!(ExtraRoots::from_pem(b"just text").is_err());
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(ExtraRoots::from_pem(broken.as_bytes()).is_err());
}
