//! The guard for endpoints a user gives (an OpenAI-compatible gateway, a
//! self-hosted model server): our functions must never be made to call the
//! metadata service, a VPC-internal host or loopback on a user's behalf.
//!
//! Two checks, both needed:
//! - [`check_base_url`], before anything is stored or called: `https` only
//!   (`http` to loopback in the local server's mode), no userinfo, query or
//!   fragment, port 443 unless an operator allows more, and no forbidden IP
//!   literal. The `url` crate parses hosts as browsers do, so the decimal,
//!   hex, octal and shortened spellings of an IPv4 address are that address
//!   here too. reqwest never asks a resolver for a literal, so this is the
//!   only check a literal gets.
//! - [`GuardedResolver`], the DNS resolver of the client that calls such
//!   endpoints: it refuses a name when any address it resolves to is
//!   forbidden, and hands reqwest exactly the addresses it checked, so the
//!   connection goes where the check looked (no second lookup that could
//!   answer differently).
//!
//! [`guarded_client_builder`] puts the resolver into a reqwest client with
//! redirects off and no proxy from the environment (either would send the
//! request somewhere the check never saw).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub use crate::domain::endpoint::EndpointRefusal;

/// What a deployment lets user-given endpoints be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// The local server: `http://` to a loopback host (a local Ollama), and
    /// loopback addresses from the resolver. Never on Lambda.
    pub allow_loopback_http: bool,
    /// Ports besides 443 an operator allows.
    pub extra_ports: Vec<u16>,
    /// Hosts an operator allows (`llm.example.com`, or `*.openai.azure.com`
    /// for any name below it); empty for any host.
    pub allowed_hosts: Vec<String>,
}

impl EndpointPolicy {
    /// Whether `host` (lowercase, as the URL parser leaves it) is on the
    /// operator's list, or there is no list.
    fn lists(&self, host: &str) -> bool {
        self.allowed_hosts.is_empty()
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| match allowed.strip_prefix("*.") {
                    Some(parent) => host.strip_suffix(parent).is_some_and(|rest| rest.ends_with('.')),
                    None => host == allowed,
                })
    }
}

/// Why `ip` must not be called on a user's behalf, or `None` when it may.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded = |high: u16, low: u16| {
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                Ipv4Addr::new(a, b, c, d)
            };
            // IPv4-mapped (::ffff:a.b.c.d): never a real DNS answer; refused
            // whatever it maps to, naming the range when it has one.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4).or(Some("an IPv4-mapped address"));
            }
            // NAT64 (64:ff9b::/96) is how an IPv6-only network reaches public
            // IPv4 hosts: judged by the IPv4 address it carries. 6to4
            // (2002::/16) likewise. The local-use NAT64 prefix
            // (64:ff9b:1::/48) leads into someone's own network: refused.
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return forbidden_v4(embedded(segments[6], segments[7]));
            }
            if segments[0] == 0x2002 {
                return forbidden_v4(embedded(segments[1], segments[2]));
            }
            if segments[..3] == [0x64, 0xff9b, 1] {
                return Some("a local-use NAT64 address");
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip.is_unspecified() || a == 0 => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_private() => "a private address",
        _ if a == 100 && (64..128).contains(&b) => "a carrier-grade NAT address",
        _ if ip.is_link_local() => "a link-local address",
        _ if ip.is_multicast() => "a multicast address",
        _ if ip.is_broadcast() => "the broadcast address",
        _ if ip.is_documentation() => "a documentation address",
        // 240.0.0.0/4, reserved; 192.0.0.0/24, protocol assignments;
        // 198.18.0.0/15, benchmarking.
        _ if a >= 240 || (a, b, ip.octets()[2]) == (192, 0, 0) || (a == 198 && (b & 0xfe) == 18) => {
            "a reserved address"
        }
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        _ if ip.is_unspecified() => "an unspecified address",
        _ if ip.is_loopback() => "a loopback address",
        _ if (first & 0xffc0) == 0xfe80 => "a link-local address",
        _ if (first & 0xfe00) == 0xfc00 => "a unique-local address",
        _ if ip.is_multicast() => "a multicast address",
        // ::a.b.c.d (IPv4-compatible, deprecated) and the rest of ::/96.
        _ if ip.segments()[..6] == [0; 6] => "a reserved address",
        // Teredo (2001::/32) tunnels to an address it hides.
        _ if ip.segments()[..2] == [0x2001, 0] => "a Teredo address",
        _ if ip.segments()[..2] == [0x2001, 0xdb8] => "a documentation address",
        // 100::/64, discard only.
        _ if ip.segments()[..4] == [0x100, 0, 0, 0] => "a reserved address",
        _ => return None,
    })
}

