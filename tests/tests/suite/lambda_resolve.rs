//! `credentials-resolve` as a real process under the Lambda Runtime API
//! emulator, against DynamoDB and KMS on `moto_server` behind a counting
//! proxy (so each test says exactly which AWS calls an action made), a fake
//! provider, and a fake WebSocket management endpoint that records pushes.
//! The credentials are created and replaced by the real create and update
//! functions. A consumer (`mailmind_keys::KeyClient`) reaches it through an
//! emulated Lambda Invoke API and opens the sealed keys with KMS; rejected
//! reports are relayed through the same API to `credentials-revalidate`.

use std::sync::Arc;

use chrono::Utc;
use mailmind::adapters::dynamo_store::DynamoStore;
use mailmind::domain::UserId;
use mailmind::ports::{Connection, ConnectionStore};
use mailmind_keys::{Calls, KeyClient, KeyError};
use mailmind_tests::aws_proxy::{CountingProxy, through_proxy};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::invoke_api::InvokeApi;
use mailmind_tests::lambda_emulator::{LambdaProcess, Outcome};
use mailmind_tests::moto::moto;
use mailmind_tests::{rest_event, with_body, workspace_binary};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "11111111-2222-3333-4444-555555555555";
const OTHER: &str = "99999999-8888-7777-6666-555555555555";
const GROQ_KEY: &str = "gsk_resolve56789abcdefghijklmnopqrstuvwxyzABCDEFGH9xQa";
const GROQ_KEY_2: &str = "gsk_resolvenext789abcdefghijklmnopqrstuvwxyzABCDzzZZ";

struct Deployment {
    resolve: Arc<LambdaProcess>,
    revalidate: Arc<LambdaProcess>,
    invoke_api: InvokeApi,
    proxy_url: String,
    create: LambdaProcess,
    add_key: LambdaProcess,
    update: LambdaProcess,
    check: LambdaProcess,
    get: LambdaProcess,
    proxy: CountingProxy,
    table: String,
    groq: FakeProvider,
    management: MockServer,
}

