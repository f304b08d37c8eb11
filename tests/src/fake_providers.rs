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
            let mut mock = self.with_key(key).and(path(listing.path));
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

    /// One page of this provider's list-models answer.
    pub fn model_page(&self, ids: &[&str], next: Option<&str>) -> Value {
        match self.id {
            "google_gemini" => {
                let models: Vec<Value> = ids
                    .iter()
                    .map(|id| {
                        json!({
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
                        })
                    })
                    .collect();
                let mut body = json!({ "models": models });
                if let Some(token) = next {
                    body["nextPageToken"] = json!(token);
                }
                body
            }
            // Groq and the other OpenAI-shaped providers.
            _ => {
                let models: Vec<Value> = ids
                    .iter()
                    .map(|id| {
                        json!({
                            "id": id,
                            "object": "model",
                            "created": 1693721698,
                            "owned_by": "Meta",
                            "active": true,
                            "context_window": 131072,
                            "public_apps": null
                        })
                    })
                    .collect();
                json!({"object": "list", "data": models})
            }
        }
    }

    /// The provider's real answer to a bad key.
    pub fn invalid_key_response(&self) -> ResponseTemplate {
        match self.id {
            "google_gemini" => ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                 "message": "API key not valid. Please pass a valid API key."}
            ]}})),
            _ => ResponseTemplate::new(401).set_body_json(json!({"error": {
                "message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}})),
        }
    }

    /// The provider's real rate-limit answer, asking to retry after `secs`.
    pub fn rate_limited_response(&self, secs: u64) -> ResponseTemplate {
        match self.id {
            "google_gemini" => ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                     "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}
            ]}})),
            _ => ResponseTemplate::new(429)
                .insert_header("retry-after", secs.to_string().as_str())
                .set_body_json(json!({"error": {
                    "message": "Rate limit reached for requests. Please try again later.",
                    "type": "requests", "code": "rate_limit_exceeded"}})),
        }
    }

    /// The provider's real "service unavailable" answer.
    pub fn unavailable_response(&self) -> ResponseTemplate {
        match self.id {
            "google_gemini" => ResponseTemplate::new(503).set_body_json(json!({"error": {
                "code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}})),
            _ => ResponseTemplate::new(503).set_body_json(json!({"error": {
                "message": "Service Unavailable", "type": "internal_server_error"}})),
        }
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
