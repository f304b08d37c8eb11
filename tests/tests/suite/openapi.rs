//! The OpenAPI document: the committed `docs/openapi.json` is exactly what
//! the code generates, the local server serves it, and every error code the
//! code can answer is in it.
//!
//! Regenerate the committed file after changing a route, a wire type or an
//! error code:
//! `UPDATE_OPENAPI=1 cargo test -p mailmind-tests --test suite openapi`

use std::path::{Path, PathBuf};

use mailmind::handlers::Route;
use mailmind::handlers::protocol::ApiError;
use mailmind::service::ServiceError;
use mailmind_tests::local_server::LocalServer;
use mailmind_tests::repo_root;
use serde_json::Value;

fn committed_path() -> PathBuf {
    repo_root().join("docs/openapi.json")
}

#[test]
fn committed_document_matches_the_code() {
    let generated = mailmind::openapi::document_json();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from what the code generates; regenerate it with\n  \
         UPDATE_OPENAPI=1 cargo test -p mailmind-tests --test suite openapi"
    );
}

#[test]
fn document_is_openapi_3_1_with_every_route_and_the_bearer_scheme() {
    let doc: Value = serde_json::from_str(&mailmind::openapi::document_json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    assert_eq!(doc["security"][0]["bearerAuth"], serde_json::json!([]));
    for route in Route::ALL {
        let method = route.method().as_str().to_lowercase();
        let operation = &doc["paths"][route.path_template()][&method];
        assert!(operation.is_object(), "{route:?} missing from the document");
        for status in ["401", "413", "500", "503"] {
            assert!(operation["responses"][status].is_object(), "{route:?} lacks {status}");
        }
    }
    // Every stored field of the status object is described.
    let view = &doc["components"]["schemas"]["CredentialView"]["properties"];
    for field in [
        "provider",
        "key_hint",
        "status_reason",
        "retry_after_seconds",
        "last_used_at",
    ] {
        assert!(view[field].is_object(), "CredentialView.{field}");
    }
    let allow = &doc["components"]["responses"]["MethodNotAllowed"]["headers"]["Allow"];
    assert!(allow.is_object());
}

/// `(status, code)` of every `ApiError::new(<status>, "<code>", ...)` in `dir`.
fn error_codes_in(dir: &Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            error_codes_in(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("ApiError::new(") {
            let rest = text[at + "ApiError::new(".len()..].trim_start();
            let status: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let Some(after) = rest[status.len()..].trim_start().strip_prefix(',') else {
                continue;
            };
            let Some(quoted) = after.trim_start().strip_prefix('"') else {
                continue;
            };
            let code: String = quoted.chars().take_while(|c| *c != '"').collect();
            if status.len() == 3 && !code.is_empty() {
                found.push((status, code));
            }
        }
    }
}

/// `(status, code)` of every failure of the service, as the handlers answer
/// it (the service names the code, `protocol` the status). The match has no
/// catch-all: a new `ServiceError` does not compile until it is listed here.
fn service_error_codes() -> Vec<(String, String)> {
    let groq = mailmind::domain::provider::find("groq").unwrap();
    let failures = [
        ServiceError::CredentialExists(groq),
        ServiceError::CredentialNotFound(groq),
        ServiceError::KeyRejected(groq),
        ServiceError::TooManyRequests {
            limit: 1,
            window_secs: 1,
            retry_after_secs: 1,
        },
        ServiceError::TooManyConnections(1),
        ServiceError::KeyProviderMismatch(groq),
        ServiceError::EndpointNotAllowed(mailmind::domain::endpoint::EndpointRefusal::NotHttps),
        ServiceError::KeyNotFound(groq),
        ServiceError::KeyNameTaken(groq, String::new()),
        ServiceError::TooManyKeys(groq),
        ServiceError::NoPreviousKey(groq),
        ServiceError::PreconditionFailed(groq),
        ServiceError::KeyNotVerified(groq, Some(30)),
        ServiceError::Unavailable(String::new()),
        ServiceError::Internal(String::new()),
    ];
    for failure in &failures {
        match failure {
            ServiceError::CredentialExists(_)
            | ServiceError::CredentialNotFound(_)
            | ServiceError::KeyRejected(_)
            | ServiceError::TooManyRequests { .. }
            | ServiceError::TooManyConnections(_)
            | ServiceError::KeyProviderMismatch(_)
            | ServiceError::EndpointNotAllowed(_)
            | ServiceError::KeyNotFound(_)
            | ServiceError::KeyNameTaken(..)
            | ServiceError::TooManyKeys(_)
            | ServiceError::NoPreviousKey(_)
            | ServiceError::PreconditionFailed(_)
            | ServiceError::KeyNotVerified(..)
            | ServiceError::Unavailable(_)
            | ServiceError::Internal(_) => {}
            // Answered by credentials-resolve only, never over HTTP.
            ServiceError::NoUsableKey(..) => unreachable!("not in the list"),
        }
    }
    failures
        .into_iter()
        .map(ApiError::from)
        .map(|answer| (answer.status.to_string(), answer.code.to_owned()))
        .collect()
}

/// Whether some answer of the document with `status` allows `code`.
fn documents(doc: &Value, status: &str, code: &str) -> bool {
    let text = |v: &Value| v.to_string();
    let mut responses: Vec<&Value> = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            responses.push(&operation["responses"][status]);
        }
    }
    // Answers to no operation of the document (unknown path or method, a
    // socket upgrade) are named responses of the components.
    for response in doc["components"]["responses"].as_object().unwrap().values() {
        responses.push(response);
    }
    responses
        .iter()
        .any(|r| text(&r["content"]["application/json"]["schema"]).contains(&format!("\"{code}\"")))
}

#[test]
fn every_error_code_of_the_code_is_documented_with_its_status() {
    let doc: Value = serde_json::from_str(&mailmind::openapi::document_json()).unwrap();
    let mut found = Vec::new();
    error_codes_in(&repo_root().join("shared/src/handlers"), &mut found);
    error_codes_in(&repo_root().join("local/src"), &mut found);
    assert!(
        found.iter().any(|(s, c)| s == "401" && c == "unauthenticated"),
        "the scan finds the codes: {found:?}"
    );
    found.extend(service_error_codes());
    assert!(found.iter().any(|(s, c)| s == "404" && c == "credential_not_found"));
    for (status, code) in found {
        assert!(
            documents(&doc, &status, &code),
            "{status} {code} is answered by the code but not in the OpenAPI document (src/openapi.rs)"
        );
    }
}

#[tokio::test]
async fn local_server_serves_the_document_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(&dir.path().join("data"), &[]).await;
    let answer = server.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert!(
        answer.text == mailmind::openapi::document_json(),
        "the served document is not the generated one (is mailmind-local rebuilt?)"
    );

    let refused = server.call("POST", "/api/v1/openapi.json", None, Some("{}")).await;
    assert_eq!(refused.status, 405);
    assert_eq!(refused.headers["allow"], "GET");
    assert_eq!(refused.json["code"], "method_not_allowed");
}
