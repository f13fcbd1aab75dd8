//! Where a webhook may send: absolute http(s) URLs whose host is a public
//! address. A URL is checked when it is saved, so an owner hears at once what
//! is wrong, and again at every delivery — by the resolver the connection
//! itself uses — so a name that resolves to an internal address later (DNS
//! rebinding) is refused then too. `--webhook-allow-private` lifts the
//! address rule (for a receiver on the same network, and for tests). Behind
//! `--webhook-proxy` the proxy resolves the names, so it decides what they
//! reach; addresses written in URLs are still checked here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

use crate::error::{AppError, AppResult, Argument, InputProblem};

/// Longest URL accepted; the column's size.
pub const MAX_URL_CHARS: usize = 2048;
/// How long saving a webhook waits for its host to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The URL's syntax: absolute http(s), a host, no credentials, bounded.
pub fn parse_url(text: &str) -> AppResult<Url> {
    let text = text.trim();
    if text.chars().count() > MAX_URL_CHARS {
        let problem = InputProblem::TooLong {
            limit: MAX_URL_CHARS,
        };
        return Err(AppError::invalid(Argument::Url, problem));
    }
    let not_a_url = || AppError::invalid(Argument::Url, InputProblem::NotAWebhookUrl);
    let url = Url::parse(text).map_err(|_| not_a_url())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(not_a_url());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AppError::invalid(
            Argument::Url,
            InputProblem::CredentialsInUrl,
        ));
    }
    Ok(url)
}

/// When a webhook is saved: the host resolves, and (unless private targets
/// are allowed) to public addresses only. Behind a proxy (`proxied`) a name
/// is left to the proxy, which resolves it at delivery; an address is still
/// checked.
pub async fn check_when_saved(url: &Url, allow_private: bool, proxied: bool) -> AppResult<()> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let addresses: Vec<IpAddr> = match url.host() {
        Some(Host::Ipv4(address)) => vec![IpAddr::V4(address)],
        Some(Host::Ipv6(address)) => vec![IpAddr::V6(address)],
        Some(Host::Domain(_)) if proxied => return Ok(()),
        Some(Host::Domain(domain)) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup = tokio::net::lookup_host((domain, port));
            match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(found)) => found.map(|address| address.ip()).collect(),
                Ok(Err(_)) | Err(_) => Vec::new(),
            }
        }
        None => {
            return Err(AppError::invalid(
                Argument::Url,
                InputProblem::NotAWebhookUrl,
            ));
        }
    };
    if addresses.is_empty() {
        return Err(AppError::invalid(
            Argument::Url,
            InputProblem::Unresolvable { host },
        ));
    }
    if !allow_private && addresses.iter().any(|address| !is_public(*address)) {
        return Err(AppError::invalid(
            Argument::Url,
            InputProblem::PrivateAddress { host },
        ));
    }
    Ok(())
}

/// At delivery, for a URL whose host is an address: the connection does not
/// resolve it, so [`PublicOnlyResolver`] never sees it.
pub fn check_literal_host(url: &Url, allow_private: bool) -> Result<(), BlockedAddress> {
    let address = match url.host() {
        Some(Host::Ipv4(address)) => IpAddr::V4(address),
        Some(Host::Ipv6(address)) => IpAddr::V6(address),
        _ => return Ok(()),
    };
    if allow_private || is_public(address) {
        Ok(())
    } else {
        Err(BlockedAddress { address })
    }
}

/// A delivery refused because its host is, or resolved to, a non-public address.
#[derive(Debug)]
pub struct BlockedAddress {
    pub address: IpAddr,
}

impl std::fmt::Display for BlockedAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "the host resolves to {}, a loopback, private or link-local address; webhooks call only public addresses",
            self.address
        )
    }
}

impl std::error::Error for BlockedAddress {}

