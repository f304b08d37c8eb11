//! The four places that say which functions and routes exist agree:
//!
//! - `functions/<name>/`: one crate per function (package and binary `<name>`);
//! - `template.yaml`: one `AWS::Serverless::Function` per function, with
//!   `CodeUri: functions/<name>`, its REST route as a `Type: HttpApi` event,
//!   or its WebSocket route as a route → integration (or authorizer) → function;
//! - `events/`: the payload each function receives, as API Gateway sends it;
//! - `mailmind::handlers::Route::resolve`: the REST routes the local server
//!   (and every REST function) resolves.
//!
//! Rule for `events/`: each function `<name>` has its payload `<name>.json`;
//! every other file is a variant of one function's payload, named
//! `<name>-<variant>.json` (e.g. `credentials-list-no-claims.json`), for the
//! same route. A payload with `requestContext.http` (an HTTP API v2 event)
//! makes its function a REST function; a payload that is a request object
//! with an `action` (no `requestContext`) makes it a function other MailMind
//! functions invoke directly; the others serve the WebSocket API.
//!
//! Each test collects every disagreement and fails with all of them, each
//! naming the places that disagree.

mod cors;
mod edge_limits;
mod key_policy;
mod operations;
mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use http::Method;
use mailmind::handlers::{Route, RouteMatch};
use mailmind_tests::{
    event, function_names, invoked_function_names, is_rest_function, is_websocket_function, repo_root,
};
use serde_json::Value;

use template::Template;

/// The value put in for `{provider}` when a template path is resolved.
const PROVIDER: &str = "groq";

fn template() -> Template {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Template::parse(&text).unwrap_or_else(|e| panic!("template.yaml: {e}"))
}

/// The base names of `events/*.json`.
fn event_files() -> BTreeSet<String> {
    let dir = repo_root().join("events");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("an events/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The function a payload file belongs to: `<name>` or `<name>-<variant>`,
/// the longest function name that fits.
fn owner_of<'a>(file: &str, functions: &'a [String]) -> Option<&'a String> {
    functions
        .iter()
        .filter(|f| file == f.as_str() || file.strip_prefix(f.as_str()).is_some_and(|rest| rest.starts_with('-')))
        .max_by_key(|f| f.len())
}

/// The `name` of `[package]` in a Cargo.toml.
fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(value) = line.strip_prefix("name") {
            let value = value.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_owned());
        }
    }
    None
}

/// A route key as the HTTP API and `Route::resolve` spell it.
fn route_key(method: &str, path: &str) -> String {
    format!("{method} {path}")
}

/// What the REST resolver answers for a route key's method and path (with
/// `{provider}` filled in), as a route key or the reason there is none.
fn resolve(method: &str, path: &str) -> Result<&'static str, String> {
    let concrete = path.replace("{provider}", PROVIDER);
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| format!("method {method}: {e}"))?;
    match Route::resolve(&method, &concrete) {
        RouteMatch::Found { route_key, .. } => Ok(route_key),
        other => Err(format!("{other:?} for {method} {concrete}")),
    }
}

fn fail_on(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what} disagree:\n  - {}", problems.join("\n  - "));
}

#[test]
fn function_folders_template_functions_and_event_payloads_are_the_same_set() {
    let functions = function_names();
    let folders: BTreeSet<String> = functions.iter().cloned().collect();
    let mut problems = Vec::new();

    for name in &functions {
        let manifest = repo_root().join("functions").join(name).join("Cargo.toml");
        match package_name(&manifest) {
            Some(package) if &package == name => {}
            other => problems.push(format!(
                "functions/{name}/Cargo.toml names its package {other:?}; the folder, the package and \
                 the binary are all `{name}`"
            )),
        }
    }

    let mut in_template = BTreeSet::new();
    for f in template().functions() {
        let id = &f.logical_id;
        let Some(name) = f
            .code_uri
            .as_deref()
            .and_then(|uri| uri.trim_end_matches('/').strip_prefix("functions/"))
            .filter(|name| !name.is_empty() && !name.contains('/'))
        else {
            problems.push(format!(
                "template.yaml: {id} has CodeUri {:?}, not functions/<name>",
                f.code_uri
            ));
            continue;
        };
        if !in_template.insert(name.to_owned()) {
            problems.push(format!(
                "template.yaml: two function resources have CodeUri functions/{name} ({id} is one)"
            ));
        }
        if f.binary.as_deref() != Some(name) {
            problems.push(format!(
                "template.yaml: {id} (CodeUri functions/{name}) builds Binary {:?}",
                f.binary
            ));
        }
        if !f
            .function_name
            .as_deref()
            .is_some_and(|n| n.ends_with(&format!("-{name}")))
        {
            problems.push(format!(
                "template.yaml: {id} (CodeUri functions/{name}) has FunctionName {:?}, not ...-{name}",
                f.function_name
            ));
        }
    }
    for name in folders.difference(&in_template) {
        problems.push(format!(
            "functions/{name}/ has no AWS::Serverless::Function with CodeUri functions/{name} in template.yaml"
        ));
    }
    for name in in_template.difference(&folders) {
        problems.push(format!(
            "template.yaml has a function with CodeUri functions/{name}, but functions/{name}/Cargo.toml does not exist"
        ));
    }

    let files = event_files();
    for name in &functions {
        if !files.contains(name) {
            problems.push(format!("functions/{name}/ has no payload events/{name}.json"));
        }
    }
    for file in &files {
        if owner_of(file, &functions).is_none() {
            problems.push(format!(
                "events/{file}.json is named after no function of functions/ (a payload is <function>.json \
                 or <function>-<variant>.json)"
            ));
        }
    }
    fail_on(problems, "functions/, template.yaml's functions and events/");
}

