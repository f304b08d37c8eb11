//! Every REST function binary as a real process under a Lambda Runtime API
//! emulator, fed the real HTTP API v2 payloads of `events/`, against DynamoDB
//! and KMS on `moto_server` and a fake provider. The functions are those of
//! `functions/` whose payload is an HTTP API event (`rest_function_names`).

use std::collections::HashMap;

use mailmind_tests::aws_proxy::{CountingProxy, through_proxy};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::moto::moto;
use mailmind_tests::{rest_event as event, rest_function_names, with_body, workspace_binary};
use serde_json::{Value, json};

const GROQ_KEY: &str = "gsk_lambda0123456789abcdefghijklmnopqrstuvwxyzABCDEF9xQa";
const GROQ_KEY_2: &str = "gsk_lambdanext456789abcdefghijklmnopqrstuvwxyzABCDzzZZ";

struct Deployment {
    functions: HashMap<String, LambdaProcess>,
    /// Each function's own view of AWS: what its calls needed.
    proxies: HashMap<String, CountingProxy>,
    groq: FakeProvider,
}

impl Deployment {
    async fn start() -> Deployment {
        let (moto, table, key, groq) = mailmind_tests::deployment().await;
        groq.accept(
            GROQ_KEY,
            &["llama-3.3-70b-versatile", "llama-3.1-8b-instant", "gemma2-9b-it"],
        )
        .await;
        groq.accept(GROQ_KEY_2, &["llama-3.1-8b-instant"]).await;
        let mut env = moto.function_env(&table, &key);
        env.extend([("MAILMIND_LOG".to_owned(), "debug".to_owned()), groq.env()]);
        let (mut functions, mut proxies) = (HashMap::new(), HashMap::new());
        for name in rest_function_names() {
            let (proxy, url) = CountingProxy::start(&moto.endpoint).await;
            let process = LambdaProcess::start(&workspace_binary(&name), &through_proxy(env.clone(), &url)).await;
            functions.insert(name.clone(), process);
            proxies.insert(name, proxy);
        }
        Deployment {
            functions,
            proxies,
            groq,
        }
    }

    /// Every function called AWS only as its role in template.yaml allows.
    fn assert_calls_within_grants(&self) {
        let mut checked = 0;
        for (name, proxy) in &self.proxies {
            let granted = mailmind_tests::granted_actions(name);
            for action in proxy.actions() {
                assert!(
                    mailmind_tests::covers(&granted, &action),
                    "{name} called {action}, which its role does not grant ({granted:?})"
                );
                checked += 1;
            }
        }
        assert!(checked > 0, "no AWS call was seen");
    }

    /// `credentials-create` with `body`, as `user`.
    async fn create(&self, user: &str, body: Value) -> (u16, Value) {
        self.invoke("credentials-create", with_body(event("credentials-create", user), body))
            .await
    }

    async fn invoke(&self, function: &str, event: Value) -> (u16, Value) {
        let response = self.functions[function].invoke(event).await.response();
        mailmind_tests::http_answer(&response)
    }

