//! Log level cannot leak: every function (REST, socket, resolve) under the
//! Lambda Runtime API emulator, and the local server, driven through every
//! route at `trace` (more than any allowed `LogLevel`), print no key, no
//! bearer token and no 8-character piece of either.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::local_server::LocalServer;
use mailmind_tests::moto::moto;
use mailmind_tests::{event, function_names, repo_root, rest_event, with_body, workspace_binary};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "11111111-2222-3333-4444-555555555555";
const AUDIENCE: &str = "mailmind-web-client";

/// Fails naming the first 8-character piece of a secret found in `logs`.
fn assert_no_piece_of(secrets: &[&str], logs: &str) {
    for secret in secrets {
        let bytes = secret.as_bytes();
        for window in bytes.windows(8) {
            let piece = std::str::from_utf8(window).unwrap();
            assert!(!logs.contains(piece), "{piece:?} of a secret is in the output:\n{logs}");
        }
    }
}

fn fresh_key(tag: &str) -> String {
    format!("gsk_{tag}{}QzWx", mailmind::ids::random_hex(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_function_prints_a_key_or_token_at_the_most_verbose_level() {
    let moto = moto();
    let table = moto.create_table().await;
    let kms_key = moto.create_kms_key().await;
    let (key, key_2) = (fresh_key("leakA"), fresh_key("leakB"));
    let groq = FakeProvider::start("groq").await;
    groq.accept(&key, &["llama-3.1-8b-instant"]).await;
    groq.accept(&key_2, &["gemma2-9b-it"]).await;
    let issuer = MockServer::start().await;
    let jwks = std::fs::read(repo_root().join("tests/fixtures/jwks.json")).unwrap();
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(jwks, "application/json"))
        .mount(&issuer)
        .await;
    let management = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&management)
        .await;
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".to_owned());
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": USER, "iss": issuer.uri(), "aud": AUDIENCE, "exp": now + 600, "iat": now}),
        &EncodingKey::from_rsa_pem(&std::fs::read(repo_root().join("tests/fixtures/jwt-issuer-key.pem")).unwrap())
            .unwrap(),
    )
    .unwrap();

    let mut env = moto.function_env(&table, &kms_key);
    env.extend([
        ("JWT_ISSUER".to_owned(), issuer.uri()),
        ("JWT_AUDIENCE".to_owned(), AUDIENCE.to_owned()),
        mailmind_tests::management_env(&management),
        ("MAILMIND_LOG".to_owned(), "trace".to_owned()),
        groq.env(),
    ]);
    let mut processes = std::collections::HashMap::new();
    for name in function_names() {
        processes.insert(name.clone(), LambdaProcess::start(&workspace_binary(&name), &env).await);
    }
    let invoke = |name: &str, payload: Value| {
        let process = &processes[name];
        async move { process.invoke(payload).await.response() }
    };
    // The bearer token travels in every REST event, as API Gateway forwards it.
    let rest = |name: &str| {
        let mut e = rest_event(name, USER);
        e["headers"]["authorization"] = json!(format!("Bearer {token}"));
        e
    };
    let socket = |name: &str| {
        let mut e = event(name);
        if e.get("queryStringParameters").is_some() {
            e["queryStringParameters"]["token"] = json!(token);
            e["multiValueQueryStringParameters"]["token"] = json!([token]);
        }
        if e["requestContext"].get("authorizer").is_some() {
            e["requestContext"]["authorizer"]["principalId"] = json!(USER);
        }
        e["requestContext"]["connectedAt"] = json!(now * 1000);
        e
    };

    let created = invoke(
        "credentials-create",
        with_body(rest("credentials-create"), json!({"provider": "groq", "api_key": key})),
    )
    .await;
    assert_eq!(created["statusCode"], 201, "{created}");
    invoke("credentials-list", rest("credentials-list")).await;
    invoke("credentials-get", rest("credentials-get")).await;
    invoke("models-list", rest("models-list")).await;
    let updated = invoke(
        "credentials-update",
        with_body(rest("credentials-update"), json!({"api_key": key_2})),
    )
    .await;
    assert_eq!(updated["statusCode"], 200, "{updated}");
    invoke("credentials-check", rest("credentials-check")).await;
    let resolved = invoke("credentials-resolve", event("credentials-resolve")).await;
    assert_eq!(resolved["ok"], true, "{resolved}");
    let mut report = event("credentials-resolve-report");
    report["key_revision"] = resolved["key_revision"].clone();
    report["outcome"] = json!("rejected");
    invoke("credentials-resolve", report).await;
    let allowed = invoke("ws-authorizer", socket("ws-authorizer")).await;
    assert_eq!(allowed["principalId"], USER, "{allowed}");
    invoke("ws-connect", socket("ws-connect")).await;
    invoke("ws-default", socket("ws-default")).await;
    invoke("ws-disconnect", socket("ws-disconnect")).await;
    let deleted = invoke("credentials-delete", rest("credentials-delete")).await;
    assert_eq!(deleted["statusCode"], 204, "{deleted}");

    let mut logs = String::new();
    for (name, process) in &processes {
        logs.push_str(&format!("== {name}\n{}", process.logs()));
    }
    assert!(logs.contains("\"audit\":true"), "the logs were captured:\n{logs}");
    assert_no_piece_of(&[&key, &key_2, &token], &logs);
}