#[test]
fn every_http_route_agrees_across_template_event_and_resolver() {
    let functions = function_names();
    let template_functions = template().functions();
    let by_name: BTreeMap<&str, &template::Function> = template_functions
        .iter()
        .filter_map(|f| {
            Some((
                f.code_uri
                    .as_deref()?
                    .trim_end_matches('/')
                    .strip_prefix("functions/")?,
                f,
            ))
        })
        .collect();
    let mut problems = Vec::new();

    for name in &functions {
        let Some(f) = by_name.get(name.as_str()) else {
            continue; // Reported by the test of the sets.
        };
        if !repo_root().join("events").join(format!("{name}.json")).is_file() {
            continue; // Likewise.
        }
        let id = &f.logical_id;
        let payload = event(name);
        if !is_rest_function(name) {
            for (event_name, method, path) in &f.http_routes {
                problems.push(format!(
                    "template.yaml: {id} (functions/{name}) has the HttpApi event {event_name} ({method} {path}), \
                     but events/{name}.json is not an HTTP API event (no requestContext.http)"
                ));
            }
            continue;
        }
        let [(_, method, path)] = f.http_routes.as_slice() else {
            problems.push(format!(
                "template.yaml: {id} (functions/{name}) has {} HttpApi events; a REST function (events/{name}.json \
                 is an HTTP API event) has exactly one",
                f.http_routes.len()
            ));
            continue;
        };
        let in_template = route_key(method, path);
        let in_event = payload["routeKey"].as_str().unwrap_or("<none>");
        if in_event != in_template {
            problems.push(format!(
                "{name}: template.yaml's {id} routes {in_template}, events/{name}.json has routeKey {in_event}"
            ));
        }
        let context_key = payload.pointer("/requestContext/routeKey").and_then(Value::as_str);
        if context_key != Some(in_event) {
            problems.push(format!(
                "events/{name}.json: routeKey {in_event} but requestContext.routeKey {context_key:?}"
            ));
        }
        match resolve(method, path) {
            Ok(resolved) if resolved == in_template => {}
            Ok(resolved) => problems.push(format!(
                "{name}: template.yaml's {id} routes {in_template}, Route::resolve calls it {resolved}"
            )),
            Err(e) => problems.push(format!(
                "{name}: template.yaml's {id} routes {in_template}, Route::resolve finds no route: {e}"
            )),
        }
        // The payload itself is a request for that route.
        let sent_method = payload.pointer("/requestContext/http/method").and_then(Value::as_str);
        let sent_path = payload["rawPath"].as_str();
        if let (Some(m), Some(p)) = (sent_method, sent_path) {
            match resolve(m, p) {
                Ok(resolved) if resolved == in_event => {}
                other => problems.push(format!(
                    "events/{name}.json: routeKey {in_event}, but its request ({m} {p}) resolves to {other:?}"
                )),
            }
        } else {
            problems.push(format!("events/{name}.json: no requestContext.http.method or rawPath"));
        }
    }

    // Variants are payloads for their function's route.
    for file in event_files() {
        let Some(owner) = owner_of(&file, &functions) else {
            continue;
        };
        if &file == owner || !repo_root().join("events").join(format!("{owner}.json")).is_file() {
            continue;
        }
        let (variant, main) = (event(&file), event(owner));
        let kind = |e: &Value| e.pointer("/requestContext/http").is_some();
        let key = |e: &Value| {
            e.pointer("/requestContext/routeKey")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if kind(&variant) != kind(&main) || key(&variant) != key(&main) {
            problems.push(format!(
                "events/{file}.json is a variant of events/{owner}.json but is for route {:?}, not {:?}",
                key(&variant),
                key(&main)
            ));
        }
    }
    fail_on(problems, "template.yaml's HTTP routes, events/ and Route::resolve");
}

/// Every route of `Route::ALL` is served by the function it names, with the
/// same route key in template.yaml, and resolves to itself.
#[test]
fn every_route_the_resolver_knows_has_its_function() {
    let template_functions = template().functions();
    let mut problems = Vec::new();
    for route in Route::ALL {
        let name = route.function_name();
        let key = route.route_key();
        match template_functions.iter().find(|f| f.name() == Some(name)) {
            None => problems.push(format!(
                "Route::{route:?} names the function {name}, which template.yaml does not have"
            )),
            Some(f) => {
                let keys: Vec<String> = f.http_routes.iter().map(|(_, m, p)| route_key(m, p)).collect();
                if keys != [key] {
                    problems.push(format!(
                        "Route::{route:?} has the route key {key}, but template.yaml's {name} routes {keys:?}"
                    ));
                }
            }
        }
        let (method, path) = key.split_once(' ').expect("route keys are '<METHOD> <path>'");
        match resolve(method, path) {
            Ok(resolved) if resolved == key => {}
            other => problems.push(format!("Route::{route:?} ({key}) resolves to {other:?}")),
        }
    }
    for f in &template_functions {
        if !f.http_routes.is_empty() && !Route::ALL.iter().any(|r| Some(r.function_name()) == f.name()) {
            problems.push(format!(
                "template.yaml's {} serves HTTP routes, but no Route names it",
                f.logical_id
            ));
        }
    }
    fail_on(problems, "Route::ALL and template.yaml's functions");
}

#[test]
fn every_websocket_function_is_wired_to_its_route() {
    let functions = function_names();
    let template = template();
    let template_functions = template.functions();
    let name_of: BTreeMap<&str, &str> = template_functions
        .iter()
        .filter_map(|f| {
            let uri = f.code_uri.as_deref()?.trim_end_matches('/');
            Some((f.logical_id.as_str(), uri.strip_prefix("functions/")?))
        })
        .collect();
    let routes = template.websocket_routes();
    let mut problems = Vec::new();

    // What the template wires: function name -> route keys, as integration or as authorizer.
    let mut integrated: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut authorizes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for route in &routes {
        let wired = std::iter::once((&route.function, &mut integrated))
            .chain(route.authorizer_function.as_ref().map(|a| (a, &mut authorizes)));
        for (target, into) in wired {
            match target {
                Ok(logical_id) => match name_of.get(logical_id.as_str()) {
                    Some(name) => into.entry(name).or_default().push(&route.route_key),
                    None => problems.push(format!(
                        "template.yaml: WebSocket route {} ({}) invokes {logical_id}, which has no CodeUri functions/<name>",
                        route.logical_id, route.route_key
                    )),
                },
                Err(e) => problems.push(format!("template.yaml: WebSocket {e}")),
            }
        }
    }

    let websocket_functions: Vec<&String> = functions
        .iter()
        .filter(|f| repo_root().join("events").join(format!("{f}.json")).is_file() && is_websocket_function(f))
        .collect();
    for name in &websocket_functions {
        let payload = event(name);
        let route_key = payload
            .pointer("/requestContext/routeKey")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        // A REQUEST authorizer's payload carries the methodArn it decides on.
        let is_authorizer =
            payload.get("type").and_then(Value::as_str) == Some("REQUEST") && payload.get("methodArn").is_some();
        let (wired, role) = if is_authorizer {
            (authorizes.get(name.as_str()), "the authorizer of")
        } else {
            (integrated.get(name.as_str()), "the integration of")
        };
        let wired = wired.cloned().unwrap_or_default();
        if wired != [route_key] {
            problems.push(format!(
                "{name}: events/{name}.json is for WebSocket route {route_key}, but template.yaml makes it {role} \
                 {wired:?}"
            ));
        }
    }
    for (name, keys) in integrated.iter().chain(authorizes.iter()) {
        if !websocket_functions.iter().any(|f| f.as_str() == *name) {
            problems.push(format!(
                "template.yaml wires {name} to WebSocket routes {keys:?}, but events/{name}.json is not a \
                 WebSocket payload of a function in functions/"
            ));
        }
    }
    if !problems.is_empty() && !template.unexpanded_loops.is_empty() {
        problems.push(format!(
            "(this test expands Fn::ForEach over literal lists only; not expanded: {:?})",
            template.unexpanded_loops
        ));
    }
    fail_on(problems, "template.yaml's WebSocket routes, functions/ and events/");
}

/// A function other MailMind functions invoke has no API event, its ARN is an
/// output, and `KeyConsumerPolicy` (the one policy a consumer attaches) lets
/// a role invoke exactly those functions: no other action, no other resource,
/// no wildcard.
#[test]
fn invoked_functions_are_reachable_only_through_the_consumer_policy() {
    let template = template();
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let root: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let outputs = root.get("Outputs").cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let invoked = invoked_function_names();
    assert!(!invoked.is_empty(), "credentials-resolve is an invoked function");
    let mut logical_ids = BTreeSet::new();
    for name in &invoked {
        let Some(function) = template
            .functions()
            .into_iter()
            .find(|f| f.name() == Some(name.as_str()))
        else {
            continue; // reported by function_folders_template_functions_and_event_payloads_are_the_same_set
        };
        let resource = &template.resources[&function.logical_id];
        if resource["Properties"].get("Events").is_some() {
            problems.push(format!("{name}: invoked directly, but template.yaml gives it Events"));
        }
        let arn = function.logical_id.clone();
        let in_outputs = outputs
            .as_mapping()
            .into_iter()
            .flatten()
            .any(|(_, output)| template::references(&output["Value"]).contains(&arn));
        if !in_outputs {
            problems.push(format!("{name}: no output gives its ARN (!GetAtt {arn}.Arn)"));
        }
        logical_ids.insert(arn);
    }
    let policy = &template.resources.get("KeyConsumerPolicy").cloned().unwrap_or_default();
    if policy.get("Type").and_then(serde_yaml_ng::Value::as_str) != Some("AWS::IAM::ManagedPolicy") {
        problems.push("template.yaml has no AWS::IAM::ManagedPolicy KeyConsumerPolicy".into());
    }
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    if statements.is_empty() {
        problems.push("KeyConsumerPolicy has no statement".into());
    }
    let mut granted = BTreeSet::new();
    for statement in &statements {
        let list = |field: &str| -> Vec<serde_yaml_ng::Value> {
            match &statement[field] {
                serde_yaml_ng::Value::Sequence(items) => items.clone(),
                serde_yaml_ng::Value::Null => Vec::new(),
                one => vec![one.clone()],
            }
        };
        if statement["Effect"].as_str() != Some("Allow")
            || statement.get("NotAction").is_some()
            || statement.get("NotResource").is_some()
        {
            problems.push(format!(
                "KeyConsumerPolicy: a statement that is not a plain Allow: {statement:?}"
            ));
        }
        let actions: Vec<_> = list("Action")
            .iter()
            .map(|a| a.as_str().unwrap_or("?").to_owned())
            .collect();
        if actions != ["lambda:InvokeFunction"] {
            problems.push(format!(
                "KeyConsumerPolicy allows {actions:?}; only lambda:InvokeFunction"
            ));
        }
        for resource in list("Resource") {
            let refs = template::references(&resource);
            if refs.len() != 1 || !logical_ids.contains(refs.iter().next().unwrap()) {
                problems.push(format!(
                    "KeyConsumerPolicy names resource {resource:?}; only the ARNs of {logical_ids:?}"
                ));
            }
            granted.extend(refs);
        }
    }
    if granted != logical_ids {
        problems.push(format!(
            "KeyConsumerPolicy grants {granted:?}, the invoked functions are {logical_ids:?}"
        ));
    }
    fail_on(problems, "template.yaml's invoked functions and KeyConsumerPolicy");
}

/// Only the functions that seal or open keys hold a KMS permission: create
/// and update (GenerateDataKey), check, resolve and revalidate (Decrypt).
/// and update (GenerateDataKey), check, ws-check and resolve (Decrypt).
#[test]
fn only_the_functions_that_must_hold_kms_permissions() {
    let template = template();
    let kms_policies: BTreeSet<String> = template
        .resources
        .iter()
        .filter(|(_, r)| format!("{:?}", r["Properties"]["PolicyDocument"]).contains("kms:"))
        .map(|(id, _)| id.clone())
        .collect();
    let mut holders = BTreeSet::new();
    for function in template.functions() {
        let policies = &template.resources[&function.logical_id]["Properties"]["Policies"];
        let inline_kms = format!("{policies:?}").contains("kms:");
        let refs = template::references(policies);
        if inline_kms || refs.iter().any(|r| kms_policies.contains(r)) {
            holders.insert(function.name().unwrap_or("?").to_owned());
        }
    }
    let expected: BTreeSet<String> = [
        "credentials-check",
        "credentials-create",
        "credentials-resolve",
        "credentials-revalidate",
        "credentials-update",
        "ws-check",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(holders, expected);
    assert!(!kms_policies.contains("KeyConsumerPolicy"));
}