/// Whether `ip` may be called under `policy`.
fn allowed(policy: &EndpointPolicy, ip: IpAddr) -> Result<(), EndpointRefusal> {
    match forbidden_reason(ip) {
        None => Ok(()),
        Some(_) if policy.allow_loopback_http && ip.to_canonical().is_loopback() => Ok(()),
        Some(reason) => Err(EndpointRefusal::Address { address: ip, reason }),
    }
}

/// The URL a user gave, checked: see the module comment. Returns it with
/// any trailing `/` of the path dropped.
pub fn check_base_url(policy: &EndpointPolicy, given: &str) -> Result<Url, EndpointRefusal> {
    if given.len() > crate::domain::endpoint::MAX_ENDPOINT_BYTES {
        return Err(EndpointRefusal::TooLong);
    }
    let url = Url::parse(given.trim()).map_err(|_| EndpointRefusal::NotAUrl)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointRefusal::Userinfo);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(EndpointRefusal::QueryOrFragment);
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(EndpointRefusal::NotAUrl),
    };
    let host = url.host_str().unwrap_or_default();
    if !policy.lists(host.trim_matches(['[', ']'])) {
        return Err(EndpointRefusal::HostNotListed(host.to_owned()));
    }
    let loopback_name =
        url.host_str() == Some("localhost") || literal.is_some_and(|ip| ip.to_canonical().is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_loopback_http && loopback_name => {}
        _ => return Err(EndpointRefusal::NotHttps),
    }
    if let Some(port) = url.port()
        && port != 443
        && !policy.extra_ports.contains(&port)
        && !(policy.allow_loopback_http && loopback_name)
    {
        return Err(EndpointRefusal::Port(port));
    }
    if let Some(ip) = literal {
        allowed(policy, ip)?;
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// Where names are looked up (the system resolver; a map in the tests).
pub trait NameLookup: Send + Sync + 'static {
    /// Every address `host` resolves to.
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system resolver, through tokio.
pub struct SystemLookup;

impl NameLookup for SystemLookup {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            let addresses = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addresses.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed table of names (tests, and anyone who pins hosts).
pub struct StaticLookup(pub HashMap<String, Vec<IpAddr>>);

impl NameLookup for StaticLookup {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        let found = self.0.get(&host).cloned();
        Box::pin(async move { found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, host)) })
    }
}

/// reqwest's resolver for user-given endpoints: see the module comment.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: EndpointPolicy,
    lookup: Arc<dyn NameLookup>,
}

impl GuardedResolver {
    /// A resolver that looks names up with `lookup` and lets through what
    /// `policy` allows.
    pub fn new(policy: EndpointPolicy, lookup: Arc<dyn NameLookup>) -> GuardedResolver {
        GuardedResolver { policy, lookup }
    }

