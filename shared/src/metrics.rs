//! Metrics as CloudWatch embedded metric format (EMF) log lines: one JSON
//! object per line on stdout, which CloudWatch Logs turns into metrics on its
//! own. No API call, nothing buffered, nothing on the request path but a
//! `println!`.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>
//!
//! Hand-written on `serde_json` rather than `metrics_cloudwatch_embedded`:
//! that crate is a global recorder for the `metrics` facade that aggregates
//! and flushes once per invocation through its own Lambda runtime wrapper
//! (replacing [`crate::lambda`]'s `serve_*`), and the local server has no
//! invocation to flush at. Our metrics are a few events, each one line.
//!
//! Every metric is declared once in [`ALL`] (name, unit, dimension sets);
//! `template.yaml`'s alarms and dashboard use these names, and a test checks
//! every alarm against this list. Dimension values are `&'static str` from
//! closed sets (provider ids, outcomes, reasons, error codes): never a user
//! id, a key, a token or a body.
//!
//! Emitted when `MAILMIND_METRICS` says so (`on`/`off`); unset, they are on in
//! Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set) and off locally, where they
//! would only clutter the console. `METRICS_NAMESPACE` names the namespace
//! (default [`DEFAULT_NAMESPACE`]).

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::domain::{CheckOutcome, ErrorReason, ProviderSpec, UsageOutcome};

/// The namespace when `METRICS_NAMESPACE` is unset (also the template's default).
pub const DEFAULT_NAMESPACE: &str = "MailMind";

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count of events.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
    /// A duration in seconds.
    Seconds,
}

impl Unit {
    /// CloudWatch's name of the unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One metric: its name, unit, and the dimension sets it is published under.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    /// The metric name in CloudWatch.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
    /// Each set is one series per combination of its dimensions' values; an
    /// empty set is the metric without dimensions.
    pub dimensions: &'static [&'static [&'static str]],
}

impl Metric {
    /// A metric declaration.
    pub const fn new(name: &'static str, unit: Unit, dimensions: &'static [&'static [&'static str]]) -> Metric {
        Metric { name, unit, dimensions }
    }
}

/// One per provider check (create, update, check, a report's re-check,
/// background re-validation): `Outcome` is `valid`, `invalid` or `error`,
/// `Reason` the error reason or `none`. Also published per `Provider` alone.
pub const VALIDATIONS: Metric = Metric::new(
    "Validations",
    Unit::Count,
    &[&["Provider", "Outcome", "Reason"], &["Provider"]],
);

/// How long the provider took to answer a check.
pub const PROVIDER_LATENCY: Metric = Metric::new("ProviderLatency", Unit::Milliseconds, &[&["Provider"]]);

/// 1 when a check found the provider unreachable or out of time
/// (`provider_unavailable`, `timeout`), else 0: its average is the
/// provider's unavailability rate, its sample count the number of checks.
pub const PROVIDER_UNAVAILABLE: Metric = Metric::new("ProviderUnavailable", Unit::Count, &[&["Provider"]]);

/// Status messages delivered to sockets.
pub const PUSHES_SENT: Metric = Metric::new("PushesSent", Unit::Count, &[&[]]);

/// Pushes that failed or timed out (the socket may still be open).
pub const PUSHES_FAILED: Metric = Metric::new("PushesFailed", Unit::Count, &[&[]]);

/// Connections found gone (410) while pushing, and forgotten.
pub const CONNECTIONS_GONE: Metric = Metric::new("ConnectionsGone", Unit::Count, &[&[]]);

/// Status changes published (EventBridge on AWS, the events file locally).
pub const STATUS_EVENTS_PUBLISHED: Metric = Metric::new("StatusEventsPublished", Unit::Count, &[&[]]);

/// Status changes that could not be published (refused, throttled, timed out).
pub const STATUS_EVENTS_FAILED: Metric = Metric::new("StatusEventsFailed", Unit::Count, &[&[]]);

/// One per `credentials-resolve` resolve: `Result` is `ok` or the error code.
pub const RESOLVES: Metric = Metric::new("Resolves", Unit::Count, &[&["Provider", "Result"]]);

