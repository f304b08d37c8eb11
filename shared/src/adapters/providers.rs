//! The provider client: asks each provider's real list-models endpoint whether
//! a key works, and classifies every answer (or silence) into a
//! [`CheckOutcome`]. One `reqwest` client per process, built on first use so
//! that functions which never call a provider never pay for TLS setup.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use super::egress::{self, EndpointPolicy, GuardedResolver, NameLookup, SystemLookup};
use super::provider_wire::{Entry, WireBody, WireError, WireModel};
use serde_json::Value;

use crate::domain::endpoint::{Endpoint, EndpointRefusal};
use crate::domain::model::{MAX_MODELS, bounded, canonical};
use crate::domain::provider::{BadRequestMeans, BaseUrl, KeyPlacement, ListShape, PROVIDERS, Paging};
use crate::domain::quota::Quota;
use crate::domain::{ApiKey, CheckOutcome, ErrorReason, ModelInfo, ProviderSpec};
use crate::ports::ProviderClient;

/// A list of more pages than this is treated as a provider bug, not a model list.
const MAX_PAGES: usize = 50;
/// Largest answer body read from a provider, per page: the biggest real page
/// (OpenRouter's whole catalogue) is about 1 MB. A longer answer is
/// `bad_response`, read no further than this.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Ids and names longer than this are not model ids; such entries are skipped.
const MAX_FIELD_CHARS: usize = 256;
/// A provider asking us to wait longer than a day is capped to a day.
const MAX_RETRY_AFTER_SECS: u64 = 86_400;
/// Error codes (OpenAI style `error.code` / `error.type`) that mean "out of credit".
const QUOTA_CODES: &[&str] = &[
    "insufficient_quota",
    "credit_balance_exhausted",
    "billing_hard_limit_reached",
    "billing_not_active",
    "insufficient_balance",
];

/// Lets a function (never the template) take `http://` overrides to a
/// loopback host: for the tests, whose fake providers speak plain HTTP on
/// 127.0.0.1.
pub const ALLOW_LOOPBACK_HTTP: &str = "PROVIDER_BASE_URL_ALLOW_LOOPBACK_HTTP";

/// Ports besides 443 that user-given endpoints may use (an operator's choice).
pub const ENDPOINT_ALLOWED_PORTS: &str = "ENDPOINT_ALLOWED_PORTS";

/// Hosts user-given endpoints may name (an operator's choice; unset, any
/// host the guard allows).
pub const ENDPOINT_ALLOWED_HOSTS: &str = "ENDPOINT_ALLOWED_HOSTS";

/// Whether a base URL override may be `http://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// The local server: keys stay on the machine or go where its user points them.
    Allowed,
    /// Everywhere else: https only (loopback with [`ALLOW_LOOPBACK_HTTP`]).
    Refused,
}

/// Operator configuration that keeps the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum ProviderConfigError {
    /// A `PROVIDER_BASE_URL_<ID>` that is not a plain http(s) URL.
    #[error("{var} must be an http(s) URL without query or fragment")]
    BadBaseUrl {
        /// The variable.
        var: String,
    },
    /// A plain `http://` override where keys must travel over TLS.
    #[error(
        "{var} must be an https:// URL (got {url}): keys are sent to it. Only the local server, or a test \
         run with {ALLOW_LOOPBACK_HTTP}=1 and a loopback host, may use http://"
    )]
    PlainHttp {
        /// The variable.
        var: String,
        /// Its value (an operator's URL, never a key).
        url: String,
    },
    /// A timeout variable that is not a whole number of milliseconds.
    #[error("{var} must be a whole number of milliseconds")]
    BadTimeout {
        /// The variable.
        var: &'static str,
    },
    /// `ENDPOINT_ALLOWED_PORTS` that is not a list of ports.
    #[error("{ENDPOINT_ALLOWED_PORTS} must be a comma-separated list of port numbers")]
    BadPorts,
    /// The provider sandbox asked for inside AWS Lambda, where it must never run.
    #[error("the provider sandbox is for development only and refuses to run in AWS Lambda ({marker} is set)")]
    SandboxInLambda {
        /// The variable that says "this is Lambda".
        marker: &'static str,
    },
}

