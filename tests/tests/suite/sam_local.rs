//! The SAM local workflow without Docker: every REST function binary under
//! the Lambda runtime emulator, fed the very events `sam local start-api`
//! builds (by the SAM CLI's own event constructor, `sam/sam_local_event.py`:
//! payload 2.0, no authorizer block, the `Authorization` header as sent),
//! with the variables of `sam/env.json`, against `moto_server` set up by
//! `sam/sam_local_aws.py`. And the files of the workflow themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use mailmind::auth::{DEV_JWT_SECRET, Hs256Verifier};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::moto::moto;
use mailmind_tests::{repo_root, rest_function_names, workspace_binary};
use serde_json::{Value, json};

const GROQ_KEY: &str = "gsk_samlocal0123456789abcdefghijklmnopqrstuvwxyzABC9xQa";

fn venv_python() -> std::path::PathBuf {
    repo_root().join(".venv/bin/python")
}

/// `sam/env.json`'s variables (its `Parameters`, which apply to every function).
fn env_file() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo_root().join("sam/env.json")).expect("sam/env.json");
    let json: Value = serde_json::from_str(&text).expect("sam/env.json is JSON");
    let parameters = json["Parameters"].as_object().expect("a Parameters object");
    parameters
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_owned()))
        .collect()
}

