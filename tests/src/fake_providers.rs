//! Local fake provider servers that answer like the real APIs: the same paths,
//! auth headers, paging and bodies (success and error) as docs/PROVIDERS.md records.
//!
//! A fake knows which keys are good; any other key gets the provider's real
//! "bad key" answer, the way the real service does.
//!
//! What differs between providers is data: one row per provider in
//! [`BEHAVIOURS`] (page shape, one model, the bad-key, rate-limit, quota and
//! outage answers, where it says how long to wait). Paths, auth placement and
//! paging come from the service's own `ProviderSpec`. A new provider is a new
//! row; no code here matches on a provider id.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Models per page when a fake pages its list (so small lists still span pages).
pub const PAGE_SIZE: usize = 2;

pub struct FakeProvider {
    pub id: &'static str,
    pub server: MockServer,
}

impl FakeProvider {
    /// Starts a fake for provider `id` that refuses every key until told otherwise.
    pub async fn start(id: &'static str) -> FakeProvider {
        let fake = FakeProvider {
            id,
            server: MockServer::start().await,
        };
        Mock::given(wiremock::matchers::any())
            .respond_with(fake.invalid_key_response())
            .with_priority(100)
            .mount(&fake.server)
            .await;
        fake
    }

    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    /// The key's own endpoint that points the service here, for a provider
    /// whose keys name one (`None` for the others, which take [`env`](Self::env)).
    pub fn endpoint(&self) -> Option<mailmind::domain::endpoint::Endpoint> {
        self.spec()
            .endpoint_per_key()
            .then(|| mailmind::domain::endpoint::Endpoint::accepted(self.base_url()))
    }

    /// The `PROVIDER_BASE_URL_<ID>` setting that points the service here.
    pub fn env(&self) -> (String, String) {
        (
            format!("PROVIDER_BASE_URL_{}", self.id.to_ascii_uppercase()),
            self.base_url(),
        )
    }

