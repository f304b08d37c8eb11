//! `template.yaml` as data: the SAM function resources with their HTTP API
//! events, and the WebSocket API's wiring (route → integration → function,
//! route → authorizer → function).
//!
//! CloudFormation's short forms (`!Ref`, `!Sub`, `!GetAtt`, ...) stay tagged
//! values, read alongside their long forms (`Ref`, `Fn::Sub`, ...).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

pub struct Template {
    /// Every resource by logical id.
    pub resources: BTreeMap<String, Value>,
}

/// An `AWS::Serverless::Function` resource.
#[derive(Debug)]
pub struct Function {
    pub logical_id: String,
    pub code_uri: Option<String>,
    /// Its events of `Type: HttpApi`, as (event name, method, path).
    pub http_routes: Vec<(String, String, String)>,
}

impl Function {
    /// The crate it is built from: `CodeUri: functions/<name>`.
    pub fn name(&self) -> Option<&str> {
        self.code_uri
            .as_deref()
            .and_then(|uri| uri.trim_end_matches('/').strip_prefix("functions/"))
    }
}

/// An `AWS::ApiGatewayV2::Route` of a WebSocket API.
#[derive(Debug)]
pub struct WebSocketRoute {
    pub route_key: String,
    /// The function its integration invokes, or why none was found.
    pub function: Result<String, String>,
    /// The function of its authorizer, if it has one (or why none was found).
    pub authorizer_function: Option<Result<String, String>>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let root: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        let resources = root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or("no Resources mapping")?;
        let mut template = Template {
            resources: BTreeMap::new(),
        };
        for (key, value) in resources {
            let key = key
                .as_str()
                .ok_or_else(|| format!("a resource key is not a string: {key:?}"))?;
            if template.resources.insert(key.to_owned(), value.clone()).is_some() {
                return Err(format!("resource {key} is declared twice"));
            }
        }
        Ok(template)
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
    }

    fn type_of(&self, logical_id: &str) -> Option<&str> {
        self.resources.get(logical_id)?.get("Type")?.as_str()
    }

    pub fn functions(&self) -> Vec<Function> {
        self.of_type("AWS::Serverless::Function")
            .map(|(logical_id, resource)| {
                let properties = &resource["Properties"];
                let mut http_routes = Vec::new();
                if let Some(events) = properties.get("Events").and_then(Value::as_mapping) {
                    for (name, event) in events {
                        if event.get("Type").and_then(Value::as_str) == Some("HttpApi") {
                            let field = |f: &str| {
                                event["Properties"]
                                    .get(f)
                                    .and_then(Value::as_str)
                                    .unwrap_or("<none>")
                                    .to_owned()
                            };
                            http_routes.push((name.as_str().unwrap_or("?").to_owned(), field("Method"), field("Path")));
                        }
                    }
                }
                Function {
                    logical_id: logical_id.clone(),
                    code_uri: properties.get("CodeUri").and_then(Value::as_str).map(str::to_owned),
                    http_routes,
                }
            })
            .collect()
    }

    /// The routes of every `ProtocolType: WEBSOCKET` API.
    pub fn websocket_routes(&self) -> Vec<WebSocketRoute> {
        let apis: BTreeSet<&String> = self
            .of_type("AWS::ApiGatewayV2::Api")
            .filter(|(_, r)| r["Properties"].get("ProtocolType").and_then(Value::as_str) == Some("WEBSOCKET"))
            .map(|(id, _)| id)
            .collect();
        self.of_type("AWS::ApiGatewayV2::Route")
            .filter(|(_, r)| references(&r["Properties"]["ApiId"]).iter().any(|id| apis.contains(id)))
            .map(|(logical_id, route)| {
                let properties = &route["Properties"];
                let route_key = properties
                    .get("RouteKey")
                    .and_then(sub_text)
                    .unwrap_or_else(|| "<none>".to_owned());
                let function = self
                    .referenced(&properties["Target"], "AWS::ApiGatewayV2::Integration")
                    .and_then(|integration| {
                        let uri = &self.resources[&integration]["Properties"]["IntegrationUri"];
                        self.referenced(uri, "AWS::Serverless::Function")
                            .map_err(|e| format!("integration {integration}: {e}"))
                    })
                    .map_err(|e| format!("route {logical_id} (Target): {e}"));
                let authorizer_function = properties.get("AuthorizerId").map(|id| {
                    self.referenced(id, "AWS::ApiGatewayV2::Authorizer")
                        .and_then(|authorizer| {
                            let uri = &self.resources[&authorizer]["Properties"]["AuthorizerUri"];
                            self.referenced(uri, "AWS::Serverless::Function")
                                .map_err(|e| format!("authorizer {authorizer}: {e}"))
                        })
                        .map_err(|e| format!("route {logical_id} (AuthorizerId): {e}"))
                });
                WebSocketRoute {
                    route_key,
                    function,
                    authorizer_function,
                }
            })
            .collect()
    }

    /// The one resource of type `kind` that `value` refers to.
    fn referenced(&self, value: &Value, kind: &str) -> Result<String, String> {
        let found: Vec<String> = references(value)
            .into_iter()
            .filter(|id| self.type_of(id) == Some(kind))
            .collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!("refers to no {kind} ({})", one_line(value))),
            many => Err(format!("refers to several {kind}: {many:?}")),
        }
    }
}