impl Deployment {
    async fn start() -> Deployment {
        let moto = moto();
        let table = moto.create_table().await;
        let key = moto.create_kms_key().await;
        let (proxy, proxy_url) = CountingProxy::start(&moto.endpoint).await;
        let groq = FakeProvider::start("groq").await;
        groq.accept(GROQ_KEY, &["llama-3.3-70b-versatile", "gemma2-9b-it"])
            .await;
        groq.accept(GROQ_KEY_2, &["llama-3.1-8b-instant"]).await;
        let management = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex("^/production/@connections/"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&management)
            .await;
        let invoke_api = InvokeApi::start().await;
        let mut env = through_proxy(moto.env(), &proxy_url);
        env.extend([
            ("AWS_ENDPOINT_URL_LAMBDA".to_owned(), invoke_api.url.clone()),
            ("REPORT_RELAY_FUNCTION".to_owned(), "credentials-revalidate".to_owned()),
            ("TABLE_NAME".to_owned(), table.clone()),
            ("KMS_KEY_ID".to_owned(), key),
            mailmind_tests::management_env(&management),
            ("MAILMIND_LOG".to_owned(), "debug".to_owned()),
            groq.env(),
        ]);
        let start = |name: &'static str| {
            let env = env.clone();
            async move { LambdaProcess::start(&workspace_binary(name), &env).await }
        };
        let resolve = Arc::new(start("credentials-resolve").await);
        let revalidate = Arc::new(start("credentials-revalidate").await);
        invoke_api.register("credentials-resolve", Arc::clone(&resolve));
        invoke_api.register("credentials-revalidate", Arc::clone(&revalidate));
        Deployment {
            resolve,
            revalidate,
            invoke_api,
            proxy_url,
            create: start("credentials-create").await,
            add_key: start("keys-create").await,
            update: start("credentials-update").await,
            check: start("credentials-check").await,
            get: start("credentials-get").await,
            proxy,
            table,
            groq,
            management,
        }
    }

    /// An invocation of credentials-resolve: always an answer, never a function error.
    async fn call(&self, request: Value) -> Value {
        match self.resolve.invoke(request).await {
            Outcome::Response(answer) => answer,
            Outcome::Error(e) => panic!("credentials-resolve reported a function error: {e}"),
        }
    }

    async fn resolve(&self, user: &str) -> Value {
        self.call(json!({"action": "resolve", "user_id": user, "provider": "groq"}))
            .await
    }

    async fn report(&self, user: &str, revision: &str, outcome: &str) -> Value {
        self.call(json!({"action": "report", "user_id": user, "provider": "groq",
                         "key_revision": revision, "outcome": outcome}))
            .await
    }

    async fn create(&self, user: &str, key: &str) {
        let event = with_body(
            rest_event("credentials-create", user),
            json!({"provider": "groq", "api_key": key}),
        );
        let created = self.create.invoke(event).await.response();
        assert_eq!(created["statusCode"], 201, "{created}");
    }

    /// Replaces the user's key through the update function; the new one is valid.
    async fn replace(&self, user: &str, key: &str) {
        let event = with_body(rest_event("credentials-update", user), json!({"api_key": key}));
        let updated = self.rest(&self.update, event).await;
        assert_eq!(updated["status"], "valid", "{updated}");
    }

    async fn rest(&self, process: &LambdaProcess, event: Value) -> Value {
        let answer = process.invoke(event).await.response();
        serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap()
    }

    async fn status(&self, user: &str) -> Value {
        self.rest(&self.get, rest_event("credentials-get", user)).await
    }

    fn dynamo_store(&self, config: &aws_config::SdkConfig) -> DynamoStore {
        DynamoStore::new(aws_sdk_dynamodb::Client::new(config), self.table.clone())
    }

    /// The statuses pushed to `connection_id`, in order.
    async fn pushes_to(&self, connection_id: &str) -> Vec<Value> {
        self.management
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path().ends_with(&format!("/{connection_id}")))
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .collect()
    }

    fn logs(&self) -> String {
        [
            &*self.resolve,
            &*self.revalidate,
            &self.create,
            &self.update,
            &self.check,
        ]
        .iter()
        .map(|p| p.logs())
        .collect()
    }

    /// A consumer's client: invokes through the Invoke API, opens keys with
    /// KMS on moto (through the counting proxy).
    async fn consumer(&self) -> KeyClient {
        let config = moto().sdk_config().await;
        self.invoke_api.consumer(&config, &self.proxy_url, "digest")
    }
}

/// What a consumer's client counted: invokes and KMS decrypts.
fn calls(invokes: u64, kms_decrypts: u64) -> Calls {
    Calls { invokes, kms_decrypts }
}

