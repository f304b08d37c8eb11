//! Every place that names a function or a provider agrees with its one
//! declaration: `mailmind::deploy::FUNCTIONS` (shared/src/deploy/mod.rs) and
//! `mailmind::domain::provider::PROVIDERS`. What is rendered from them
//! (`template.yaml`, `docs/openapi.json`) has drift tests of its own; these
//! tests cover what is written by hand:
//!
//! - `functions/<name>/`: one crate per function, package and binary `<name>`,
//!   whose `main` builds the state its grants allow;
//! - `events/`: the payload each function receives, `<name>.json`, plus
//!   variants `<name>-<variant>.json`, of the kind its trigger sends;
//! - `docs/PROVIDERS.md` and the fake providers of the tests: a row per provider.
//!
//! Each test collects every disagreement and fails with all of them, each
//! naming the place that lacks something.
//!
//! The modules below pin what the template must say whatever renders it: who
//! may use the KMS key, the edge limits, CORS, alarms and dashboard.

mod cfn;
mod cors;
mod edge_limits;
mod key_policy;
mod operations;

use std::collections::BTreeSet;
use std::path::Path;

use http::Method;
use mailmind::deploy::{FUNCTIONS, FunctionSpec, Grant, Trigger};
use mailmind::domain::provider::PROVIDERS;
use mailmind::handlers::{Route, RouteMatch};
use mailmind_tests::{event, invoked_function_names, repo_root};
use serde_json::Value;

use cfn as template;
use cfn::Template;

const DECLARATIONS: &str = "mailmind::deploy::FUNCTIONS (shared/src/deploy/mod.rs)";

fn template() -> Template {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Template::parse(&text).unwrap_or_else(|e| panic!("template.yaml: {e}"))
}

/// The base names of the entries of `dir` that satisfy `keep`.
fn names_in(dir: &str, keep: impl Fn(&Path) -> bool) -> BTreeSet<String> {
    let dir = repo_root().join(dir);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| keep(path))
        .map(|path| path.file_stem().expect("a name").to_string_lossy().into_owned())
        .collect()
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

fn fail_on(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what} disagree:\n  - {}", problems.join("\n  - "));
}

#[test]
fn every_declared_function_has_its_crate_and_every_crate_its_declaration() {
    let declared: BTreeSet<String> = FUNCTIONS.iter().map(|f| f.name.to_owned()).collect();
    let crates = names_in("functions", |path| path.join("Cargo.toml").is_file());
    let mut problems = Vec::new();
    for name in declared.difference(&crates) {
        problems.push(format!(
            "{DECLARATIONS} declares {name}, but functions/{name}/Cargo.toml is missing"
        ));
    }
    for name in crates.difference(&declared) {
        problems.push(format!(
            "functions/{name}/ is a crate, but {DECLARATIONS} does not declare it"
        ));
    }
    for name in declared.intersection(&crates) {
        let package = package_name(&repo_root().join("functions").join(name).join("Cargo.toml"));
        if package.as_deref() != Some(name.as_str()) {
            problems.push(format!(
                "functions/{name}/Cargo.toml names its package {package:?}; folder, package and binary are all `{name}`"
            ));
        }
    }
    fail_on(problems, "the declared functions and functions/");
}

/// The state constructor a function's `main` calls, e.g. `validating_state`.
fn state_of(name: &str) -> Option<String> {
    let path = repo_root().join("functions").join(name).join("src/main.rs");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let end = text.find("_state(")?;
    let start = text[..end].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))? + 1;
    Some(text[start..end + "_state".len()].to_owned())
}