#[tokio::test]
async fn the_local_server_prints_no_key_or_token_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let key = fresh_key("localA");
    let groq = FakeProvider::start("groq").await;
    groq.accept(&key, &["llama-3.1-8b-instant"]).await;
    let env = vec![groq.env(), ("MAILMIND_LOG".to_owned(), "trace".to_owned())];
    let mut server = LocalServer::start(&dir.path().join("data"), &env).await;
    let token = server.token("user-leak");
    let body = json!({"provider": "groq", "api_key": key}).to_string();
    assert_eq!(
        server
            .call("POST", "/api/v1/credentials/", Some(&token), Some(&body))
            .await
            .status,
        201
    );
    for (verb, route) in [
        ("GET", "/api/v1/credentials/"),
        ("GET", "/api/v1/credentials/groq/"),
        ("GET", "/api/v1/credentials/groq/models/"),
        ("POST", "/api/v1/credentials/groq/check/"),
    ] {
        assert_eq!(
            server.call(verb, route, Some(&token), None).await.status,
            200,
            "{verb} {route}"
        );
    }
    let put = json!({"api_key": key}).to_string();
    assert_eq!(
        server
            .call("PUT", "/api/v1/credentials/groq/", Some(&token), Some(&put))
            .await
            .status,
        200
    );
    // The socket, with the token in the query as browsers send it.
    let ws_url = format!("{}/ws?token={token}", server.base_url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    use futures_util::SinkExt as _;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(r#"{"action":"ping"}"#))
        .await
        .unwrap();
    drop(socket);
    assert_eq!(
        server
            .call("DELETE", "/api/v1/credentials/groq/", Some(&token), None)
            .await
            .status,
        204
    );
    server.stop().await;
    let logs = server.logs();
    // The start-up banner prints a demo token (another user's) by design,
    // before any request: what follows it is checked.
    let (banner, after) = logs
        .split_once("other MailMind functions:")
        .expect("the banner's last line");
    assert!(!banner.contains(&token[40..]), "our token is not the demo token");
    assert!(after.contains("\"audit\":true"), "the logs were captured:\n{after}");
    assert_no_piece_of(&[&key, &token], after);
}

/// Audit lines are written whatever the log filter says: `credentials-resolve`
/// at `LogLevel` `error` still writes one line per resolve and per report,
/// with user, provider, key revision and consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_of_resolves_and_reports_survive_log_level_error() {
    let moto = moto();
    let table = moto.create_table().await;
    let kms_key = moto.create_kms_key().await;
    let key = fresh_key("auditA");
    let groq = FakeProvider::start("groq").await;
    groq.accept(&key, &["llama-3.1-8b-instant"]).await;
    let mut env = moto.function_env(&table, &kms_key);
    env.extend([("MAILMIND_LOG".to_owned(), "error".to_owned()), groq.env()]);
    let create = LambdaProcess::start(&workspace_binary("credentials-create"), &env).await;
    mailmind_tests::create_groq_key(&create, USER, &key).await;
    let resolve = LambdaProcess::start(&workspace_binary("credentials-resolve"), &env).await;
    let mut request = event("credentials-resolve");
    request["user_id"] = json!(USER);
    request["consumer"] = json!("digest-function");
    let resolved = resolve.invoke(request).await.response();
    assert_eq!(resolved["ok"], true, "{resolved}");
    let revision = resolved["key_revision"].as_str().unwrap().to_owned();
    let mut report = event("credentials-resolve-report");
    report["user_id"] = json!(USER);
    report["key_revision"] = json!(revision);
    report["outcome"] = json!("rate_limited");
    report["consumer"] = json!("digest-function");
    let reported = resolve.invoke(report).await.response();
    assert_eq!(reported["result"], "recorded", "{reported}");

    // The collector reads the process's output in its own time: wait for the last line.
    for _ in 0..200 {
        if resolve.logs().contains("\"action\":\"report\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logs = resolve.logs();
    let audit: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["audit"] == true)
        .collect();
    let line = |action: &str| {
        audit
            .iter()
            .find(|l| l["action"] == action)
            .unwrap_or_else(|| panic!("no {action} audit line at level error:\n{logs}"))
            .clone()
    };
    let resolved_line = line("resolve");
    assert_eq!(resolved_line["user_id"], USER);
    assert_eq!(resolved_line["provider"], "groq");
    assert_eq!(resolved_line["key_revision"], revision.as_str());
    assert_eq!(resolved_line["consumer"], "digest-function");
    assert_eq!(resolved_line["outcome"], "resolved");
    assert_eq!(resolved_line["target"], "mailmind::audit");
    let report_line = line("report");
    assert_eq!(report_line["key_revision"], revision.as_str());
    assert_eq!(report_line["consumer"], "digest-function");
    assert_eq!(report_line["reported"], "rate_limited");
    assert_eq!(report_line["outcome"], "recorded");
    // Nothing else at info got through the filter.
    assert!(!logs.contains("\"message\":\"request handled\""), "{logs}");
    assert_no_piece_of(&[&key], &logs);
}
