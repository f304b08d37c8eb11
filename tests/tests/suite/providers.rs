//! The provider client against local fakes that answer like the real APIs,
//! for every registered provider: valid (paged where the provider pages),
//! invalid, rate limited, unavailable, too slow, garbage, unreachable.

use std::time::Duration;

use mailmind::adapters::providers::{HttpProviderClient, ProviderClientConfig};
use mailmind::domain::endpoint::Endpoint;
use mailmind::domain::provider::{KeyPlacement, PROVIDERS, Paging};
use mailmind::domain::{ApiKey, CheckOutcome, ErrorReason, ProviderSpec};
use mailmind::ports::ProviderClient;
use mailmind_tests::fake_providers::{BEHAVIOURS, FakeProvider, PAGE_SIZE};
use serde_json::json;
use wiremock::ResponseTemplate;

const GOOD: &str = "test-good-key-0123456789abcdefghijklmnop";

fn client_for(fake: &FakeProvider, timeout: Duration) -> HttpProviderClient {
    let mut config = ProviderClientConfig::default();
    config.base_urls.insert(fake.id, fake.base_url());
    config.check_timeout = timeout;
    // The fakes are plain HTTP on loopback, as the local server allows.
    config.endpoint_policy.allow_loopback_http = true;
    HttpProviderClient::new(config)
}

async fn check(fake: &FakeProvider, key: &str) -> CheckOutcome {
    client_for(fake, Duration::from_secs(5))
        .check(spec(fake.id), fake.endpoint().as_ref(), &ApiKey::parse(key).unwrap())
        .await
}

fn spec(id: &str) -> &'static ProviderSpec {
    mailmind::domain::provider::find(id).unwrap()
}

fn model_ids(outcome: &CheckOutcome) -> Vec<String> {
    match outcome {
        CheckOutcome::Valid { models } => models.iter().map(|m| m.model_id.clone()).collect(),
        other => panic!("expected valid, got {other:?}"),
    }
}

#[test]
fn every_registered_provider_has_a_fake() {
    let mut faked: Vec<&str> = BEHAVIOURS.iter().map(|b| b.id).collect();
    faked.sort_unstable();
    let rows = faked.len();
    faked.dedup();
    assert_eq!(
        rows,
        faked.len(),
        "one row of fake_providers::BEHAVIOURS per provider at most"
    );
    for id in &faked {
        assert!(
            PROVIDERS.iter().any(|p| p.id == *id),
            "BEHAVIOURS has a row for {id}, which is no registered provider"
        );
    }
    for p in PROVIDERS {
        // Panics, naming the provider, when it has no row and is not OpenAI-shaped.
        let fake = mailmind_tests::fake_providers::behaviour(p.id);
        assert_eq!(
            p.key_check_path.is_some(),
            fake.key_info.is_some(),
            "{}: a key endpoint answer exactly where the provider has a key endpoint",
            p.id
        );
    }
}

#[tokio::test]
async fn a_good_key_is_valid_and_its_models_are_listed_sorted() {
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        fake.accept(GOOD, &["model-c", "model-a", "model-b"]).await;
        let outcome = check(&fake, GOOD).await;
        assert_eq!(model_ids(&outcome), ["model-a", "model-b", "model-c"], "{}", p.id);
        if let CheckOutcome::Valid { models } = &outcome
            && fake.lists_context_windows()
        {
            assert!(
                models.iter().all(|m| m.context_window.is_some()),
                "{}: context window kept",
                p.id
            );
        }
    }
}

