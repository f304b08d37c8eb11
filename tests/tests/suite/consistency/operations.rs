//! `template.yaml`'s alarms and dashboard watch what exists: every metric of
//! the service's namespace they name is one the code emits
//! (`mailmind::metrics::ALL`, with one of its dimension sets and values from
//! the code's closed sets), every function has its errors-and-throttles
//! alarm and its dashboard lines, every provider its unavailability alarm,
//! and the alarms of the issue (REST API 5xx rate, re-validation lag, KMS
//! and DynamoDB throttling) are there.

use std::collections::{BTreeMap, BTreeSet};

use mailmind::domain::provider::PROVIDERS;
use mailmind::metrics::{self, AwsService, RateLimit};
use serde_json::Value as Json;
use serde_yaml_ng::Value;

use super::{fail_on, template};

/// The name `!Ref X` (or `{Ref: X}`) refers to.
fn ref_name(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        Value::Mapping(map) => map.get("Ref").and_then(Value::as_str),
        _ => None,
    }
}

/// The text of `!Sub "..."` (or `{Fn::Sub: ...}`).
fn sub_text(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Sub" => tagged.value.as_str(),
        Value::Mapping(map) => map.get("Fn::Sub").and_then(Value::as_str),
        _ => None,
    }
}

/// One metric an alarm reads.
#[derive(Debug)]
struct Watched {
    /// `Some(x)` for a literal namespace, `None` for `!Ref MetricsNamespace`.
    namespace: Option<String>,
    name: String,
    /// Dimension name → literal value or the logical id it refers to.
    dimensions: BTreeMap<String, String>,
}

fn watched(metric: &Value, alarm: &str, problems: &mut Vec<String>) -> Option<Watched> {
    let namespace = match &metric["Namespace"] {
        Value::String(s) => Some(s.clone()),
        other if ref_name(other) == Some("MetricsNamespace") => None,
        other => {
            problems.push(format!(
                "{alarm}: namespace {other:?} is neither literal nor !Ref MetricsNamespace"
            ));
            return None;
        }
    };
    let name = metric["MetricName"].as_str()?.to_owned();
    let mut dimensions = BTreeMap::new();
    for dimension in metric["Dimensions"].as_sequence().into_iter().flatten() {
        let key = dimension["Name"].as_str().unwrap_or("?").to_owned();
        let value = &dimension["Value"];
        let value = value.as_str().or_else(|| ref_name(value)).unwrap_or("?").to_owned();
        dimensions.insert(key, value);
    }
    Some(Watched {
        namespace,
        name,
        dimensions,
    })
}

/// Every alarm by logical id, with the metrics it reads (a single metric or
/// the `MetricStat`s of its metric math).
fn alarms(problems: &mut Vec<String>) -> BTreeMap<String, Vec<Watched>> {
    let template = template();
    let mut alarms = BTreeMap::new();
    for (id, resource) in &template.resources {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let properties = &resource["Properties"];
        let mut metrics = Vec::new();
        if properties.get("MetricName").is_some() {
            metrics.extend(watched(properties, id, problems));
        }
        for query in properties["Metrics"].as_sequence().into_iter().flatten() {
            if let Some(stat) = query.get("MetricStat") {
                metrics.extend(watched(&stat["Metric"], id, problems));
            }
        }
        if metrics.is_empty() {
            problems.push(format!("{id}: an alarm that reads no metric"));
        }
        for actions in ["AlarmActions", "OKActions"] {
            if !format!("{:?}", properties[actions]).contains("AlarmTopicArn") {
                problems.push(format!("{id}: {actions} do not notify the alarm topic"));
            }
        }
        alarms.insert(id.clone(), metrics);
    }
    alarms
}

/// The values the code can give each dimension of the service's metrics.
fn dimension_values() -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut values: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    values.insert("Provider", PROVIDERS.iter().map(|p| p.id.to_owned()).collect());
    values.insert(
        "Service",
        [AwsService::Kms, AwsService::DynamoDb]
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
    );
    values.insert(
        "Limit",
        [RateLimit::Validations, RateLimit::Sockets]
            .iter()
            .map(|l| l.as_str().to_owned())
            .collect(),
    );
    values
}