    fn spec(&self) -> &'static mailmind::domain::ProviderSpec {
        mailmind::domain::provider::find(self.id).expect("fake of a registered provider")
    }

    /// A matcher for requests that carry `key` the way this provider expects.
    fn with_key(&self, key: &str) -> wiremock::MockBuilder {
        use mailmind::domain::provider::KeyPlacement;
        let builder = Mock::given(method("GET"));
        match self.spec().key_placement {
            KeyPlacement::Bearer => builder.and(header("authorization", format!("Bearer {key}").as_str())),
            KeyPlacement::Header(name) => builder.and(header(name, key)),
        }
    }

    /// `key` is good and unlocks `model_ids`, listed in pages where the provider pages.
    pub async fn accept(&self, key: &str, model_ids: &[&str]) {
        let listing = &self.spec().models;
        let pages: Vec<&[&str]> = match listing.paging {
            mailmind::domain::provider::Paging::None => vec![model_ids],
            _ if model_ids.is_empty() => vec![model_ids],
            _ => model_ids.chunks(PAGE_SIZE).collect(),
        };
        for (index, page) in pages.iter().enumerate() {
            let token = (index + 1 < pages.len()).then(|| format!("page-{}", index + 1));
            let body = self.model_page(page, token.as_deref());
            // A public listing answers anyone, as the real one does.
            let mut mock = if listing.public {
                Mock::given(method("GET")).and(path(listing.path))
            } else {
                self.with_key(key).and(path(listing.path))
            };
            for (name, value) in listing.query {
                mock = mock.and(query_param(*name, *value));
            }
            let cursor_param = match listing.paging {
                mailmind::domain::provider::Paging::None => None,
                mailmind::domain::provider::Paging::Token { request_param, .. } => Some(request_param),
                mailmind::domain::provider::Paging::Cursor { request_param, .. } => Some(request_param),
            };
            if let Some(param) = cursor_param {
                mock = if index == 0 {
                    mock.and(query_param_is_missing(param))
                } else {
                    mock.and(query_param(param, self.cursor_for_page(index, &pages).as_str()))
                };
            }
            mock.respond_with(ResponseTemplate::new(200).set_body_json(body))
                .with_priority(10)
                .mount(&self.server)
                .await;
        }
        if let Some(key_path) = self.spec().key_check_path {
            let body = self
                .behaviour()
                .key_info
                .unwrap_or_else(|| panic!("{}: its key endpoint's answer (key_info) is missing", self.id));
            self.with_key(key)
                .and(path(key_path))
                .respond_with(ResponseTemplate::new(200).set_body_json(parse(body)))
                .with_priority(10)
                .mount(&self.server)
                .await;
        }
    }

    /// The key endpoint (OpenRouter's `GET /api/v1/key`) reports this credit
    /// for `key`, as the real one does: `limit` `None` is unlimited, and
    /// `limit_remaining` is what is left of it.
    pub async fn credit(&self, key: &str, limit: Option<f64>, usage: f64, is_free_tier: bool) {
        let key_path = self
            .spec()
            .key_check_path
            .unwrap_or_else(|| panic!("{} has no key endpoint", self.id));
        let body = json!({"data": {
            "label": "sk-or-v1-abc...xyz",
            "limit": limit,
            "usage": usage,
            "usage_daily": usage,
            "usage_weekly": usage,
            "usage_monthly": usage,
            "limit_remaining": limit.map(|l| l - usage),
            "limit_reset": null,
            "include_byok_in_limit": false,
            "is_free_tier": is_free_tier,
            "is_provisioning_key": false,
            "rate_limit": {"requests": -1, "interval": "10s"}
        }});
        self.with_key(key)
            .and(path(key_path))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .with_priority(9)
            .mount(&self.server)
            .await;
    }

    /// Every request with `key`, on any path, gets `response`.
    pub async fn answer(&self, key: &str, response: ResponseTemplate) {
        self.with_key(key)
            .respond_with(response)
            .with_priority(5)
            .mount(&self.server)
            .await;
    }

    /// What the fake has received so far.
    pub async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// The value the service must send to ask for page `index` (1-based after the first).
    fn cursor_for_page(&self, index: usize, pages: &[&[&str]]) -> String {
        match self.spec().models.paging {
            mailmind::domain::provider::Paging::Cursor { .. } => {
                pages[index - 1].last().copied().unwrap_or_default().to_owned()
            }
            _ => format!("page-{index}"),
        }
    }

    /// How this provider's real API answers: its row of [`BEHAVIOURS`].
    pub fn behaviour(&self) -> &'static Behaviour {
        behaviour(self.id)
    }

    /// One page of this provider's list-models answer, in its real shape.
    pub fn model_page(&self, ids: &[&str], next: Option<&str>) -> Value {
        self.behaviour().model_page(ids, next)
    }

    /// Whether this provider's model list states a context window.
    pub fn lists_context_windows(&self) -> bool {
        self.behaviour().lists_context_windows
    }

    /// The provider's real answer to a bad key.
    pub fn invalid_key_response(&self) -> ResponseTemplate {
        respond(self.behaviour().invalid_key)
    }

    /// Whether this provider says how long to wait when it rate limits.
    pub fn sends_retry_after(&self) -> bool {
        self.behaviour().retry_after != RetryAfter::Never
    }

    /// The provider's real rate-limit answer (asking to retry after `secs` where it says so).
    pub fn rate_limited_response(&self, secs: u64) -> ResponseTemplate {
        let b = self.behaviour();
        let mut body = parse(b.rate_limited);
        fill(&mut body, &[("{secs}", &secs.to_string())]);
        let response = ResponseTemplate::new(429).set_body_json(body);
        if b.retry_after == RetryAfter::Header {
            response.insert_header("retry-after", secs.to_string().as_str())
        } else {
            response
        }
    }

    /// The provider's real "out of credit" answer, where it has one.
    pub fn quota_response(&self) -> Option<ResponseTemplate> {
        self.behaviour().quota.map(respond)
    }

    /// The provider's real "service unavailable" answer.
    pub fn unavailable_response(&self) -> ResponseTemplate {
        respond(self.behaviour().unavailable)
    }

    /// A 200 whose body is not JSON (a captive portal, a proxy's HTML page).
    pub fn garbage_response(&self) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw("<html><body>Welcome to the hotel wifi</body></html>", "text/html")
    }

    /// A good answer that arrives after `delay`.
    pub fn slow_response(&self, ids: &[&str], delay: Duration) -> ResponseTemplate {
        ResponseTemplate::new(200)
            .set_body_json(self.model_page(ids, None))
            .set_delay(delay)
    }
}

