//! The egress guard as the provider client applies it on AWS (strict: https,
//! port 443, no internal address), at the seam where an address is chosen:
//! names resolve through a fixed table, so nothing here opens a connection
//! to any address but loopback, and the refused ones are never dialled.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use mailmind::adapters::egress::{NameLookup, StaticLookup};
use mailmind::adapters::providers::{
    ENDPOINT_ALLOWED_HOSTS, ENDPOINT_ALLOWED_PORTS, HttpProviderClient, PlainHttp, ProviderClientConfig,
};
use mailmind::domain::endpoint::{Endpoint, EndpointRefusal};
use mailmind::domain::{ApiKey, CheckOutcome, ErrorReason, provider};
use mailmind::ports::ProviderClient;

fn names(entries: &[(&str, &[&str])]) -> Arc<dyn NameLookup> {
    let table: HashMap<String, Vec<IpAddr>> = entries
        .iter()
        .map(|(host, ips)| ((*host).to_owned(), ips.iter().map(|ip| ip.parse().unwrap()).collect()))
        .collect();
    Arc::new(StaticLookup(table))
}

/// The client a Lambda function builds from its environment (`vars`), with
/// names looked up in `table`.
fn strict_client(vars: &[(&str, &str)], table: Arc<dyn NameLookup>) -> HttpProviderClient {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let config = ProviderClientConfig::from_lookup(PlainHttp::Refused, |name| vars.get(name).cloned()).unwrap();
    HttpProviderClient::with_lookup(config, table)
}

fn table() -> Arc<dyn NameLookup> {
    names(&[
        ("api.gateway.example", &["93.184.215.14"]),
        ("my-resource.openai.azure.com", &["20.62.58.12"]),
        ("localhost.gateway.example", &["127.0.0.1"]),
        ("metadata.gateway.example", &["169.254.169.254"]),
        ("internal.gateway.example", &["10.1.2.3"]),
        ("mixed.gateway.example", &["93.184.215.14", "10.1.2.3"]),
        ("v6.gateway.example", &["fd12:3456::1"]),
        ("nat64.gateway.example", &["64:ff9b::5db8:d70e"]),
    ])
}

#[tokio::test]
async fn names_are_admitted_only_when_every_address_they_resolve_to_may_be_called() {
    let client = strict_client(&[], table());
    // Admitting resolves the name; it never connects.
    for url in [
        "https://api.gateway.example/v1",
        "https://my-resource.openai.azure.com",
        "https://nat64.gateway.example/v1",
    ] {
        let endpoint = client.admit_endpoint(url).await.unwrap();
        assert_eq!(endpoint.as_str(), url);
    }
    for (url, refusal) in [
        ("https://localhost.gateway.example/v1", "a loopback address"),
        ("https://metadata.gateway.example/", "a link-local address"),
        ("https://internal.gateway.example/v1", "a private address"),
        ("https://mixed.gateway.example/v1", "a private address"),
        ("https://v6.gateway.example/v1", "a unique-local address"),
    ] {
        let host = url.split('/').nth(2).unwrap().to_owned();
        assert_eq!(
            client.admit_endpoint(url).await,
            Err(EndpointRefusal::ResolvesTo {
                host: host.clone(),
                reason: refusal
            }),
            "{url}"
        );
        // The refusal names the host and the range, never the address.
        let text = client.admit_endpoint(url).await.unwrap_err().to_string();
        assert!(!text.contains("10.1.2.3") && !text.contains("169.254"), "{text}");
    }
    assert_eq!(
        client.admit_endpoint("https://nowhere.gateway.example/v1").await,
        Err(EndpointRefusal::Unresolvable("nowhere.gateway.example".into()))
    );
    // Plain http and loopback stay refused on AWS, even for the tests' own fakes.
    assert_eq!(
        client.admit_endpoint("http://127.0.0.1:11434/v1").await,
        Err(EndpointRefusal::NotHttps)
    );
    assert!(matches!(
        client.admit_endpoint("https://127.0.0.1/v1").await,
        Err(EndpointRefusal::Address { .. })
    ));
}

