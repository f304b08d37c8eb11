//! Structured JSON logs. Our crates log at `info` by default, dependencies
//! only at `warn`: SDK and HTTP internals at debug level can show request
//! details, and no log line may ever carry a key, a token or a body.
//!
//! Whatever the filter says (`MAILMIND_LOG` is free text on the local
//! server), the Lambda runtime and the HTTP/TLS/AWS stack never log below
//! [`DEPENDENCY_CAPS`]: at `debug`/`trace` the runtime logs whole events
//! (bodies with keys, the bearer token, the socket `?token=`) and the HTTP
//! clients log headers.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{FilterExt as _, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter when `MAILMIND_LOG` is unset.
pub const DEFAULT_FILTER: &str = "warn,mailmind=info,mailmind_local=info";

/// The most verbose level of the targets that see raw events, requests and
/// headers (target prefixes: `lambda` covers `lambda_runtime`, `lambda_http`
/// and `lambda_runtime_api_client`; `hyper` covers `hyper_util`; `aws_smithy`
/// every `aws_smithy_*` crate).
pub const DEPENDENCY_CAPS: &[(&str, LevelFilter)] = &[
    ("lambda", LevelFilter::INFO),
    ("hyper", LevelFilter::WARN),
    ("h2", LevelFilter::WARN),
    ("reqwest", LevelFilter::WARN),
    ("rustls", LevelFilter::WARN),
    ("tower", LevelFilter::WARN),
    ("tower_http", LevelFilter::WARN),
    ("axum", LevelFilter::WARN),
    ("tungstenite", LevelFilter::WARN),
    ("tokio_tungstenite", LevelFilter::WARN),
    ("aws_smithy", LevelFilter::WARN),
    ("aws_sdk", LevelFilter::WARN),
    ("aws_config", LevelFilter::WARN),
    ("aws_runtime", LevelFilter::WARN),
    ("aws_sigv4", LevelFilter::WARN),
    ("aws_credential_types", LevelFilter::WARN),
];

/// The filter of `spec` (tracing `Targets` syntax), else [`DEFAULT_FILTER`].
fn requested_filter(spec: Option<&str>) -> Targets {
    spec.and_then(|spec| Targets::from_str(spec).ok())
        .unwrap_or_else(|| Targets::from_str(DEFAULT_FILTER).expect("default filter parses"))
}

/// The audit lines' target (`crate::audit`): always written at `info`,
/// whatever the filter says (`LogLevel` `error` included).
pub const AUDIT_TARGET: &str = "mailmind::audit";

/// The audit target at `info`, nothing else: or-ed with the requested filter.
fn audit_lines() -> Targets {
    Targets::new().with_target(AUDIT_TARGET, LevelFilter::INFO)
}

/// Everything allowed except the capped targets above their caps.
fn caps() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(DEPENDENCY_CAPS.iter().copied())
}

/// The JSON log layer over `writer`, filtered by `spec` and the caps.
fn json_layer<S, W>(spec: Option<&str>, writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_writer(writer)
        .with_filter(requested_filter(spec).or(audit_lines()).and(caps()))
}

/// Installs the JSON subscriber (once; later calls do nothing). The filter comes
/// from `MAILMIND_LOG` (e.g. `warn,mailmind=debug`), else [`DEFAULT_FILTER`],
/// and is always capped by [`DEPENDENCY_CAPS`].
pub fn init_json_logs() {
    let spec = std::env::var("MAILMIND_LOG").ok();
    let _ = tracing_subscriber::registry()
        .with(json_layer(spec.as_deref(), std::io::stderr))
        .try_init();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The targets among `lines` (target, level) that got through under `spec`.
    fn logged(spec: &str) -> String {
        captured(spec, || {
            tracing::debug!(target: "lambda_runtime::layers::api_client", "runtime-debug");
            tracing::trace!(target: "lambda_http", "http-trace");
            tracing::info!(target: "lambda_runtime", "runtime-info");
            tracing::debug!(target: "hyper_util::client", "hyper-debug");
            tracing::info!(target: "reqwest::connect", "reqwest-info");
            tracing::debug!(target: "aws_smithy_runtime::client", "smithy-debug");
            tracing::info!(target: "rustls::client", "rustls-info");
            tracing::warn!(target: "hyper", "hyper-warn");
            tracing::debug!(target: "mailmind::service", "ours-debug");
        })
    }

    fn logged_with_audit(spec: &str) -> String {
        captured(spec, || {
            tracing::info!(target: "mailmind::audit", "audit-line");
            tracing::info!(target: "mailmind::service", "ours-info");
        })
    }

    /// What `emit` logs through the JSON layer under `spec`.
    fn captured(spec: &str, emit: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&buffer);
        let writer = move || SharedWriter(Arc::clone(&sink));
        let subscriber = tracing_subscriber::registry().with(json_layer(Some(spec), writer));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct SharedWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn dependency_targets_stay_capped_whatever_the_filter_says() {
        for spec in [
            "trace",
            "debug",
            "lambda_runtime=trace,hyper=trace,reqwest=trace",
            "trace,mailmind=trace",
        ] {
            let out = logged(spec);
            for hidden in [
                "runtime-debug",
                "http-trace",
                "hyper-debug",
                "reqwest-info",
                "smithy-debug",
                "rustls-info",
            ] {
                assert!(!out.contains(hidden), "{spec}: {hidden} in {out}");
            }
            for shown in ["runtime-info", "hyper-warn"] {
                assert!(out.contains(shown), "{spec}: {shown} missing from {out}");
            }
        }
        // Audit lines are written whatever the filter says.
        for spec in ["error", "warn,mailmind=warn", "off"] {
            let out = logged_with_audit(spec);
            assert!(out.contains("audit-line"), "{spec}: {out}");
            assert!(!out.contains("ours-info"), "{spec}: {out}");
        }
        // Our own targets follow the filter.
        assert!(logged("warn,mailmind=debug").contains("ours-debug"));
        assert!(!logged("warn,mailmind=info").contains("ours-debug"));
    }
}
