//! Which network addresses Tether's outbound calls may reach. A URL that a provider, an app
//! (an import, an API-managed integration) or an end user gave must not turn Tether into a
//! way into the operator's network: loopback, private, link-local, unique-local, unspecified,
//! CGNAT, multicast and reserved addresses (and the IPv6 forms that embed such an IPv4
//! address) are refused unless they lie in a network the operator lists in
//! `[outbound] allowed_private_networks`.
//!
//! The check is made on the addresses a name resolves to, just before connecting (the
//! resolver of the guarded clients drops every refused address), so a name that resolves to
//! a public address when a URL is checked and to `127.0.0.1` when it is used (DNS rebinding)
//! still cannot reach inside. An IP literal in a URL is never resolved, so it is checked on
//! the URL ([`AddressPolicy::check_url`]) before the request is sent.
//!
//! Addresses the operator wrote in `tether.toml` are the operator's word and are used as
//! written ([`Trust::Operator`]); see `integration::UrlTemplate::trust`.
//!
//! Names are looked up by the policy's [`NameResolver`] (the system's unless an embedding
//! application supplies another; see `name_resolver`), and its answers are held to the policy
//! like any other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::Url;

use crate::name_resolver::{NameResolver, SystemResolver};

/// Whose word an outbound URL is, which decides whether the address policy applies to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Written by the operator in `tether.toml` (or a loopback URL from the token response of
    /// an integration whose `token_url` the operator put on loopback): used as written.
    Operator,
    /// Anything else: held to the address policy when connecting.
    Guarded,
}

/// The networks the operator lets guarded calls reach although they are not public, and the
/// resolver that turns names into addresses to check.
#[derive(Clone, Debug)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
    resolver: Arc<dyn NameResolver>,
}

impl Default for AddressPolicy {
    /// Public addresses only, names looked up by the system.
    fn default() -> Self {
        AddressPolicy::new(Vec::new())
    }
}

/// An address the policy refuses; the message names the address, never a URL's path or query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} is a loopback, private or otherwise non-public address; add it to [outbound] allowed_private_networks to allow it"
)]
pub struct RefusedAddress(pub String);

impl AddressPolicy {
    /// A policy allowing `networks` besides public addresses.
    pub fn new(networks: Vec<IpNet>) -> Self {
        AddressPolicy {
            allowed: networks,
            resolver: Arc::new(SystemResolver),
        }
    }

    /// Parses `allowed_private_networks` entries: CIDR networks (`127.0.0.0/8`, `fd00::/8`)
    /// or single addresses.
    pub fn parse<T: AsRef<str>>(entries: &[T]) -> Result<Self, String> {
        let networks = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("{entry:?} is not a network such as \"10.0.0.0/8\" or an address")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(AddressPolicy::new(networks))
    }

    /// The networks allowed besides public addresses.
    pub fn allowed_networks(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether a guarded call may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if !is_internal(ip) {
            return true;
        }
        let plain = canonical(ip);
        self.allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&plain))
    }

    /// Checks a URL's host when it is an IP literal, which is never resolved; a name is
    /// checked when it is resolved, on every address it resolves to.
    pub fn check_url(&self, url: &Url) -> Result<(), RefusedAddress> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }

    /// Like [`AddressPolicy::check_url`], and `localhost` (and names under it, RFC 6761)
    /// counts as the loopback address it always resolves to: for checks made before any
    /// resolution, where no resolver stands behind.
    pub fn check_url_now(&self, url: &Url) -> Result<(), RefusedAddress> {
        match url.host() {
            Some(url::Host::Domain(name)) if is_localhost(name) => {
                self.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            _ => self.check_url(url),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), RefusedAddress> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(RefusedAddress(ip.to_string()))
        }
    }

    /// The same policy, looking names up with `resolver` instead of the system's resolver
    /// (a service registry, split-horizon DNS, a pinned provider host: see
    /// [`PinnedResolver`](crate::name_resolver::PinnedResolver)). What it answers is still
    /// held to the policy.
    pub fn with_resolver(mut self, resolver: Arc<dyn NameResolver>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Resolves `host` and keeps the addresses the policy permits; fails when none is left
    /// (so nothing is connected to), naming the first refused address.
    pub async fn resolve(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        let found = self.resolver.lookup(host).await?;
        let (kept, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            found.into_iter().partition(|addr| self.permits(addr.ip()));
        match (kept.is_empty(), refused.first()) {
            (true, Some(first)) => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                RefusedAddress(first.ip().to_string()),
            )),
            _ => Ok(kept),
        }
    }
}

