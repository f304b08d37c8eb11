//! Local fake provider servers that answer like the real APIs: the same paths,
//! auth headers, paging and bodies (success and error) as PROVIDERS.md records.
//!
//! A fake knows which keys are good; any other key gets the provider's real
//! "bad key" answer, the way the real service does.

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
            self.with_key(key)
                .and(path(key_path))
                .respond_with(ResponseTemplate::new(200).set_body_json(
                    json!({"data": {"label": "sk-or-v1-abc...xyz", "limit": 100, "usage": 25.5, "is_free_tier": false}}),
                ))
                .with_priority(10)
                .mount(&self.server)
                .await;
        }
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

    /// One page of this provider's list-models answer, in its real shape.
    pub fn model_page(&self, ids: &[&str], next: Option<&str>) -> Value {
        let each = |model: &dyn Fn(&str) -> Value| ids.iter().map(|id| model(id)).collect::<Vec<Value>>();
        match self.id {
            "google_gemini" => {
                let mut body = json!({ "models": each(&|id| json!({
                    "name": format!("models/{id}"),
                    "version": "001",
                    "displayName": display_name(id),
                    "description": "A fake model.",
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": 8192,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                    "temperature": 1.0,
                    "topP": 0.95,
                    "topK": 64
                }))});
                if let Some(token) = next {
                    body["nextPageToken"] = json!(token);
                }
                body
            }
            "anthropic" => json!({
                "data": each(&|id| json!({
                    "type": "model", "id": id, "display_name": display_name(id),
                    "created_at": "2025-09-29T00:00:00Z"
                })),
                "has_more": next.is_some(),
                "first_id": ids.first(),
                "last_id": ids.last(),
            }),
            "cohere" => {
                let mut body = json!({ "models": each(&|id| json!({
                    "name": id,
                    "endpoints": ["chat", "generate"],
                    "finetuned": false,
                    "context_length": 128000,
                    "tokenizer_url": "https://storage.googleapis.com/cohere-public/tokenizers/command-r.json",
                    "default_endpoints": [],
                    "features": ["tools", "strict_tools"]
                }))});
                if let Some(token) = next {
                    body["next_page_token"] = json!(token);
                }
                body
            }
            // A bare array, not an object.
            "together" => json!(each(&|id| json!({
                "id": id, "object": "model", "created": 1733875200, "type": "chat", "running": false,
                "display_name": display_name(id), "organization": "Meta",
                "link": "https://huggingface.co/meta-llama", "license": "llama3.3",
                "context_length": 131072,
                "config": {"chat_template": null, "stop": ["<|eot_id|>"], "bos_token": null, "eos_token": null},
                "pricing": {"hourly": 0, "input": 0.88, "output": 0.88, "base": 0, "finetune": 0}
            }))),
            "openrouter" => json!({ "data": each(&|id| json!({
                "id": id, "canonical_slug": id, "name": display_name(id), "created": 1715367049,
                "description": "A fake model.", "context_length": 128000,
                "architecture": {"modality": "text+image->text", "input_modalities": ["text", "image"],
                                 "output_modalities": ["text"], "tokenizer": "GPT"},
                "pricing": {"prompt": "0.0000025", "completion": "0.00001"},
                "top_provider": {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": true},
                "per_request_limits": null, "supported_parameters": ["tools", "temperature"]
            }))}),
            "mistral" => json!({"object": "list", "data": each(&|id| json!({
                "id": id, "object": "model", "created": 1732665600, "owned_by": "mistralai",
                "capabilities": {"completion_chat": true, "completion_fim": false, "function_calling": true,
                                 "fine_tuning": false, "vision": false, "classification": false},
                "name": id, "description": "A fake model.", "max_context_length": 131072,
                "aliases": [], "deprecation": null, "default_model_temperature": 0.3, "type": "base"
            }))}),
            // No context window in these lists.
            "openai" => json!({"object": "list", "data": each(&|id| json!({
                "id": id, "object": "model", "created": 1686935002, "owned_by": "openai"
            }))}),
            "deepseek" => json!({"object": "list", "data": each(&|id| json!({
                "id": id, "object": "model", "owned_by": "deepseek"
            }))}),
            "xai" => json!({"data": each(&|id| json!({
                "id": id, "created": 1737331200, "object": "model", "owned_by": "xai"
            })), "object": "list"}),
            // Groq.
            _ => json!({"object": "list", "data": each(&|id| json!({
                "id": id,
                "object": "model",
                "created": 1693721698,
                "owned_by": "Meta",
                "active": true,
                "context_window": 131072,
                "public_apps": null
            }))}),
        }
    }

    /// Whether this provider's model list states a context window.
    pub fn lists_context_windows(&self) -> bool {
        !matches!(self.id, "openai" | "deepseek" | "xai" | "anthropic")
    }

    /// The provider's real answer to a bad key.
    pub fn invalid_key_response(&self) -> ResponseTemplate {
        let (status, body) = match self.id {
            "google_gemini" => (
                400,
                json!({"error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                     "message": "API key not valid. Please pass a valid API key."}
                ]}}),
            ),
            "anthropic" => (
                401,
                json!({"type": "error", "error": {"type": "authentication_error",
                "message": "invalid x-api-key"}, "request_id": "req_011CWbVb6rTz1T3fP6YkZxjE"}),
            ),
            "openai" => (
                401,
                json!({"error": {
                "message": "Incorrect API key provided: sk-proj-********************abcd. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            ),
            "mistral" => (401, json!({"detail": "Unauthorized"})),
            "openrouter" => (401, json!({"error": {"message": "User not found.", "code": 401}})),
            "deepseek" => (
                401,
                json!({"error": {
                "message": "Authentication Fails, Your api key: ****abcd is invalid",
                "type": "authentication_error", "param": null, "code": "invalid_request_error"}}),
            ),
            "xai" => (
                400,
                json!({"code": "Client specified an invalid argument",
                "error": "Incorrect API key provided: xa***cd. You can obtain an API key from https://console.x.ai."}),
            ),
            "together" => (
                401,
                json!({"error": {
                "message": "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            ),
            "cohere" => (401, json!({"message": "invalid api token"})),
            // Groq.
            _ => (
                401,
                json!({"error": {
                "message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}}),
            ),
        };
        ResponseTemplate::new(status).set_body_json(body)
    }

    /// Whether this provider says how long to wait when it rate limits.
    pub fn sends_retry_after(&self) -> bool {
        matches!(self.id, "groq" | "openai" | "anthropic" | "google_gemini")
    }

    /// The provider's real rate-limit answer (asking to retry after `secs` where it says so).
    pub fn rate_limited_response(&self, secs: u64) -> ResponseTemplate {
        let body = match self.id {
            "google_gemini" => {
                return ResponseTemplate::new(429).set_body_json(json!({"error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                        {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                         "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}
                ]}}));
            }
            "anthropic" => json!({"type": "error", "error": {"type": "rate_limit_error",
                "message": "Number of requests has exceeded your per-minute rate limit"}}),
            "openai" => json!({"error": {"message": "Rate limit reached for requests", "type": "requests",
                "param": null, "code": "rate_limit_exceeded"}}),
            "mistral" => json!({"message": "Requests rate limit exceeded"}),
            "openrouter" => json!({"error": {"message": "Rate limit exceeded: limit_rpm/openai/gpt-4o", "code": 429}}),
            "deepseek" => json!({"error": {"message": "Rate Limit Reached", "type": "rate_limit_error",
                "param": null, "code": "rate_limit_exceeded"}}),
            "xai" => json!({"code": "Some resource has been exhausted",
                "error": "Your team has reached its requests per second limit."}),
            "together" => json!({"error": {"message": "You have exceeded the rate limit", "type": "rate_limit",
                "param": null, "code": null}}),
            "cohere" => json!({"message": "trial token rate limit exceeded, limit is 20 calls / minute"}),
            _ => json!({"error": {"message": "Rate limit reached for requests. Please try again later.",
                "type": "requests", "code": "rate_limit_exceeded"}}),
        };
        let response = ResponseTemplate::new(429).set_body_json(body);
        if self.sends_retry_after() {
            response.insert_header("retry-after", secs.to_string().as_str())
        } else {
            response
        }
    }

    /// The provider's real "out of credit" answer, where it has one.
    pub fn quota_response(&self) -> Option<ResponseTemplate> {
        let (status, body) = match self.id {
            "openai" => (
                429,
                json!({"error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
            ),
            "openrouter" => (
                402,
                json!({"error": {
                "message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits",
                "code": 402}}),
            ),
            "deepseek" => (
                402,
                json!({"error": {"message": "Insufficient Balance", "type": "unknown_error",
                "param": null, "code": "invalid_request_error"}}),
            ),
            "anthropic" => (
                402,
                json!({"type": "error", "error": {"type": "billing_error",
                "message": "Your credit balance is too low to access the Anthropic API."}}),
            ),
            _ => return None,
        };
        Some(ResponseTemplate::new(status).set_body_json(body))
    }

    /// The provider's real "service unavailable" answer.
    pub fn unavailable_response(&self) -> ResponseTemplate {
        let (status, body) = match self.id {
            "google_gemini" => (
                503,
                json!({"error": {
                "code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}),
            ),
            "anthropic" => (
                529,
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
            "openai" => (
                503,
                json!({"error": {"message": "The server is overloaded or not ready yet.",
                "type": "server_error", "param": null, "code": null}}),
            ),
            "cohere" | "mistral" => (503, json!({"message": "Service Unavailable"})),
            "xai" => (
                500,
                json!({"code": "Internal error", "error": "Service temporarily unavailable."}),
            ),
            _ => (
                503,
                json!({"error": {"message": "Service Unavailable", "type": "internal_server_error"}}),
            ),
        };
        ResponseTemplate::new(status).set_body_json(body)
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