#[tokio::test]
async fn the_operators_settings_widen_ports_and_narrow_hosts() {
    let client = strict_client(
        &[
            (ENDPOINT_ALLOWED_PORTS, "8443, 9443"),
            (ENDPOINT_ALLOWED_HOSTS, "*.openai.azure.com"),
        ],
        table(),
    );
    assert!(
        client
            .admit_endpoint("https://my-resource.openai.azure.com:8443")
            .await
            .is_ok()
    );
    assert_eq!(
        client.admit_endpoint("https://api.gateway.example/v1").await,
        Err(EndpointRefusal::HostNotListed("api.gateway.example".into()))
    );
    assert_eq!(
        client.admit_endpoint("https://my-resource.openai.azure.com:8080").await,
        Err(EndpointRefusal::Port(8080))
    );
    let vars: HashMap<&str, &str> = HashMap::from([(ENDPOINT_ALLOWED_PORTS, "443,https")]);
    assert!(ProviderClientConfig::from_lookup(PlainHttp::Refused, |n| vars.get(n).map(|v| v.to_string())).is_err());
}

/// A name admitted while it pointed outside, that now resolves inside (DNS
/// rebinding), is refused at the call: the resolver of the client is the
/// guard, so the check ends `endpoint_not_allowed` without a connection.
#[tokio::test]
async fn a_stored_endpoint_that_now_resolves_inside_is_not_called() {
    let compatible = provider::find("openai_compatible").unwrap();
    let key = ApiKey::parse("sk-local-0123456789abcdef").unwrap();
    let admitted = strict_client(&[], table())
        .admit_endpoint("https://rebound.gateway.example/v1")
        .await;
    assert!(admitted.is_err(), "not in the first table");
    let before = strict_client(&[], names(&[("rebound.gateway.example", &["93.184.215.14"])]));
    let endpoint = before
        .admit_endpoint("https://rebound.gateway.example/v1")
        .await
        .unwrap();
    for now in ["127.0.0.1", "169.254.169.254", "10.0.0.7"] {
        let after = strict_client(&[], names(&[("rebound.gateway.example", &[now])]));
        let outcome = after.check(compatible, Some(&endpoint), &key).await;
        assert_eq!(
            outcome,
            CheckOutcome::Failed {
                reason: ErrorReason::EndpointNotAllowed,
                retry_after_secs: None
            },
            "{now}"
        );
    }
    // A name that no longer resolves is an outage, not a verdict.
    let gone = strict_client(&[], names(&[]));
    assert_eq!(
        gone.check(compatible, Some(&endpoint), &key).await,
        CheckOutcome::Failed {
            reason: ErrorReason::ProviderUnavailable,
            retry_after_secs: None
        }
    );
    // A stored literal the policy forbids (never admitted on AWS, e.g. one
    // from a local database) is refused from the URL alone.
    let literal = Endpoint::accepted("http://169.254.169.254/v1".into());
    assert_eq!(
        strict_client(&[], table())
            .check(compatible, Some(&literal), &key)
            .await,
        CheckOutcome::Failed {
            reason: ErrorReason::EndpointNotAllowed,
            retry_after_secs: None
        }
    );
}

/// The loopback-only case that may actually connect: a made-up name that
/// points at 127.0.0.1 is refused on AWS with no connection accepted, and
/// followed in the local server's mode.
#[tokio::test]
async fn a_name_pointing_at_loopback_reaches_the_socket_only_in_local_mode() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let compatible = provider::find("openai_compatible").unwrap();
    let key = ApiKey::parse("sk-local-0123456789abcdef").unwrap();
    let sneaky = Endpoint::accepted(format!("https://sneaky.gateway.example:{port}/v1"));
    let lookup = || names(&[("sneaky.gateway.example", &["127.0.0.1"])]);
    let strict = strict_client(&[(ENDPOINT_ALLOWED_PORTS, &port.to_string())], lookup());
    let outcome = strict.check(compatible, Some(&sneaky), &key).await;
    assert_eq!(
        outcome,
        CheckOutcome::Failed {
            reason: ErrorReason::EndpointNotAllowed,
            retry_after_secs: None
        }
    );
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the strict client connected");

    let vars: HashMap<&str, String> = HashMap::from([(ENDPOINT_ALLOWED_PORTS, port.to_string())]);
    let config = ProviderClientConfig::from_lookup(PlainHttp::Allowed, |n| vars.get(n).cloned()).unwrap();
    let local = HttpProviderClient::with_lookup(config, lookup());
    let check = tokio::spawn(async move { local.check(compatible, Some(&sneaky), &key).await });
    let (socket, peer) = tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept())
        .await
        .expect("the local client connects")
        .unwrap();
    assert!(peer.ip().is_loopback());
    drop(socket);
    let outcome = check.await.unwrap();
    assert!(matches!(outcome, CheckOutcome::Failed { .. }), "{outcome:?}");
}