/// One per usage report: `Outcome` is what the caller reported, `Result`
/// what the service did (`rechecked`, `recorded`, `debounced`, `stale`) or
/// the error code.
pub const REPORTS: Metric = Metric::new("Reports", Unit::Count, &[&["Provider", "Outcome", "Result"]]);

/// Requests refused by a limit of the service (see [`RateLimit`]).
pub const RATE_LIMITED: Metric = Metric::new("RateLimited", Unit::Count, &[&["Limit"]]);

/// Credentials a background re-validation run checked.
pub const REVALIDATION_CHECKED: Metric = Metric::new("RevalidationChecked", Unit::Count, &[&[]]);

/// Credentials still due for re-validation when a run ended.
pub const REVALIDATION_DUE: Metric = Metric::new("RevalidationDue", Unit::Count, &[&[]]);

/// How overdue the oldest credential still due was when a run ended (0: none).
pub const REVALIDATION_LAG: Metric = Metric::new("RevalidationLag", Unit::Seconds, &[&[]]);

/// An AWS call throttled to the end of the SDK's retries; `Service` is
/// `kms` or `dynamodb`.
pub const AWS_THROTTLED: Metric = Metric::new("AwsThrottled", Unit::Count, &[&["Service"]]);

/// An activity history entry that could not be written (the request went
/// on without it); `Event` is the entry's kind.
pub const ACTIVITY_NOT_RECORDED: Metric = Metric::new("ActivityNotRecorded", Unit::Count, &[&["Event"]]);

/// Every metric the service emits.
pub const ALL: &[&Metric] = &[
    &VALIDATIONS,
    &PROVIDER_LATENCY,
    &PROVIDER_UNAVAILABLE,
    &PUSHES_SENT,
    &PUSHES_FAILED,
    &CONNECTIONS_GONE,
    &STATUS_EVENTS_PUBLISHED,
    &STATUS_EVENTS_FAILED,
    &RESOLVES,
    &REPORTS,
    &RATE_LIMITED,
    &REVALIDATION_CHECKED,
    &REVALIDATION_DUE,
    &REVALIDATION_LAG,
    &AWS_THROTTLED,
    &ACTIVITY_NOT_RECORDED,
];

/// The limits whose refusals [`rate_limited`] counts (dimension `Limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// A user's validations (create, update, check) over the per-user rate: 429.
    Validations,
    /// A user's open sockets over the per-user maximum: the connect is refused.
    Sockets,
}

impl RateLimit {
    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimit::Validations => "validations",
            RateLimit::Sockets => "sockets",
        }
    }
}

/// The AWS services whose throttling [`aws_throttled`] counts (dimension `Service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsService {
    /// AWS KMS.
    Kms,
    /// Amazon DynamoDB.
    DynamoDb,
}

impl AwsService {
    /// The dimension value.
    pub fn as_str(self) -> &'static str {
        match self {
            AwsService::Kms => "kms",
            AwsService::DynamoDb => "dynamodb",
        }
    }
}

/// A provider check finished with `outcome` after `latency`.
pub fn validation(provider: &'static ProviderSpec, outcome: &CheckOutcome, latency: Duration) {
    emit(validation_line(provider, outcome, latency));
}

/// A push went out to `sent + failed + gone` sockets.
pub fn pushes(sent: usize, failed: usize, gone: usize) {
    if sent + failed + gone > 0 {
        emit(pushes_line(sent, failed, gone));
    }
}

/// A status change was published (`true`) or could not be (`false`).
pub fn status_event(published: bool) {
    let metric = if published {
        &STATUS_EVENTS_PUBLISHED
    } else {
        &STATUS_EVENTS_FAILED
    };
    emit(Line::new().count(metric));
}

/// A resolve for `provider` ended with `result`: `ok` or an error code.
pub fn resolve(provider: &'static ProviderSpec, result: &'static str) {
    emit(
        Line::new()
            .count(&RESOLVES)
            .dimension("Provider", provider.id)
            .dimension("Result", result),
    );
}

