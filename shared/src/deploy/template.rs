//! Renders `template.yaml` from `template.base.yaml` and the declarations:
//! the functions of [`super::FUNCTIONS`] (log group, function, WebSocket
//! wiring, alarm, dashboard lines, key policy principals, route throttling)
//! and the providers of [`PROVIDERS`] (one unavailability alarm each).
//!
//! Why generated text and not `Fn::ForEach`: the functions differ in
//! triggers, grants and variables, which a loop over a list could only carry
//! through parallel maps; the SAM CLI expands loops only behind a flag every
//! command would need; and the tests, the benchmark and the docs need the
//! same list in Rust anyway. The result is committed, so `sam`, `cfn-lint` and
//! a reviewer read plain CloudFormation; `tests/tests/suite/template.rs`
//! fails while it differs from what this renders
//! (`UPDATE_TEMPLATE=1 cargo test -p mailmind-tests --test suite template`).
//!
//! The base holds two kinds of placeholder: a line `#@ <block>` is replaced
//! by the block's lines at the marker's indentation, and `{{<value>}}` inside
//! a line (not a comment) by a value. An unknown name is an error, as is a
//! block or value the base never asks for.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::{FUNCTIONS, FunctionSpec, Grant, Trigger, upper_camel};
use crate::domain::provider::PROVIDERS;

/// The first lines of the rendered file.
const HEADER: &str = "\
# GENERATED from template.base.yaml and the declarations in shared/src/deploy/mod.rs
# (functions) and shared/src/domain/provider.rs (providers): edit those, then
#   UPDATE_TEMPLATE=1 cargo test -p mailmind-tests --test suite template
# The test fails while this file differs from what they render.
";

/// A base that asks for something unknown, or leaves something out.
#[derive(Debug, thiserror::Error)]
#[error("template.base.yaml: {0}")]
pub struct RenderError(String);

/// `template.yaml`'s text for the given base.
pub fn render(base: &str) -> Result<String, RenderError> {
    let blocks = blocks();
    let values = values();
    let mut used = BTreeSet::new();
    let mut out = String::from(HEADER);
    for line in base.lines() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("#@ ") {
            let name = name.trim();
            let block = blocks
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| RenderError(format!("unknown block `#@ {name}`")))?;
            used.insert(name.to_owned());
            let indent = &line[..line.len() - trimmed.len()];
            for generated in block.1.lines() {
                if generated.is_empty() {
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "{indent}{generated}");
                }
            }
            continue;
        }
        if trimmed.starts_with('#') {
            // Comments are copied as they are, placeholders named in them included.
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let end = rest[start..]
                .find("}}")
                .map(|e| start + e)
                .ok_or_else(|| RenderError(format!("unclosed `{{{{` in: {line}")))?;
            let name = &rest[start + 2..end];
            let value = values
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| RenderError(format!("unknown value `{{{{{name}}}}}`")))?;
            used.insert(name.to_owned());
            out.push_str(&rest[..start]);
            out.push_str(&value.1);
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    let unused: Vec<&str> = blocks
        .iter()
        .map(|(n, _)| *n)
        .chain(values.iter().map(|(n, _)| *n))
        .filter(|n| !used.contains(*n))
        .collect();
    if !unused.is_empty() {
        return Err(RenderError(format!("never asks for {}", unused.join(", "))));
    }
    Ok(out)
}

fn blocks() -> Vec<(&'static str, String)> {
    vec![
        ("functions", FUNCTIONS.iter().map(function_resources).collect()),
        ("seal-key-roles", role_list(|f| f.holds(Grant::SealKeys))),
        ("open-key-roles", role_list(|f| f.holds(Grant::OpenKeys))),
        ("key-user-roles", role_list(FunctionSpec::uses_key)),
        ("validation-route-settings", validation_route_settings()),
        ("function-alarms", FUNCTIONS.iter().map(function_alarm).collect()),
        (
            "provider-alarms",
            PROVIDERS.iter().map(|p| provider_alarm(p.id)).collect(),
        ),
        (
            "dashboard-alarms",
            dashboard_lines(&alarm_ids(), |id| format!("\"${{{id}.Arn}}\"")),
        ),
        (
            "dashboard-function-errors",
            dashboard_lines(&function_ids(), |id| {
                format!("[\"AWS/Lambda\", \"Errors\", \"FunctionName\", \"${{{id}}}\"]")
            }),
        ),
        (
            "dashboard-function-throttles",
            dashboard_lines(&function_ids(), |id| {
                format!("[\"AWS/Lambda\", \"Throttles\", \"FunctionName\", \"${{{id}}}\"]")
            }),
        ),
    ]
}