/// `localhost` and names under it (RFC 6761 6.3: they resolve to loopback).
fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The IPv4 address an IPv6 address stands for (IPv4-mapped `::ffff:a.b.c.d`), else itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Whether an address is anything but a public unicast address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || a == 0 // "this network", 0.0.0.0/8
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // CGNAT, 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18.0.0/15
        || ip.is_multicast()
        || a >= 240 // reserved, 240.0.0.0/4, and the broadcast address
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        // IPv4-compatible (deprecated), ::/96: 0:0:0:0:0:0:a.b.c.d
        || segments[..6].iter().all(|s| *s == 0)
        // NAT64, 64:ff9b::/96, reaches the IPv4 address it embeds
        || (segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && internal_v4(embedded(segments[6], segments[7])))
        // local-use NAT64, 64:ff9b:1::/48
        || segments[..3] == [0x64, 0xff9b, 1]
        // 6to4, 2002::/16, reaches the IPv4 address it embeds
        || (segments[0] == 0x2002 && internal_v4(embedded(segments[1], segments[2])))
        // discard-only, 100::/64
        || segments[..4] == [0x100, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        let strict = AddressPolicy::default();
        for internal in [
            "127.0.0.1",
            "127.3.4.5",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
        ] {
            let ip: IpAddr = internal.parse().unwrap();
            assert!(!strict.permits(ip), "{internal} permitted");
        }
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(strict.permits(public.parse().unwrap()), "{public} refused");
        }
        let loopback = AddressPolicy::parse(&["127.0.0.0/8", "fd00::5"]).unwrap();
        assert!(loopback.permits("127.0.0.1".parse().unwrap()));
        assert!(loopback.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(loopback.permits("fd00::5".parse().unwrap()));
        assert!(!loopback.permits("fd00::6".parse().unwrap()));
        assert!(!loopback.permits("10.0.0.1".parse().unwrap()));
        assert!(AddressPolicy::parse(&["10.0.0.0/33"]).is_err());
        assert!(AddressPolicy::parse(&["intranet"]).is_err());
    }

    #[test]
    fn literal_hosts_are_checked_on_the_url() {
        let strict = AddressPolicy::default();
        for refused in [
            "https://169.254.169.254/latest",
            "https://10.0.0.1:8443/",
            "https://[fd00::1]/",
            "https://0.0.0.0/",
            "https://[::ffff:7f00:1]/",
        ] {
            let url = Url::parse(refused).unwrap();
            assert!(strict.check_url(&url).is_err(), "{refused} accepted");
        }
        let local = Url::parse("http://localhost:9090/metrics").unwrap();
        assert!(
            strict.check_url(&local).is_ok(),
            "names wait for the resolver"
        );
        assert!(strict.check_url_now(&local).is_err());
        let url = Url::parse("https://crm.example.com/").unwrap();
        assert!(strict.check_url(&url).is_ok());
    }

    #[tokio::test]
    async fn names_that_resolve_inside_are_refused() {
        let strict = AddressPolicy::default();
        let err = strict.resolve("localhost").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        let open = AddressPolicy::parse(&["127.0.0.0/8", "::1"]).unwrap();
        assert!(!open.resolve("localhost").await.unwrap().is_empty());
    }
}