/// Operator configuration of the provider client.
#[derive(Debug, Clone)]
pub struct ProviderClientConfig {
    /// Base URL per provider id; providers not listed use their default.
    pub base_urls: HashMap<&'static str, String>,
    /// Bound on connecting to a provider.
    pub connect_timeout: Duration,
    /// Bound on a whole check, every page included.
    pub check_timeout: Duration,
    /// What user-given endpoints may be.
    pub endpoint_policy: EndpointPolicy,
}

impl Default for ProviderClientConfig {
    fn default() -> Self {
        ProviderClientConfig {
            base_urls: HashMap::new(),
            endpoint_policy: EndpointPolicy::default(),
            connect_timeout: Duration::from_secs(3),
            check_timeout: Duration::from_secs(10),
        }
    }
}

impl ProviderClientConfig {
    /// Reads `PROVIDER_BASE_URL_<ID>` for every provider, and the optional
    /// `PROVIDER_CONNECT_TIMEOUT_MS` / `PROVIDER_TIMEOUT_MS`.
    pub fn from_env(plain_http: PlainHttp) -> Result<ProviderClientConfig, ProviderConfigError> {
        Self::from_lookup(plain_http, |name| std::env::var(name).ok())
    }

    /// The configuration from variables read through `lookup` (the environment, or a test's map).
    pub fn from_lookup(
        plain_http: PlainHttp,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ProviderClientConfig, ProviderConfigError> {
        let mut config = ProviderClientConfig::default();
        let loopback_http_allowed = lookup(ALLOW_LOOPBACK_HTTP).is_some_and(|v| v.trim() == "1");
        config.endpoint_policy.allow_loopback_http = plain_http == PlainHttp::Allowed || loopback_http_allowed;
        if let Some(ports) = lookup(ENDPOINT_ALLOWED_PORTS).filter(|v| !v.trim().is_empty()) {
            config.endpoint_policy.extra_ports = ports
                .split(',')
                .map(|port| port.trim().parse::<u16>().ok().filter(|p| *p > 0))
                .collect::<Option<Vec<u16>>>()
                .ok_or(ProviderConfigError::BadPorts)?;
        }
        if let Some(hosts) = lookup(ENDPOINT_ALLOWED_HOSTS).filter(|v| !v.trim().is_empty()) {
            config.endpoint_policy.allowed_hosts = hosts
                .split(',')
                .map(|host| host.trim().to_ascii_lowercase())
                .filter(|host| !host.is_empty())
                .collect();
        }
        for provider in PROVIDERS.iter().filter(|p| !p.endpoint_per_key()) {
            let var = provider.base_url_env_var();
            if let Some(value) = lookup(&var).filter(|v| !v.trim().is_empty()) {
                let url = Url::parse(value.trim()).map_err(|_| ProviderConfigError::BadBaseUrl { var: var.clone() })?;
                if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
                    return Err(ProviderConfigError::BadBaseUrl { var });
                }
                let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
                let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                let http_allowed = match plain_http {
                    PlainHttp::Allowed => true,
                    PlainHttp::Refused => loopback_http_allowed && loopback,
                };
                if url.scheme() == "http" && !http_allowed {
                    return Err(ProviderConfigError::PlainHttp {
                        var,
                        url: url.as_str().to_owned(),
                    });
                }
                config
                    .base_urls
                    .insert(provider.id, url.as_str().trim_end_matches('/').to_owned());
            }
        }
        let millis = |var: &'static str| -> Result<Option<Duration>, ProviderConfigError> {
            lookup(var)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|ms| *ms > 0)
                        .map(Duration::from_millis)
                        .ok_or(ProviderConfigError::BadTimeout { var })
                })
                .transpose()
        };
        if let Some(t) = millis("PROVIDER_CONNECT_TIMEOUT_MS")? {
            config.connect_timeout = t;
        }
        if let Some(t) = millis("PROVIDER_TIMEOUT_MS")? {
            config.check_timeout = t;
        }
        Ok(config)
    }

    /// Where `provider`'s API is: its override, else its production URL
    /// (empty for a provider whose keys name their own).
    pub fn base_url(&self, provider: &ProviderSpec) -> &str {
        self.base_urls
            .get(provider.id)
            .map(String::as_str)
            .or(provider.default_base_url())
            .unwrap_or_default()
    }
}