/// The text of a `!Sub` (or `Fn::Sub`, or a plain string).
fn sub_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Tagged(tagged) if tagged.tag == "Sub" => sub_text(&tagged.value),
        Value::Sequence(items) => items.first().and_then(sub_text),
        Value::Mapping(entries) => entries.get("Fn::Sub").and_then(sub_text),
        _ => None,
    }
}

/// The logical ids (and parameter names) `value` refers to through `Ref`,
/// `Fn::GetAtt` and `${...}` in `Fn::Sub`, short or long form, at any depth.
pub fn references(value: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    collect_references(value, &mut found);
    found
}

fn collect_references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            intrinsic(tag.trim_start_matches('!'), &tagged.value, found);
        }
        Value::Mapping(entries) => {
            for (key, inner) in entries {
                match key.as_str() {
                    Some("Ref") => intrinsic("Ref", inner, found),
                    Some("Fn::GetAtt") => intrinsic("GetAtt", inner, found),
                    Some("Fn::Sub") => intrinsic("Sub", inner, found),
                    _ => collect_references(inner, found),
                }
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| collect_references(v, found)),
        _ => {}
    }
}

/// The references of intrinsic function `name` (short name: `Ref`, `GetAtt`, `Sub`, ...).
fn intrinsic(name: &str, argument: &Value, found: &mut BTreeSet<String>) {
    match name {
        "Ref" => found.extend(argument.as_str().map(str::to_owned)),
        "GetAtt" => {
            let target = match argument {
                Value::Sequence(parts) => parts.first().and_then(Value::as_str),
                other => other.as_str().and_then(|s| s.split('.').next()),
            };
            found.extend(target.map(str::to_owned));
        }
        "Sub" => {
            let (text, variables) = match argument {
                Value::Sequence(parts) => (parts.first().and_then(Value::as_str), parts.get(1)),
                other => (other.as_str(), None),
            };
            for name in text.map(sub_references).unwrap_or_default() {
                let local = variables.and_then(|v| v.get(name.as_str())).is_some();
                if !local {
                    found.insert(name);
                }
            }
            if let Some(variables) = variables {
                collect_references(variables, found);
            }
        }
        _ => collect_references(argument, found),
    }
}

/// The names of the `${Name}` / `${Name.Attribute}` placeholders of a `Fn::Sub`
/// text (not `${!Literal}`, not pseudo parameters such as `${AWS::Region}`).
fn sub_references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { break };
        let inner = &rest[..end];
        rest = &rest[end + 1..];
        if inner.starts_with('!') || inner.contains("::") {
            continue;
        }
        names.push(inner.split('.').next().unwrap_or(inner).to_owned());
    }
    names
}

fn one_line(value: &Value) -> String {
    serde_yaml_ng::to_string(value)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