fn statuses(pushes: &[Value]) -> Vec<&str> {
    pushes.iter().map(|m| m["data"]["status"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_answers_the_key_sealed_and_the_consumer_opens_it_with_one_kms_call_per_data_key() {
    let d = Deployment::start().await;
    d.create(USER, GROQ_KEY).await;

    // The function itself: the key sealed, one read, no KMS call.
    d.proxy.take();
    let first = d.resolve(USER).await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["provider"], "groq");
    assert!(first.get("api_key").is_none(), "{first}");
    assert!(!first.to_string().contains(GROQ_KEY));
    let sealed = &first["sealed_key"];
    assert_eq!(sealed["format"], 1);
    assert!(
        sealed["kms_key_id"]
            .as_str()
            .is_some_and(|k| k.starts_with("arn:aws:kms:")),
        "{sealed}"
    );
    assert_eq!(
        sealed["encryption_context"],
        json!({"app": "mailmind", "provider": "groq", "user": USER})
    );
    assert_eq!(first["status"], "valid");
    assert_eq!(first["base_url"], d.groq.base_url(), "the override the checks use");
    let revision = first["key_revision"].as_str().unwrap().to_owned();
    assert!(!revision.is_empty());
    // One read, and the consumer's first use of the hour recorded (the
    // credential's use and the activity entry in one transaction).
    assert_eq!(d.proxy.take(), ["Query", "TransactWriteItems"]);
    let used = d.status(USER).await;
    assert!(used["last_used_at"].is_string(), "last_used_at recorded");

    // A consumer, cold: one invoke and one Decrypt of its own.
    let keys = d.consumer().await;
    d.proxy.take();
    let key = keys.resolve(USER, "groq").await.unwrap();
    assert_eq!(key.api_key.expose_secret(), GROQ_KEY);
    assert_eq!(
        (key.status.as_str(), key.key_revision.as_str()),
        ("valid", revision.as_str())
    );
    assert_eq!(key.base_url, d.groq.base_url());
    assert_eq!(keys.calls(), calls(1, 1));
    // The function reads and, this consumer's first use of the hour, records it.
    assert_eq!(d.proxy.take(), ["Query", "TransactWriteItems", "Decrypt"]);

    // Warm: one invoke (one read), no KMS call; the use within the hour is not rewritten.
    // (The cold resolve above was this consumer's first use: it wrote the time.)
    let last_used_at = d.status(USER).await["last_used_at"].clone();
    d.proxy.take();
    let warm = keys.resolve(USER, "groq").await.unwrap();
    assert_eq!(warm.api_key.expose_secret(), GROQ_KEY);
    assert_eq!(keys.calls(), calls(2, 1));
    assert_eq!(d.proxy.take(), ["Query"], "one DynamoDB read, no KMS call");
    assert_eq!(
        d.status(USER).await["last_used_at"],
        last_used_at,
        "written once within the hour per consumer"
    );

    // With the record cache: a repeated resolve makes no call at all.
    let cached = d.consumer().await.with_record_cache(std::time::Duration::from_secs(60));
    cached.resolve(USER, "groq").await.unwrap();
    d.proxy.take();
    let again = cached.resolve(USER, "groq").await.unwrap();
    assert_eq!(again.api_key.expose_secret(), GROQ_KEY);
    assert_eq!(cached.calls(), calls(1, 1));
    assert_eq!(d.proxy.take(), Vec::<String>::new());

    // A replaced key is a new revision and a new data key: unwrapped afresh, never the old one.
    d.replace(USER, GROQ_KEY_2).await;
    d.proxy.take();
    let replaced = keys.resolve(USER, "groq").await.unwrap();
    assert_eq!(replaced.api_key.expose_secret(), GROQ_KEY_2);
    assert_ne!(replaced.key_revision, revision);
    assert_eq!(keys.calls(), calls(3, 2));
    assert_eq!(d.proxy.take(), ["Query", "Decrypt"]);
    // The record cache drops its record when told the revision changed.
    cached
        .report(
            USER,
            "groq",
            &replaced.key_revision,
            mailmind_keys::Outcome::RateLimited,
        )
        .await
        .unwrap();
    // A rate limit met in use rests the key (60 s without a wait named):
    // with no other key, none can be used meanwhile; the cache asked again.
    let resting = cached.resolve(USER, "groq").await.unwrap_err();
    assert_eq!(resting.code(), Some("no_usable_key"), "{resting:?}");
    assert_eq!(cached.calls().invokes, 3, "the report dropped the cached record");

    let logs = d.logs();
    assert!(logs.contains("key resolved"), "{logs}");
    for key in [GROQ_KEY, GROQ_KEY_2] {
        assert!(!logs.contains(key), "a key reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_failures_answer_in_the_contract_shape_never_as_function_errors() {
    let d = Deployment::start().await;
    let code = |answer: &Value| {
        assert_eq!(answer["ok"], false, "{answer}");
        assert!(answer.get("api_key").is_none(), "{answer}");
        assert!(answer["error"]["detail"].is_string(), "{answer}");
        answer["error"]["code"].as_str().unwrap().to_owned()
    };

    assert_eq!(code(&d.resolve(USER).await), "credential_not_found");
    assert_eq!(code(&d.report(USER, "r", "rejected").await), "credential_not_found");
    let unknown = d
        .call(json!({"action": "resolve", "user_id": USER, "provider": "nope"}))
        .await;
    assert_eq!(code(&unknown), "unknown_provider");

    // Lambda refuses payloads that are not JSON at the Invoke API; what
    // reaches the function is JSON, but maybe not a request.
    for malformed in [
        json!("not json"),
        json!(42),
        json!(null),
        json!(["resolve", USER, "groq"]),
        json!({}),
        json!({"action": "resolve", "provider": "groq"}),
        json!({"action": "resolve", "user_id": USER}),
        json!({"user_id": USER, "provider": "groq"}),
        json!({"action": "resolve", "user_id": 42, "provider": "groq"}),
        json!({"action": "resolve", "user_id": USER, "provider": ["groq"]}),
        json!({"action": ["resolve"], "user_id": USER, "provider": "groq"}),
        json!({"action": "resolve", "user_id": "", "provider": "groq"}),
        json!({"action": "delete", "user_id": USER, "provider": "groq"}),
        json!({"action": "report", "user_id": USER, "provider": "groq", "outcome": "rejected"}),
        json!({"action": "report", "user_id": USER, "provider": "groq", "key_revision": 1, "outcome": "rejected"}),
        json!({"action": "report", "user_id": USER, "provider": "groq", "key_revision": "r", "outcome": "angry"}),
    ] {
        assert_eq!(code(&d.call(malformed.clone()).await), "invalid_request", "{malformed}");
    }

    // A sealed record copied into another user's partition does not open
    // for that user: KMS refuses the consumer's encryption context, and no
    // key comes back.
    d.create(USER, GROQ_KEY).await;
    let keys = d.consumer().await;
    let own = keys.resolve(USER, "groq").await.unwrap();
    assert_eq!(own.api_key.expose_secret(), GROQ_KEY, "warms the cache for USER");
    let client = aws_sdk_dynamodb::Client::new(&moto().sdk_config().await);
    let item = client
        .get_item()
        .table_name(&d.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{USER}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("CRED#groq".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let mut moved = item.clone();
    moved.insert(
        "pk".into(),
        aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{OTHER}")),
    );
    client
        .put_item()
        .table_name(&d.table)
        .set_item(Some(moved))
        .send()
        .await
        .unwrap();
    d.proxy.take();
    let stolen = keys.resolve(OTHER, "groq").await.unwrap_err();
    assert!(
        matches!(&stolen, KeyError::KeyService { code, .. } if code == "InvalidCiphertextException"),
        "{stolen:?}"
    );
    assert!(!stolen.is_retryable());
    assert!(!format!("{stolen:?}").contains(GROQ_KEY));
    assert!(
        d.proxy.take().contains(&"Decrypt".to_owned()),
        "the other user's context is never served from the cache"
    );
    assert!(!d.logs().contains(GROQ_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_flow_back_into_the_status_and_only_the_users_sockets() {
    let d = Deployment::start().await;
    let config = moto().sdk_config().await;
    let store = d.dynamo_store(&config);
    let now = Utc::now();
    for (user, connection_id) in [(USER, "conn-user"), (OTHER, "conn-other")] {
        store
            .save_connection(&Connection {
                user: UserId::parse(user).unwrap(),
                connection_id: connection_id.to_owned(),
                connected_at: now,
                expires_at: now + chrono::Duration::hours(2),
            })
            .await
            .unwrap();
    }
    d.create(USER, GROQ_KEY).await;
    d.create(OTHER, GROQ_KEY_2).await;
    let resolved = d.resolve(USER).await;
    let revision = resolved["key_revision"].as_str().unwrap().to_owned();

    // The provider now refuses the key: the report has it re-checked.
    d.groq.answer(GROQ_KEY, d.groq.invalid_key_response()).await;
    let calls = d.groq.requests().await.len();
    d.proxy.take();
    let rechecked = d.report(USER, &revision, "rejected").await;
    // Relayed to credentials-revalidate, the one of the two that may open
    // the key; the `reported` and `checked` activity entries are PutItems.
    assert_eq!(
        d.proxy.take(),
        [
            "Query",
            "PutItem",
            "UpdateItem",
            "Query",
            "Decrypt",
            "TransactWriteItems",
            "PutItem"
        ]
    );
    assert!(d.revalidate.logs().contains("key usage reported"));
    assert_eq!(
        rechecked,
        json!({"ok": true, "result": "rechecked", "status": "invalid", "key_id": "default"})
    );
    assert_eq!(d.groq.requests().await.len(), calls + 1);
    let status = d.status(USER).await;
    assert_eq!(
        (status["status"].as_str(), status["models_count"].as_u64()),
        (Some("invalid"), Some(0))
    );
    let pushed = d.pushes_to("conn-user").await;
    assert_eq!(
        statuses(&pushed),
        ["checking", "valid", "checking", "invalid"],
        "create, then the report"
    );
    // The other user's socket saw only their own create.
    assert_eq!(statuses(&d.pushes_to("conn-other").await), ["checking", "valid"]);

    // An invalid key is not answered: the consumer learns why.
    let invalid = d
        .call(json!({"action": "resolve", "user_id": USER, "provider": "groq"}))
        .await;
    assert_eq!(
        invalid["error"],
        json!({"code": "no_usable_key",
               "detail": "No Groq API key can be used now: each is switched off, invalid, out of credit or rate limited.",
               "keys": [{"key_id": "default", "reason": "invalid"}]})
    );

    // Within 5 minutes: debounced, no provider call, nothing pushed.
    d.proxy.take();
    let debounced = d.report(USER, &revision, "rejected").await;
    // The claim's condition fails, and the refusal carries the item (no
    // second read); the report itself is on the record (PutItem).
    assert_eq!(d.proxy.take(), ["Query", "PutItem", "UpdateItem"]);
    assert_eq!(
        debounced,
        json!({"ok": true, "result": "debounced", "status": "invalid", "key_id": "default"})
    );
    assert_eq!(d.groq.requests().await.len(), calls + 1);
    assert_eq!(d.pushes_to("conn-user").await.len(), 4);

    // A PUT replaces the key: a report about the old revision is stale.
    d.replace(USER, GROQ_KEY_2).await;
    let calls = d.groq.requests().await.len();
    let stale = d.report(USER, &revision, "rejected").await;
    assert_eq!(stale, json!({"ok": true, "result": "stale", "status": "valid"}));
    let stale = d.report(USER, &revision, "quota_exhausted").await;
    assert_eq!(stale, json!({"ok": true, "result": "stale", "status": "valid"}));
    assert_eq!(d.groq.requests().await.len(), calls);
    assert_eq!(d.status(USER).await["status"], "valid");

    // quota_exhausted: recorded without a provider call, and pushed.
    let revision = d.resolve(USER).await["key_revision"].as_str().unwrap().to_owned();
    let pushes_before = d.pushes_to("conn-user").await.len();
    d.proxy.take();
    let recorded = d.report(USER, &revision, "quota_exhausted").await;
    assert_eq!(
        d.proxy.take(),
        ["Query", "PutItem", "UpdateItem", "Query"],
        "no KMS call"
    );
    assert_eq!(
        recorded,
        json!({"ok": true, "result": "recorded", "status": "error", "key_id": "default"})
    );
    assert_eq!(d.groq.requests().await.len(), calls);
    let status = d.status(USER).await;
    assert_eq!(status["status"], "error");
    assert_eq!(status["status_reason"], "quota_exhausted");
    assert_eq!(status["models_count"], 1, "the models stay");
    let pushed = d.pushes_to("conn-user").await;
    assert_eq!(pushed.len(), pushes_before + 1);
    let last = &pushed.last().unwrap()["data"];
    assert_eq!(
        (last["status"].as_str(), last["reason"].as_str()),
        (Some("error"), Some("quota_exhausted"))
    );

    // rate_limited: the status stays, the key rests (one conditional write).
    d.proxy.take();
    let limited = d.report(USER, &revision, "rate_limited").await;
    assert_eq!(
        d.proxy.take(),
        ["Query", "PutItem", "UpdateItem"],
        "the entry and the rest"
    );
    assert_eq!(
        limited,
        json!({"ok": true, "result": "recorded", "status": "error", "key_id": "default"})
    );
    assert_eq!(d.groq.requests().await.len(), calls);
    assert_eq!(d.pushes_to("conn-user").await.len(), pushes_before + 1);

    // The next successful check clears the quota status.
    let checked = d.rest(&d.check, rest_event("credentials-check", USER)).await;
    assert_eq!(checked["status"], "valid", "{checked}");
    assert!(checked.get("status_reason").is_none());

    // Nothing of this reached the other user's socket or credential.
    assert_eq!(statuses(&d.pushes_to("conn-other").await), ["checking", "valid"]);
    assert_eq!(d.status(OTHER).await["status"], "valid");
    assert!(d.logs().contains("key usage reported"));
}

/// A key with its own endpoint through the Lambda functions on moto: stored
/// at its endpoint by credentials-create, answered with it by resolve, and
/// bound to it: KMS opens the key for the consumer only at that endpoint.
/// A refused endpoint costs no KMS call and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_its_own_endpoint_is_sealed_to_it_and_refused_endpoints_store_nothing() {
    let d = Deployment::start().await;
    let gateway = FakeProvider::start("openai_compatible").await;
    const GATEWAY_KEY: &str = "sk-gateway-0123456789abcdefghijklmnop";
    gateway.accept(GATEWAY_KEY, &["llama-3.3-70b", "qwen2.5-72b"]).await;
    let create = |body: Value| with_body(rest_event("credentials-create", USER), body);

    d.proxy.take();
    for refused in [
        "https://169.254.169.254/v1",
        "https://good@10.0.0.1/v1",
        "https://[fd00::1]/v1",
    ] {
        let answer = d
            .create
            .invoke(create(
                json!({"provider": "openai_compatible", "api_key": GATEWAY_KEY, "base_url": refused}),
            ))
            .await
            .response();
        assert_eq!(answer["statusCode"], 400, "{answer}");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["code"], "endpoint_not_allowed", "{body}");
    }
    // Each refusal read the provider's keys and who listens, and nothing
    // else: no KMS call, no write.
    let mut calls = d.proxy.take();
    calls.sort();
    assert_eq!(calls, ["Query"; 6]);
    assert!(gateway.requests().await.is_empty());

    let answer = d
        .create
        .invoke(create(json!({"provider": "openai_compatible", "api_key": GATEWAY_KEY,
                              "base_url": gateway.base_url()})))
        .await
        .response();
    assert_eq!(answer["statusCode"], 201, "{answer}");
    let resolved = d
        .call(json!({"action": "resolve", "user_id": USER, "provider": "openai_compatible"}))
        .await;
    assert_eq!(resolved["base_url"], gateway.base_url());
    assert_eq!(
        resolved["sealed_key"]["encryption_context"],
        json!({"app": "mailmind", "endpoint": gateway.base_url(), "provider": "openai_compatible", "user": USER})
    );
    let keys = d.consumer().await;
    let key = keys.resolve(USER, "openai_compatible").await.unwrap();
    assert_eq!(key.api_key.expose_secret(), GATEWAY_KEY);
    assert_eq!(key.base_url, gateway.base_url());

    // Someone with write access to the table points the key elsewhere: the
    // consumer's KMS call refuses the changed context, the key stays sealed.
    let config = moto().sdk_config().await;
    aws_sdk_dynamodb::Client::new(&config)
        .update_item()
        .table_name(&d.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{USER}")))
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("CRED#openai_compatible".into()),
        )
        .update_expression("SET endpoint = :elsewhere")
        .expression_attribute_values(
            ":elsewhere",
            aws_sdk_dynamodb::types::AttributeValue::S("https://collector.example/v1".into()),
        )
        .send()
        .await
        .unwrap();
    let fresh = d.consumer().await;
    let refused = fresh.resolve(USER, "openai_compatible").await;
    assert!(refused.is_err(), "a moved endpoint must not open: {refused:?}");
    assert!(!d.logs().contains(GATEWAY_KEY), "a key reached the logs");
}

/// Fallback: resolve answers the first usable key in the user's order. A
/// rate limit met in use rests a key for the provider's wait, an exhausted
/// quota takes it out until a check finds it valid, and with none usable the
/// answer says why for each. Every resolve is one read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_falls_back_past_resting_and_spent_keys_and_says_why() {
    let d = Deployment::start().await;
    d.create(USER, GROQ_KEY).await;
    let added = d
        .add_key
        .invoke(with_body(
            rest_event("keys-create", USER),
            json!({"name": "spare", "api_key": GROQ_KEY_2}),
        ))
        .await
        .response();
    assert_eq!(added["statusCode"], 201, "{added}");
    let spare: Value = serde_json::from_str(added["body"].as_str().unwrap()).unwrap();
    let spare_id = spare["key_id"].as_str().unwrap().to_owned();

    d.proxy.take();
    let first = d.resolve(USER).await;
    assert_eq!(
        first["chosen"],
        json!({"key_id": "default", "because": "primary"}),
        "{first}"
    );
    assert_eq!(
        (first["key_id"].as_str(), first["key_name"].as_str()),
        (Some("default"), Some("default"))
    );
    assert_eq!(d.proxy.take()[0], "Query", "one read");

    // The primary key is rate limited in use: it rests for the wait named.
    let limited = d
        .call(json!({"action": "report", "user_id": USER, "provider": "groq",
                     "key_revision": first["key_revision"], "outcome": "rate_limited",
                     "retry_after_seconds": 120}))
        .await;
    assert_eq!(limited["result"], "recorded", "{limited}");
    assert_eq!(limited["key_id"], "default", "a report names its key");
    d.proxy.take();
    let fallback = d.resolve(USER).await;
    assert_eq!(fallback["key_id"], spare_id.as_str(), "{fallback}");
    assert_eq!(fallback["chosen"]["because"], "fallback");
    let skipped = &fallback["chosen"]["skipped"][0];
    assert_eq!(
        (skipped["key_id"].as_str(), skipped["reason"].as_str()),
        (Some("default"), Some("rate_limited"))
    );
    let until = chrono::DateTime::parse_from_rfc3339(skipped["until"].as_str().unwrap()).unwrap();
    let rest = until.signed_duration_since(Utc::now()).num_seconds();
    assert!((100..=120).contains(&rest), "rests for the wait named: {rest} s");
    // One read; the spare's first use in the hour is recorded besides.
    assert_eq!(d.proxy.take(), ["Query", "TransactWriteItems"]);
    let keys = d.consumer().await;
    let opened = keys.resolve(USER, "groq").await.unwrap();
    assert_eq!(opened.api_key.expose_secret(), GROQ_KEY_2);
    assert!(opened.fallback);
    assert_eq!(opened.key_name, "spare");

    // The spare's account is spent: no key can be used, and the answer says why.
    let spent = d
        .call(json!({"action": "report", "user_id": USER, "provider": "groq",
                     "key_revision": fallback["key_revision"], "outcome": "quota_exhausted"}))
        .await;
    assert_eq!(spent["result"], "recorded", "{spent}");
    assert_eq!(spent["key_id"], spare_id.as_str());
    let none = d.resolve(USER).await;
    assert_eq!(none["ok"], false);
    assert_eq!(none["error"]["code"], "no_usable_key");
    let states: Vec<(&str, &str)> = none["error"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key_id"].as_str().unwrap(), k["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("default", "rate_limited"), (spare_id.as_str(), "quota_exhausted")]
    );
    // The provider's status lists the spare as out of credit.
    let status = d.status(USER).await;
    assert_eq!(status["keys"][1]["status_reason"], "quota_exhausted", "{status}");
}