/// The `reqwest` implementation of [`ProviderClient`].
pub struct HttpProviderClient {
    config: ProviderClientConfig,
    /// For the providers' own hosts.
    client: OnceLock<Result<reqwest::Client, String>>,
    /// Resolves (and guards) the names of user-given endpoints.
    resolver: GuardedResolver,
    /// For user-given endpoints: through `resolver`, nothing else.
    guarded: OnceLock<Result<reqwest::Client, String>>,
}

/// Early exit of a check with its final outcome.
type Step<T> = Result<T, CheckOutcome>;

fn failed(reason: ErrorReason) -> CheckOutcome {
    CheckOutcome::Failed {
        reason,
        retry_after_secs: None,
    }
}

impl HttpProviderClient {
    /// The client; its HTTP connection pools are built on first use.
    pub fn new(config: ProviderClientConfig) -> HttpProviderClient {
        Self::with_lookup(config, Arc::new(SystemLookup))
    }

    /// [`new`](Self::new), looking up user-given endpoints' names with `lookup` (tests).
    pub fn with_lookup(config: ProviderClientConfig, lookup: Arc<dyn NameLookup>) -> HttpProviderClient {
        HttpProviderClient {
            resolver: GuardedResolver::new(config.endpoint_policy.clone(), lookup),
            config,
            client: OnceLock::new(),
            guarded: OnceLock::new(),
        }
    }