/// A usage report `outcome` for `provider` ended with `result`: what the
/// service did, or an error code.
pub fn report(provider: &'static ProviderSpec, outcome: UsageOutcome, result: &'static str) {
    emit(
        Line::new()
            .count(&REPORTS)
            .dimension("Provider", provider.id)
            .dimension("Outcome", outcome.as_str())
            .dimension("Result", result),
    );
}

/// A request was refused by `limit`. Call it once per refusal, where the
/// refusal is decided (one place, shared by Lambda and the local server).
pub fn rate_limited(limit: RateLimit) {
    emit(Line::new().count(&RATE_LIMITED).dimension("Limit", limit.as_str()));
}

/// A background re-validation run ended: it checked `checked` credentials,
/// `due_remaining` are still due, and the oldest of those has been due for
/// `lag` (zero when none is). Call it once at the end of every run, also
/// when nothing was due, so the lag alarm always has a fresh value.
pub fn revalidation_run(checked: u64, due_remaining: u64, lag: Duration) {
    emit(revalidation_line(checked, due_remaining, lag));
}

/// An activity entry of kind `event` was not written.
pub fn activity_not_recorded(event: &'static str) {
    emit(Line::new().count(&ACTIVITY_NOT_RECORDED).dimension("Event", event));
}

/// An AWS call to `service` was throttled to the end of the SDK's retries.
pub fn aws_throttled(service: AwsService) {
    emit(Line::new().count(&AWS_THROTTLED).dimension("Service", service.as_str()));
}

fn validation_line(provider: &'static ProviderSpec, outcome: &CheckOutcome, latency: Duration) -> Line {
    let (verdict, reason) = outcome.verdict();
    let unavailable = matches!(reason, Some(ErrorReason::ProviderUnavailable | ErrorReason::Timeout));
    Line::new()
        .count(&VALIDATIONS)
        .value(&PROVIDER_LATENCY, latency.as_secs_f64() * 1000.0)
        .value(&PROVIDER_UNAVAILABLE, if unavailable { 1.0 } else { 0.0 })
        .dimension("Provider", provider.id)
        .dimension("Outcome", verdict.as_str())
        .dimension("Reason", reason.map_or("none", ErrorReason::as_str))
}

fn pushes_line(sent: usize, failed: usize, gone: usize) -> Line {
    Line::new()
        .value(&PUSHES_SENT, sent as f64)
        .value(&PUSHES_FAILED, failed as f64)
        .value(&CONNECTIONS_GONE, gone as f64)
}

fn revalidation_line(checked: u64, due_remaining: u64, lag: Duration) -> Line {
    Line::new()
        .value(&REVALIDATION_CHECKED, checked as f64)
        .value(&REVALIDATION_DUE, due_remaining as f64)
        .value(&REVALIDATION_LAG, lag.as_secs() as f64)
}

/// One EMF document: metric values and the dimension values they share.
#[derive(Debug, Default)]
struct Line {
    values: Vec<(&'static Metric, f64)>,
    dimensions: Vec<(&'static str, &'static str)>,
}

impl Line {
    fn new() -> Line {
        Line::default()
    }

    fn value(mut self, metric: &'static Metric, value: f64) -> Line {
        self.values.push((metric, value));
        self
    }

    fn count(self, metric: &'static Metric) -> Line {
        self.value(metric, 1.0)
    }

    fn dimension(mut self, name: &'static str, value: &'static str) -> Line {
        self.dimensions.push((name, value));
        self
    }