#[test]
fn every_alarm_watches_a_metric_that_is_emitted() {
    let mut problems = Vec::new();
    let alarms = alarms(&mut problems);
    let template = template();
    let function_ids: BTreeSet<String> = template.functions().into_iter().map(|f| f.logical_id).collect();
    let known_values = dimension_values();
    for (id, metrics) in &alarms {
        for m in metrics {
            let dims: Vec<&str> = m.dimensions.keys().map(String::as_str).collect();
            match m.namespace.as_deref() {
                None => {
                    let Some(declared) = metrics::ALL.iter().find(|d| d.name == m.name) else {
                        problems.push(format!("{id}: {} is not a metric of mailmind::metrics::ALL", m.name));
                        continue;
                    };
                    let matches_a_set = declared.dimensions.iter().any(|set| {
                        let set: BTreeSet<&str> = set.iter().copied().collect();
                        set == dims.iter().copied().collect()
                    });
                    if !matches_a_set {
                        problems.push(format!(
                            "{id}: {} with dimensions {dims:?}, but the code publishes it under {:?}",
                            m.name, declared.dimensions
                        ));
                    }
                    for (key, value) in &m.dimensions {
                        if let Some(allowed) = known_values.get(key.as_str())
                            && !allowed.contains(value)
                        {
                            problems.push(format!(
                                "{id}: {key}={value} is never emitted (the code has {allowed:?})"
                            ));
                        }
                    }
                }
                Some("AWS/Lambda") => {
                    let function = m.dimensions.get("FunctionName");
                    if !["Errors", "Throttles"].contains(&m.name.as_str())
                        || !function.is_some_and(|f| function_ids.contains(f))
                    {
                        problems.push(format!("{id}: AWS/Lambda {} of {function:?}", m.name));
                    }
                }
                Some("AWS/ApiGateway") => {
                    if m.dimensions.get("ApiId").map(String::as_str) != Some("HttpApi") {
                        problems.push(format!("{id}: AWS/ApiGateway {} not of HttpApi", m.name));
                    }
                }
                Some("AWS/DynamoDB") => {
                    if m.dimensions.get("TableName").map(String::as_str) != Some("CredentialsTable") {
                        problems.push(format!("{id}: AWS/DynamoDB {} not of CredentialsTable", m.name));
                    }
                }
                Some(other) => problems.push(format!("{id}: namespace {other} is not watched on purpose")),
            }
        }
    }
    fail_on(problems, "template.yaml's alarms and the metrics that exist");
}

#[test]
fn every_function_provider_and_risk_has_its_alarm() {
    let mut problems = Vec::new();
    let alarms = alarms(&mut problems);
    let reads = |namespace: Option<&str>, name: &str, dimension: (&str, &str)| {
        alarms.values().any(|metrics| {
            metrics.iter().any(|m| {
                m.namespace.as_deref() == namespace
                    && m.name == name
                    && m.dimensions.get(dimension.0).map(String::as_str) == Some(dimension.1)
            })
        })
    };
    for function in template().functions() {
        let id = function.logical_id.as_str();
        for metric in ["Errors", "Throttles"] {
            if !reads(Some("AWS/Lambda"), metric, ("FunctionName", id)) {
                problems.push(format!(
                    "{id}: no alarm reads its AWS/Lambda {metric} (copy a <Name>FunctionAlarm of section 5)"
                ));
            }
        }
    }
    for provider in PROVIDERS {
        if !reads(None, metrics::PROVIDER_UNAVAILABLE.name, ("Provider", provider.id)) {
            problems.push(format!(
                "provider {}: no alarm reads ProviderUnavailable with Provider={}",
                provider.id, provider.id
            ));
        }
    }
    let any_reads = |namespace: Option<&str>, name: &str| {
        alarms.values().any(|metrics| {
            metrics
                .iter()
                .any(|m| m.namespace.as_deref() == namespace && m.name == name)
        })
    };
    if !any_reads(Some("AWS/ApiGateway"), "5xx") || !any_reads(Some("AWS/ApiGateway"), "Count") {
        problems.push("no alarm on the REST API's 5xx rate (5xx / Count)".into());
    }
    if !any_reads(None, metrics::REVALIDATION_LAG.name) {
        problems.push("no alarm on RevalidationLag".into());
    }
    for service in [AwsService::Kms, AwsService::DynamoDb] {
        if !reads(None, metrics::AWS_THROTTLED.name, ("Service", service.as_str())) {
            problems.push(format!("no alarm on AwsThrottled of {}", service.as_str()));
        }
    }
    fail_on(problems, "template.yaml's alarms and what must be watched");
}