#[test]
fn every_function_main_builds_the_state_its_grants_allow() {
    let mut problems = Vec::new();
    for f in FUNCTIONS {
        let state = state_of(f.name);
        let reads_table = f
            .grants
            .iter()
            .any(|g| matches!(g, Grant::Table { .. } | Grant::ReadWriteTable));
        let allowed = match state.as_deref() {
            // KMS, the table and pushes: a key is sealed or opened and the verdict pushed.
            Some("validating_state" | "revalidating_state") => {
                f.uses_key() && f.holds(Grant::PushToConnections) && f.holds(Grant::ReadWriteTable)
            }
            // No KMS: keys leave sealed; the reports that must open one are relayed.
            Some("resolving_state") => {
                !f.uses_key()
                    && f.holds(Grant::PushToConnections)
                    && f.holds(Grant::ReadWriteTable)
                    && f.grants.iter().any(|g| matches!(g, Grant::RelayReportsTo(_)))
            }
            Some("table_state") => reads_table && !f.uses_key(),
            None => f.grants.is_empty(),
            Some(_) => false,
        };
        if !allowed {
            problems.push(format!(
                "functions/{}/src/main.rs builds {} but {DECLARATIONS} grants it {:?}",
                f.name,
                state.as_deref().unwrap_or("no AWS state"),
                f.grants
            ));
        }
    }
    fail_on(problems, "the functions' mains and their grants");
}

/// Whether `payload` is what `function`'s trigger delivers.
fn payload_fits(function: &FunctionSpec, payload: &Value) -> Result<(), String> {
    let text = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    match function.trigger {
        Trigger::Rest(route) => {
            if text("/routeKey") != route.route_key() {
                return Err(format!("routeKey {:?}, not {:?}", text("/routeKey"), route.route_key()));
            }
            let method =
                Method::from_bytes(text("/requestContext/http/method").as_bytes()).map_err(|e| e.to_string())?;
            match Route::resolve(&method, text("/rawPath")) {
                RouteMatch::Found { route: found, .. } if found == route => Ok(()),
                other => Err(format!("{method} {} resolves to {other:?}", text("/rawPath"))),
            }
        }
        Trigger::WebSocket { route_key, .. } if text("/requestContext/routeKey") == route_key => Ok(()),
        Trigger::WebSocket { route_key, .. } => Err(format!("requestContext.routeKey is not {route_key:?}")),
        Trigger::WebSocketAuthorizer if text("/type") == "REQUEST" && payload.get("methodArn").is_some() => Ok(()),
        Trigger::WebSocketAuthorizer => Err("not a REQUEST authorizer event with a methodArn".into()),
        Trigger::Schedule if text("/source") == "aws.events" && text("/detail-type") == "Scheduled Event" => Ok(()),
        // The function other functions relay their reports to takes them too.
        _ if text("/action") == "report"
            && FUNCTIONS
                .iter()
                .any(|other| other.grants.contains(&Grant::RelayReportsTo(function.name))) =>
        {
            Ok(())
        }
        Trigger::Schedule => Err("not an EventBridge scheduled event".into()),
        Trigger::Invoke if payload.get("action").is_some_and(Value::is_string) => Ok(()),
        Trigger::Invoke => Err("not a request with an `action`".into()),
    }
}

#[test]
fn every_function_has_the_payloads_of_its_trigger_and_every_payload_its_function() {
    let files = names_in("events", |path| path.extension().is_some_and(|e| e == "json"));
    let mut problems = Vec::new();
    for f in FUNCTIONS {
        if !files.contains(f.name) {
            problems.push(format!(
                "{DECLARATIONS} declares {}, but events/{}.json is missing",
                f.name, f.name
            ));
        }
    }
    for file in &files {
        // `<name>` or `<name>-<variant>`: the longest function name that fits.
        let owner = FUNCTIONS
            .iter()
            .filter(|f| file == f.name || file.strip_prefix(f.name).is_some_and(|rest| rest.starts_with('-')))
            .max_by_key(|f| f.name.len());
        match owner {
            None => problems.push(format!(
                "events/{file}.json is named after no function of {DECLARATIONS} (<function>[-<variant>].json)"
            )),
            Some(f) => {
                if let Err(why) = payload_fits(f, &event(file)) {
                    problems.push(format!(
                        "events/{file}.json does not fit {} ({:?}): {why}",
                        f.name, f.trigger
                    ));
                }
            }
        }
    }
    fail_on(problems, "the declared functions and events/");
}

