//! The HTTP API's CORS in `template.yaml` agrees with the API and with
//! `mailmind-local --cors-origin`: none unless the `AllowedOrigins`
//! parameter names origins, then exactly those origins, the methods the
//! API's routes use, the `Authorization` and `Content-Type` headers, never
//! `*` and never credentials.

use std::collections::BTreeSet;

use mailmind_tests::repo_root;
use serde_yaml_ng::Value;

use super::template;

fn raw_template() -> Value {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

/// The argument of intrinsic `name` (`!Name x` or `Fn::Name: x`; `Ref` as it is).
fn intrinsic<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(tagged) if tagged.tag == name => Some(&tagged.value),
        Value::Mapping(entries) if entries.len() == 1 => {
            let long = if name == "Ref" {
                "Ref".to_owned()
            } else {
                format!("Fn::{name}")
            };
            entries.get(long.as_str())
        }
        _ => None,
    }
}

fn is_ref(value: &Value, target: &str) -> bool {
    intrinsic(value, "Ref").and_then(Value::as_str) == Some(target)
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("a list, got {value:?}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_ascii_lowercase())
        .collect()
}

#[test]
fn http_api_cors_is_exactly_the_allowed_origins_or_none() {
    let root = raw_template();
    let parameter = &root["Parameters"]["AllowedOrigins"];
    assert_eq!(parameter["Type"].as_str(), Some("String"), "{parameter:?}");
    assert_eq!(parameter["Default"].as_str(), Some(""), "empty by default: no CORS");
    let pattern = parameter["AllowedPattern"].as_str().expect("an AllowedPattern");
    assert!(pattern.starts_with("^(https?://"), "origins only: {pattern}");

    // The condition is "some origin was given".
    let condition = &root["Conditions"]["HasAllowedOrigins"];
    let equals = intrinsic(condition, "Not")
        .and_then(|not| not.as_sequence()?.first())
        .and_then(|inner| intrinsic(inner, "Equals"))
        .and_then(Value::as_sequence)
        .expect("HasAllowedOrigins: !Not [!Equals [...]]");
    assert!(
        is_ref(&equals[0], "AllowedOrigins") && equals[1].as_str() == Some(""),
        "{equals:?}"
    );

    let api = &root["Resources"]["HttpApi"]["Properties"];
    let branches = intrinsic(&api["CorsConfiguration"], "If")
        .and_then(Value::as_sequence)
        .expect("CorsConfiguration: !If [HasAllowedOrigins, ..., !Ref AWS::NoValue]");
    assert_eq!(branches[0].as_str(), Some("HasAllowedOrigins"));
    assert!(is_ref(&branches[2], "AWS::NoValue"), "no CORS without origins");
    let cors = &branches[1];

    let split = intrinsic(&cors["AllowOrigins"], "Split")
        .and_then(Value::as_sequence)
        .expect("AllowOrigins: !Split [\",\", !Ref AllowedOrigins]");
    assert_eq!(split[0].as_str(), Some(","));
    assert!(is_ref(&split[1], "AllowedOrigins"));

    // The bearer token, JSON bodies, and the key routes' If-Match.
    assert_eq!(
        strings(&cors["AllowHeaders"]),
        BTreeSet::from([
            "authorization".to_owned(),
            "content-type".to_owned(),
            "if-match".to_owned()
        ])
    );
    // Exactly the methods of the API's routes.
    let route_methods: BTreeSet<String> = template()
        .functions()
        .iter()
        .flat_map(|f| f.http_routes.iter().map(|(_, method, _)| method.to_ascii_lowercase()))
        .collect();
    assert!(!route_methods.is_empty());
    assert_eq!(strings(&cors["AllowMethods"]), route_methods);
    assert!(strings(&cors["ExposeHeaders"]).contains("retry-after"));
    assert!(strings(&cors["ExposeHeaders"]).contains("etag"), "the key routes' ETag");
    assert_ne!(
        cors.get("AllowCredentials").and_then(Value::as_bool),
        Some(true),
        "bearer tokens, never credentials"
    );
    let text = serde_yaml_ng::to_string(cors).unwrap();
    assert!(!text.contains('*'), "never a wildcard: {text}");
}