/// A status and a JSON body, as text: what a provider answers.
pub type Answer = (u16, &'static str);

/// The envelope a provider wraps one page of models in.
#[derive(Debug, Clone, Copy)]
pub enum PageShape {
    /// `{list: [models…], ..fields}`, plus `{next_token: "<token>"}` when
    /// another page follows (where the provider pages by token).
    Object {
        list: &'static str,
        fields: &'static str,
        next_token: Option<&'static str>,
    },
    /// Anthropic: `{"data": [...], "has_more", "first_id", "last_id"}`.
    FirstLastIds,
    /// A bare JSON array of models.
    Array,
}

/// Where a provider's rate-limit answer says how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Never,
    /// A `retry-after: {secs}` header.
    Header,
    /// In the body only (its `{secs}`), no header.
    Body,
}

/// How one provider's real API answers, as docs/PROVIDERS.md records it. JSON
/// bodies are text; in them `{id}` and `{name}` (one model's id and display
/// name) and `{secs}` (the wait asked for) are filled in.
#[derive(Debug)]
pub struct Behaviour {
    pub id: &'static str,
    pub page: PageShape,
    /// One model of the list.
    pub model: &'static str,
    /// Whether the list states each model's context window.
    pub lists_context_windows: bool,
    pub invalid_key: Answer,
    /// The 429 body.
    pub rate_limited: &'static str,
    /// Where a 429 says how long to wait.
    pub retry_after: RetryAfter,
    /// The "out of credit" answer, for providers that have one.
    pub quota: Option<Answer>,
    pub unavailable: Answer,
    /// The 200 body of the key endpoint, for providers whose spec has one
    /// (`key_check_path`).
    pub key_info: Option<&'static str>,
}

