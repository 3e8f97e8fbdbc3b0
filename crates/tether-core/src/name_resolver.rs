//! Where the host names of Tether's guarded outbound calls are looked up. By default the
//! system's resolver ([`SystemResolver`]); an application embedding the gateway may supply its
//! own [`NameResolver`] through [`AddressPolicy::with_resolver`](crate::address_policy::AddressPolicy::with_resolver),
//! for instance to answer from a service registry or a split-horizon DNS, or to pin a
//! provider's host to an address the operator chose ([`PinnedResolver`], as curl's
//! `--resolve` does).
//!
//! Whatever a resolver answers is still held to the address policy before anything is
//! connected to: a resolver decides where a name points, never whether Tether may go there.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// What a lookup returns: the addresses of the name, or why there are none.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Looks up the addresses of a host name. A non-zero port in an answer is connected to when
/// the URL gives no explicit port (the scheme's default gives way to it); otherwise the URL's
/// port is.
pub trait NameResolver: Send + Sync + fmt::Debug {
    /// The addresses `host` resolves to (an empty list, or an error, when none).
    fn lookup<'a>(&'a self, host: &'a str) -> Lookup<'a>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl NameResolver for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, 0)).await?.collect()) })
    }
}

/// Answers some names from a fixed table and asks another resolver for the rest: a provider
/// host pinned to a known address (a private link, an egress gateway, a stand-in server).
/// Names match without regard to ASCII case.
#[derive(Clone, Debug)]
pub struct PinnedResolver {
    pins: Vec<(String, SocketAddr)>,
    fallback: Arc<dyn NameResolver>,
}

impl PinnedResolver {
    /// No pins yet; every name goes to `fallback`.
    pub fn new(fallback: Arc<dyn NameResolver>) -> Self {
        PinnedResolver {
            pins: Vec::new(),
            fallback,
        }
    }

    /// `name` resolves to `addr` (one more address when it is pinned already).
    pub fn pin(mut self, name: &str, addr: SocketAddr) -> Self {
        self.pins.push((name.to_ascii_lowercase(), addr));
        self
    }
}

impl NameResolver for PinnedResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> Lookup<'a> {
        let pinned: Vec<SocketAddr> = self
            .pins
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(host))
            .map(|(_, addr)| *addr)
            .collect();
        if pinned.is_empty() {
            self.fallback.lookup(host)
        } else {
            Box::pin(async move { Ok(pinned) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that knows no name, so a test sees when the fallback is asked.
    #[derive(Debug)]
    struct NoName;

    impl NameResolver for NoName {
        fn lookup<'a>(&'a self, host: &'a str) -> Lookup<'a> {
            let err = io::Error::new(io::ErrorKind::NotFound, format!("no such name {host}"));
            Box::pin(async move { Err(err) })
        }
    }

    #[tokio::test]
    async fn pinned_names_are_answered_and_others_go_to_the_fallback() {
        let a: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:8443".parse().unwrap();
        let resolver = PinnedResolver::new(Arc::new(NoName))
            .pin("Accounts.Example.com", a)
            .pin("accounts.example.com", b);
        assert_eq!(
            resolver.lookup("ACCOUNTS.example.COM").await.unwrap(),
            [a, b]
        );
        let err = resolver.lookup("other.example.com").await.unwrap_err();
        assert!(err.to_string().contains("other.example.com"), "{err}");
    }

    #[tokio::test]
    async fn the_system_resolver_answers_localhost() {
        let found = SystemResolver.lookup("localhost").await.unwrap();
        assert!(
            found.iter().all(|addr| addr.ip().is_loopback()),
            "{found:?}"
        );
        assert!(!found.is_empty());
    }
}