    /// The client for `provider`'s calls: the guarded one where the user
    /// named the endpoint.
    fn client(&self, provider: &ProviderSpec) -> Step<&reqwest::Client> {
        let (cell, builder) = if provider.endpoint_per_key() {
            (&self.guarded, egress::guarded_client_builder(self.resolver.clone()))
        } else {
            // A redirect could carry a key header to another host: never follow one.
            let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
            (&self.client, builder)
        };
        let built = cell.get_or_init(|| {
            builder
                .connect_timeout(self.config.connect_timeout)
                .timeout(self.config.check_timeout)
                .user_agent(concat!("mailmind-credentials/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        });
        built.as_ref().map_err(|e| {
            tracing::error!(error = %e, "cannot build the HTTP client");
            failed(ErrorReason::ProviderUnavailable)
        })
    }

    /// Where `provider`'s API is for this key: the provider's root, or the
    /// key's own endpoint checked again (the policy may have changed since
    /// it was stored, and an IP literal never reaches the resolver).
    fn base_for(&self, provider: &ProviderSpec, endpoint: Option<&Endpoint>) -> Step<String> {
        match (provider.base_url, endpoint) {
            (BaseUrl::Fixed(_), _) => Ok(self.config.base_url(provider).to_owned()),
            (BaseUrl::PerKey { .. }, Some(endpoint)) => {
                match egress::check_base_url(&self.config.endpoint_policy, endpoint.as_str()) {
                    Ok(url) => Ok(url.as_str().trim_end_matches('/').to_owned()),
                    Err(refusal) => Err(refused_endpoint(&refusal)),
                }
            }
            (BaseUrl::PerKey { .. }, None) => Err(failed(ErrorReason::EndpointNotAllowed)),
        }
    }

    async fn run_check(
        &self,
        provider: &'static ProviderSpec,
        endpoint: Option<&Endpoint>,
        key: &ApiKey,
        quota: &mut Option<Quota>,
    ) -> Step<Vec<ModelInfo>> {
        let base = self.base_for(provider, endpoint)?;
        let auth = key_header(provider, key)?;
        let auth = auth.as_ref();
        if let Some(path) = provider.key_check_path {
            // The key endpoint's answer is one small object (still under the
            // page cap); read loosely, as its fields are all optional.
            let body: Value = self.get_json(provider, auth, &format!("{base}{path}"), &[]).await?;
            if !body.is_object() {
                return Err(failed(ErrorReason::BadResponse));
            }
            *quota = Quota::from_key_info(&body);
            if credit_used_up(&body) {
                return Err(failed(ErrorReason::QuotaExhausted));
            }
        }
        let listing = &provider.models;
        let url = format!("{base}{}", listing.path);
        let mut models = Vec::new();
        let mut next_page: Option<(&'static str, String)> = None;
        for _ in 0..MAX_PAGES {
            let mut query: Vec<(&str, &str)> = listing.query.to_vec();
            if let Some((param, value)) = &next_page {
                query.push((param, value));
            }
            let body: WireBody = self.get_json(provider, auth, &url, &query).await?;
            models.extend(extract_models(&listing.shape, &body).ok_or_else(|| failed(ErrorReason::BadResponse))?);
            // Keep no more than the stores would: memory stays bounded
            // however many pages come, and the cut is the same as at the end.
            if models.len() > MAX_MODELS {
                models = canonical(models);
                models.truncate(MAX_MODELS);
            }
            let following = next_page_of(listing.paging, &body)?;
            match following {
                None => return Ok(models),
                // The same page again would loop forever.
                Some(ref f) if Some(f) == next_page.as_ref() => return Err(failed(ErrorReason::BadResponse)),
                Some(f) => next_page = Some(f),
            }
        }
        Err(failed(ErrorReason::BadResponse))
    }

    /// One GET with the key; a non-2xx answer ends the check with its classification.
    async fn get_json<T: DeserializeOwned>(
        &self,
        provider: &'static ProviderSpec,
        auth: Option<&(reqwest::header::HeaderName, HeaderValue)>,
        url: &str,
        query: &[(&str, &str)],
    ) -> Step<T> {
        let mut request = self
            .client(provider)?
            .get(url)
            .query(query)
            .header(ACCEPT, "application/json");
        if let Some((name, value)) = auth {
            request = request.header(name.clone(), value.clone());
        }
        for (name, value) in provider.extra_headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_BODY_BYTES => body.extend_from_slice(&chunk),
                Ok(Some(_)) => {
                    tracing::info!(
                        provider = provider.id,
                        limit = MAX_BODY_BYTES,
                        "provider answer too large"
                    );
                    return Err(failed(ErrorReason::BadResponse));
                }
                Ok(None) => break,
                Err(e) => return Err(transport_failure(e)),
            }
        }
        if !status.is_success() {
            tracing::info!(
                provider = provider.id,
                http_status = status.as_u16(),
                "provider refused the check"
            );
            return Err(classify_refusal(provider, status, response.headers(), &body));
        }
        serde_json::from_slice(&body).map_err(|_| failed(ErrorReason::BadResponse))
    }
}

#[async_trait]
impl ProviderClient for HttpProviderClient {
    fn base_url(&self, provider: &'static ProviderSpec) -> String {
        self.config.base_url(provider).to_owned()
    }

    async fn admit_endpoint(&self, given: &str) -> Result<Endpoint, EndpointRefusal> {
        let url = egress::check_base_url(&self.config.endpoint_policy, given)?;
        if let Some(url::Host::Domain(host)) = url.host() {
            self.resolver.checked(host).await?;
        }
        Ok(Endpoint::accepted(url.as_str().trim_end_matches('/').to_owned()))
    }

    async fn check(&self, provider: &'static ProviderSpec, endpoint: Option<&Endpoint>, key: &ApiKey) -> CheckOutcome {
        self.check_with_quota(provider, endpoint, key).await.0
    }

    async fn check_with_quota(
        &self,
        provider: &'static ProviderSpec,
        endpoint: Option<&Endpoint>,
        key: &ApiKey,
    ) -> (CheckOutcome, Option<Quota>) {
        let started = Instant::now();
        let mut quota = None;
        let run = self.run_check(provider, endpoint, key, &mut quota);
        let outcome = match tokio::time::timeout(self.config.check_timeout, run).await {
            Ok(Ok(models)) => CheckOutcome::Valid {
                models: bounded(canonical(models)),
            },
            Ok(Err(outcome)) => outcome,
            Err(_elapsed) => failed(ErrorReason::Timeout),
        };
        let (verdict, reason) = outcome.verdict();
        tracing::info!(
            provider = provider.id,
            verdict = verdict.as_str(),
            reason = reason.map(ErrorReason::as_str),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "provider check finished"
        );
        (outcome, quota)
    }
}

/// The header that carries the key, marked sensitive so no debug output
/// shows it; none for the empty key of a server that needs none.
fn key_header(provider: &ProviderSpec, key: &ApiKey) -> Step<Option<(reqwest::header::HeaderName, HeaderValue)>> {
    if key.is_empty() {
        return Ok(None);
    }
    let (name, value) = match provider.key_placement {
        KeyPlacement::Bearer => (AUTHORIZATION, format!("Bearer {}", key.expose())),
        KeyPlacement::Header(name) => (reqwest::header::HeaderName::from_static(name), key.expose().to_owned()),
    };
    let value = zeroize::Zeroizing::new(value);
    // A key that cannot travel in an HTTP header (non-ASCII) is no provider's key.
    let mut value = HeaderValue::from_str(&value).map_err(|_| CheckOutcome::Invalid)?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

/// A user's endpoint the guard refused at the moment of the call: a name
/// that no longer resolves is an outage like any other; anything else is
/// the endpoint's own fault, and says so.
fn refused_endpoint(refusal: &EndpointRefusal) -> CheckOutcome {
    tracing::info!(refusal = %refusal, "user endpoint refused by the egress guard");
    match refusal {
        EndpointRefusal::Unresolvable(_) => failed(ErrorReason::ProviderUnavailable),
        _ => failed(ErrorReason::EndpointNotAllowed),
    }
}

fn transport_failure(error: reqwest::Error) -> CheckOutcome {
    // The guarded resolver's refusal travels inside reqwest's error.
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<EndpointRefusal>() {
            return refused_endpoint(refusal);
        }
        source = cause.source();
    }
    // Never log the error's URL or request: only its kind.
    let reason = if error.is_timeout() {
        ErrorReason::Timeout
    } else if error.is_connect() || error.is_request() {
        ErrorReason::ProviderUnavailable
    } else if error.is_body() || error.is_decode() {
        ErrorReason::BadResponse
    } else {
        ErrorReason::ProviderUnavailable
    };
    tracing::info!(
        timeout = error.is_timeout(),
        connect = error.is_connect(),
        "provider transport failure"
    );
    failed(reason)
}

/// Whether a key endpoint's answer says the key's credit is spent
/// (OpenRouter's `GET /api/v1/key`: `{"data":{"limit","usage","limit_remaining",..}}`).
/// A `null` limit means unlimited; fields that are absent or not numbers say nothing.
pub fn credit_used_up(key_info: &Value) -> bool {
    let number = |field: &str| key_info.pointer(&format!("/data/{field}")).and_then(Value::as_f64);
    match (number("limit_remaining"), number("limit"), number("usage")) {
        (Some(remaining), _, _) => remaining <= 0.0,
        (None, Some(limit), Some(usage)) => usage >= limit,
        _ => false,
    }
}

/// Classifies a non-2xx answer: status first, body second (docs/PROVIDERS.md).
pub fn classify_refusal(provider: &ProviderSpec, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> CheckOutcome {
    let json: Option<WireError> = serde_json::from_slice(body).ok();
    let retry_after_secs = retry_after(headers, json.as_ref());
    let error_with = |reason| CheckOutcome::Failed {
        reason,
        retry_after_secs,
    };
    match status.as_u16() {
        401 | 403 => CheckOutcome::Invalid,
        400 => match provider.bad_request {
            BadRequestMeans::InvalidKey => CheckOutcome::Invalid,
            BadRequestMeans::InvalidKeyWhenReason(reason)
                if json
                    .as_ref()
                    .is_some_and(|j| error_detail_reasons(j).any(|r| r == reason)) =>
            {
                CheckOutcome::Invalid
            }
            _ => error_with(ErrorReason::BadResponse),
        },
        402 => error_with(ErrorReason::QuotaExhausted),
        408 => error_with(ErrorReason::Timeout),
        429 if json.as_ref().is_some_and(mentions_quota) => error_with(ErrorReason::QuotaExhausted),
        429 => error_with(ErrorReason::RateLimited),
        500..=599 => error_with(ErrorReason::ProviderUnavailable),
        _ => error_with(ErrorReason::BadResponse),
    }
}

/// Google's `error.details[].reason` values.
fn error_detail_reasons(json: &WireError) -> impl Iterator<Item = &str> {
    json.error
        .get()
        .into_iter()
        .flat_map(|e| e.details())
        .filter_map(|d| d.reason.get().map(String::as_str))
}

/// OpenAI-style `error.type` / `error.code` (or top-level `code`) naming an exhausted quota.
fn mentions_quota(json: &WireError) -> bool {
    let nested = json.error.get().into_iter().flat_map(|e| [&e.kind, &e.code]);
    nested
        .chain([&json.code, &json.kind])
        .filter_map(|v| v.get())
        .any(|code| QUOTA_CODES.contains(&code.as_str()))
}

/// Seconds to wait, from `retry-after` (seconds or HTTP date) or Google's
/// `RetryInfo.retryDelay` (e.g. `"58s"`).
fn retry_after(headers: &HeaderMap, json: Option<&WireError>) -> Option<u64> {
    let from_header = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| {
        let v = v.trim();
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| s.ceil() as u64)
            .or_else(|| {
                chrono::DateTime::parse_from_rfc2822(v)
                    .ok()
                    .map(|at| (at.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64)
            })
    });
    let from_body = || {
        json?
            .error
            .get()?
            .details()
            .filter_map(|d| d.retry_delay.get())
            .find_map(|delay| delay.strip_suffix('s')?.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| s.ceil() as u64)
    };
    from_header.or_else(from_body).map(|s| s.min(MAX_RETRY_AFTER_SECS))
}

/// Where the next page is, or `None` on the last page.
fn next_page_of(paging: Paging, body: &WireBody) -> Step<Option<(&'static str, String)>> {
    let page = match body {
        WireBody::Object(page) => Some(page),
        WireBody::Array(_) => None,
    };
    match paging {
        Paging::None => Ok(None),
        Paging::Token {
            response_field,
            request_param,
        } => Ok(page
            .and_then(|p| p.text(response_field))
            .filter(|t| !t.is_empty())
            .map(|t| (request_param, t.to_owned()))),
        Paging::Cursor {
            has_more_field,
            last_id_field,
            request_param,
        } => {
            if page.and_then(|p| p.flag(has_more_field)) != Some(true) {
                return Ok(None);
            }
            let last = page
                .and_then(|p| p.text(last_id_field))
                .filter(|t| !t.is_empty())
                .ok_or_else(|| failed(ErrorReason::BadResponse))?;
            Ok(Some((request_param, last.to_owned())))
        }
    }
}

/// Reads one page of models. `None` when the page is not a model list at all;
/// single malformed entries are skipped.
pub fn extract_models(shape: &ListShape, body: &WireBody) -> Option<Vec<ModelInfo>> {
    let items: &[Entry] = match (shape.items_field, body) {
        (Some(field), WireBody::Object(page)) => page.items(field)?,
        (None, WireBody::Array(items)) => &items.0,
        _ => return None,
    };
    let text = |item: &WireModel, field: &str| {
        item.text(field)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.chars().count() <= MAX_FIELD_CHARS)
            .map(str::to_owned)
    };
    let number = |item: &WireModel, fields: &[&str]| fields.iter().find_map(|f| item.number(f));
    // An entry that is no object reads as an empty one: skipped below for
    // want of an id, yet counted as "usable" like before.
    let empty = WireModel::default();
    let usable: Vec<&WireModel> = items
        .iter()
        .map(|entry| entry.get().unwrap_or(&empty))
        .filter(|item| shape.active_field.and_then(|f| item.flag(f)) != Some(false))
        .collect();
    let models: Vec<ModelInfo> = usable
        .iter()
        .filter_map(|item| {
            let raw_id = text(item, shape.id_field)?;
            let id = match shape.id_prefix {
                Some(prefix) => raw_id.strip_prefix(prefix).unwrap_or(&raw_id).to_owned(),
                None => raw_id,
            };
            let name = shape
                .name_field
                .and_then(|f| text(item, f))
                .unwrap_or_else(|| id.clone());
            Some(ModelInfo {
                context_window: number(item, shape.context_window_fields),
                max_output_tokens: number(item, shape.max_output_fields),
                owned_by: shape.owner_field.and_then(|f| text(item, f)),
                ..ModelInfo::named(id, name)
            })
        })
        .collect();
    // Entries, but not one readable model: this is not a model list.
    if models.is_empty() && !usable.is_empty() {
        return None;
    }
    Some(models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provider;

    /// A page as the client reads it.
    fn page(value: serde_json::Value) -> WireBody {
        serde_json::from_value(value).unwrap()
    }

    macro_rules! json {
        ($($t:tt)*) => {
            page(serde_json::json!($($t)*))
        };
    }

    #[test]
    fn config_reads_overrides_and_refuses_garbage() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        let c = ProviderClientConfig::from_lookup(
            PlainHttp::Allowed,
            env(&[
                ("PROVIDER_BASE_URL_GROQ", "http://127.0.0.1:9001/"),
                ("PROVIDER_TIMEOUT_MS", "1500"),
            ]),
        )
        .unwrap();
        assert_eq!(c.base_url(provider::find("groq").unwrap()), "http://127.0.0.1:9001");
        assert_eq!(
            c.base_url(provider::find("google_gemini").unwrap()),
            "https://generativelanguage.googleapis.com"
        );
        assert_eq!(c.check_timeout, Duration::from_millis(1500));
        let refused = |vars| ProviderClientConfig::from_lookup(PlainHttp::Allowed, env(vars)).is_err();
        assert!(refused(&[("PROVIDER_BASE_URL_GROQ", "ftp://x")]));
        assert!(refused(&[("PROVIDER_BASE_URL_GROQ", "not a url")]));
        assert!(refused(&[("PROVIDER_TIMEOUT_MS", "soon")]));
    }

    #[test]
    fn outside_the_local_server_an_override_is_https() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        let lambda = |vars| ProviderClientConfig::from_lookup(PlainHttp::Refused, env(vars));
        assert!(lambda(&[("PROVIDER_BASE_URL_GROQ", "https://gateway.example.com/groq")]).is_ok());
        let error = lambda(&[("PROVIDER_BASE_URL_GROQ", "http://gateway.example.com")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "PROVIDER_BASE_URL_GROQ must be an https:// URL (got http://gateway.example.com/): keys are sent \
             to it. Only the local server, or a test run with PROVIDER_BASE_URL_ALLOW_LOOPBACK_HTTP=1 and a \
             loopback host, may use http://"
        );
        assert!(lambda(&[("PROVIDER_BASE_URL_GROQ", "http://127.0.0.1:9001")]).is_err());
        // The tests' switch opens loopback only.
        for host in ["http://127.0.0.1:9001", "http://[::1]:9001", "http://localhost:9001"] {
            let vars: &'static [(&'static str, &'static str)] =
                Box::leak(Box::new([("PROVIDER_BASE_URL_GROQ", host), (ALLOW_LOOPBACK_HTTP, "1")]));
            assert!(lambda(vars).is_ok(), "{host}");
        }
        assert!(
            lambda(&[
                ("PROVIDER_BASE_URL_GROQ", "http://10.0.0.8:9001"),
                (ALLOW_LOOPBACK_HTTP, "1")
            ])
            .is_err()
        );
        // The local server takes http anywhere (a local Ollama, a fake).
        assert!(
            ProviderClientConfig::from_lookup(
                PlainHttp::Allowed,
                env(&[("PROVIDER_BASE_URL_GROQ", "http://10.0.0.8")])
            )
            .is_ok()
        );
    }

    #[test]
    fn gemini_page_is_read_with_facts() {
        let gemini = provider::find("google_gemini").unwrap();
        let page = json!({"models": [
            {"name": "models/gemini-1.5-flash", "displayName": "Gemini 1.5 Flash",
             "inputTokenLimit": 1048576, "outputTokenLimit": 8192},
            {"displayName": "no id: skipped"}
        ], "nextPageToken": "abc"});
        let models = extract_models(&gemini.models.shape, &page).unwrap();
        assert_eq!(
            models,
            vec![ModelInfo {
                context_window: Some(1048576),
                max_output_tokens: Some(8192),
                ..ModelInfo::named("gemini-1.5-flash", "Gemini 1.5 Flash")
            }]
        );
        assert_eq!(
            next_page_of(gemini.models.paging, &page).unwrap(),
            Some(("pageToken", "abc".to_owned()))
        );
        assert_eq!(
            next_page_of(gemini.models.paging, &json!({"models": [], "nextPageToken": ""})).unwrap(),
            None
        );
    }

    #[test]
    fn groq_inactive_models_are_dropped_and_garbage_is_refused() {
        let shape = &provider::find("groq").unwrap().models.shape;
        let page = json!({"object": "list", "data": [
            {"id": "llama-3.1-8b-instant", "owned_by": "Meta", "active": true, "context_window": 131072},
            {"id": "old-model", "active": false}
        ]});
        let models = extract_models(shape, &page).unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].context_window, Some(131072));
        assert_eq!(models[0].owned_by.as_deref(), Some("Meta"));
        assert!(extract_models(shape, &json!({"data": "nope"})).is_none());
        assert!(extract_models(shape, &json!({"unexpected": []})).is_none());
        assert!(extract_models(shape, &json!({"data": [{"name": "x"}]})).is_none());
        assert_eq!(extract_models(shape, &json!({"data": []})).unwrap(), vec![]);
    }

