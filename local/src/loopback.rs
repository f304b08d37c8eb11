//! The local server is for this machine only. It listens on 127.0.0.1, but a
//! web page elsewhere can still reach it through the browser: by DNS
//! rebinding (a name of the attacker's that resolves to 127.0.0.1, so the
//! request carries the attacker's `Host`) or with a cross-site WebSocket
//! (which browsers open from any page, carrying the page's `Origin`). So
//! only loopback names are answered, and socket upgrades from pages of other
//! sites are refused.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::Request;
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::Response;
use mailmind::handlers::protocol::ApiError;

use crate::gateway::lambda_to_axum;

/// Whether `authority` (a `Host` header, or an origin's host and port) names
/// this machine: `localhost`, a 127.0.0.0/8 address or `[::1]`, any port.
pub fn is_loopback_authority(authority: &str) -> bool {
    let name = match authority.strip_prefix('[') {
        // [::1] or [::1]:3000
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || is_port(port) => ip,
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => authority,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(text: &str) -> bool {
    text.strip_prefix(':').unwrap_or(text).parse::<u16>().is_ok()
}

/// Whether a WebSocket upgrade's `Origin` is a page of this machine (or the
/// client is no browser and sent none).
pub fn is_allowed_origin(origin: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    !authority.contains('/') && is_loopback_authority(authority)
}

/// Refuses, with the contract's error shape, every request whose `Host` is
/// not a loopback name.
pub async fn loopback_only(request: Request<Body>, next: Next) -> Response {
    let host = request.headers().get(HOST).and_then(|v| v.to_str().ok());
    if host.is_some_and(is_loopback_authority) {
        next.run(request).await
    } else {
        tracing::warn!("refused a request for a name that is not this machine's");
        lambda_to_axum(ApiError::forbidden_host().into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_pass() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST",
            "[::1]:3000",
            "[::1]",
            "127.1.2.3:80",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:3000",
            "localhost.evil.example",
            "10.0.0.1:3000",
            "[::2]:1",
            "127.0.0.1:x",
            "",
            "[::1]x",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }

    #[test]
    fn only_pages_of_this_machine_may_open_sockets() {
        assert!(is_allowed_origin(None));
        assert!(is_allowed_origin(Some("http://127.0.0.1:3000")));
        assert!(is_allowed_origin(Some("http://localhost:5173")));
        for bad in [
            "https://evil.example",
            "null",
            "http://127.0.0.1.evil.example",
            "file://",
            "http://localhost:3000/x",
        ] {
            assert!(!is_allowed_origin(Some(bad)), "{bad}");
        }
    }
}