    fn logs(&self) -> String {
        self.functions.values().map(LambdaProcess::logs).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_flow_through_every_function() {
    let d = Deployment::start().await;
    let user = "11111111-2222-3333-4444-555555555555";

    let (status, created) = d
        .create(user, json!({"provider": "groq", "api_key": format!(" {GROQ_KEY}\n")}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "valid");
    assert_eq!(created["models_count"], 3);
    assert_eq!(created["key_hint"], "gsk_…9xQa");

    let (status, got) = d.invoke("credentials-get", event("credentials-get", user)).await;
    assert_eq!((status, &got), (200, &created));

    let (status, list) = d.invoke("credentials-list", event("credentials-list", user)).await;
    assert_eq!(status, 200);
    let groq = mailmind_tests::entry(&list, "provider", "groq");
    assert_eq!(groq, &created);

    let (status, models) = d.invoke("models-list", event("models-list", user)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = mailmind_tests::strings(&models, "model_id");
    assert_eq!(ids, ["gemma2-9b-it", "llama-3.1-8b-instant", "llama-3.3-70b-versatile"]);

    let calls = d.groq.requests().await.len();
    let (status, checked) = d.invoke("credentials-check", event("credentials-check", user)).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["status"], "valid");
    assert_eq!(d.groq.requests().await.len(), calls + 1);
    // KMS opened the stored key: the provider got exactly the original.
    assert_eq!(
        d.groq.requests().await.last().unwrap().headers["authorization"],
        format!("Bearer {GROQ_KEY}").as_str()
    );

    let (status, updated) = d
        .invoke(
            "credentials-update",
            with_body(event("credentials-update", user), json!({"api_key": GROQ_KEY_2})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["key_hint"], "gsk_…zzZZ");
    assert_eq!(updated["models_count"], 1);
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_eq!(updated["previous_key_hint"], "gsk_…9xQa");

    // The replaced key was kept sealed: a rollback opens it with KMS, has
    // the provider check it again and restores it, keeping the other one.
    let calls = d.groq.requests().await.len();
    let (status, back) = d.invoke("keys-rollback", event("keys-rollback", user)).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(
        (&back["key_hint"], &back["models_count"], &back["previous_key_hint"]),
        (&json!("gsk_…9xQa"), &json!(3), &json!("gsk_…zzZZ"))
    );
    assert_eq!(
        d.groq.requests().await[calls..].first().unwrap().headers["authorization"],
        format!("Bearer {GROQ_KEY}").as_str()
    );

    // A second, named key through its own functions.
    let (status, spare) = d
        .invoke(
            "keys-create",
            with_body(
                event("keys-create", user),
                json!({"name": "spare", "api_key": GROQ_KEY, "priority": 3}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{spare}");
    let spare_id = spare["key_id"].as_str().unwrap().to_owned();
    let at_spare = |name: &str| {
        let mut e = event(name, user);
        e["pathParameters"]["key_id"] = json!(spare_id);
        e["rawPath"] = json!(format!("/api/v1/credentials/groq/keys/{spare_id}"));
        e
    };
    let (status, keys) = d.invoke("keys-list", event("keys-list", user)).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = mailmind_tests::strings(&keys, "key_name");
    assert_eq!(names, ["default", "spare"]);
    let (status, got) = d.invoke("keys-get", at_spare("keys-get")).await;
    assert_eq!((status, &got["key_hint"]), (200, &json!("gsk_…9xQa")), "{got}");
    // Rotated: checked first, swapped in, the old key kept to roll back to.
    let (status, rotated) = d
        .invoke(
            "keys-update",
            with_body(at_spare("keys-update"), json!({"api_key": GROQ_KEY_2})),
        )
        .await;
    assert_eq!(
        (status, &rotated["key_hint"], &rotated["previous_key_hint"]),
        (200, &json!("gsk_…zzZZ"), &json!("gsk_…9xQa")),
        "{rotated}"
    );
    // A stale If-Match changes nothing, on DynamoDB too.
    let mut stale = with_body(at_spare("keys-patch"), json!({"enabled": false}));
    stale["headers"]["if-match"] = json!("\"not-the-revision\"");
    let (status, refused) = d.invoke("keys-patch", stale).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (412, Some("precondition_failed")),
        "{refused}"
    );
    let (status, patched) = d
        .invoke(
            "keys-patch",
            with_body(at_spare("keys-patch"), json!({"enabled": false})),
        )
        .await;
    assert_eq!((status, &patched["enabled"]), (200, &json!(false)), "{patched}");
    let (status, provider) = d.invoke("credentials-get", event("credentials-get", user)).await;
    assert_eq!((status, &provider["keys_count"]), (200, &json!(2)));
    let (status, body) = d.invoke("keys-delete", at_spare("keys-delete")).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, missing) = d.invoke("keys-get", at_spare("keys-get")).await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("key_not_found")));

    let (status, body) = d.invoke("credentials-delete", event("credentials-delete", user)).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, missing) = d.invoke("credentials-get", event("credentials-get", user)).await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("credential_not_found")));
    let (status, models) = d.invoke("models-list", event("models-list", user)).await;
    assert_eq!((status, models), (200, json!([])));