fn values() -> Vec<(&'static str, String)> {
    let ws: Vec<(&FunctionSpec, &str, bool)> = FUNCTIONS
        .iter()
        .filter_map(|f| match f.trigger {
            Trigger::WebSocket { route_key, two_way } => Some((f, route_key, two_way)),
            _ => None,
        })
        .collect();
    let mut routes = Vec::new();
    for (f, _, two_way) in &ws {
        routes.push(format!("{}Route", f.logical_stem()));
        if *two_way {
            routes.push(format!("{}RouteResponse", f.logical_stem()));
        }
    }
    let mut permissions = vec![];
    for f in FUNCTIONS {
        if matches!(f.trigger, Trigger::WebSocket { .. } | Trigger::WebSocketAuthorizer) {
            permissions.push(format!("{}Permission", f.logical_stem()));
        }
    }
    let route_keys: Vec<String> = ws
        .iter()
        .map(|(_, key, _)| {
            if *key == "$connect" {
                format!("{key} (authorized)")
            } else {
                key.to_string()
            }
        })
        .collect();
    // A deployment snapshots the routes: a new name whenever they change makes
    // CloudFormation create a new one and point the stage at it.
    let fingerprint = fnv1a(&format!("{routes:?}{route_keys:?}"));
    vec![
        (
            "websocket-deployment",
            format!("WebSocketDeployment{:08X}", fingerprint as u32),
        ),
        ("websocket-routes", routes.join(", ")),
        ("websocket-route-keys", route_keys.join(", ")),
        ("websocket-permissions", permissions.join(", ")),
        ("status-event-pattern", status_event_pattern()),
    ]
}

/// The EventBridge pattern that matches every status change.
pub fn status_event_pattern() -> String {
    use crate::domain::status_change::{EVENT_DETAIL_TYPE, EVENT_SOURCE};
    serde_json::json!({"source": [EVENT_SOURCE], "detail-type": [EVENT_DETAIL_TYPE]}).to_string()
}

/// 64-bit FNV-1a: stable across Rust versions (the std hasher is not).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn role_list(holds: impl Fn(&FunctionSpec) -> bool) -> String {
    FUNCTIONS
        .iter()
        .filter(|f| holds(f))
        .map(|f| format!("- !GetAtt {}Role.Arn\n", f.logical_id()))
        .collect()
}

fn validation_route_settings() -> String {
    FUNCTIONS
        .iter()
        .filter(|f| f.spends_validation_budget)
        .filter_map(FunctionSpec::route)
        .map(|route| {
            format!(
                "\"{}\":\n  ThrottlingRateLimit: !Ref ValidationThrottlingRateLimit\n  \
                 ThrottlingBurstLimit: !Ref ValidationThrottlingBurstLimit\n",
                route.route_key()
            )
        })
        .collect()
}

fn function_ids() -> Vec<String> {
    FUNCTIONS.iter().map(FunctionSpec::logical_id).collect()
}