#[tokio::test]
async fn paged_lists_are_followed_to_the_last_page() {
    let ids: Vec<String> = (0..5).map(|i| format!("model-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let paged: Vec<_> = PROVIDERS.iter().filter(|p| p.models.paging != Paging::None).collect();
    assert!(paged.iter().any(|p| p.id == "google_gemini"));
    for p in paged {
        let fake = FakeProvider::start(p.id).await;
        fake.accept(GOOD, &ids).await;
        let outcome = check(&fake, GOOD).await;
        assert_eq!(model_ids(&outcome), ids, "{}", p.id);
        let pages = fake.requests().await.len();
        assert_eq!(pages, ids.len().div_ceil(PAGE_SIZE), "{}: one request per page", p.id);
    }
}

#[tokio::test]
async fn gemini_models_keep_display_name_and_limits() {
    let fake = FakeProvider::start("google_gemini").await;
    fake.accept(GOOD, &["gemini-1.5-flash"]).await;
    let CheckOutcome::Valid { models } = check(&fake, GOOD).await else {
        panic!("valid")
    };
    assert_eq!(models[0].model_id, "gemini-1.5-flash");
    assert_eq!(models[0].model_name, "Gemini 1.5 Flash");
    assert_eq!(models[0].context_window, Some(1048576));
    assert_eq!(models[0].max_output_tokens, Some(8192));
}

#[tokio::test]
async fn a_bad_key_is_invalid() {
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        fake.accept(GOOD, &["model-a"]).await;
        assert_eq!(
            check(&fake, "test-wrong-key-zzzzzzzzzzzzzzzzzzzzzz").await,
            CheckOutcome::Invalid,
            "{}",
            p.id
        );
    }
}

#[tokio::test]
async fn the_key_travels_only_in_the_expected_header() {
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        fake.accept(GOOD, &["model-a", "model-b", "model-c"]).await;
        check(&fake, GOOD).await;
        let requests = fake.requests().await;
        assert!(!requests.is_empty());
        for request in requests {
            assert!(
                !request.url.as_str().contains(GOOD),
                "{}: key in URL {}",
                p.id,
                request.url
            );
            let expected = match p.key_placement {
                KeyPlacement::Bearer => ("authorization", format!("Bearer {GOOD}")),
                KeyPlacement::Header(name) => (name, GOOD.to_owned()),
            };
            let carrying: Vec<&str> = request
                .headers
                .iter()
                .filter(|(_, v)| v.to_str().is_ok_and(|v| v.contains(GOOD)))
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(carrying, [expected.0], "{}: the key is in exactly one header", p.id);
            assert_eq!(request.headers.get(expected.0).unwrap().to_str().unwrap(), expected.1);
        }
    }
}

#[tokio::test]
async fn rate_limits_are_errors_with_retry_after_never_invalid() {
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        fake.answer(GOOD, fake.rate_limited_response(58)).await;
        assert_eq!(
            check(&fake, GOOD).await,
            CheckOutcome::Failed {
                reason: ErrorReason::RateLimited,
                retry_after_secs: fake.sends_retry_after().then_some(58)
            },
            "{}",
            p.id
        );
    }
}

#[tokio::test]
async fn exhausted_credit_is_quota_exhausted_not_rate_limited() {
    let mut covered = Vec::new();
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        let Some(response) = fake.quota_response() else {
            continue;
        };
        fake.answer(GOOD, response).await;
        assert!(
            matches!(
                check(&fake, GOOD).await,
                CheckOutcome::Failed {
                    reason: ErrorReason::QuotaExhausted,
                    ..
                }
            ),
            "{}",
            p.id
        );
        covered.push(p.id);
    }
    // At least the providers documented to answer "out of credit" (a new
    // OpenAI-shaped provider inherits OpenAI's answer).
    for documented in ["anthropic", "deepseek", "openai", "openrouter"] {
        assert!(covered.contains(&documented), "{documented} not covered: {covered:?}");
    }
}