/// Every registered provider's fake, one row each.
pub static BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "groq",
        page: PageShape::Object {
            list: "data",
            fields: r#"{"object": "list"}"#,
            next_token: None,
        },
        model: r#"{"id": "{id}", "object": "model", "created": 1693721698, "owned_by": "Meta", "active": true,
            "context_window": 131072, "public_apps": null}"#,
        lists_context_windows: true,
        invalid_key: (
            401,
            r#"{"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}}"#,
        ),
        rate_limited: r#"{"error": {"message": "Rate limit reached for requests. Please try again later.",
            "type": "requests", "code": "rate_limit_exceeded"}}"#,
        retry_after: RetryAfter::Header,
        quota: None,
        unavailable: (
            503,
            r#"{"error": {"message": "Service Unavailable", "type": "internal_server_error"}}"#,
        ),
        key_info: None,
    },
    Behaviour {
        id: "google_gemini",
        page: PageShape::Object {
            list: "models",
            fields: "{}",
            next_token: Some("nextPageToken"),
        },
        model: r#"{"name": "models/{id}", "version": "001", "displayName": "{name}", "description": "A fake model.",
            "inputTokenLimit": 1048576, "outputTokenLimit": 8192,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1.0, "topP": 0.95, "topK": 64}"#,
        lists_context_windows: true,
        invalid_key: (
            400,
            r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                     "message": "API key not valid. Please pass a valid API key."}
                ]}}"#,
        ),
        rate_limited: r#"{"error": {"code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                     "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "{secs}s"}
            ]}}"#,
        retry_after: RetryAfter::Body,
        quota: None,
        unavailable: (
            503,
            r#"{"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}"#,
        ),
        key_info: None,
    },
    Behaviour {
        id: "anthropic",
        page: PageShape::FirstLastIds,
        model: r#"{"type": "model", "id": "{id}", "display_name": "{name}", "created_at": "2025-09-29T00:00:00Z"}"#,
        lists_context_windows: false,
        invalid_key: (
            401,
            r#"{"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                "request_id": "req_011CWbVb6rTz1T3fP6YkZxjE"}"#,
        ),
        rate_limited: r#"{"type": "error", "error": {"type": "rate_limit_error",
            "message": "Number of requests has exceeded your per-minute rate limit"}}"#,
        retry_after: RetryAfter::Header,
        quota: Some((
            402,
            r#"{"type": "error", "error": {"type": "billing_error",
                "message": "Your credit balance is too low to access the Anthropic API."}}"#,
        )),
        unavailable: (
            529,
            r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#,
        ),
        key_info: None,
    },
    Behaviour {
        id: "openai",
        page: PageShape::Object {
            list: "data",
            fields: r#"{"object": "list"}"#,
            next_token: None,
        },
        // No context window in this list.
        model: r#"{"id": "{id}", "object": "model", "created": 1686935002, "owned_by": "openai"}"#,
        lists_context_windows: false,
        invalid_key: (
            401,
            r#"{"error": {"message": "Incorrect API key provided: sk-proj-********************abcd. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}"#,
        ),
        rate_limited: r#"{"error": {"message": "Rate limit reached for requests", "type": "requests",
            "param": null, "code": "rate_limit_exceeded"}}"#,
        retry_after: RetryAfter::Header,
        quota: Some((
            429,
            r#"{"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}"#,
        )),
        unavailable: (
            503,
            r#"{"error": {"message": "The server is overloaded or not ready yet.", "type": "server_error",
                "param": null, "code": null}}"#,
        ),
        key_info: None,
    },
    Behaviour {
        id: "mistral",
        page: PageShape::Object {
            list: "data",
            fields: r#"{"object": "list"}"#,
            next_token: None,
        },
        model: r#"{"id": "{id}", "object": "model", "created": 1732665600, "owned_by": "mistralai",
            "capabilities": {"completion_chat": true, "completion_fim": false, "function_calling": true,
                             "fine_tuning": false, "vision": false, "classification": false},
            "name": "{id}", "description": "A fake model.", "max_context_length": 131072,
            "aliases": [], "deprecation": null, "default_model_temperature": 0.3, "type": "base"}"#,
        lists_context_windows: true,
        invalid_key: (401, r#"{"detail": "Unauthorized"}"#),
        rate_limited: r#"{"message": "Requests rate limit exceeded"}"#,
        retry_after: RetryAfter::Never,
        quota: None,
        unavailable: (503, r#"{"message": "Service Unavailable"}"#),
        key_info: None,
    },
    Behaviour {
        id: "openrouter",
        page: PageShape::Object {
            list: "data",
            fields: "{}",
            next_token: None,
        },
        model: r#"{"id": "{id}", "canonical_slug": "{id}", "name": "{name}", "created": 1715367049,
            "description": "A fake model.", "context_length": 128000,
            "architecture": {"modality": "text+image->text", "input_modalities": ["text", "image"],
                             "output_modalities": ["text"], "tokenizer": "GPT"},
            "pricing": {"prompt": "0.0000025", "completion": "0.00001"},
            "top_provider": {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": true},
            "per_request_limits": null, "supported_parameters": ["tools", "temperature"]}"#,
        lists_context_windows: true,
        invalid_key: (401, r#"{"error": {"message": "User not found.", "code": 401}}"#),
        rate_limited: r#"{"error": {"message": "Rate limit exceeded: limit_rpm/openai/gpt-4o", "code": 429}}"#,
        retry_after: RetryAfter::Never,
        quota: Some((
            402,
            r#"{"error": {"message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
                "code": 402}}"#,
        )),
        unavailable: (
            503,
            r#"{"error": {"message": "Service Unavailable", "type": "internal_server_error"}}"#,
        ),
        key_info: Some(
            r#"{"data": {"label": "sk-or-v1-abc...xyz", "limit": 100, "usage": 25.5, "limit_remaining": 74.5,
                "limit_reset": null, "is_free_tier": false, "is_provisioning_key": false,
                "rate_limit": {"requests": -1, "interval": "10s"}}}"#,
        ),
    },
    Behaviour {
        id: "deepseek",
        page: PageShape::Object {
            list: "data",
            fields: r#"{"object": "list"}"#,
            next_token: None,
        },
        // No context window in this list.
        model: r#"{"id": "{id}", "object": "model", "owned_by": "deepseek"}"#,
        lists_context_windows: false,
        invalid_key: (
            401,
            r#"{"error": {"message": "Authentication Fails, Your api key: ****abcd is invalid",
                "type": "authentication_error", "param": null, "code": "invalid_request_error"}}"#,
        ),
        rate_limited: r#"{"error": {"message": "Rate Limit Reached", "type": "rate_limit_error",
            "param": null, "code": "rate_limit_exceeded"}}"#,
        retry_after: RetryAfter::Never,
        quota: Some((
            402,
            r#"{"error": {"message": "Insufficient Balance", "type": "unknown_error",
                "param": null, "code": "invalid_request_error"}}"#,
        )),
        unavailable: (
            503,
            r#"{"error": {"message": "Service Unavailable", "type": "internal_server_error"}}"#,
        ),
        key_info: None,
    },
    Behaviour {
        id: "xai",
        page: PageShape::Object {
            list: "data",
            fields: r#"{"object": "list"}"#,
            next_token: None,
        },
        // No context window in this list.
        model: r#"{"id": "{id}", "created": 1737331200, "object": "model", "owned_by": "xai"}"#,
        lists_context_windows: false,
        // A wrong key is a 400 here.
        invalid_key: (
            400,
            r#"{"code": "Client specified an invalid argument",
                "error": "Incorrect API key provided: xa***cd. You can obtain an API key from https://console.x.ai."}"#,
        ),
        rate_limited: r#"{"code": "Some resource has been exhausted",
            "error": "Your team has reached its requests per second limit."}"#,
        retry_after: RetryAfter::Never,
        quota: None,
        unavailable: (
            500,
            r#"{"code": "Internal error", "error": "Service temporarily unavailable."}"#,
        ),
        key_info: None,
    },
    Behaviour {
        id: "together",
        page: PageShape::Array,
        model: r#"{"id": "{id}", "object": "model", "created": 1733875200, "type": "chat", "running": false,
            "display_name": "{name}", "organization": "Meta",
            "link": "https://huggingface.co/meta-llama", "license": "llama3.3",
            "context_length": 131072,
            "config": {"chat_template": null, "stop": ["<|eot_id|>"], "bos_token": null, "eos_token": null},
            "pricing": {"hourly": 0, "input": 0.88, "output": 0.88, "base": 0, "finetune": 0}}"#,
        lists_context_windows: true,
        invalid_key: (
            401,
            r#"{"error": {"message": "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}"#,
        ),
        rate_limited: r#"{"error": {"message": "You have exceeded the rate limit", "type": "rate_limit",
            "param": null, "code": null}}"#,
        retry_after: RetryAfter::Never,
        quota: None,
        unavailable: (
            503,
            r#"{"error": {"message": "Service Unavailable", "type": "internal_server_error"}}"#,
        ),
        key_info: None,
    },
    // Azure OpenAI's data plane (`GET /openai/deployments?api-version=2022-12-01`):
    // the resource's deployments, each naming the model it serves.
    Behaviour {
        id: "azure_openai",
        page: PageShape::Object {
            list: "data",
            fields: r#"{"object": "list"}"#,
            next_token: None,
        },
        model: r#"{"scale_settings": {"scale_type": "standard"}, "model": "gpt-4o", "owner": "organization-owner",
            "id": "{id}", "status": "succeeded", "created_at": 1718000000, "updated_at": 1718000000,
            "object": "deployment"}"#,
        lists_context_windows: false,
        invalid_key: (
            401,
            r#"{"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#,
        ),
        rate_limited: r#"{"error": {"code": "429", "message": "Requests to the Deployments_List Operation under Azure OpenAI API version 2022-12-01 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after {secs} seconds."}}"#,
        retry_after: RetryAfter::Header,
        quota: None,
        unavailable: (
            503,
            r#"{"error": {"code": "ServiceUnavailable", "message": "The service is temporarily unable to process your request. Please try again later."}}"#,
        ),
        key_info: None,
    },
    // A vLLM server started with `--api-key` (Ollama and LM Studio shapes:
    // tests/suite/providers.rs).
    Behaviour {
        id: "openai_compatible",
        page: PageShape::Object {
            list: "data",
            fields: r#"{"object": "list"}"#,
            next_token: None,
        },
        model: r#"{"id": "{id}", "object": "model", "created": 1730000000, "owned_by": "vllm", "root": "{id}",
            "parent": null, "max_model_len": 32768, "permission": [{"id": "modelperm-5f0c", "object": "model_permission",
            "created": 1730000000, "allow_create_engine": false, "allow_sampling": true, "allow_logprobs": true,
            "allow_search_indices": false, "allow_view": true, "allow_fine_tuning": false, "organization": "*",
            "group": null, "is_blocking": false}]}"#,
        lists_context_windows: true,
        invalid_key: (401, r#"{"error": "Unauthorized"}"#),
        rate_limited: r#"{"error": {"message": "Rate limit exceeded. Try again in {secs} seconds.", "type": "rate_limit_error", "code": "429"}}"#,
        retry_after: RetryAfter::Header,
        quota: None,
        unavailable: (
            503,
            r#"{"object": "error", "message": "The server is not ready yet.", "type": "ServiceUnavailableError", "code": 503}"#,
        ),
        key_info: None,
    },
    Behaviour {
        id: "cohere",
        page: PageShape::Object {
            list: "models",
            fields: "{}",
            next_token: Some("next_page_token"),
        },
        model: r#"{"name": "{id}", "endpoints": ["chat", "generate"], "finetuned": false, "context_length": 128000,
            "tokenizer_url": "https://storage.googleapis.com/cohere-public/tokenizers/command-r.json",
            "default_endpoints": [], "features": ["tools", "strict_tools"]}"#,
        lists_context_windows: true,
        invalid_key: (401, r#"{"message": "invalid api token"}"#),
        rate_limited: r#"{"message": "trial token rate limit exceeded, limit is 20 calls / minute"}"#,
        retry_after: RetryAfter::Never,
        quota: None,
        unavailable: (503, r#"{"message": "Service Unavailable"}"#),
        key_info: None,
    },
];

