//! The endpoint a user gave for a provider without a fixed one
//! ([`BaseUrl::PerKey`](super::provider::BaseUrl::PerKey)).

/// Why an endpoint is refused: a sentence a user can act on, naming at
/// most the host (`400 endpoint_not_allowed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointRefusal {
    /// Not a URL at all.
    #[error("the endpoint is not a URL")]
    NotAUrl,
    /// `http://` (or anything but `https://`) where it is not allowed.
    #[error("the endpoint must use https")]
    NotHttps,
    /// `user:password@` in the URL.
    #[error("the endpoint must not carry a user name or password")]
    Userinfo,
    /// A query or a fragment.
    #[error("the endpoint must not have a query or a fragment")]
    QueryOrFragment,
    /// A port not allowed.
    #[error("port {0} is not allowed for endpoints")]
    Port(u16),
    /// An address (literal or resolved) in a forbidden range.
    #[error("{address} is {reason}")]
    Address {
        /// The address.
        address: std::net::IpAddr,
        /// Which range, e.g. `a link-local address`.
        reason: &'static str,
    },
    /// A name that resolves to an address in a forbidden range. The
    /// address itself is not said: it may come from a private zone.
    #[error("the endpoint's host {host} resolves to {reason}")]
    ResolvesTo {
        /// The host as the user gave it.
        host: String,
        /// Which range, e.g. `a private address`.
        reason: &'static str,
    },
    /// The host's name does not resolve.
    #[error("the endpoint's host {0} does not resolve")]
    Unresolvable(String),
    /// A host outside the operator's list (`ENDPOINT_ALLOWED_HOSTS`).
    #[error("the endpoint's host {0} is not one this service allows")]
    HostNotListed(String),
    /// Longer than [`MAX_ENDPOINT_BYTES`].
    #[error("the endpoint must be at most 2048 bytes")]
    TooLong,
    /// This deployment calls no user-given endpoint.
    #[error("this service calls no user-given endpoints")]
    NotCalled,
}

/// Longest accepted endpoint, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 2048;

/// A user's endpoint as the egress guard accepted it: an absolute `https`
/// URL (`http` to loopback on the local server) without userinfo, query,
/// fragment or trailing `/`. Only the guard and the stores (reading what the
/// guard once accepted) make one; every call to it is guarded again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    /// An endpoint the guard accepted, or a store read back (a test may
    /// make one; nothing is called without the guard looking again).
    pub fn accepted(url: String) -> Endpoint {
        Endpoint(url)
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