#[tokio::test]
async fn each_provider_quirk_is_honoured() {
    // Anthropic: the version header on every request, paging by after_id.
    let anthropic = FakeProvider::start("anthropic").await;
    anthropic.accept(GOOD, &["claude-a", "claude-b", "claude-c"]).await;
    assert_eq!(
        model_ids(&check(&anthropic, GOOD).await),
        ["claude-a", "claude-b", "claude-c"]
    );
    let requests = anthropic.requests().await;
    assert!(requests.iter().all(|r| r.headers["anthropic-version"] == "2023-06-01"));
    assert_eq!(
        requests[1].url.query_pairs().find(|(k, _)| k == "after_id").unwrap().1,
        "claude-b"
    );

    // OpenRouter: the model list is public, so a naive client would call any
    // key valid; the key endpoint is asked first.
    let openrouter = FakeProvider::start("openrouter").await;
    openrouter
        .accept(GOOD, &["openai/gpt-4o", "anthropic/claude-sonnet-4.5"])
        .await;
    assert_eq!(
        check(&openrouter, "sk-or-v1-not-a-real-key-000000000000").await,
        CheckOutcome::Invalid
    );
    assert_eq!(
        model_ids(&check(&openrouter, GOOD).await),
        ["anthropic/claude-sonnet-4.5", "openai/gpt-4o"]
    );
    let paths: Vec<String> = openrouter
        .requests()
        .await
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, ["/api/v1/key", "/api/v1/key", "/api/v1/models"]);

    // xAI: a wrong key is a 400.
    let xai = FakeProvider::start("xai").await;
    assert_eq!(
        check(&xai, "xai-wrong-key-00000000000000000000").await,
        CheckOutcome::Invalid
    );

    // Together: a bare array; Cohere: models named by `name`, paged by page_token.
    let together = FakeProvider::start("together").await;
    together
        .accept(GOOD, &["meta-llama/Llama-3.3-70B-Instruct-Turbo"])
        .await;
    let CheckOutcome::Valid { models } = check(&together, GOOD).await else {
        panic!("valid")
    };
    assert_eq!(models[0].model_name, "Meta Llama/Llama 3.3 70B Instruct Turbo");
    assert_eq!(models[0].owned_by.as_deref(), Some("Meta"));
    let cohere = FakeProvider::start("cohere").await;
    cohere
        .accept(GOOD, &["command-r", "command-r-plus", "embed-v4.0"])
        .await;
    assert_eq!(
        model_ids(&check(&cohere, GOOD).await),
        ["command-r", "command-r-plus", "embed-v4.0"]
    );
    let tokens: Vec<Option<String>> = cohere
        .requests()
        .await
        .iter()
        .map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "page_token")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(tokens, [None, Some("page-1".to_owned())]);
}

#[tokio::test]
async fn provider_outages_are_provider_unavailable() {
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        fake.answer(GOOD, fake.unavailable_response()).await;
        assert!(
            matches!(
                check(&fake, GOOD).await,
                CheckOutcome::Failed {
                    reason: ErrorReason::ProviderUnavailable,
                    ..
                }
            ),
            "{}",
            p.id
        );
    }
}

#[tokio::test]
async fn a_slow_provider_times_out() {
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        fake.answer(GOOD, fake.slow_response(&["model-a"], Duration::from_secs(3)))
            .await;
        let started = std::time::Instant::now();
        let outcome = client_for(&fake, Duration::from_millis(300))
            .check(p, fake.endpoint().as_ref(), &ApiKey::parse(GOOD).unwrap())
            .await;
        assert_eq!(
            outcome,
            CheckOutcome::Failed {
                reason: ErrorReason::Timeout,
                retry_after_secs: None
            },
            "{}",
            p.id
        );
        // Correctness, not speed: the check gave up instead of waiting for the answer.
        assert!(started.elapsed() < Duration::from_secs(3), "{}", p.id);
    }
}

#[tokio::test]
async fn a_non_json_success_is_a_bad_response() {
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        fake.answer(GOOD, fake.garbage_response()).await;
        assert!(
            matches!(
                check(&fake, GOOD).await,
                CheckOutcome::Failed {
                    reason: ErrorReason::BadResponse,
                    ..
                }
            ),
            "{}",
            p.id
        );
    }
}