#[test]
fn every_route_resolves_with_and_without_its_trailing_slash() {
    let mut problems = Vec::new();
    for route in Route::ALL {
        let path = route.path_template().replace("{provider}", "groq");
        for path in [path.clone(), format!("{path}/")] {
            match Route::resolve(&route.method(), &path) {
                RouteMatch::Found {
                    route: found, provider, ..
                } if found == route => {
                    let wants_provider = route.path_template().contains("{provider}");
                    if provider.is_some() != wants_provider {
                        problems.push(format!("{path}: provider {provider:?}"));
                    }
                }
                other => problems.push(format!("{} {path} resolves to {other:?}", route.method())),
            }
        }
    }
    fail_on(problems, "Route::resolve and the routes");
}

#[test]
fn every_provider_has_its_docs_row_and_its_fake() {
    let docs = std::fs::read_to_string(repo_root().join("docs/PROVIDERS.md")).expect("docs/PROVIDERS.md");
    let fakes: BTreeSet<&str> = mailmind_tests::fake_providers::BEHAVIOURS
        .iter()
        .map(|b| b.id)
        .collect();
    let mut problems = Vec::new();
    for p in PROVIDERS {
        if !docs.lines().any(|l| l.starts_with(&format!("| `{}` |", p.id))) {
            problems.push(format!(
                "PROVIDERS declares {}, but docs/PROVIDERS.md has no row `| `{}` |`",
                p.id, p.id
            ));
        }
        if !fakes.contains(p.id) {
            problems.push(format!(
                "PROVIDERS declares {}, but tests/src/fake_providers.rs BEHAVIOURS has no row for it",
                p.id
            ));
        }
    }
    for fake in fakes {
        if mailmind::domain::provider::find(fake).is_none() {
            problems.push(format!(
                "tests/src/fake_providers.rs has a row for {fake}, which PROVIDERS does not declare"
            ));
        }
    }
    fail_on(problems, "PROVIDERS, docs/PROVIDERS.md and the fake providers");
}

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
        "credentials-revalidate",
        "credentials-update",
        "keys-check",
        "keys-create",
        "keys-rollback",
        "keys-update",
        "ws-check",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(holders, expected);
    assert!(!kms_policies.contains("KeyConsumerPolicy"));
}

#[test]
fn every_websocket_route_invokes_its_declared_function_and_only_connect_is_authorized() {
    let routes = template().websocket_routes();
    let function_id = |trigger: Trigger| {
        FUNCTIONS
            .iter()
            .find(|f| f.trigger == trigger)
            .map(FunctionSpec::logical_id)
    };
    let authorizer = function_id(Trigger::WebSocketAuthorizer).expect("a $connect authorizer is declared");
    let mut problems = Vec::new();
    let mut declared_keys = BTreeSet::new();
    for f in FUNCTIONS {
        let Trigger::WebSocket { route_key, .. } = f.trigger else {
            continue;
        };
        declared_keys.insert(route_key.to_owned());
        let Some(route) = routes.iter().find(|r| r.route_key == route_key) else {
            problems.push(format!(
                "template.yaml has no WebSocket route {route_key} for {}",
                f.name
            ));
            continue;
        };
        if route.function.as_deref() != Ok(f.logical_id().as_str()) {
            problems.push(format!(
                "route {route_key} invokes {:?}, not {}",
                route.function,
                f.logical_id()
            ));
        }
        let wanted = (route_key == "$connect").then(|| Ok(authorizer.clone()));
        if route.authorizer_function != wanted {
            problems.push(format!(
                "route {route_key} has authorizer {:?}, not {wanted:?}",
                route.authorizer_function
            ));
        }
    }
    for route in &routes {
        if !declared_keys.contains(&route.route_key) {
            problems.push(format!(
                "template.yaml routes {} to no declared function",
                route.route_key
            ));
        }
    }
    fail_on(problems, "template.yaml's WebSocket routes and the declared functions");
}