    /// The checked addresses of `host`: all of them, or a refusal when any
    /// one is forbidden (a name answering a public and a private address
    /// is refused whole).
    pub async fn checked(&self, host: &str) -> Result<Vec<IpAddr>, EndpointRefusal> {
        let addresses = self
            .lookup
            .lookup(host.to_owned())
            .await
            .map_err(|_| EndpointRefusal::Unresolvable(host.to_owned()))?;
        if addresses.is_empty() {
            return Err(EndpointRefusal::Unresolvable(host.to_owned()));
        }
        for ip in &addresses {
            allowed(&self.policy, *ip).map_err(|refusal| match refusal {
                EndpointRefusal::Address { reason, .. } => EndpointRefusal::ResolvesTo {
                    host: host.to_owned(),
                    reason,
                },
                other => other,
            })?;
        }
        Ok(addresses)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = resolver.checked(name.as_str()).await?;
            // Port 0: reqwest puts the URL's port (or the scheme's) in.
            let addrs: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A reqwest client builder for user-given endpoints: the guarded resolver,
/// no redirects, no proxy from the environment, https only unless the
/// policy is the local server's. Timeouts are the caller's.
pub fn guarded_client_builder(resolver: GuardedResolver) -> reqwest::ClientBuilder {
    let https_only = !resolver.policy.allow_loopback_http;
    reqwest::Client::builder()
        .dns_resolver(Arc::new(resolver))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(https_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> EndpointPolicy {
        EndpointPolicy::default()
    }

    fn local() -> EndpointPolicy {
        EndpointPolicy {
            allow_loopback_http: true,
            ..EndpointPolicy::default()
        }
    }

    #[test]
    fn an_operators_host_list_admits_only_its_hosts() {
        let listed = EndpointPolicy {
            allowed_hosts: vec!["llm.example.com".into(), "*.openai.azure.com".into()],
            ..strict()
        };
        assert!(check_base_url(&listed, "https://llm.example.com/v1").is_ok());
        assert!(check_base_url(&listed, "https://my-resource.openai.azure.com").is_ok());
        for refused in [
            "https://openai.azure.com",
            "https://evilopenai.azure.com",
            "https://llm.example.com.evil.example/v1",
            "https://other.example.com/v1",
        ] {
            assert_eq!(
                check_base_url(&listed, refused),
                Err(EndpointRefusal::HostNotListed(
                    Url::parse(refused).unwrap().host_str().unwrap().to_owned()
                )),
                "{refused}"
            );
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_forbidden_range_is_refused_at_its_edges() {
        let cases = [
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("127.0.0.1", true),
            ("127.255.255.254", true),
            ("9.255.255.255", false),
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("172.15.255.255", false),
            ("172.16.0.0", true),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("192.168.0.1", true),
            ("192.169.0.1", false),
            ("100.63.255.255", false),
            ("100.64.0.0", true),
            ("100.127.255.255", true),
            ("100.128.0.0", false),
            ("169.254.169.254", true),
            ("169.253.255.255", false),
            ("224.0.0.1", true),
            ("239.255.255.255", true),
            ("255.255.255.255", true),
            ("240.0.0.1", true),
            ("8.8.8.8", false),
            ("::", true),
            ("::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", false),
            ("fc00::1", true),
            ("fdff::1", true),
            ("ff02::1", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::a9fe:a9fe", true),
            // NAT64 and 6to4 reach their IPv4 address: a public one may be called.
            ("64:ff9b::808:808", false),
            ("64:ff9b::a00:1", true),
            ("64:ff9b:1::808:808", true),
            ("2002:808:808::1", false),
            ("2002:c0a8:101::1", true),
            ("2002:7f00:1::1", true),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
            ("2001:db8::1", true),
            ("100::1", true),
            ("192.0.2.1", true),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("::a9fe:a9fe", true),
            ("2001:4860:4860::8888", false),
        ];
        for (text, forbidden) in cases {
            assert_eq!(forbidden_reason(ip(text)).is_some(), forbidden, "{text}");
        }
        assert_eq!(forbidden_reason(ip("169.254.169.254")), Some("a link-local address"));
        assert_eq!(forbidden_reason(ip("100.64.0.1")), Some("a carrier-grade NAT address"));
    }

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let checked = check_base_url(&strict(), "https://gateway.example.com/v1/").unwrap();
        assert_eq!(checked.as_str(), "https://gateway.example.com/v1");
        let ports = EndpointPolicy {
            extra_ports: vec![8443],
            ..strict()
        };
        assert!(check_base_url(&ports, "https://host.example:8443/").is_ok());
        // The local server: http to loopback (a local Ollama), nothing else.
        assert!(check_base_url(&local(), "http://127.0.0.1:11434/v1").is_ok());
        assert!(check_base_url(&local(), "http://localhost:1234/v1").is_ok());
        let loopback = "127.0.0.1 is a loopback address";
        #[rustfmt::skip]
        let refusals = [
            (strict(), "http://gateway.example.com", "the endpoint must use https"),
            (strict(), "ftp://gateway.example.com", "the endpoint must use https"),
            (strict(), "not a url", "the endpoint is not a URL"),
            // Every spelling of an address is that address.
            (strict(), "https://127.0.0.1/", loopback),
            (strict(), "https://2130706433/", loopback),
            (strict(), "https://0x7f.0.0.1/", loopback),
            (strict(), "https://0177.0.0.1/", loopback),
            (strict(), "https://127.1/", loopback),
            (strict(), "https://good@169.254.169.254/", "the endpoint must not carry a user name or password"),
            (strict(), "https://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
            (strict(), "https://[::1]/", "::1 is a loopback address"),
            (strict(), "https://[fe80::1]/", "fe80::1 is a link-local address"),
            (strict(), "https://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a link-local address"),
            (strict(), "https://host.example/?a=1", "the endpoint must not have a query or a fragment"),
            (strict(), "https://host.example:8443/", "port 8443 is not allowed for endpoints"),
            (local(), "http://10.0.0.1/v1", "the endpoint must use https"),
            (local(), "https://10.0.0.1/v1", "10.0.0.1 is a private address"),
        ];
        for (policy, url, why) in refusals {
            assert_eq!(check_base_url(&policy, url).unwrap_err().to_string(), why, "{url}");
        }
    }

    fn lookup(entries: &[(&str, &[&str])]) -> Arc<dyn NameLookup> {
        Arc::new(StaticLookup(
            entries
                .iter()
                .map(|(host, ips)| ((*host).to_owned(), ips.iter().map(|a| ip(a)).collect()))
                .collect(),
        ))
    }

    #[tokio::test]
    async fn a_name_is_refused_when_any_address_it_resolves_to_is_forbidden() {
        let names = || {
            lookup(&[
                ("public.example", &["93.184.215.14"]),
                ("sneaky.example", &["127.0.0.1"]),
                ("mixed.example", &["93.184.215.14", "10.0.0.1"]),
                ("metadata.example", &["169.254.169.254"]),
                ("mapped.example", &["::ffff:169.254.169.254"]),
            ])
        };
        let strict = GuardedResolver::new(strict(), names());
        assert_eq!(strict.checked("public.example").await, Ok(vec![ip("93.184.215.14")]));
        for (host, reason) in [
            ("sneaky.example", "a loopback address"),
            ("mixed.example", "a private address"),
            ("metadata.example", "a link-local address"),
            ("mapped.example", "a link-local address"),
        ] {
            let refusal = strict.checked(host).await.unwrap_err();
            assert_eq!(
                refusal,
                EndpointRefusal::ResolvesTo {
                    host: host.to_owned(),
                    reason
                }
            );
            // The internal address a private zone answered is not told.
            assert_eq!(
                refusal.to_string(),
                format!("the endpoint's host {host} resolves to {reason}")
            );
        }
        assert_eq!(
            strict.checked("nowhere.example").await,
            Err(EndpointRefusal::Unresolvable("nowhere.example".into()))
        );
        // The local server allows loopback, and only loopback.
        let local = GuardedResolver::new(local(), names());
        assert_eq!(local.checked("sneaky.example").await, Ok(vec![ip("127.0.0.1")]));
        assert!(local.checked("mixed.example").await.is_err());
    }

    /// Through reqwest, on loopback only: a made-up name pointing at a
    /// loopback server connects in the local mode and is refused, before any
    /// connection, in the strict one; a redirect is not followed.
    #[tokio::test]
    async fn the_client_connects_only_where_the_check_looked() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await;
                let answer = "HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let names = || lookup(&[("gateway.test", &["127.0.0.1"])]);
        let url = format!("http://gateway.test:{port}/v1/models");

        let strict_client = guarded_client_builder(GuardedResolver::new(strict(), names()))
            .build()
            .unwrap();
        let refused = strict_client.get(&url).send().await.unwrap_err();
        assert!(!refused.is_status(), "{refused:?}");
        let strict_https = guarded_client_builder(GuardedResolver::new(strict(), names()))
            .build()
            .unwrap();
        let refused = strict_https
            .get(format!("https://gateway.test:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(format!("{refused:?}").contains("loopback"), "{refused:?}");
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no connection was made"
        );

        let local_client = guarded_client_builder(GuardedResolver::new(local(), names()))
            .build()
            .unwrap();
        let answer = local_client.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 302, "the redirect is not followed");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