/// Every alarm of the stack, for the dashboard's alarm widget.
fn alarm_ids() -> Vec<String> {
    [
        "ApiServerErrorsAlarm",
        "KmsThrottlingAlarm",
        "DynamoDbThrottlingAlarm",
        "RevalidationLagAlarm",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(FUNCTIONS.iter().map(|f| format!("{}Alarm", f.logical_id())))
    .chain(PROVIDERS.iter().map(|p| provider_alarm_id(p.id)))
    .collect()
}

/// JSON array elements, one a line, comma-separated.
fn dashboard_lines(ids: &[String], line: impl Fn(&str) -> String) -> String {
    let lines: Vec<String> = ids.iter().map(|id| line(id)).collect();
    lines.join(",\n") + "\n"
}

/// The two notification lists of an alarm: the topic of `AlarmTopicArn`,
/// else the one made for `AlarmEmail`, else nobody.
pub const ALARM_ACTIONS: &str = "\
AlarmActions: !If [NotifyAlarms, [!If [UseAlarmTopicArn, !Ref AlarmTopicArn, !Ref AlarmTopic]], !Ref AWS::NoValue]
OKActions: !If [NotifyAlarms, [!If [UseAlarmTopicArn, !Ref AlarmTopicArn, !Ref AlarmTopic]], !Ref AWS::NoValue]
";

fn indented(text: &str, indent: &str) -> String {
    text.lines().map(|l| format!("{indent}{l}\n")).collect()
}

/// `# text` wrapped at 76 columns, at `indent`.
fn comment(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + 2 + line.len() + 1 + word.len() > 78 {
            let _ = writeln!(out, "{indent}# {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}# {line}");
    }
    out
}

fn function_resources(f: &FunctionSpec) -> String {
    let stem = f.logical_stem();
    let id = f.logical_id();
    let name = f.name;
    let mut out = String::new();
    let title = format!("# --- {name}: {} ", f.summary);
    let rule = "-".repeat(78usize.saturating_sub(title.len() + 2));
    let _ = writeln!(out, "\n{}", format!("{title}{rule}").trim_end());
    let _ = write!(
        out,
        "{stem}LogGroup:
  Type: AWS::Logs::LogGroup
  DeletionPolicy: Delete
  UpdateReplacePolicy: Delete
  Properties: {{LogGroupName: !Sub \"/aws/lambda/${{AWS::StackName}}-{name}\", RetentionInDays: !Ref LogRetentionDays}}
"
    );
    out.push_str(&comment(f.notes, ""));
    let _ = write!(
        out,
        "{id}:
  Type: AWS::Serverless::Function
  Metadata: {{BuildMethod: makefile, ContextPath: ., WorkingDirectory: .}}
  Properties:
    FunctionName: !Sub \"${{AWS::StackName}}-{name}\"
    Description: {}
    CodeUri: functions/{name}
    LoggingConfig: {{LogGroup: !Ref {stem}LogGroup}}
",
        yaml_plain(f.summary)
    );
    if f.timeout_secs != super::DEFAULT_TIMEOUT_SECS {
        let _ = writeln!(out, "    Timeout: {}", f.timeout_secs);
    }
    if f.memory_mb != super::DEFAULT_MEMORY_MB {
        let _ = writeln!(out, "    MemorySize: {}", f.memory_mb);
    }
    if let (Some(parameter), Some(condition)) = (f.reserved_concurrency, f.reserved_concurrency_condition()) {
        let _ = writeln!(
            out,
            "    ReservedConcurrentExecutions: !If [{condition}, !Ref {parameter}, !Ref AWS::NoValue]"
        );
    }
    let environment = environment(f);
    if !environment.is_empty() {
        out.push_str("    Environment:\n      Variables:\n");
        for (variable, value) in environment {
            let _ = writeln!(out, "        {variable}: {value}");
        }
    }
    let policies = policies(f);
    if !policies.is_empty() {
        out.push_str("    Policies:\n");
        out.push_str(&indented(&policies, "      "));
    }
    match f.trigger {
        Trigger::Rest(route) => {
            let _ = write!(
                out,
                "    Events:
      Route:
        Type: HttpApi
        Properties:
          ApiId: !Ref HttpApi
          Method: {}
          Path: {}
",
                route.method(),
                route.path_template()
            );
        }
        Trigger::Schedule => out.push_str(
            "    Events:
      Schedule:
        Type: Schedule
        Properties: {Schedule: !Ref RevalidateSchedule, Description: Background re-validation of MailMind credentials}
",
        ),
        Trigger::WebSocketAuthorizer => {
            out.push_str(&invoke_permission(f, "authorizers/${WebSocketAuthorizer}"));
            let _ = write!(
                out,
                "WebSocketAuthorizer:
  Type: AWS::ApiGatewayV2::Authorizer
  Properties:
    ApiId: !Ref WebSocketApi
    Name: !Sub \"${{AWS::StackName}}-ws-token\"
    AuthorizerType: REQUEST
    AuthorizerUri: !Sub \"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{id}.Arn}}/invocations\"
    IdentitySource: [route.request.querystring.token]
"
            );
        }
        Trigger::WebSocket { route_key, two_way } => {
            out.push_str(&invoke_permission(f, &format!("*/{route_key}")));
            let operation = upper_camel(route_key);
            let auth = if route_key == "$connect" {
                "AuthorizationType: CUSTOM\n    AuthorizerId: !Ref WebSocketAuthorizer"
            } else {
                // Only $connect can have an authorizer; later routes of a
                // connection inherit its context.
                "AuthorizationType: NONE"
            };
            let _ = write!(
                out,
                "{stem}Integration:
  Type: AWS::ApiGatewayV2::Integration
  Properties:
    ApiId: !Ref WebSocketApi
    Description: {name}
    IntegrationType: AWS_PROXY
    IntegrationUri: !Sub \"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{id}.Arn}}/invocations\"
{stem}Route:
  Type: AWS::ApiGatewayV2::Route
  Properties:
    ApiId: !Ref WebSocketApi
    RouteKey: {route_key}
    OperationName: {operation}
    {auth}
    Target: !Sub \"integrations/${{{stem}Integration}}\"
"
            );
            if two_way {
                // The route response sends the function's body back to the client.
                let _ = write!(
                    out,
                    "    RouteResponseSelectionExpression: $default
{stem}RouteResponse:
  Type: AWS::ApiGatewayV2::RouteResponse
  Properties: {{ApiId: !Ref WebSocketApi, RouteId: !Ref {stem}Route, RouteResponseKey: $default}}
"
                );
            }
        }
        Trigger::Invoke => {}
    }
    out
}

fn invoke_permission(f: &FunctionSpec, source: &str) -> String {
    format!(
        "{stem}Permission:
  Type: AWS::Lambda::Permission
  Properties:
    Action: lambda:InvokeFunction
    FunctionName: !GetAtt {id}.Arn
    Principal: apigateway.amazonaws.com
    SourceArn: !Sub \"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{WebSocketApi}}/{source}\"
",
        stem = f.logical_stem(),
        id = f.logical_id()
    )
}

/// The variables a function reads besides the Globals' ones.
fn environment(f: &FunctionSpec) -> Vec<(&'static str, String)> {
    let mut variables = Vec::new();
    if f.uses_key() {
        variables.push(("KMS_KEY_ID", "!GetAtt CredentialsKey.Arn".to_owned()));
        // Whoever opens or seals a key calls its provider, a user's endpoint included.
        variables.push(("ENDPOINT_ALLOWED_HOSTS", "!Ref EndpointAllowedHosts".to_owned()));
        variables.push(("ENDPOINT_ALLOWED_PORTS", "!Ref EndpointAllowedPorts".to_owned()));
    }
    if let Some(function) = f.grants.iter().find_map(|g| match g {
        Grant::RelayReportsTo(function) => crate::deploy::function(function),
        _ => None,
    }) {
        variables.push(("REPORT_RELAY_FUNCTION", format!("!Ref {}", function.logical_id())));
    }
    if f.holds(Grant::PublishStatusEvents) {
        variables.push(("STATUS_EVENTS", "eventbridge".to_owned()));
    }
    if f.holds(Grant::PushToConnections) {
        // The stage's Management API by the stage's name, not a reference to
        // the stage: the stage waits for the WebSocket functions (a cycle).
        variables.push((
            "WS_MANAGEMENT_ENDPOINT",
            "!Sub \"https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${WebSocketStageName}\""
                .to_owned(),
        ));
    }
    if f.spends_validation_budget {
        variables.push(("VALIDATION_LIMIT", "!Ref ValidationLimit".to_owned()));
        variables.push((
            "VALIDATION_LIMIT_WINDOW_SECONDS",
            "!Ref ValidationLimitWindowSeconds".to_owned(),
        ));
    }
    variables.extend(f.environment.iter().map(|(name, value)| (*name, (*value).to_owned())));
    variables
}

/// The role's policies: the shared managed ones by reference, the rest inline.
fn policies(f: &FunctionSpec) -> String {
    let mut out = String::new();
    let mut inline = String::new();
    for grant in f.grants {
        match grant {
            Grant::ReadWriteTable => out.push_str("- !Ref ReadWriteOwnItemsPolicy\n"),
            Grant::SealKeys => out.push_str("- !Ref SealKeysPolicy\n"),
            Grant::OpenKeys => out.push_str("- !Ref OpenKeysPolicy\n"),
            Grant::PushToConnections => out.push_str("- !Ref PushToConnectionsPolicy\n"),
            Grant::Table { sid, actions } => {
                let actions: Vec<String> = actions.iter().map(|a| format!("dynamodb:{a}")).collect();
                let _ = writeln!(
                    inline,
                    "    - {{Sid: {sid}, Effect: Allow, Action: [{}], Resource: !GetAtt CredentialsTable.Arn}}",
                    actions.join(", ")
                );
            }
            Grant::RelayReportsTo(function) => {
                let target = crate::deploy::function(function).map(FunctionSpec::logical_id);
                let _ = writeln!(
                    inline,
                    "    - {{Sid: RelayReports, Effect: Allow, Action: [lambda:InvokeFunction], Resource: !GetAtt {}.Arn}}",
                    target.unwrap_or_default()
                );
            }
            Grant::PublishStatusEvents => inline.push_str(
                "    - {Sid: PublishStatusEvents, Effect: Allow, Action: [events:PutEvents], Resource: !Sub \"arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default\"}\n",
            ),
            Grant::QueryDueIndex => inline.push_str(
                "    - {Sid: QueryDueIndex, Effect: Allow, Action: [dynamodb:Query], Resource: !Sub \"${CredentialsTable.Arn}/index/DueIndex\"}\n",
            ),
        }
    }
    if !inline.is_empty() {
        out.push_str("- Version: \"2012-10-17\"\n  Statement:\n");
        out.push_str(&inline);
    }
    out
}

/// A description as a YAML plain scalar, quoted when YAML would misread it.
fn yaml_plain(text: &str) -> String {
    if text.contains(": ") || text.contains(" #") || text.starts_with(['$', '{', '[', '!', '&', '*', '"', '\'']) {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text.to_owned()
    }
}

fn function_alarm(f: &FunctionSpec) -> String {
    let id = f.logical_id();
    let metric = |metric_id: &str, name: &str| {
        format!(
            "  - {{Id: {metric_id}, ReturnData: false, MetricStat: {{Stat: Sum, Period: 300, Metric: {{Namespace: AWS/Lambda, MetricName: {name}, Dimensions: [{{Name: FunctionName, Value: !Ref {id}}}]}}}}}}\n"
        )
    };
    format!(
        "{id}Alarm:
  Type: AWS::CloudWatch::Alarm
  Properties:
    AlarmDescription: !Sub \"Errors or throttles of ${{{id}}}\"
    ComparisonOperator: GreaterThanOrEqualToThreshold
    Threshold: 1
    EvaluationPeriods: 1
    TreatMissingData: notBreaching
{}    Metrics:
      - {{Id: failures, Expression: \"FILL(errors, 0) + FILL(throttles, 0)\", ReturnData: true}}
{}{}",
        indented(ALARM_ACTIONS, "    "),
        indented(&metric("errors", "Errors"), "    "),
        indented(&metric("throttles", "Throttles"), "    "),
    )
}

fn provider_alarm_id(provider: &str) -> String {
    format!("ProviderUnavailable{}Alarm", upper_camel(provider))
}

fn provider_alarm(provider: &str) -> String {
    let metric = |metric_id: &str, stat: &str| {
        format!(
            "  - {{Id: {metric_id}, ReturnData: false, MetricStat: {{Stat: {stat}, Period: 300, Metric: {{Namespace: !Ref MetricsNamespace, MetricName: ProviderUnavailable, Dimensions: [{{Name: Provider, Value: {provider}}}]}}}}}}\n"
        )
    };
    format!(
        "{}:
  Type: AWS::CloudWatch::Alarm
  Properties:
    AlarmDescription: Half of the checks of {provider} found it unreachable or out of time.
    ComparisonOperator: GreaterThanOrEqualToThreshold
    Threshold: 0.5
    EvaluationPeriods: 3
    DatapointsToAlarm: 2
    TreatMissingData: notBreaching
{}    Metrics:
      - {{Id: rate, Expression: \"IF(checks >= 3, unavailable, 0)\", Label: unavailable share, ReturnData: true}}
{}{}",
        provider_alarm_id(provider),
        indented(ALARM_ACTIONS, "    "),
        indented(&metric("unavailable", "Average"), "    "),
        indented(&metric("checks", "SampleCount"), "    "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_unknown_or_unused_ones_refused() {
        let unknown = render("a: {{nothing}}\n").unwrap_err().to_string();
        assert!(unknown.contains("unknown value `{{nothing}}`"), "{unknown}");
        let unused = render("a: b\n").unwrap_err().to_string();
        assert!(unused.contains("never asks for functions"), "{unused}");
    }

    #[test]
    fn names_become_logical_ids() {
        assert_eq!(
            provider_alarm_id("google_gemini"),
            "ProviderUnavailableGoogleGeminiAlarm"
        );
        assert_eq!(yaml_plain("GET /a - b"), "GET /a - b");
        assert_eq!(yaml_plain("$default: x"), "\"$default: x\"");
    }
}
