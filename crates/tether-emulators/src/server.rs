//! Binding, serving and stopping one emulator.
//!
//! Every emulator listens on loopback: on `127.0.0.1:0` (an OS-chosen port, so tests run in
//! parallel), or on a port a person chose for a walkthrough, and stops gracefully when its
//! [`Running`] handle is shut down or dropped. This module must never bind a non-loopback
//! address.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

/// Largest request body any emulator accepts; bigger bodies get axum's 413. The providers'
/// real limits are larger, but nothing Tether legitimately sends comes close.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long [`Running::shutdown`] waits for in-flight requests before aborting the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running emulator: where it listens, and a way to stop it. Dropping it stops the server too.
pub struct Running<C> {
    /// The emulator's root, always with a trailing slash, e.g. `http://127.0.0.1:41234/`.
    pub base_url: Url,
    /// The emulator's control handle: counters, fault injection, state changes.
    pub control: C,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<C> Running<C> {
    /// The emulator's root URL (`http://127.0.0.1:PORT/`).
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Stops accepting connections, lets in-flight requests finish (up to a few seconds),
    /// then returns.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            // A client that stopped reading a streamed body would otherwise hold us forever.
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl<C> Drop for Running<C> {
    fn drop(&mut self) {
        // Signal only: the server task drains on its own, and Drop cannot await.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl<C: std::fmt::Debug> std::fmt::Debug for Running<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("base_url", &self.base_url.as_str())
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// Binds `127.0.0.1:0` and returns the listener with its base URL, so the caller can build
/// state that needs to know its own address (the OAuth issuer) before serving.
pub(crate) async fn bind() -> std::io::Result<(TcpListener, Url)> {
    bind_port(0).await
}

/// Like [`bind`], on a chosen loopback port (0 lets the OS choose).
pub(crate) async fn bind_port(port: u16) -> std::io::Result<(TcpListener, Url)> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let addr = listener.local_addr()?;
    let mut base_url = Url::parse("http://127.0.0.1/").map_err(std::io::Error::other)?;
    base_url
        .set_port(Some(addr.port()))
        .map_err(|()| std::io::Error::other("cannot set port on base URL"))?;
    Ok((listener, base_url))
}

/// Serves `router` on `listener` in a background task until the handle stops it.
pub(crate) fn start<C>(
    listener: TcpListener,
    base_url: Url,
    router: Router,
    control: C,
) -> Running<C> {
    let (tx, rx) = oneshot::channel::<()>();
    let app = router.layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // Either an explicit signal or the sender being dropped stops the server.
                let _ = rx.await;
            })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "emulator server stopped with an error");
        }
    });
    Running {
        base_url,
        control,
        shutdown: Some(tx),
        task: Some(task),
    }
}