    #[test]
    fn refusals_are_classified_status_first() {
        let groq = provider::find("groq").unwrap();
        let gemini = provider::find("google_gemini").unwrap();
        let none = HeaderMap::new();
        let classify =
            |p, code: u16, body: &str| classify_refusal(p, StatusCode::from_u16(code).unwrap(), &none, body.as_bytes());
        assert_eq!(classify(groq, 401, "garbage"), CheckOutcome::Invalid);
        assert_eq!(classify(groq, 403, ""), CheckOutcome::Invalid);
        assert_eq!(classify(groq, 400, "{}"), failed(ErrorReason::BadResponse));
        let key_invalid = r#"{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        assert_eq!(classify(gemini, 400, key_invalid), CheckOutcome::Invalid);
        assert_eq!(
            classify(gemini, 400, r#"{"error":{"status":"FAILED_PRECONDITION"}}"#),
            failed(ErrorReason::BadResponse)
        );
        assert_eq!(classify(groq, 402, ""), failed(ErrorReason::QuotaExhausted));
        assert_eq!(
            classify(groq, 429, r#"{"error":{"type":"insufficient_quota"}}"#),
            failed(ErrorReason::QuotaExhausted)
        );
        assert_eq!(classify(groq, 503, "<html>"), failed(ErrorReason::ProviderUnavailable));
        assert_eq!(classify(groq, 529, ""), failed(ErrorReason::ProviderUnavailable));
        assert_eq!(classify(groq, 404, ""), failed(ErrorReason::BadResponse));
    }

    #[test]
    fn retry_after_comes_from_header_or_google_retry_info() {
        let groq = provider::find("groq").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            classify_refusal(groq, StatusCode::TOO_MANY_REQUESTS, &headers, b""),
            CheckOutcome::Failed {
                reason: ErrorReason::RateLimited,
                retry_after_secs: Some(7)
            }
        );
        let body = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"57.2s"}]}}"#;
        assert_eq!(
            retry_after(&HeaderMap::new(), serde_json::from_str::<WireError>(body).ok().as_ref()),
            Some(58)
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("99999999"));
        assert_eq!(retry_after(&headers, None), Some(MAX_RETRY_AFTER_SECS));
    }
}
