//! [`Loopback`]: a test's own HTTP service (an upstream that counts, a provider stand-in, the
//! app's webhook endpoint) served on a free port of 127.0.0.1. Tests talk to real sockets, never
//! to mocks in the process, and each such service used to be bound, spawned and addressed by
//! hand; this is the one way, with the URL built by `url::Url`'s setters and the server task
//! stopped when the handle drops, so no test leaves a listener behind.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

/// An axum router served on a free loopback port until this handle drops.
pub struct Loopback {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Loopback {
    /// Binds 127.0.0.1:0 and serves `router` there in a background task.
    pub async fn serve(router: axum::Router) -> Loopback {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let task = tokio::spawn(async move {
            // The server ends only when the task is aborted; an accept error ends the test's
            // service, which the test then sees as refused connections.
            let _ = axum::serve(listener, router).await;
        });
        Loopback { addr, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/` followed by `path` (which may carry a query).
    pub fn url(&self, path: &str) -> Url {
        let mut base = Url::parse("http://127.0.0.1/").expect("a valid base");
        base.set_port(Some(self.addr.port()))
            .expect("an http URL takes a port");
        base.join(path.trim_start_matches('/'))
            .expect("a path joins onto the base")
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_the_router_and_stops_when_dropped() {
        let router = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi" }));
        let server = Loopback::serve(router).await;
        let url = server.url("/hello?x=1");
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.port(), Some(server.port()));
        assert_eq!(url.path(), "/hello");
        assert_eq!(url.query(), Some("x=1"));

        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hi"), "{answer}");

        let addr = server.addr();
        drop(server);
        crate::eventually(
            std::time::Duration::from_secs(10),
            "the dropped server to stop listening",
            || async { tokio::net::TcpStream::connect(addr).await.is_err() },
        )
        .await;
    }
}
