//! `mailmind-local` playing AWS Lambda's Invoke API for
//! `credentials-resolve`: driven by a real AWS SDK client (`boto3` from the
//! project venv, running the Python code of docs/CONSUMERS.md as written),
//! with the server's generated access key, and refused without it.

use mailmind_tests::local_server::LocalServer;
use mailmind_tests::repo_root;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{GROQ_KEY, GROQ_KEY_2, world};

use mailmind_tests::local_server::INVOKE_PATH;

/// The Python consumer code of docs/CONSUMERS.md: the first `python` block
/// of its section "Python".
fn consumer_python() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/CONSUMERS.md")).unwrap();
    let section = doc
        .split("\n## Python\n")
        .nth(1)
        .expect("the section exists in docs/CONSUMERS.md");
    let block = section
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a python block");
    block.to_owned()
}

/// Runs the Python code of docs/CONSUMERS.md plus `driver` with the project
/// venv's Python, against `server` with its access key; its stdout as JSON.
async fn run_python(server: &LocalServer, driver: &str) -> Value {
    let script = format!("{}\n{driver}", consumer_python());
    let stdout = mailmind_tests::run_venv_python(&script, &[], server.aws_env()).await;
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_resolves_and_reports_through_the_local_invoke_api() {
    let w = world().await;
    let created = w.server.post_key("alice", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);

    let answer = run_python(
        &w.server,
        r#"
key = resolve_key("alice", "groq")
result = report_key("alice", "groq", key["key_revision"], "rate_limited")
stale = report_key("alice", "groq", "not-the-revision", "rejected")
errors = {}
for user, provider in [("bob", "groq"), ("alice", "nope")]:
    try:
        resolve_key(user, provider)
    except MailMindKeyError as e:
        errors[f"{user}/{provider}"] = [e.code, e.retryable]
try:
    lambda_client.invoke(FunctionName="credentials-nothing", Payload=b"{}")
    missing = None
except lambda_client.exceptions.ResourceNotFoundException as e:
    missing = e.response["Error"]["Code"]
print(json.dumps({"key": key, "result": result, "stale": stale, "errors": errors, "missing": missing}))
"#,
    )
    .await;
    let key = &answer["key"];
    assert_eq!(key["ok"], true);
    assert_eq!(key["api_key"], GROQ_KEY);
    assert_eq!(key["status"], "valid");
    assert_eq!(key["base_url"], w.groq.base_url());
    assert!(key["key_revision"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(answer["result"], "recorded");
    assert_eq!(answer["stale"], "stale");
    assert_eq!(
        answer["errors"],
        json!({"bob/groq": ["credential_not_found", false], "alice/nope": ["unknown_provider", false]})
    );
    assert_eq!(answer["missing"], "ResourceNotFoundException");

    // The same store as the REST API: the use shows in the status.
    let status = w
        .server
        .call_as("alice", "GET", "/api/v1/credentials/groq/", None)
        .await;
    assert!(status.json["last_used_at"].is_string(), "{}", status.text);
    assert!(!w.server.logs().contains(GROQ_KEY), "a key reached the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_invoke_api_refuses_requests_without_the_local_access_key() {
    let w = world().await;
    let created = w.server.post_key("alice", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201);
    let http = reqwest::Client::new();
    let url = format!("{}{INVOKE_PATH}", w.server.base_url);
    let resolve = json!({"action": "resolve", "user_id": "alice", "provider": "groq"}).to_string();
    let bearer = format!("Bearer {}", w.server.token("alice"));
    let unsigned = "AWS4-HMAC-SHA256 Credential=local/20261125/us-east-1/lambda/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=00";
    // What a browser (or anyone without the access key) can send.
    for (authorization, kind) in [
        (None, "MissingAuthenticationTokenException"),
        (Some(bearer.as_str()), "UnrecognizedClientException"),
        (Some("AWS4-HMAC-SHA256"), "MissingAuthenticationTokenException"),
        (Some("aws4-hmac-sha256 x"), "MissingAuthenticationTokenException"),
        (Some(unsigned), "UnrecognizedClientException"),
    ] {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .body(resolve.clone());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 403, "{authorization:?}");
        assert_eq!(answer.headers()["x-amzn-errortype"], kind);
        let text = answer.text().await.unwrap();
        assert!(!text.contains(GROQ_KEY), "{text}");
        assert!(serde_json::from_str::<Value>(&text).unwrap()["message"].is_string());
    }

    // With the access key's secret as a bearer token: the handler answers.
    let signed = format!("Bearer {}", w.server.aws_credentials().secret().expose_secret());
    let answer = http
        .post(&url)
        .header("authorization", &signed)
        .body(resolve.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let json: Value = answer.json().await.unwrap();
    assert_eq!(json["ok"], true, "{json}");
    assert!(json["sealed_key"].is_object(), "{json}");
    assert!(!json.to_string().contains(GROQ_KEY), "{json}");

    // As Lambda: a body that is not JSON is refused before the function runs,
    // a JSON body that is no request is the function's invalid_request.
    let answer = http
        .post(&url)
        .header("authorization", &signed)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(answer.headers()["x-amzn-errortype"], "InvalidRequestContentException");
    let answer = http
        .post(&url)
        .header("authorization", &signed)
        .body(r#"["resolve"]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let json: Value = answer.json().await.unwrap();
    assert_eq!(json["error"]["code"], "invalid_request");
}

/// The Rust client crate, over a real `aws-sdk-lambda` client pointed at the
/// local server, as docs/CONSUMERS.md says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_resolves_and_reports_against_the_local_server() {
    use mailmind_keys::{KeyClient, Outcome};
    use secrecy::ExposeSecret;

    let w = world().await;
    let created = w.server.post_key("alice", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201);
    let keys = local_key_client(&w.server);

    let key = keys.resolve("alice", "groq").await.unwrap();
    assert_eq!(key.api_key.expose_secret(), GROQ_KEY);
    assert_eq!((key.provider.as_str(), key.status.as_str()), ("groq", "valid"));
    assert_eq!(key.base_url, w.groq.base_url());
    assert!(!format!("{key:?}").contains(GROQ_KEY));

    let report = keys
        .report("alice", "groq", &key.key_revision, Outcome::QuotaExhausted)
        .await
        .unwrap();
    assert_eq!((report.result.as_str(), report.status.as_str()), ("recorded", "error"));
    let status = w
        .server
        .call_as("alice", "GET", "/api/v1/credentials/groq/", None)
        .await;
    assert_eq!(status.json["status_reason"], "quota_exhausted");

    let missing = keys.resolve("bob", "groq").await.unwrap_err();
    assert_eq!(missing.code(), Some("credential_not_found"));
    assert!(!missing.is_retryable());
    let config = local_sdk_config(&w.server);
    let elsewhere = KeyClient::new(
        aws_sdk_lambda::Client::new(&config),
        aws_sdk_kms::Client::new(&config),
        "credentials-other",
    );
    let error = elsewhere.resolve("alice", "groq").await.unwrap_err();
    assert!(matches!(error, mailmind_keys::KeyError::Invoke(_)), "{error}");
    assert!(error.to_string().contains("ResourceNotFound"), "{error}");
}

/// Resolve falls back on the local server as on Lambda: past a key resting
/// after a rate limit (for the provider's wait), past a switched-off one,
/// and says so; with no usable key the error is `no_usable_key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_falls_back_to_the_next_key_when_one_is_rate_limited() {
    let w = world().await;
    assert_eq!(w.server.post_key("alice", "groq", GROQ_KEY).await.status, 201);
    let spare = w
        .server
        .call_as(
            "alice",
            "POST",
            "/api/v1/credentials/groq/keys/",
            Some(&json!({"name": "spare", "api_key": GROQ_KEY_2}).to_string()),
        )
        .await;
    assert_eq!(spare.status, 201, "{}", spare.text);
    let spare_id = spare.json["key_id"].as_str().unwrap().to_owned();
    let keys = local_key_client(&w.server);

    let primary = keys.resolve("alice", "groq").await.unwrap();
    assert_eq!((primary.key_id.as_str(), primary.fallback), ("default", false));
    let rested = keys
        .report_rate_limited(
            "alice",
            "groq",
            &primary.key_revision,
            Some(std::time::Duration::from_secs(90)),
        )
        .await
        .unwrap();
    assert_eq!(
        (rested.result.as_str(), rested.key_id.as_deref()),
        ("recorded", Some("default"))
    );
    let next = keys.resolve("alice", "groq").await.unwrap();
    assert_eq!(next.api_key.expose_secret(), GROQ_KEY_2);
    assert_eq!(
        (next.key_id.as_str(), next.key_name.as_str(), next.fallback),
        (spare_id.as_str(), "spare", true)
    );

    // The whole answer says why, and for how long (the wait named).
    let answer = w
        .server
        .invoke_resolve(&json!({"action": "resolve", "user_id": "alice", "provider": "groq"}))
        .await;
    let skipped = &answer["chosen"]["skipped"][0];
    assert_eq!(
        (skipped["key_id"].as_str(), skipped["reason"].as_str()),
        (Some("default"), Some("rate_limited"))
    );
    let until = chrono::DateTime::parse_from_rfc3339(skipped["until"].as_str().unwrap()).unwrap();
    let rest = until.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((60..=90).contains(&rest), "rests for the wait named: {rest} s");

    // The spare switched off: no key can be used now.
    let off = w
        .server
        .call_as(
            "alice",
            "PATCH",
            &format!("/api/v1/credentials/groq/keys/{spare_id}/"),
            Some(&json!({"enabled": false}).to_string()),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.text);
    let none = keys.resolve("alice", "groq").await.unwrap_err();
    assert_eq!(none.code(), Some("no_usable_key"), "{none}");
}

/// The Rust client of a consumer on this machine, as docs/CONSUMERS.md sets it up.
fn local_key_client(server: &LocalServer) -> mailmind_keys::KeyClient {
    let config = local_sdk_config(server);
    mailmind_keys::KeyClient::new(
        aws_sdk_lambda::Client::new(&config),
        aws_sdk_kms::Client::new(&config),
        mailmind_keys::LOCAL_FUNCTION_NAME,
    )
}

/// The SDK configuration of a consumer on this machine: every service at
/// the local server, with the access key it made.
fn local_sdk_config(server: &LocalServer) -> aws_config::SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    use aws_sdk_lambda::config::SharedCredentialsProvider;
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&server.base_url)
        .credentials_provider(SharedCredentialsProvider::new(server.sdk_credentials()))
        .build()
}

/// The Python consumer opens a key bound to its own endpoint (the context
/// and associated data carry it, sorted), as the service sealed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_opens_a_key_bound_to_its_endpoint() {
    let w = world().await;
    let gateway = mailmind_tests::fake_providers::FakeProvider::start("openai_compatible").await;
    const GATEWAY_KEY: &str = "sk-gateway-0123456789abcdefghijklmnop";
    gateway.accept(GATEWAY_KEY, &["llama-3.3-70b"]).await;
    let body = json!({"provider": "openai_compatible", "api_key": GATEWAY_KEY, "base_url": gateway.base_url()});
    let created = w
        .server
        .call_as("alice", "POST", "/api/v1/credentials/", Some(&body.to_string()))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let answer = run_python(
        &w.server,
        r#"
key = resolve_key("alice", "openai_compatible")
print(json.dumps({"api_key": key["api_key"], "base_url": key["base_url"]}))
"#,
    )
    .await;
    assert_eq!(answer, json!({"api_key": GATEWAY_KEY, "base_url": gateway.base_url()}));
}
