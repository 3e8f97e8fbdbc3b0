//! The proxy's outbound client: hyper's pooled client (hyper-util's legacy client) over
//! rustls with ring, HTTP/2 to providers that offer it by ALPN, HTTP/1.1 otherwise.
//!
//! Not reqwest: the proxy already has an `http::Request` and wants an `http::Response` back,
//! and reqwest's per-request work (URL parsing, client and connector clones, its own body and
//! response types) showed up in the profile. Redirects are never followed (hyper has no
//! redirect support at all); a provider that stops answering fails after the per-read
//! timeout, both for the response head and between two parts of a streamed body.
//!
//! Certificates are checked by the platform verifier, as reqwest does for Tether's own calls,
//! with the operator's [`ExtraRoots`] (a private CA) added to the platform's roots.
//!
//! One pool per thread: hyper's client runs each upstream connection in a task of the runtime
//! that opened it, so a pool shared by all threads hands a request made on one thread to a
//! connection driven by another, a cross-thread wake-up each way. With `tether serve`'s
//! runtime per core (`per_core.rs`) a thread's own pool keeps the whole call on that thread;
//! on a multi-thread runtime it costs a few more idle connections and nothing else.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tether_core::outbound::ExtraRoots;
use thread_local::ThreadLocal;
use tokio::sync::OwnedSemaphorePermit;
use tower_http::timeout::TimeoutBody;

use crate::host_limits::HostLimits;

/// A request body: kept in memory (sent again after a 401 refresh), or streamed once.
pub type ProxyBody = Either<Full<Bytes>, axum::body::Body>;

/// The provider's response, its body timing out when the provider stops sending.
pub type ProxyResponse = http::Response<UpstreamBody>;

pin_project_lite::pin_project! {
    /// The provider's response body, holding its host's turn (see `host_limits`) until it
    /// has been read or dropped.
    pub struct UpstreamBody {
        #[pin]
        inner: TimeoutBody<hyper::body::Incoming>,
        turn: Option<OwnedSemaphorePermit>,
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = <TimeoutBody<hyper::body::Incoming> as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            // The whole body is in: the connection is free for the next request.
            this.turn.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct ProxyClient {
    /// Cloned into each thread's client: the TLS configuration is built once.
    connector: Connector,
    clients: ThreadLocal<Client<Connector, ProxyBody>>,
    read_timeout: Duration,
    hosts: HostLimits,
}

/// Why a proxied call produced no response.
#[derive(Debug)]
pub enum ProxyError {
    /// No connection, or no answer within the read timeout.
    Unavailable(String),
    /// A connection, but no readable response.
    Failed(String),
}

impl ProxyClient {
    /// `per_host`: requests in flight to one provider host at once (0: no cap).
    pub fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        per_host: usize,
        roots: &ExtraRoots,
    ) -> Self {
        tether_core::outbound::install_crypto_provider();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let tls = {
            let builder = rustls::ClientConfig::builder();
            // What `with_platform_verifier()` does, plus the extra roots (none by default, and
            // then it is the same verifier). "dangerous" is only rustls' name for the door
            // through which any custom verifier, the platform's included, comes in.
            let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
                roots.certificates().iter().cloned(),
                builder.crypto_provider().clone(),
            )
            .expect("the platform's certificate verifier is available");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        ProxyClient {
            connector: https,
            clients: ThreadLocal::new(),
            read_timeout,
            hosts: HostLimits::new(per_host),
        }
    }

    /// This thread's client, made on first use.
    fn client(&self) -> &Client<Connector, ProxyBody> {
        self.clients.get_or(|| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .build(self.connector.clone())
        })
    }

    /// Sends `request` when its host has a turn free; the turn and the response head must
    /// come within the read timeout.
    pub async fn send(
        &self,
        request: http::Request<ProxyBody>,
    ) -> Result<ProxyResponse, ProxyError> {
        let sent = async {
            let turn = self.hosts.acquire(request.uri()).await;
            (turn, self.client().request(request).await)
        };
        let (turn, response) = tokio::time::timeout(self.read_timeout, sent)
            .await
            .map_err(|_| ProxyError::Unavailable("no answer within the read timeout".into()))?;
        let response = response.map_err(|err| {
            // Only the error's kind and source chain: no URL (the app's query may hold
            // anything) is part of it.
            let message = error_chain(&err);
            if err.is_connect() {
                ProxyError::Unavailable(message)
            } else {
                ProxyError::Failed(message)
            }
        })?;
        Ok(response.map(|body| UpstreamBody {
            inner: TimeoutBody::new(self.read_timeout, body),
            turn,
        }))
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
