//! The edge limits are wired in `template.yaml`: per-route
//! throttling of both APIs, reserved concurrency of the validating
//! functions, and the per-user limits reaching the functions that enforce
//! them, each from a template parameter with the documented default.

use mailmind::handlers::Route;
use serde_yaml_ng::Value;

use super::cfn::references;

fn root() -> Value {
    let path = mailmind_tests::repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

/// The parameter `value` refers to, exactly one.
fn parameter_of(root: &Value, value: &Value, what: &str) -> String {
    let found: Vec<String> = references(value)
        .into_iter()
        .filter(|name| root["Parameters"].get(name.as_str()).is_some())
        .collect();
    match found.as_slice() {
        [one] => one.clone(),
        other => panic!("{what}: refers to parameters {other:?}, wanted exactly one"),
    }
}

fn default_of(root: &Value, parameter: &str) -> i64 {
    let default = &root["Parameters"][parameter]["Default"];
    default
        .as_i64()
        .or_else(|| default.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("parameter {parameter} has no numeric Default"))
}

/// Rate and burst of a route settings block: their parameters' defaults.
fn throttling(root: &Value, settings: &Value, what: &str) -> (i64, i64) {
    let rate = parameter_of(root, &settings["ThrottlingRateLimit"], &format!("{what} rate"));
    let burst = parameter_of(root, &settings["ThrottlingBurstLimit"], &format!("{what} burst"));
    (default_of(root, &rate), default_of(root, &burst))
}

fn function_by_code(root: &Value, name: &str) -> Value {
    root["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
        .find(|r| r["Properties"]["CodeUri"].as_str() == Some(&format!("functions/{name}")))
        .unwrap_or_else(|| panic!("no function for functions/{name}"))
        .clone()
}

#[test]
fn both_apis_throttle_per_route_with_validating_routes_apart() {
    let root = root();
    let http = &root["Resources"]["HttpApi"]["Properties"];
    let (rate, burst) = throttling(&root, &http["DefaultRouteSettings"], "HTTP API default");
    assert!(rate >= 1 && burst >= rate, "HTTP API default {rate}/{burst}");
    let validating: Vec<Route> = Route::ALL
        .into_iter()
        .filter(|r| mailmind::deploy::function_of(*r).spends_validation_budget)
        .collect();
    assert!(validating.contains(&Route::CheckCredential), "{validating:?}");
    for route in validating.iter().copied() {
        let settings = &http["RouteSettings"][route.route_key()];
        let (v_rate, v_burst) = throttling(&root, settings, route.route_key());
        assert!(
            v_rate < rate && v_burst < burst,
            "{}: the provider-calling routes get less than the others",
            route.route_key()
        );
    }
    let routes = http["RouteSettings"].as_mapping().expect("RouteSettings");
    assert_eq!(
        routes.len(),
        validating.len(),
        "only the validating routes are set apart"
    );

    let stage = &root["Resources"]["WebSocketStage"]["Properties"];
    throttling(&root, &stage["DefaultRouteSettings"], "WebSocket default");
    throttling(&root, &stage["RouteSettings"]["$default"], "WebSocket $default");
    let message_rate = parameter_of(
        &root,
        &stage["RouteSettings"]["$default"]["ThrottlingRateLimit"],
        "$default",
    );
    let stage_rate = parameter_of(&root, &stage["DefaultRouteSettings"]["ThrottlingRateLimit"], "stage");
    assert_ne!(message_rate, stage_rate, "client messages have a budget of their own");
}

#[test]
fn functions_reserve_concurrency_only_when_asked() {
    let root = root();
    for (condition_name, parameter) in [
        ("ReserveValidationConcurrency", "ValidationReservedConcurrency"),
        ("ReserveResolveConcurrency", "ResolveReservedConcurrency"),
    ] {
        let condition = format!("{:?}", root["Conditions"][condition_name]);
        assert!(
            condition.contains("Not") && condition.contains("Equals") && condition.contains(parameter),
            "{condition_name} is {parameter} != 0: {condition}"
        );
        assert_eq!(
            default_of(&root, parameter),
            0,
            "{parameter} reserves nothing by default"
        );
    }
    for (name, condition_name, parameter) in [
        (
            "credentials-create",
            "ReserveValidationConcurrency",
            "ValidationReservedConcurrency",
        ),
        (
            "credentials-update",
            "ReserveValidationConcurrency",
            "ValidationReservedConcurrency",
        ),
        (
            "credentials-check",
            "ReserveValidationConcurrency",
            "ValidationReservedConcurrency",
        ),
        (
            "ws-check",
            "ReserveValidationConcurrency",
            "ValidationReservedConcurrency",
        ),
        (
            "credentials-resolve",
            "ReserveResolveConcurrency",
            "ResolveReservedConcurrency",
        ),
    ] {
        let reserved = &function_by_code(&root, name)["Properties"]["ReservedConcurrentExecutions"];
        let text = format!("{reserved:?}");
        assert!(text.contains("If") && text.contains(condition_name), "{name}: {text}");
        let refs = references(reserved);
        assert!(
            refs.contains(parameter) && refs.contains("AWS::NoValue"),
            "{name}: {refs:?}"
        );
    }
    for name in [
        "credentials-get",
        "credentials-list",
        "models-list",
        "ws-authorizer",
        "ws-connect",
    ] {
        assert!(
            function_by_code(&root, name)["Properties"]
                .get("ReservedConcurrentExecutions")
                .is_none(),
            "{name} draws on the account's shared concurrency"
        );
    }
}

#[test]
fn per_user_limits_reach_the_functions_that_enforce_them() {
    let root = root();
    for name in ["credentials-create", "credentials-update", "credentials-check"] {
        let variables = &function_by_code(&root, name)["Properties"]["Environment"]["Variables"];
        assert_eq!(
            parameter_of(&root, &variables["VALIDATION_LIMIT"], name),
            "ValidationLimit"
        );
        assert_eq!(
            parameter_of(&root, &variables["VALIDATION_LIMIT_WINDOW_SECONDS"], name),
            "ValidationLimitWindowSeconds"
        );
    }
    assert_eq!(default_of(&root, "ValidationLimit"), 10);
    assert_eq!(default_of(&root, "ValidationLimitWindowSeconds"), 60);
    let connect = function_by_code(&root, "ws-connect");
    let variables = &connect["Properties"]["Environment"]["Variables"];
    assert_eq!(
        parameter_of(&root, &variables["MAX_CONNECTIONS_PER_USER"], "ws-connect"),
        "MaxConnectionsPerUser"
    );
    assert_eq!(default_of(&root, "MaxConnectionsPerUser"), 10);
    // ws-connect counts the user's connections and forgets one over the cap.
    let policies = format!("{:?}", connect["Properties"]["Policies"]);
    for action in ["dynamodb:PutItem", "dynamodb:Query", "dynamodb:DeleteItem"] {
        assert!(policies.contains(action), "ws-connect needs {action}");
    }
}