#[tokio::test]
async fn a_json_success_that_is_not_a_model_list_is_a_bad_response() {
    for p in PROVIDERS {
        let fake = FakeProvider::start(p.id).await;
        fake.answer(
            GOOD,
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "ok"})),
        )
        .await;
        assert!(
            matches!(
                check(&fake, GOOD).await,
                CheckOutcome::Failed {
                    reason: ErrorReason::BadResponse,
                    ..
                }
            ),
            "{}",
            p.id
        );
    }
}

#[tokio::test]
async fn a_paging_loop_is_a_bad_response() {
    let fake = FakeProvider::start("google_gemini").await;
    // Every page names itself as the next one.
    fake.answer(
        GOOD,
        ResponseTemplate::new(200).set_body_json(fake.model_page(&["m"], Some("same"))),
    )
    .await;
    assert!(matches!(
        check(&fake, GOOD).await,
        CheckOutcome::Failed {
            reason: ErrorReason::BadResponse,
            ..
        }
    ));
    assert!(fake.requests().await.len() <= 3);
}

#[tokio::test]
async fn an_unreachable_provider_is_provider_unavailable() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    for p in PROVIDERS {
        let mut config = ProviderClientConfig::default();
        config.base_urls.insert(p.id, format!("http://127.0.0.1:{port}"));
        config.endpoint_policy.allow_loopback_http = true;
        let endpoint = p
            .endpoint_per_key()
            .then(|| Endpoint::accepted(format!("http://127.0.0.1:{port}")));
        let outcome = HttpProviderClient::new(config)
            .check(p, endpoint.as_ref(), &ApiKey::parse(GOOD).unwrap())
            .await;
        assert!(
            matches!(
                outcome,
                CheckOutcome::Failed {
                    reason: ErrorReason::ProviderUnavailable,
                    ..
                }
            ),
            "{}: {outcome:?}",
            p.id
        );
    }
}

#[tokio::test]
async fn gemini_refusals_by_status_and_reason() {
    let fake = FakeProvider::start("google_gemini").await;
    let blocked = ResponseTemplate::new(403).set_body_json(serde_json::json!({"error": {
        "code": 403, "message": "Requests to this API generativelanguage.googleapis.com method are blocked.",
        "status": "PERMISSION_DENIED",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_SERVICE_BLOCKED",
                     "domain": "googleapis.com"}]}}));
    fake.answer("AIza-blocked-key-000000000000000000000", blocked).await;
    let precondition = ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": {
        "code": 400, "message": "User location is not supported for the API use.", "status": "FAILED_PRECONDITION"}}));
    fake.answer("AIza-elsewhere-key-00000000000000000000", precondition)
        .await;
    assert_eq!(
        check(&fake, "AIza-blocked-key-000000000000000000000").await,
        CheckOutcome::Invalid
    );
    // A 400 without API_KEY_INVALID says nothing about the key.
    assert!(matches!(
        check(&fake, "AIza-elsewhere-key-00000000000000000000").await,
        CheckOutcome::Failed {
            reason: ErrorReason::BadResponse,
            ..
        }
    ));
}

