//! `template.yaml` as data: the SAM function resources with their HTTP API
//! events, and the WebSocket API's wiring (route → integration → function,
//! route → authorizer → function).
//!
//! CloudFormation's short forms (`!Ref`, `!Sub`, `!GetAtt`, ...) stay tagged
//! values, read alongside their long forms (`Ref`, `Fn::Sub`, ...). Top-level
//! `Fn::ForEach` loops of `Resources` are expanded when their collection is a
//! literal list (`${Id}` and `&{Id}` in keys and strings, `!Ref Id`), so the
//! wiring is found whether it is written out or generated; a loop over
//! anything else (a parameter, say) is listed in `unexpanded_loops`.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

pub struct Template {
    /// Every resource by logical id, loops expanded.
    pub resources: BTreeMap<String, Value>,
    /// `Fn::ForEach::<name>` keys whose collection is not a literal list.
    pub unexpanded_loops: Vec<String>,
}

/// An `AWS::Serverless::Function` resource.
#[derive(Debug)]
pub struct Function {
    pub logical_id: String,
    pub code_uri: Option<String>,
    /// The `FunctionName` text (the string of its `!Sub`).
    pub function_name: Option<String>,
    /// `Metadata.BuildProperties.Binary`.
    pub binary: Option<String>,
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
    pub logical_id: String,
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
            unexpanded_loops: Vec::new(),
        };
        template.add(resources)?;
        Ok(template)
    }

    /// Adds the entries of a `Resources` mapping (or a loop's output), expanding loops.
    fn add(&mut self, entries: &serde_yaml_ng::Mapping) -> Result<(), String> {
        for (key, value) in entries {
            let key = key
                .as_str()
                .ok_or_else(|| format!("a resource key is not a string: {key:?}"))?;
            if key.starts_with("Fn::ForEach::") {
                match for_each(value) {
                    Some((identifier, items, output)) => {
                        for item in items {
                            let expanded = substitute(output, &identifier, &item);
                            self.add(expanded.as_mapping().expect("a loop's output is a mapping"))?;
                        }
                    }
                    None => self.unexpanded_loops.push(key.to_owned()),
                }
            } else if self.resources.insert(key.to_owned(), value.clone()).is_some() {
                return Err(format!("resource {key} is declared twice"));
            }
        }
        Ok(())
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
                    function_name: properties.get("FunctionName").and_then(sub_text),
                    binary: resource
                        .get("Metadata")
                        .and_then(|m| m.get("BuildProperties"))
                        .and_then(|b| b.get("Binary"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
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
                    logical_id: logical_id.clone(),
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

/// `[Identifier, [items...], {output}]` of a loop whose items are literal strings.
fn for_each(value: &Value) -> Option<(String, Vec<String>, &Value)> {
    let [identifier, collection, output] = value.as_sequence()?.as_slice() else {
        return None;
    };
    let items = collection
        .as_sequence()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()?;
    output.as_mapping()?;
    Some((identifier.as_str()?.to_owned(), items, output))
}

/// `value` with the loop identifier replaced by `item`.
fn substitute(value: &Value, identifier: &str, item: &str) -> Value {
    let in_text = |text: &str| {
        let alphanumeric: String = item.chars().filter(char::is_ascii_alphanumeric).collect();
        text.replace(&format!("${{{identifier}}}"), item)
            .replace(&format!("&{{{identifier}}}"), &alphanumeric)
    };
    match value {
        Value::String(text) => Value::String(in_text(text)),
        Value::Sequence(items) => Value::Sequence(items.iter().map(|v| substitute(v, identifier, item)).collect()),
        Value::Mapping(entries) => {
            if entries.len() == 1 && entries.get("Ref").and_then(Value::as_str) == Some(identifier) {
                return Value::String(item.to_owned());
            }
            Value::Mapping(
                entries
                    .iter()
                    .map(|(k, v)| (substitute(k, identifier, item), substitute(v, identifier, item)))
                    .collect(),
            )
        }
        Value::Tagged(tagged) => {
            if tagged.tag == "Ref" && tagged.value.as_str() == Some(identifier) {
                return Value::String(item.to_owned());
            }
            let mut tagged = tagged.clone();
            tagged.value = substitute(&tagged.value, identifier, item);
            Value::Tagged(tagged)
        }
        other => other.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The WebSocket wiring written as one loop, the way a shortened template
    /// may write it: found the same as written out.
    #[test]
    fn websocket_wiring_generated_by_fn_foreach_is_found() {
        let template = Template::parse(
            r#"
Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET}
  WsConnectFunction:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/ws-connect}
  WsDefaultFunction:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/ws-default}
  WsAuthorizerFunction:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/ws-authorizer}
  Authorizer:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      AuthorizerUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${WsAuthorizerFunction.Arn}/invocations"
  Fn::ForEach::Integrations:
    - Name
    - [Connect, Default]
    - Ws${Name}Permission:
        Type: AWS::Lambda::Permission
        Properties:
          FunctionName: !GetAtt [!Sub "Ws${Name}Function", Arn]
      Ws${Name}Integration:
        Type: AWS::ApiGatewayV2::Integration
        Properties:
          ApiId: !Ref Api
          Description: {"Fn::Sub": "ws-${Name}"}
          IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Ws${Name}Function.Arn}/invocations"
  WsConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: {Ref: Api}
      RouteKey: $connect
      AuthorizerId: !Ref Authorizer
      Target: !Sub "integrations/${WsConnectIntegration}"
  WsDefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: !Sub "$default"
      Target: !Join ["/", [integrations, !Ref WsDefaultIntegration]]
  Fn::ForEach::Elsewhere:
    - Name
    - !Ref SomeListParameter
    - ${Name}Thing: {Type: AWS::SNS::Topic}
"#,
        )
        .unwrap();
        assert_eq!(template.unexpanded_loops, ["Fn::ForEach::Elsewhere"]);
        assert!(template.resources.contains_key("WsDefaultPermission"));
        let routes: Vec<_> = template
            .websocket_routes()
            .into_iter()
            .map(|r| (r.route_key, r.function, r.authorizer_function))
            .collect();
        assert_eq!(
            routes,
            [
                (
                    "$connect".to_owned(),
                    Ok("WsConnectFunction".to_owned()),
                    Some(Ok("WsAuthorizerFunction".to_owned()))
                ),
                ("$default".to_owned(), Ok("WsDefaultFunction".to_owned()), None),
            ]
        );
        assert_eq!(template.functions().len(), 3);
    }

    #[test]
    fn sub_placeholders_name_resources_not_pseudo_parameters_or_literals() {
        assert_eq!(
            sub_references("arn:${AWS::Partition}:x:${Fn.Arn}/${!Literal}/${Stage}"),
            ["Fn", "Stage"]
        );
    }
}
