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
//! Two pools: one for the operator's own addresses, one whose resolver holds every
//! connection to the outbound address policy (`tether_core::address_policy`); a guarded URL
//! with an IP literal the policy refuses fails before anything is sent. A response body must
//! also be complete within the total deadline (`[proxy] total_timeout`), so a provider that
//! trickles a byte at a time cannot hold a request for ever.
//!
//! One pool per thread: hyper's client runs each upstream connection in a task of the runtime
//! that opened it, so a pool shared by all threads hands a request made on one thread to a
//! connection driven by another, a cross-thread wake-up each way. With `tether serve`'s
//! runtime per core (`per_core.rs`) a thread's own pool keeps the whole call on that thread;
//! on a multi-thread runtime it costs a few more idle connections and nothing else.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tether_core::outbound::{AddressPolicy, ExtraRoots, Trust};
use thread_local::ThreadLocal;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::proxy::host_limits::HostLimits;

/// A request body: kept in memory (sent again after a 401 refresh), or streamed once.
pub type ProxyBody = Either<Full<Bytes>, axum::body::Body>;

/// The provider's response, its body timing out when the provider stops sending.
pub type ProxyResponse = http::Response<UpstreamBody>;

pin_project_lite::pin_project! {
    /// The provider's response body, holding its host's turn (see `host_limits`) until it
    /// has been read or dropped, and failing when the provider sends nothing for the read
    /// timeout or once the total deadline has passed.
    pub struct UpstreamBody {
        #[pin]
        inner: hyper::body::Incoming,
        turn: Option<OwnedSemaphorePermit>,
        deadline: Deadline,
    }
}

/// The provider did not finish its response body within the total deadline.
#[derive(Debug, thiserror::Error)]
#[error("the provider's response did not complete within the total deadline")]
pub struct TotalDeadline;

/// The provider sent no part of its response body within the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the provider sent nothing within the read timeout")]
pub struct ReadTimeout;

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        this.deadline.waiting();
        if let Poll::Ready(expired) = this.deadline.poll_expired(cx) {
            // The connection goes with the body (hyper closes it when the body drops), and
            // the turn with it.
            this.turn.take();
            return Poll::Ready(Some(Err(match expired {
                Expired::Total => Box::new(TotalDeadline),
                Expired::Read => Box::new(ReadTimeout),
            })));
        }
        let polled = this.inner.poll_frame(cx).map_err(Into::into);
        match &polled {
            // The whole body is in: the connection is free for the next request.
            Poll::Ready(None) => drop(this.turn.take()),
            Poll::Ready(Some(_)) => this.deadline.progressed(),
            Poll::Pending => {}
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

/// `at + after`, or thirty years on when that does not fit (as `tokio::time::sleep` does
/// for a duration too long): an embedder's `Duration::MAX` means no limit, not a panic.
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .unwrap_or_else(|| at + Duration::from_secs(86400 * 365 * 30))
}

/// Which limit a call ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expired {
    Total,
    Read,
}

/// A call's read timeout and total deadline on one timer, from sending the request to the
/// body's last byte. Before, each call armed four (the head's timeout, the total deadline and
/// a fresh read timeout for every poll of the body, its end included), and each is a
/// registration in and a removal from the runtime's timer wheel. Here the timer is armed for
/// the earlier of the two limits; progress only moves a field, and when the timer fires
/// early (because of progress since) it is re-armed for what is due then.
struct Deadline {
    sleep: Pin<Box<Sleep>>,
    total: Instant,
    read_timeout: Duration,
    /// The read timeout runs from here: the call's start, then the first poll after each
    /// part of the body (as `tower_http`'s `TimeoutBody` did: while the app is slow to take
    /// the body, the provider is not waited for).
    since: Instant,
    /// Polled since the last part arrived; `since` is then already set.
    polled: bool,
}