#[tokio::test]
async fn redirects_are_not_followed_with_the_key() {
    let elsewhere = FakeProvider::start("groq").await;
    elsewhere.accept(GOOD, &["model-a"]).await;
    let fake = FakeProvider::start("groq").await;
    fake.answer(
        GOOD,
        ResponseTemplate::new(302).insert_header(
            "location",
            format!("{}/openai/v1/models", elsewhere.base_url()).as_str(),
        ),
    )
    .await;
    let outcome = check(&fake, GOOD).await;
    assert!(
        matches!(
            outcome,
            CheckOutcome::Failed {
                reason: ErrorReason::BadResponse,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(
        elsewhere.requests().await.is_empty(),
        "the key must not follow a redirect"
    );
}

/// OpenRouter's key endpoint tells the key's credit: a spent limit is
/// `quota_exhausted` (no verdict on the key), an unlimited or unspent one is valid.
#[tokio::test]
async fn openrouter_credit_used_up_is_quota_exhausted() {
    let openrouter = FakeProvider::start("openrouter").await;
    openrouter.accept(GOOD, &["openai/gpt-4o"]).await;
    assert_eq!(model_ids(&check(&openrouter, GOOD).await), ["openai/gpt-4o"]);
    openrouter.credit(GOOD, Some(10.0), 10.0, false).await;
    assert_eq!(
        check(&openrouter, GOOD).await,
        CheckOutcome::Failed {
            reason: ErrorReason::QuotaExhausted,
            retry_after_secs: None
        }
    );
    for (limit, usage, free) in [(None, 250.0, false), (Some(10.0), 9.5, false), (Some(1.0), 0.0, true)] {
        let fresh = FakeProvider::start("openrouter").await;
        fresh.accept(GOOD, &["openai/gpt-4o"]).await;
        fresh.credit(GOOD, limit, usage, free).await;
        assert_eq!(
            model_ids(&check(&fresh, GOOD).await),
            ["openai/gpt-4o"],
            "{limit:?} {usage}"
        );
    }
}

/// `openai_compatible` servers answer `GET {base_url}/models` each in their
/// own dialect of the OpenAI list; Azure answers a wrong endpoint path with
/// its `404 Resource not found`, which says nothing about the key.
#[tokio::test]
async fn user_endpoint_servers_are_read_in_their_own_shapes() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer};
    let compatible = spec("openai_compatible");
    let mut config = ProviderClientConfig::default();
    config.endpoint_policy.allow_loopback_http = true;
    let client = HttpProviderClient::new(config);
    let key = ApiKey::parse(GOOD).unwrap();
    for (server_kind, body, expected) in [
        (
            "LM Studio",
            json!({"data": [{"id": "qwen2.5-7b-instruct", "object": "model", "owned_by": "organization_owner"},
                            {"id": "text-embedding-nomic-embed-text-v1.5", "object": "model", "owned_by": "organization_owner"}],
                   "object": "list"}),
            vec![
                ("qwen2.5-7b-instruct", None),
                ("text-embedding-nomic-embed-text-v1.5", None),
            ],
        ),
        (
            "Ollama",
            json!({"object": "list", "data": [{"id": "llama3.2:latest", "object": "model", "created": 1730000000, "owned_by": "library"}]}),
            vec![("llama3.2:latest", None)],
        ),
        (
            "vLLM",
            json!({"object": "list", "data": [{"id": "meta-llama/Llama-3.1-8B-Instruct", "object": "model",
                   "owned_by": "vllm", "root": "meta-llama/Llama-3.1-8B-Instruct", "parent": null, "max_model_len": 131072}]}),
            vec![("meta-llama/Llama-3.1-8B-Instruct", Some(131072))],
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/models"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
        let endpoint = Endpoint::accepted(format!("{}/v1", server.uri()));
        let outcome = client.check(compatible, Some(&endpoint), &key).await;
        let CheckOutcome::Valid { models } = outcome else {
            panic!("{server_kind}: {outcome:?}")
        };
        let got: Vec<(&str, Option<u64>)> = models.iter().map(|m| (m.model_id.as_str(), m.context_window)).collect();
        assert_eq!(got, expected, "{server_kind}");
    }

    let azure = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": {"code": "404", "message": "Resource not found"}})),
        )
        .mount(&azure)
        .await;
    let endpoint = Endpoint::accepted(azure.uri());
    assert_eq!(
        client.check(spec("azure_openai"), Some(&endpoint), &key).await,
        CheckOutcome::Failed {
            reason: ErrorReason::BadResponse,
            retry_after_secs: None
        }
    );
}
