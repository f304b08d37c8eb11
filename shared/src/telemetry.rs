//! Structured JSON logs. Our crates log at `info` by default, dependencies
//! only at `warn`: SDK and HTTP internals at debug level can show request
//! details, and no log line may ever carry a key, a token or a body.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter when `MAILMIND_LOG` is unset.
pub const DEFAULT_FILTER: &str = "warn,mailmind=info,mailmind_local=info";

/// Installs the JSON subscriber (once; later calls do nothing). The filter comes
/// from `MAILMIND_LOG` (e.g. `warn,mailmind=debug`), else [`DEFAULT_FILTER`].
pub fn init_json_logs() {
    let filter = std::env::var("MAILMIND_LOG")
        .ok()
        .and_then(|spec| Targets::from_str(&spec).ok())
        .unwrap_or_else(|| Targets::from_str(DEFAULT_FILTER).expect("default filter parses"));
    let format = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry().with(filter).with(format).try_init();
}