/// The row of provider `id`.
/// The fake of provider `id`: its own row, or for an OpenAI-shaped provider
/// without one, OpenAI's (so adding such a provider needs no row here).
pub fn behaviour(id: &str) -> &'static Behaviour {
    if let Some(row) = BEHAVIOURS.iter().find(|b| b.id == id) {
        return row;
    }
    let spec = mailmind::domain::provider::find(id).unwrap_or_else(|| panic!("{id} is not a registered provider"));
    assert!(
        is_openai_shaped(spec),
        "no fake for provider {id}, which is not OpenAI-shaped: add its row to BEHAVIOURS"
    );
    behaviour("openai")
}

/// Bearer key, one page in the OpenAI list shape, no key endpoint: OpenAI's
/// answers stand for it.
pub fn is_openai_shaped(spec: &mailmind::domain::ProviderSpec) -> bool {
    use mailmind::domain::provider::{KeyPlacement, ListShape, Paging};
    spec.key_placement == KeyPlacement::Bearer
        && spec.models.paging == Paging::None
        && spec.models.shape == ListShape::OPENAI
        && spec.key_check_path.is_none()
}

impl Behaviour {
    /// One page of the list-models answer: `ids`, and `next` if another page follows.
    pub fn model_page(&self, ids: &[&str], next: Option<&str>) -> Value {
        let models: Vec<Value> = ids
            .iter()
            .map(|id| {
                let mut model = parse(self.model);
                fill(&mut model, &[("{id}", id), ("{name}", &display_name(id))]);
                model
            })
            .collect();
        match self.page {
            PageShape::Object {
                list,
                fields,
                next_token,
            } => {
                let mut body = parse(fields);
                body[list] = json!(models);
                if let (Some(key), Some(token)) = (next_token, next) {
                    body[key] = json!(token);
                }
                body
            }
            PageShape::FirstLastIds => json!({
                "data": models,
                "has_more": next.is_some(),
                "first_id": ids.first(),
                "last_id": ids.last(),
            }),
            PageShape::Array => json!(models),
        }
    }
}

