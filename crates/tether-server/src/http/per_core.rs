//! Serving on one runtime per core: each serving thread has its own listening socket on the
//! same address (`SO_REUSEPORT`, so the kernel spreads new connections over them) and its own
//! current-thread tokio runtime, so an accepted connection, its handler and (with the proxy
//! client's per-thread pools, see `proxy::client`) its upstream connection stay on one thread.
//!
//! Why: on a multi-thread runtime a proxied call hops between threads several times (the
//! socket's readiness wakes one worker, the handler runs on another, the upstream connection's
//! task on a third), and in the profile those wake-ups cost more than the proxy's own work.
//! nginx avoids them with one event loop per worker process; this is the same layout inside
//! one process, sharing the gateway's state (caches, database pool, vault) between threads.
//!
//! The thread that calls [`serve_per_core`] serves the first listener on its own runtime (and
//! keeps running whatever else that runtime runs: the refresher, the webhook worker). The other
//! threads live until [`ServingThreads::finish`], after the background work has stopped: a
//! pooled database or provider connection opened on one of them is driven by that thread's
//! runtime, so they must outlast every task that may still use such a connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;

use crate::config::ServerLimits;
use crate::http::server::{Served, Shared, accept_loop};

/// Pending connections each listening socket holds before the kernel refuses more.
const BACKLOG: i32 = 1024;

/// Binds `count` listening sockets to `address`, sharing its port (`SO_REUSEPORT`). Port 0
/// picks one free port for all of them. An address another process listens on is refused, as
/// a single listener's bind would be: `SO_REUSEPORT` alone would let a second Tether started
/// by the same user on the same port silently take half the connections.
pub fn bind_listeners(address: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if address.port() != 0 {
        // Not sharing: fails with "address in use" when anyone else listens there.
        drop(std::net::TcpListener::bind(address)?);
    }
    let mut listeners = Vec::with_capacity(count.max(1));
    let mut bound = address;
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(BACKLOG)?;
        let listener = std::net::TcpListener::from(socket);
        // The first socket resolved port 0; the others join that port.
        bound = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The serving threads besides the caller's, kept alive (and driving the connections opened
/// on them) until [`ServingThreads::finish`], or until this is dropped.
#[must_use = "the serving threads run until finish() is called"]
pub struct ServingThreads {
    release: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ServingThreads {
    /// Lets the serving threads end, and waits for them.
    pub async fn finish(self) {
        let _ = self.release.send(true);
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        let _ = joined.await;
    }
}

/// Serves `router` (axum's `Router`, or [`crate::Gateway::service`]) on `listeners` until
/// `shutdown` resolves: the first listener on the current runtime, every other one on a
/// thread of its own with a current-thread runtime.
/// Returns once no listener accepts any more and open connections have finished (ten seconds
/// at most); the other threads then wait for [`ServingThreads::finish`].
pub async fn serve_per_core(
    listeners: Vec<std::net::TcpListener>,
    router: impl Served,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<ServingThreads> {
    let shared = Shared::new(limits);
    let (release, released) = watch::channel(false);
    let mut listeners = listeners.into_iter();
    let first = listeners
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no listener to serve"))?;
    let mut threads = Vec::new();
    for (index, listener) in listeners.enumerate() {
        match spawn_serving_thread(index + 1, listener, &router, &shared, &released) {
            Ok(thread) => threads.push(thread),
            Err(err) => {
                // The threads already started stop with the server they belong to.
                shared.drain().await;
                let _ = release.send(true);
                return Err(err);
            }
        }
    }
    let threads = ServingThreads { release, threads };
    let first = match tokio::net::TcpListener::from_std(first) {
        Ok(first) => first,
        Err(err) => {
            shared.drain().await;
            threads.finish().await;
            return Err(err);
        }
    };
    accept_loop(&first, &router, &shared, shutdown).await;
    drop(first);
    shared.drain().await;
    Ok(threads)
}

/// One serving thread: `listener` on a current-thread runtime of its own, until the server
/// stops; then the runtime lives on until `released` turns true.
fn spawn_serving_thread<T: Served>(
    number: usize,
    listener: std::net::TcpListener,
    router: &T,
    shared: &Shared,
    released: &watch::Receiver<bool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (router, shared, mut released) = (router.clone(), shared.clone(), released.clone());
    std::thread::Builder::new()
        .name(format!("tether-serve-{number}"))
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        accept_loop(&listener, &router, &shared, shared.stopped()).await;
                    }
                    Err(err) => tracing::error!(error = %err, "a serving thread has no listener"),
                }
                // Its connections go on being served here until the server drains them,
                // and its runtime drives what was opened on it until the caller is done.
                let _ = released.wait_for(|released| *released).await;
            });
        })
}