    /// The JSON document; `None` when a metric names a dimension the line
    /// lacks (a programming error, caught by the tests).
    fn render(&self, namespace: &str, timestamp_ms: i64) -> Option<Value> {
        let mut directives: Vec<Value> = Vec::new();
        let mut root = Map::new();
        for (metric, value) in &self.values {
            for set in metric.dimensions {
                if set.iter().any(|d| !self.dimensions.iter().any(|(name, _)| name == d)) {
                    return None;
                }
            }
            // Metrics with the same dimension sets share one directive.
            let entry = json!({"Name": metric.name, "Unit": metric.unit.as_str()});
            let dimensions = json!(metric.dimensions);
            match directives.iter_mut().find(|d| d["Dimensions"] == dimensions) {
                Some(directive) => directive["Metrics"].as_array_mut()?.push(entry),
                None => directives.push(json!({
                    "Namespace": namespace,
                    "Dimensions": dimensions,
                    "Metrics": [entry],
                })),
            }
            root.insert(metric.name.to_owned(), json!(value));
        }
        for (name, value) in &self.dimensions {
            root.insert((*name).to_owned(), json!(value));
        }
        root.insert(
            "_aws".to_owned(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
        );
        Some(Value::Object(root))
    }
}

/// Whether and where metrics go, read from the environment once.
struct Settings {
    enabled: bool,
    namespace: String,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let on_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let switch = std::env::var("MAILMIND_METRICS").ok();
        let enabled = enabled(switch.as_deref(), on_lambda);
        let namespace = std::env::var("METRICS_NAMESPACE").ok();
        Settings {
            enabled,
            namespace: namespace_or_default(namespace.as_deref()).to_owned(),
        }
    })
}

/// `MAILMIND_METRICS` (`on`/`off`, `1`/`0`, `true`/`false`) decides; unset
/// (or unreadable), metrics are on in Lambda only.
fn enabled(switch: Option<&str>, on_lambda: bool) -> bool {
    match switch.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("on" | "1" | "true") => true,
        Some("off" | "0" | "false") => false,
        _ => on_lambda,
    }
}

/// A namespace CloudWatch accepts (1-255 of letters, digits and `.-_/#: `),
/// else [`DEFAULT_NAMESPACE`].
fn namespace_or_default(given: Option<&str>) -> &str {
    match given.map(str::trim) {
        Some(ns)
            if !ns.is_empty()
                && ns.len() <= 255
                && !ns.starts_with(':')
                && ns.chars().all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c)) =>
        {
            ns
        }
        _ => DEFAULT_NAMESPACE,
    }
}