/// The resolver of the delivery client: it resolves as the system does and
/// refuses the name when any of its addresses is not public, so the address
/// checked is the address connected to.
pub struct PublicOnlyResolver {
    pub allow_private: bool,
    /// A name resolved without the check: the operator's proxy.
    pub trusted: Option<String>,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private
            || self
                .trusted
                .as_deref()
                .is_some_and(|trusted| trusted.eq_ignore_ascii_case(&host));
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private
                && let Some(blocked) = found.iter().find(|address| !is_public(address.ip()))
            {
                let blocked = BlockedAddress {
                    address: blocked.ip(),
                };
                return Err(Box::new(blocked) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `address` is on the public internet: not loopback, private,
/// link-local, shared (CGNAT), multicast, documentation, benchmarking or
/// reserved space, including IPv4 addresses wrapped in IPv6 and the IPv6
/// ranges that lead to IPv4 space whose address is not checked here
/// (local-use NAT64, IPv4-translated, Teredo) or lead nowhere (discard-only).
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(address) => is_public_v4(address),
        IpAddr::V6(address) => is_public_v6(address),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    let special = address.is_unspecified()
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240; // reserved
    !special
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    if let Some(embedded) = embedded_v4(address) {
        return is_public_v4(embedded);
    }
    let segments = address.segments();
    let [first, second, third, ..] = segments;
    let special = address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (first == 0x2001 && second == 0x0db8) // documentation
        || (first & 0xfff0) == 0x3ff0 // documentation (3fff::/20)
        // Local-use NAT64 (64:ff9b:1::/48): reaches whatever IPv4 network the
        // operator's translator serves, internal ones included.
        || (first == 0x64 && second == 0xff9b && third == 0x0001)
        // IPv4-translated (::ffff:0:0:0/96): SIIT maps it onto IPv4 space.
        || (segments[..4] == [0; 4] && segments[4] == 0xffff && segments[5] == 0)
        || segments[..4] == [0x100, 0, 0, 0] // discard-only (100::/64)
        // Teredo (2001::/32): a tunnel whose far end is an IPv4 address.
        || (first == 0x2001 && second == 0)
        || (first == 0x2001 && second == 0x0002 && third == 0) // benchmarking
        || (first == 0x2001 && (second & 0xfff0) == 0x0020); // ORCHIDv2
    !special
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`)
/// address, which reaches that IPv4 address.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = address.segments();
    let octets = address.octets();
    let tail = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if let Some(mapped) = address.to_ipv4_mapped() {
        return Some(mapped);
    }
    if segments[..6] == [0; 6] && !address.is_loopback() && !address.is_unspecified() {
        return Some(tail);
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        let private = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:0001::",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            "::ffff:0:a00:1",
            "::ffff:0:808:808",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:20::1",
            "3fff::1",
        ];
        for address in private {
            let parsed: IpAddr = address.parse().expect("address");
            assert!(!is_public(parsed), "{address} is not public");
        }
        let public = [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::",
            "64:ff9b::808:808",
            "64:ff9b:2::1",
            "100:0:0:1::1",
            "2001:4860:4860::8888",
        ];
        for address in public {
            let parsed: IpAddr = address.parse().expect("address");
            assert!(is_public(parsed), "{address} is public");
        }
    }

    #[test]
    fn urls_must_be_absolute_http_without_credentials() {
        assert!(parse_url("https://example.com/hooks?x=1").is_ok());
        assert!(parse_url(" http://93.184.215.14:8080/h ").is_ok());
        for refused in [
            "",
            "example.com/hook",
            "ftp://example.com/hook",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user:secret@example.com/hook",
            "https://user@example.com/hook",
        ] {
            assert!(parse_url(refused).is_err(), "{refused}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(parse_url(&long).is_err());
    }

    #[test]
    fn literal_hosts_are_checked_without_resolving() {
        let private = parse_url("http://[::ffff:127.0.0.1]:8080/").expect("url");
        assert!(check_literal_host(&private, false).is_err());
        assert!(check_literal_host(&private, true).is_ok());
        let public = parse_url("http://93.184.215.14/").expect("url");
        assert!(check_literal_host(&public, false).is_ok());
        let named = parse_url("http://localhost/").expect("url");
        assert!(
            check_literal_host(&named, false).is_ok(),
            "names go to the resolver"
        );
    }
}