    let logs = d.logs();
    assert!(logs.contains("request handled"));
    for key in [GROQ_KEY, GROQ_KEY_2] {
        assert!(!logs.contains(key), "a key reached a function's logs");
    }
    d.assert_calls_within_grants();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_back_in_the_contract_shape() {
    let d = Deployment::start().await;
    let user = "user-errors";
    let bad_key = "gsk_badbadbad456789abcdefghijklmnopqrstuvwxyzABCDEFbad1";
    let (status, body) = d.create(user, json!({"provider": "groq", "api_key": bad_key})).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("key_rejected")));
    let (status, body) = d.create(user, json!({"provider": "nope", "api_key": GROQ_KEY})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("unknown_provider")));
    let (status, body) = d.create(user, json!(["not an object"])).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")));
    let (status, body) = d.invoke("credentials-check", event("credentials-check", user)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("credential_not_found")));
    let (status, _) = d.create(user, json!({"provider": "groq", "api_key": GROQ_KEY})).await;
    assert_eq!(status, 201);
    let (status, body) = d.create(user, json!({"provider": "groq", "api_key": GROQ_KEY})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("credential_exists")));
    let oversized = json!({"provider": "groq", "api_key": GROQ_KEY, "pad": "x".repeat(70_000)});
    let (status, body) = d
        .invoke(
            "credentials-create",
            with_body(event("credentials-create", user), oversized),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_without_jwt_claims_gets_401_from_every_function() {
    let d = Deployment::start().await;
    let unauthenticated = event("credentials-list-no-claims", "ignored");
    assert!(unauthenticated.pointer("/requestContext/authorizer").is_none());
    for name in rest_function_names() {
        let name = name.as_str();
        // The same payload, re-aimed at each function's route.
        let mut e = event(name, "someone");
        e["requestContext"].as_object_mut().unwrap().remove("authorizer");
        let (status, body) = d.invoke(name, e).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthenticated")),
            "{name}"
        );
    }
    let (status, body) = d.invoke("credentials-list", unauthenticated).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    assert!(d.groq.requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_raw_path_forms_reach_the_same_credential() {
    let d = Deployment::start().await;
    let user = "user-paths";
    let (status, _) = d.create(user, json!({"provider": "groq", "api_key": GROQ_KEY})).await;
    assert_eq!(status, 201);
    for raw_path in ["/api/v1/credentials/groq", "/api/v1/credentials/groq/"] {
        let mut e = event("credentials-get", user);
        e["rawPath"] = json!(raw_path);
        e["requestContext"]["http"]["path"] = json!(raw_path);
        let (status, body) = d.invoke("credentials-get", e).await;
        assert_eq!((status, body["provider"].as_str()), (200, Some("groq")), "{raw_path}");
    }
}

#[tokio::test]
async fn a_function_without_its_table_refuses_to_start() {
    let mut process = LambdaProcess::start(&workspace_binary("credentials-list"), &moto().env()).await;
    // The runtime never polls for work; it says why it could not start.
    let (status, logs) = process
        .exit(std::time::Duration::from_secs(10))
        .await
        .expect("credentials-list must stop without TABLE_NAME");
    assert!(!status.success());
    assert!(logs.contains("TABLE_NAME must be set"), "{logs}");
}

/// Every crate under `functions/`, REST or WebSocket, a new one included:
/// its binary starts and answers its own `events/<name>.json` payload, as
/// recorded, with an answer (not an invocation error) and no server error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_answers_its_own_event() {
    let (moto, table, key, groq) = mailmind_tests::deployment().await;
    let mut env = moto.function_env(&table, &key);
    env.extend([
        (
            "JWT_HS256_SECRET".to_owned(),
            "every-function-secret-0123456789abcdef".to_owned(),
        ),
        // HS256 is refused on Lambda; this emulation declares itself local
        // (the REST functions, whose events carry claims, are unaffected).
        ("AWS_SAM_LOCAL".to_owned(), "true".to_owned()),
        groq.env(),
    ]);
    for function in mailmind::deploy::FUNCTIONS {
        let name = function.name;
        let process = LambdaProcess::start(&workspace_binary(name), &env).await;
        let outcome = process.invoke(mailmind_tests::event(name)).await;
        let response = match outcome {
            mailmind_tests::lambda_emulator::Outcome::Response(response) => response,
            other => panic!("{name}: {other:?}\n{}", process.logs()),
        };
        if function.trigger == mailmind::deploy::Trigger::Schedule {
            // A run over an empty table: nothing due, nothing failed.
            assert_eq!(response["checked"], 0, "{name}: {response}");
            assert_eq!(response["failed"], 0, "{name}: {response}");
        } else if function.trigger == mailmind::deploy::Trigger::Invoke {
            // Invoked functions answer {"ok": ...}; this user has no key.
            assert_eq!(response["ok"], false, "{name}: {response}");
            assert_eq!(response["error"]["code"], "credential_not_found", "{name}: {response}");
        } else if let Some(status) = response.get("statusCode") {
            let status = status.as_u64().unwrap_or_else(|| panic!("{name}: {response}"));
            assert!(status < 500, "{name}: {response}");
        } else {
            // The $connect authorizer answers with a policy, not a status.
            assert!(response["policyDocument"].is_object(), "{name}: {response}");
        }
    }
}