fn emit(line: Line) {
    let settings = settings();
    if !settings.enabled {
        return;
    }
    match line.render(&settings.namespace, chrono::Utc::now().timestamp_millis()) {
        // One write per line: stdout's lock keeps concurrent lines whole.
        Some(document) => println!("{document}"),
        None => tracing::warn!("a metric line lacks a dimension; not emitted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provider;

    fn groq() -> &'static ProviderSpec {
        provider::find("groq").unwrap()
    }

    /// Checks the EMF rules on `document` and returns its directives.
    fn directives(document: &Value) -> Vec<Value> {
        let aws = &document["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_000i64);
        let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics").clone();
        assert!(!directives.is_empty());
        for directive in &directives {
            assert_eq!(directive["Namespace"], "Test/NS");
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                for key in set.as_array().expect("a dimension set") {
                    let value = &document[key.as_str().unwrap()];
                    assert!(value.is_string(), "dimension {key} has the string value {value}");
                }
            }
            for metric in directive["Metrics"].as_array().expect("Metrics") {
                let name = metric["Name"].as_str().unwrap();
                assert!(document[name].is_number(), "{name} has a value");
                let declared = ALL.iter().find(|m| m.name == name).expect("declared in ALL");
                assert_eq!(metric["Unit"], declared.unit.as_str());
                assert_eq!(directive["Dimensions"], json!(declared.dimensions));
            }
        }
        directives
    }

    fn render(line: Line) -> Value {
        line.render("Test/NS", 1_700_000_000_000)
            .expect("every dimension present")
    }

    #[test]
    fn a_validation_is_one_line_with_its_dimensions() {
        let outcome = CheckOutcome::Failed {
            reason: ErrorReason::ProviderUnavailable,
            retry_after_secs: None,
        };
        let document = render(validation_line(groq(), &outcome, Duration::from_millis(1250)));
        let directives = directives(&document);
        assert_eq!(document["Provider"], "groq");
        assert_eq!(document["Outcome"], "error");
        assert_eq!(document["Reason"], "provider_unavailable");
        assert_eq!(document["Validations"], 1.0);
        assert_eq!(document["ProviderLatency"], 1250.0);
        assert_eq!(document["ProviderUnavailable"], 1.0);
        assert_eq!(
            directives[0],
            json!({"Namespace": "Test/NS",
                   "Dimensions": [["Provider", "Outcome", "Reason"], ["Provider"]],
                   "Metrics": [{"Name": "Validations", "Unit": "Count"}]})
        );
        assert_eq!(
            directives[1]["Metrics"],
            json!([{"Name": "ProviderLatency", "Unit": "Milliseconds"},
                   {"Name": "ProviderUnavailable", "Unit": "Count"}])
        );

        let valid = render(validation_line(
            groq(),
            &CheckOutcome::Valid { models: vec![] },
            Duration::ZERO,
        ));
        assert_eq!((&valid["Outcome"], &valid["Reason"]), (&json!("valid"), &json!("none")));
        assert_eq!(valid["ProviderUnavailable"], 0.0);
        let timeout = CheckOutcome::Failed {
            reason: ErrorReason::Timeout,
            retry_after_secs: None,
        };
        assert_eq!(
            render(validation_line(groq(), &timeout, Duration::ZERO))["ProviderUnavailable"],
            1.0
        );
    }

    #[test]
    fn every_emitter_renders_valid_emf() {
        let lines = [
            pushes_line(2, 1, 1),
            revalidation_line(40, 3, Duration::from_secs(90)),
            Line::new()
                .count(&RESOLVES)
                .dimension("Provider", "groq")
                .dimension("Result", "ok"),
            Line::new()
                .count(&REPORTS)
                .dimension("Provider", "groq")
                .dimension("Outcome", UsageOutcome::Rejected.as_str())
                .dimension("Result", "rechecked"),
            Line::new()
                .count(&RATE_LIMITED)
                .dimension("Limit", RateLimit::Validations.as_str()),
            Line::new()
                .count(&AWS_THROTTLED)
                .dimension("Service", AwsService::Kms.as_str()),
        ];
        for line in lines {
            directives(&render(line));
        }
        let document = render(revalidation_line(40, 3, Duration::from_secs(90)));
        assert_eq!(document["RevalidationChecked"], 40.0);
        assert_eq!(document["RevalidationDue"], 3.0);
        assert_eq!(document["RevalidationLag"], 90.0);
        // A metric without dimensions: one empty dimension set.
        assert_eq!(document["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
    }

    #[test]
    fn a_line_missing_a_dimension_is_not_rendered() {
        let line = Line::new().count(&RESOLVES).dimension("Provider", "groq");
        assert!(line.render("NS", 0).is_none());
    }

    #[test]
    fn metric_names_are_unique() {
        for (i, metric) in ALL.iter().enumerate() {
            assert!(
                ALL[i + 1..].iter().all(|m| m.name != metric.name),
                "{} twice",
                metric.name
            );
            assert!(
                !metric.dimensions.is_empty(),
                "{}: at least one (maybe empty) set",
                metric.name
            );
        }
    }

    #[test]
    fn on_in_lambda_off_locally_unless_told() {
        assert!(enabled(None, true));
        assert!(!enabled(None, false));
        assert!(enabled(Some("on"), false));
        assert!(enabled(Some(" TRUE "), false));
        assert!(!enabled(Some("off"), true));
        assert!(!enabled(Some("0"), true));
        assert!(enabled(Some("whatever"), true));
    }

    #[test]
    fn the_namespace_falls_back_to_the_default() {
        assert_eq!(namespace_or_default(None), "MailMind");
        assert_eq!(namespace_or_default(Some("")), "MailMind");
        assert_eq!(namespace_or_default(Some("Team/MailMind-prod")), "Team/MailMind-prod");
        assert_eq!(namespace_or_default(Some("bad\"name")), "MailMind");
        assert_eq!(namespace_or_default(Some(&"a".repeat(256))), "MailMind");
    }
}