/// The dashboard body as JSON, `${...}` replaced by placeholders.
fn dashboard() -> (String, Json) {
    let template = template();
    let dashboards: Vec<&Value> = template
        .resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Dashboard"))
        .collect();
    assert_eq!(dashboards.len(), 1, "template.yaml has one dashboard");
    let text = sub_text(&dashboards[0]["Properties"]["DashboardBody"])
        .expect("DashboardBody is a !Sub string")
        .to_owned();
    let mut substituted = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        substituted.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        let name = &rest[start + 2..end];
        // Numbers where JSON wants a number (an annotation's value).
        substituted.push_str(if name.ends_with("Seconds") { "1" } else { "X" });
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let json = serde_json::from_str(&substituted).unwrap_or_else(|e| panic!("DashboardBody is not JSON: {e}"));
    (text, json)
}

#[test]
fn the_dashboard_shows_every_function_and_every_metric_of_the_code() {
    let (text, body) = dashboard();
    let mut problems = Vec::new();
    for function in template().functions() {
        for metric in ["Errors", "Throttles"] {
            let line = format!(
                r#"["AWS/Lambda", "{metric}", "FunctionName", "${{{}}}"]"#,
                function.logical_id
            );
            if !text.contains(&line) {
                problems.push(format!("the dashboard has no line {line}"));
            }
        }
    }
    // The service's metrics the dashboard names: metric arrays in the
    // namespace, and SEARCH(... MetricName="X" ...) expressions.
    let mut shown = BTreeSet::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        for metric in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let items = metric.as_array().expect("a metric is an array");
            if items.first().and_then(Json::as_str) == Some("X") {
                shown.insert(items[1].as_str().unwrap_or("?").to_owned());
            }
            for item in items {
                let Some(expression) = item.get("expression").and_then(Json::as_str) else {
                    continue;
                };
                let name = expression
                    .split("MetricName=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or("?");
                shown.insert(name.to_owned());
            }
        }
    }
    let emitted: BTreeSet<String> = metrics::ALL.iter().map(|m| m.name.to_owned()).collect();
    for name in shown.difference(&emitted) {
        problems.push(format!(
            "the dashboard shows {name}, which mailmind::metrics::ALL does not have"
        ));
    }
    for name in emitted.difference(&shown) {
        problems.push(format!("the dashboard does not show {name}"));
    }
    fail_on(problems, "the dashboard, the functions and mailmind::metrics::ALL");
}

#[test]
fn tracing_is_a_parameter_off_by_default() {
    let text = std::fs::read_to_string(mailmind_tests::repo_root().join("template.yaml")).unwrap();
    let root: Value = serde_yaml_ng::from_str(&text).unwrap();
    let parameter = &root["Parameters"]["Tracing"];
    assert_eq!(parameter["Default"].as_str(), Some("Disabled"));
    let allowed: Vec<&str> = parameter["AllowedValues"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(allowed, ["Disabled", "Active", "PassThrough"]);
    assert_eq!(ref_name(&root["Globals"]["Function"]["Tracing"]), Some("Tracing"));
    assert_eq!(
        ref_name(&root["Globals"]["Function"]["Environment"]["Variables"]["METRICS_NAMESPACE"]),
        Some("MetricsNamespace")
    );
    assert_eq!(
        root["Parameters"]["MetricsNamespace"]["Default"].as_str(),
        Some(metrics::DEFAULT_NAMESPACE)
    );
}