/// The event `sam local start-api` hands the function for this request.
fn sam_event(method: &str, path: &str, route_path: &str, authorization: Option<&str>, body: Option<&Value>) -> Value {
    let mut headers = json!({"Content-Type": "application/json", "User-Agent": "curl/8.0"});
    if let Some(authorization) = authorization {
        headers["Authorization"] = json!(authorization);
    }
    let mut command = Command::new(venv_python());
    command
        .arg(repo_root().join("sam/sam_local_event.py"))
        .args([method, path, route_path, &headers.to_string()]);
    if let Some(body) = body {
        command.arg(body.to_string());
    }
    let output = command.output().expect("run sam/sam_local_event.py");
    assert!(
        output.status.success(),
        "sam_local_event.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("an event")
}

struct SamLocal {
    functions: BTreeMap<String, LambdaProcess>,
    _groq: FakeProvider,
}

impl SamLocal {
    /// The REST functions as `sam local` runs them (`sam_local`: with the
    /// SAM CLI's `AWS_SAM_LOCAL=true`), or with the same variables but
    /// without it, as on Lambda.
    async fn start(sam_local: bool) -> SamLocal {
        let moto = moto();
        let setup = Command::new(venv_python())
            .arg(repo_root().join("sam/sam_local_aws.py"))
            .arg(&moto.endpoint)
            .output()
            .expect("run sam/sam_local_aws.py");
        assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
        let groq = FakeProvider::start("groq").await;
        groq.accept(GROQ_KEY, &["llama-3.1-8b-instant", "gemma2-9b-it"]).await;
        let mut env: Vec<(String, String)> = moto.env();
        env.extend(env_file());
        // The file says where moto is for a container (host.docker.internal);
        // here the functions run on this machine.
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL".into(), moto.endpoint.clone()));
        env.push(groq.env());
        if sam_local {
            env.push(("AWS_SAM_LOCAL".into(), "true".into()));
        }
        let mut functions = BTreeMap::new();
        for name in rest_function_names() {
            functions.insert(name.clone(), LambdaProcess::start(&workspace_binary(&name), &env).await);
        }
        SamLocal { functions, _groq: groq }
    }

    /// Sends a request the way `sam local start-api` does: finds the
    /// function by its route, builds the event, invokes.
    async fn call(&self, method: &str, path: &str, authorization: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let (function, route_path) = route_of(method, path);
        let event = sam_event(method, path, route_path, authorization, body.as_ref());
        let response = self.functions[function].invoke(event).await.response();
        mailmind_tests::http_answer(&response)
    }
}

/// The function and route path `sam local start-api` would pick.
fn route_of(method: &str, path: &str) -> (&'static str, &'static str) {
    let method: http::Method = method.parse().unwrap();
    match mailmind::handlers::Route::resolve(&method, path) {
        mailmind::handlers::RouteMatch::Found { route, .. } => (route.function_name(), route.path_template()),
        other => panic!("{method} {path}: {other:?}"),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn assert_unauthenticated((status, body): (u16, Value), what: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["code"], "unauthenticated", "{what}");
    assert!(body["detail"].is_string(), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rest_function_answers_a_local_token_under_sam_local() {
    let sam = SamLocal::start(true).await;
    let secret = env_file()["LOCAL_JWT_SECRET"].clone();
    let token = bearer(&Hs256Verifier::new(secret.as_bytes()).issue("sam-user", 600));
    let other = bearer(&Hs256Verifier::new(secret.as_bytes()).issue("sam-other", 600));
    let auth = Some(token.as_str());

    let (status, list) = sam.call("GET", "/api/v1/credentials", auth, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list.as_array().unwrap().len(),
        mailmind::domain::provider::PROVIDERS.len()
    );
    let (status, created) = sam
        .call(
            "POST",
            "/api/v1/credentials/",
            auth,
            Some(json!({"provider": "groq", "api_key": GROQ_KEY})),
        )
        .await;
    assert_eq!((status, created["status"].as_str()), (201, Some("valid")), "{created}");
    let (status, got) = sam.call("GET", "/api/v1/credentials/groq", auth, None).await;
    assert_eq!((status, got["models_count"].as_u64()), (200, Some(2)), "{got}");
    let (status, models) = sam.call("GET", "/api/v1/credentials/groq/models/", auth, None).await;
    assert_eq!((status, models[0]["model_id"].as_str()), (200, Some("gemma2-9b-it")));
    let (status, checked) = sam.call("POST", "/api/v1/credentials/groq/check", auth, None).await;
    assert_eq!((status, checked["status"].as_str()), (200, Some("valid")), "{checked}");
    let (status, updated) = sam
        .call(
            "PUT",
            "/api/v1/credentials/groq",
            auth,
            Some(json!({"api_key": GROQ_KEY})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    // The user is the token's sub: another user's token sees nothing.
    let (status, _) = sam.call("GET", "/api/v1/credentials/groq", Some(&other), None).await;
    assert_eq!(status, 404);
    let (status, _) = sam.call("DELETE", "/api/v1/credentials/groq", auth, None).await;
    assert_eq!(status, 204);
    let (status, _) = sam.call("GET", "/api/v1/credentials/groq", auth, None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_or_missing_tokens_are_refused_by_every_rest_function() {
    let sam = SamLocal::start(true).await;
    let forged = bearer(&Hs256Verifier::new(b"not-the-local-secret-at-all-0123456789").issue("sam-user", 600));
    let expired = bearer(&Hs256Verifier::new(DEV_JWT_SECRET.as_bytes()).issue("sam-user", -3600));
    for route in mailmind::handlers::Route::ALL {
        let path = route.path_template().replace("{provider}", "groq");
        let method = route.method();
        for (what, authorization) in [
            ("forged", Some(forged.as_str())),
            ("expired", Some(expired.as_str())),
            ("missing", None),
            ("not bearer", Some("Basic c2FtOnNhbQ==")),
        ] {
            let answer = sam.call(method.as_str(), &path, authorization, None).await;
            assert_unauthenticated(answer, &format!("{what} token, {method} {path}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_sam_local_an_event_without_claims_is_refused_whatever_its_token() {
    let lambda = SamLocal::start(false).await;
    let token = bearer(&Hs256Verifier::new(DEV_JWT_SECRET.as_bytes()).issue("sam-user", 600));
    for route in mailmind::handlers::Route::ALL {
        let path = route.path_template().replace("{provider}", "groq");
        let answer = lambda.call(route.method().as_str(), &path, Some(&token), None).await;
        assert_unauthenticated(answer, &format!("{} without AWS_SAM_LOCAL", route.route_key()));
    }
}

/// Every variable of `sam/env.json` is one the functions read, and one the
/// template declares (the SAM CLI passes only declared variables on).
#[test]
fn the_env_file_names_only_variables_the_functions_read_and_the_template_declares() {
    // What the code reads: its own variables, and the SDK's standard endpoint.
    let mut read: BTreeSet<String> = BTreeSet::from(["AWS_ENDPOINT_URL".to_owned()]);
    let mut sources = vec![repo_root().join("shared/src")];
    while let Some(dir) = sources.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for call in ["env(\"", "var(\""] {
                    for (i, _) in text.match_indices(call) {
                        let rest = &text[i + call.len()..];
                        if let Some(end) = rest.find('"') {
                            read.insert(rest[..end].to_owned());
                        }
                    }
                }
            }
        }
    }
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let env = env_file();
    assert!(!env.is_empty());
    for name in env.keys() {
        assert!(
            read.contains(name),
            "sam/env.json sets {name}, which no function reads ({read:?})"
        );
        assert!(
            template.contains(&format!("        {name}: ")),
            "sam/env.json sets {name}, which template.yaml's Environment does not declare, so SAM would drop it"
        );
    }
    for needed in ["TABLE_NAME", "KMS_KEY_ID", "LOCAL_JWT_SECRET", "AWS_ENDPOINT_URL"] {
        assert!(env.contains_key(needed), "sam/env.json must set {needed}");
    }
}

/// No deployed function can take the SAM local path: the template never sets
/// `AWS_SAM_LOCAL`, and the local-only variables are `AWS::NoValue` there.
#[test]
fn the_template_never_enables_sam_local_identity() {
    let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let settings: Vec<&str> = template
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("AWS_SAM_LOCAL"))
        .collect();
    assert!(
        settings.is_empty(),
        "template.yaml must not set AWS_SAM_LOCAL: {settings:?}"
    );
    for local_only in ["LOCAL_JWT_SECRET", "AWS_ENDPOINT_URL"] {
        let declarations: Vec<&str> = template
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{local_only}:")))
            .collect();
        assert_eq!(
            declarations,
            [format!("        {local_only}: !Ref AWS::NoValue")],
            "{local_only} is declared only as AWS::NoValue"
        );
    }
}

/// The local sections of samconfig.toml point the SAM CLI at the env file.
#[test]
fn samconfig_has_the_local_sections() {
    let config = std::fs::read_to_string(repo_root().join("samconfig.toml")).unwrap();
    for section in ["local_start_api", "local_invoke", "local_start_lambda"] {
        let header = format!("[default.{section}.parameters]");
        let body = config
            .split(&header)
            .nth(1)
            .unwrap_or_else(|| panic!("samconfig.toml has no {header}"));
        let body = body.split("\n[").next().unwrap();
        assert!(
            body.contains("env_vars = \"sam/env.json\""),
            "{header} names sam/env.json"
        );
        assert!(
            body.contains("parameter_overrides = "),
            "{header} overrides the required parameters"
        );
    }
}