fn respond((status, body): Answer) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(parse(body))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fake provider JSON ({e}): {text}"))
}

/// Replaces each placeholder in every string of `value`.
fn fill(value: &mut Value, with: &[(&str, &str)]) {
    match value {
        Value::String(s) => {
            for (placeholder, text) in with {
                if s.contains(placeholder) {
                    *s = s.replace(placeholder, text);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fill(v, with)),
        Value::Object(fields) => fields.values_mut().for_each(|v| fill(v, with)),
        _ => {}
    }
}

fn display_name(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A large catalogue: 1800 distinct model ids of about 220 characters. As
/// plain JSON the list is far over DynamoDB's 400 KB item cap; it is the
/// worst ordinary load of the validating functions' memory.
pub fn large_catalogue() -> Vec<String> {
    (0..1800)
        .map(|i| {
            format!(
                "accounts/aggregator/models/{}-{i:05}",
                "fine-tuned-long-model-name".repeat(7)
            )
        })
        .collect()
}

/// `{"data":[0,0,0,…]}` just under the provider client's byte cap: about
/// two million entries, none a model.
pub fn page_of_zeros() -> String {
    let count = (mailmind::adapters::providers::MAX_BODY_BYTES - 64) / 2;
    format!(r#"{{"data":[{}0]}}"#, "0,".repeat(count - 1))
}

/// A provider client that accepts every key, unlocking nothing, and counts
/// the checks: for tests about everything around the provider call.
#[derive(Default)]
pub struct AcceptsAll(pub std::sync::atomic::AtomicUsize);

impl AcceptsAll {
    /// Checks made so far.
    pub fn checks(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl mailmind::ports::ProviderClient for AcceptsAll {
    async fn check(
        &self,
        _: &'static mailmind::domain::ProviderSpec,
        _: Option<&mailmind::domain::endpoint::Endpoint>,
        _: &mailmind::domain::ApiKey,
    ) -> mailmind::domain::CheckOutcome {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        mailmind::domain::CheckOutcome::Valid { models: Vec::new() }
    }
}
