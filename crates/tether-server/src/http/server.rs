//! Serving a router on a TCP listener with the limits a public edge needs: a deadline for a
//! request's headers, a deadline for the whole request, idle connections closed, and a cap on
//! open connections. `axum::serve` runs hyper without a timer, so none of these exist there and
//! a client that trickles one byte every few seconds holds its socket forever.
//!
//! hyper does the HTTP (HTTP/1.1 and HTTP/2, with its own header-read timeout once it has a
//! timer); this module only owns what hyper leaves to the server: the accept loop, the
//! connection cap (a semaphore, so a full server stops accepting instead of failing sockets
//! it cannot serve), the idle watchdog, the per-request deadline, and graceful shutdown.
//! The peer address reaches handlers as axum's `ConnectInfo<SocketAddr>`.
//!
//! What it serves is any [`Served`] service: axum's `Router`, or the gateway's router with the
//! proxy route answered ahead of it (`fast_path`), which is what `tether serve` runs.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::ServerLimits;
use crate::http::error::ApiError;

/// How long open connections may take to finish after shutdown was asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server can serve: a cloneable service from request to response that never fails,
/// such as axum's `Router` or [`crate::GatewayService`] (from [`crate::Gateway::service`]).
pub trait Served:
    tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Served for T where
    T: tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `router` (axum's `Router`, or [`crate::Gateway::service`]) on `listener` until
/// `shutdown` resolves, then stops accepting and lets open connections finish (for at most
/// ten seconds).
pub async fn serve(
    listener: TcpListener,
    router: impl Served,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let shared = Shared::new(limits);
    accept_loop(&listener, &router, &shared, shutdown).await;
    drop(listener);
    shared.drain().await;
    Ok(())
}

/// What every accept loop of one server shares, on however many threads it runs.
#[derive(Clone)]
pub(crate) struct Shared {
    limits: Arc<ServerLimits>,
    /// One permit per open connection, for all the server's listeners together.
    permits: Arc<Semaphore>,
    /// Turns true when the server stops: open connections then finish and close.
    stop_tx: Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn new(limits: ServerLimits) -> Self {
        let (stop_tx, stop_rx) = watch::channel(false);
        Shared {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits: Arc::new(limits),
            stop_tx: Arc::new(stop_tx),
            stop_rx,
        }
    }

    /// Resolves once the server has been told to stop.
    pub(crate) async fn stopped(&self) {
        let mut stop = self.stop_rx.clone();
        let _ = stop.wait_for(|stopped| *stopped).await;
    }

    /// Tells every connection to finish, then waits until all have (ten seconds at most).
    pub(crate) async fn drain(&self) {
        let _ = self.stop_tx.send(true);
        // Every permit back means every connection has ended.
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(DRAIN_TIMEOUT, self.permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("some connections were still open at shutdown; closing them");
        }
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, serving each in a task of the
/// current runtime (so, on a current-thread runtime, on this thread).
pub(crate) async fn accept_loop<T: Served>(
    listener: &TcpListener,
    router: &T,
    shared: &Shared,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        // Waiting for a permit before accepting: at the cap, new sockets wait in the kernel's
        // backlog rather than being accepted and starved.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = shared.permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = serve_connection(
            stream,
            peer,
            router.clone(),
            shared.limits.clone(),
            shared.stop_rx.clone(),
        );
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
}

/// One connection: HTTP/1.1 or HTTP/2 as the client speaks, watched for idleness.
async fn serve_connection<T: Served>(
    stream: TcpStream,
    peer: SocketAddr,
    router: T,
    limits: Arc<ServerLimits>,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let request_timeout = limits.request_timeout;
    let in_flight = activity.clone();
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        let guard = in_flight.begin_request();
        async move {
            let response = respond(router, request.map(Body::new), request_timeout).await;
            drop(guard);
            Ok::<_, Infallible>(response)
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);

    let idle_timeout = limits.idle_timeout;
    let mut closing = false;
    loop {
        // Past the deadline with a request still being answered: look again shortly.
        let idle_deadline = (activity.last() + idle_timeout)
            .max(Instant::now() + idle_timeout.min(Duration::from_secs(1)));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(idle_deadline), if !closing => {
                if activity.is_idle(idle_timeout) {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Runs the router under the request deadline: a handler (or a client sending its body) that
/// takes longer gets a 408 problem and the work is dropped.
async fn respond<T: Served>(
    router: T,
    request: Request<Body>,
    timeout: Duration,
) -> Response<Body> {
    match tokio::time::timeout(timeout, router.oneshot(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            // The router's request-id middleware was dropped with the request: give this
            // answer an id too, so every response carries one.
            let mut response = ApiError::RequestTimeout.into_response();
            let id = crate::http::request_id::generate();
            if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
                response
                    .headers_mut()
                    .insert(crate::http::request_id::HEADER, value);
            }
            tracing::info!(request_id = %id, "request timed out");
            response
        }
    }
}

/// When bytes last moved on a connection, and how many requests are being answered.
#[derive(Clone)]
struct Activity {
    inner: Arc<ActivityInner>,
}

struct ActivityInner {
    origin: Instant,
    /// Milliseconds since `origin` of the last read or write that moved bytes.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            inner: Arc::new(ActivityInner {
                origin: Instant::now(),
                last_ms: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.inner.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.inner.origin + Duration::from_millis(self.inner.last_ms.load(Ordering::Relaxed))
    }

    /// Idle: no request being answered and no byte moved for `timeout`. A response that
    /// streams keeps the connection busy through its writes.
    fn is_idle(&self, timeout: Duration) -> bool {
        self.inner.in_flight.load(Ordering::Relaxed) == 0 && self.last().elapsed() >= timeout
    }

    fn begin_request(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Counts a request as in flight until dropped (also when its future is cancelled).
struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that records when bytes move.
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