impl Deadline {
    fn new(started: Instant, read_timeout: Duration, total_timeout: Duration) -> Self {
        let total = later(started, total_timeout);
        let due = total.min(later(started, read_timeout));
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(due)),
            total,
            read_timeout,
            since: started,
            polled: true,
        }
    }

    /// When the call fails, and why, if nothing else happens.
    fn due(&self) -> (Instant, Expired) {
        let read = later(self.since, self.read_timeout);
        if self.total <= read {
            (self.total, Expired::Total)
        } else {
            (read, Expired::Read)
        }
    }

    /// The body is being polled for its next part.
    fn waiting(&mut self) {
        if !self.polled {
            self.polled = true;
            self.since = Instant::now();
        }
    }

    /// A part of the body arrived.
    fn progressed(&mut self) {
        self.polled = false;
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Expired> {
        loop {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            let (due, why) = self.due();
            if self.sleep.deadline() >= due {
                return Poll::Ready(why);
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

/// The guarded pool's resolver: the system's, minus the addresses the policy refuses.
#[derive(Clone)]
pub struct GuardedNames(Arc<AddressPolicy>);

impl tower::Service<Name> for GuardedNames {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.0.clone();
        Box::pin(async move { Ok(policy.resolve(name.as_str()).await?.into_iter()) })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type GuardedConnector = hyper_rustls::HttpsConnector<HttpConnector<GuardedNames>>;

pub struct ProxyClient {
    /// Cloned into each thread's client: the TLS configuration is built once.
    connector: Connector,
    guarded_connector: GuardedConnector,
    clients: ThreadLocal<Client<Connector, ProxyBody>>,
    guarded_clients: ThreadLocal<Client<GuardedConnector, ProxyBody>>,
    policy: Arc<AddressPolicy>,
    read_timeout: Duration,
    total_timeout: Duration,
    hosts: HostLimits,
}

/// The proxy client's settings.
pub struct ProxyClientConfig<'a> {
    pub connect_timeout: Duration,
    /// For the response head and between two parts of its body.
    pub read_timeout: Duration,
    /// For the whole response, head and body.
    pub total_timeout: Duration,
    /// Requests in flight to one provider host at once (0: no cap).
    pub per_host: usize,
    pub roots: &'a ExtraRoots,
    pub policy: AddressPolicy,
}

/// Why a proxied call produced no response.
#[derive(Debug)]
pub enum ProxyError {
    /// No connection, or no answer within the read timeout.
    Unavailable(String),
    /// A connection, but no readable response.
    Failed(String),
    /// The provider's address is one the outbound address policy refuses; nothing was sent.
    Refused(String),
    /// No answer's head within the total deadline (when it is shorter than the read timeout).
    TotalDeadline,
}

impl ProxyClient {
    pub fn new(config: ProxyClientConfig<'_>) -> Self {
        tether_core::outbound::install_crypto_provider();
        let ProxyClientConfig {
            connect_timeout,
            read_timeout,
            total_timeout,
            per_host,
            roots,
            policy,
        } = config;
        let policy = Arc::new(policy);
        fn tcp<R>(mut http: HttpConnector<R>, connect_timeout: Duration) -> HttpConnector<R> {
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(connect_timeout));
            http
        }
        let http = tcp(HttpConnector::new(), connect_timeout);
        let guarded_http = tcp(
            HttpConnector::new_with_resolver(GuardedNames(policy.clone())),
            connect_timeout,
        );
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
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let guarded_https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(guarded_http);
        ProxyClient {
            connector: https,
            guarded_connector: guarded_https,
            clients: ThreadLocal::new(),
            guarded_clients: ThreadLocal::new(),
            policy,
            read_timeout,
            total_timeout,
            hosts: HostLimits::new(per_host),
        }
    }

    /// A pooled client on `connector`, as every thread makes on first use.
    fn pooled<C>(connector: &C) -> Client<C, ProxyBody>
    where
        C: hyper_util::client::legacy::connect::Connect + Clone,
    {
        Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector.clone())
    }

    /// Sends `request` when its host has a turn free; the turn and the response head must
    /// come within the read timeout, the whole response within the total deadline. A guarded
    /// request goes through the pool whose resolver applies the address policy.
    pub async fn send(
        &self,
        request: http::Request<ProxyBody>,
        trust: Trust,
    ) -> Result<ProxyResponse, ProxyError> {
        let started = Instant::now();
        if trust == Trust::Guarded
            && let Some(refused) = self.refused_literal(request.uri())
        {
            return Err(ProxyError::Refused(refused));
        }
        let mut deadline = Deadline::new(started, self.read_timeout, self.total_timeout);
        let sent = async {
            let turn = self.hosts.acquire(request.uri()).await;
            let response = match trust {
                Trust::Operator => {
                    let client = self.clients.get_or(|| Self::pooled(&self.connector));
                    client.request(request).await
                }
                Trust::Guarded => {
                    let client = self
                        .guarded_clients
                        .get_or(|| Self::pooled(&self.guarded_connector));
                    client.request(request).await
                }
            };
            (turn, response)
        };
        let mut sent = std::pin::pin!(sent);
        // The call first, then its deadline, as `tokio::time::timeout` polls them.
        let (turn, response) = std::future::poll_fn(|cx| {
            if let Poll::Ready(sent) = sent.as_mut().poll(cx) {
                return Poll::Ready(Ok(sent));
            }
            deadline.poll_expired(cx).map(Err)
        })
        .await
        .map_err(|expired| match expired {
            Expired::Total => ProxyError::TotalDeadline,
            Expired::Read => ProxyError::Unavailable("no answer within the read timeout".into()),
        })?;
        let response = response.map_err(|err| {
            // Only the error's kind and source chain: no URL (the app's query may hold
            // anything) is part of it.
            if let Some(refused) = tether_core::outbound::refused_address(&err) {
                return ProxyError::Refused(refused.to_string());
            }
            let message = error_chain(&err);
            if err.is_connect() {
                ProxyError::Unavailable(message)
            } else {
                ProxyError::Failed(message)
            }
        })?;
        // The read timeout of the body runs from its first poll.
        deadline.progressed();
        Ok(response.map(|body| UpstreamBody {
            inner: body,
            turn,
            deadline,
        }))
    }

    /// The policy's refusal of a URI whose host is an IP literal; names are checked by the
    /// guarded pool's resolver. The URI's scheme and host come from a `url::Url` (the
    /// provider's base URL), so any IPv4 spelling (`2130706433`, `0x7f.1`) is already in
    /// dotted form here.
    fn refused_literal(&self, uri: &http::Uri) -> Option<String> {
        let host = uri.host()?;
        let ip: std::net::IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        (!self.policy.permits(ip))
            .then(|| tether_core::outbound::RefusedAddress(ip.to_string()).to_string())
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
