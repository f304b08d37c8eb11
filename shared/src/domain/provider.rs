//! The provider registry: what each supported AI provider is called, where its
//! list-models endpoint lives, how a key is presented and how its answers read.
//!
//! Providers are data, not code: an OpenAI-shaped provider is one entry in
//! [`PROVIDERS`]. The HTTP client in `adapters::providers` interprets these
//! entries; only genuinely different wire shapes get their own variant here.

/// How the API key is presented to the provider. Never in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPlacement {
    /// `Authorization: Bearer <key>`
    Bearer,
    /// A provider-specific header carrying the bare key, e.g. `x-goog-api-key`.
    Header(&'static str),
}

/// How a list-models answer is split into pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// The whole list comes in one answer.
    None,
    /// The answer names the next page with a token (absent or empty on the last
    /// page), which goes back as a query parameter: Gemini, Cohere.
    Token {
        /// Field of the answer holding the next page's token.
        response_field: &'static str,
        /// Query parameter the token goes back in.
        request_param: &'static str,
    },
    /// The answer says whether more follow and which id was last; that id goes
    /// back as a query parameter: Anthropic.
    Cursor {
        /// Boolean field: more pages follow.
        has_more_field: &'static str,
        /// Field holding the last id of this page.
        last_id_field: &'static str,
        /// Query parameter that id goes back in.
        request_param: &'static str,
    },
}

/// Where the models sit in a list-models answer and which fields say what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListShape {
    /// Top-level field holding the array of models; `None` when the answer is
    /// itself the array (Together).
    pub items_field: Option<&'static str>,
    /// Field holding the model id.
    pub id_field: &'static str,
    /// Prefix to drop from the id (Gemini names models `models/<id>`).
    pub id_prefix: Option<&'static str>,
    /// Field holding a human-readable name, if the provider gives one.
    pub name_field: Option<&'static str>,
    /// Fields that may hold the context window, first present wins.
    pub context_window_fields: &'static [&'static str],
    /// Fields that may hold the output token limit, first present wins.
    pub max_output_fields: &'static [&'static str],
    /// Field holding who publishes the model, if given.
    pub owner_field: Option<&'static str>,
    /// A boolean field that, when `false`, means the model cannot be used (Groq's `active`).
    pub active_field: Option<&'static str>,
}

impl ListShape {
    /// The OpenAI `{"object":"list","data":[{"id":..}]}` shape shared by most providers.
    pub const OPENAI: ListShape = ListShape {
        items_field: Some("data"),
        id_field: "id",
        id_prefix: None,
        name_field: None,
        context_window_fields: &["context_window", "max_context_length", "context_length"],
        max_output_fields: &[],
        owner_field: Some("owned_by"),
        active_field: Some("active"),
    };
}

/// When a `400 Bad Request` means the key itself is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequestMeans {
    /// A 400 is our fault or the provider's, never a verdict on the key.
    NotAKeyVerdict,
    /// Google style: only when `error.details[].reason` equals this value.
    InvalidKeyWhenReason(&'static str),
    /// xAI answers a wrong key with a plain 400.
    InvalidKey,
}

/// The list-models request of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelListing {
    /// Path below the base URL, as the provider documents it.
    pub path: &'static str,
    /// Fixed query parameters (page size).
    pub query: &'static [(&'static str, &'static str)],
    /// How the answer is split into pages.
    pub paging: Paging,
    /// Where the models and their facts sit in the answer.
    pub shape: ListShape,
    /// The listing answers without a key, so it proves nothing about one.
    pub public: bool,
}

impl ModelListing {
    /// OpenAI's `GET /v1/models`: one page in the OpenAI shape.
    pub const OPENAI: ModelListing = ModelListing {
        path: "/v1/models",
        query: &[],
        paging: Paging::None,
        shape: ListShape::OPENAI,
        public: false,
    };
}

/// Where a provider's API is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseUrl {
    /// One production root for every user; `PROVIDER_BASE_URL_<ID>` overrides it.
    Fixed(&'static str),
    /// Each key names its own root (`base_url` on create and replace): a
    /// user's gateway or model server. It is bound to the sealed key and goes
    /// through the egress guard (`adapters::egress`) at every use.
    PerKey {
        /// What one looks like, for the settings page and the docs.
        example: &'static str,
    },
}

/// Everything the service knows about one provider.
#[derive(Debug, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Fixed lowercase id used on the wire.
    pub id: &'static str,
    /// Name shown to people.
    pub display_name: &'static str,
    /// Where its API is.
    pub base_url: BaseUrl,
    /// A key may be empty (a local model server that needs none).
    pub key_optional: bool,
    /// How the key is sent.
    pub key_placement: KeyPlacement,
    /// Headers every request needs besides the key (API version pins).
    pub extra_headers: &'static [(&'static str, &'static str)],
    /// A key-only endpoint to call first when the listing is public (OpenRouter).
    pub key_check_path: Option<&'static str>,
    /// The list-models request.
    pub models: ModelListing,
    /// What a `400` says about the key.
    pub bad_request: BadRequestMeans,
    /// Known key prefixes, longest first: used for the hint only, never to reject a key.
    pub key_prefixes: &'static [&'static str],
}

impl ProviderSpec {
    /// The production root of a provider with one, `None` where each key names its own.
    pub fn default_base_url(&self) -> Option<&'static str> {
        match self.base_url {
            BaseUrl::Fixed(url) => Some(url),
            BaseUrl::PerKey { .. } => None,
        }
    }

    /// Whether each key names its own endpoint.
    pub fn endpoint_per_key(&self) -> bool {
        self.endpoint_example().is_some()
    }

    /// What a key's own endpoint looks like, where keys name one.
    pub fn endpoint_example(&self) -> Option<&'static str> {
        match self.base_url {
            BaseUrl::Fixed(_) => None,
            BaseUrl::PerKey { example } => Some(example),
        }
    }

    /// The environment variable that overrides this provider's base URL.
    pub fn base_url_env_var(&self) -> String {
        format!("PROVIDER_BASE_URL_{}", self.id.to_ascii_uppercase())
    }
}

/// The supported providers, sorted by id (the order `GET /credentials/` lists them in).
pub static PROVIDERS: &[ProviderSpec] = &[
    ProviderSpec {
        id: "anthropic",
        display_name: "Anthropic",
        base_url: BaseUrl::Fixed("https://api.anthropic.com"),
        key_optional: false,
        key_placement: KeyPlacement::Header("x-api-key"),
        extra_headers: &[("anthropic-version", "2023-06-01")],
        key_check_path: None,
        models: ModelListing {
            path: "/v1/models",
            query: &[("limit", "1000")],
            paging: Paging::Cursor {
                has_more_field: "has_more",
                last_id_field: "last_id",
                request_param: "after_id",
            },
            shape: ListShape {
                name_field: Some("display_name"),
                owner_field: None,
                active_field: None,
                ..ListShape::OPENAI
            },
            public: false,
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &["sk-ant-api03-", "sk-ant-"],
    },
    ProviderSpec {
        id: "azure_openai",
        display_name: "Azure OpenAI",
        base_url: BaseUrl::PerKey {
            example: "https://my-resource.openai.azure.com",
        },
        key_optional: false,
        key_placement: KeyPlacement::Header("api-key"),
        extra_headers: &[],
        key_check_path: None,
        // The resource's deployments are what a key can call: they are its
        // models. Azure lists them on the data plane up to this API version.
        models: ModelListing {
            path: "/openai/deployments",
            query: &[("api-version", "2022-12-01")],
            paging: Paging::None,
            shape: ListShape {
                name_field: Some("model"),
                context_window_fields: &[],
                owner_field: Some("owner"),
                active_field: None,
                ..ListShape::OPENAI
            },
            public: false,
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &[],
    },
    ProviderSpec {
        id: "cohere",
        display_name: "Cohere",
        base_url: BaseUrl::Fixed("https://api.cohere.com"),
        key_optional: false,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        key_check_path: None,
        models: ModelListing {
            path: "/v1/models",
            query: &[("page_size", "1000")],
            paging: Paging::Token {
                response_field: "next_page_token",
                request_param: "page_token",
            },
            shape: ListShape {
                items_field: Some("models"),
                id_field: "name",
                id_prefix: None,
                name_field: None,
                context_window_fields: &["context_length"],
                max_output_fields: &[],
                owner_field: None,
                active_field: None,
            },
            public: false,
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &[],
    },
    ProviderSpec {
        id: "deepseek",
        display_name: "DeepSeek",
        base_url: BaseUrl::Fixed("https://api.deepseek.com"),
        key_optional: false,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        key_check_path: None,
        models: ModelListing {
            path: "/models",
            ..ModelListing::OPENAI
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &["sk-"],
    },
    ProviderSpec {
        id: "google_gemini",
        display_name: "Google Gemini",
        base_url: BaseUrl::Fixed("https://generativelanguage.googleapis.com"),
        key_optional: false,
        key_placement: KeyPlacement::Header("x-goog-api-key"),
        extra_headers: &[],
        key_check_path: None,
        models: ModelListing {
            path: "/v1beta/models",
            query: &[("pageSize", "1000")],
            paging: Paging::Token {
                response_field: "nextPageToken",
                request_param: "pageToken",
            },
            shape: ListShape {
                items_field: Some("models"),
                id_field: "name",
                id_prefix: Some("models/"),
                name_field: Some("displayName"),
                context_window_fields: &["inputTokenLimit"],
                max_output_fields: &["outputTokenLimit"],
                owner_field: None,
                active_field: None,
            },
            public: false,
        },
        bad_request: BadRequestMeans::InvalidKeyWhenReason("API_KEY_INVALID"),
        key_prefixes: &["AIza"],
    },
    ProviderSpec {
        id: "groq",
        display_name: "Groq",
        base_url: BaseUrl::Fixed("https://api.groq.com"),
        key_optional: false,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        key_check_path: None,
        models: ModelListing {
            path: "/openai/v1/models",
            ..ModelListing::OPENAI
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &["gsk_"],
    },
    ProviderSpec {
        id: "mistral",
        display_name: "Mistral AI",
        base_url: BaseUrl::Fixed("https://api.mistral.ai"),
        key_optional: false,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        key_check_path: None,
        models: ModelListing {
            shape: ListShape {
                name_field: Some("name"),
                ..ListShape::OPENAI
            },
            ..ModelListing::OPENAI
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &[],
    },
    ProviderSpec {
        id: "openai",
        display_name: "OpenAI",
        base_url: BaseUrl::Fixed("https://api.openai.com"),
        key_optional: false,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        key_check_path: None,
        models: ModelListing::OPENAI,
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &["sk-svcacct-", "sk-admin-", "sk-proj-", "sk-"],
    },
    ProviderSpec {
        id: "openai_compatible",
        display_name: "OpenAI-compatible",
        base_url: BaseUrl::PerKey {
            example: "https://llm.example.com/v1",
        },
        key_optional: true,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        key_check_path: None,
        // The base URL includes the version (`…/v1`), as these servers document it.
        models: ModelListing {
            path: "/models",
            shape: ListShape {
                // vLLM names the context window `max_model_len`.
                context_window_fields: &["context_window", "max_model_len", "context_length"],
                ..ListShape::OPENAI
            },
            ..ModelListing::OPENAI
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &[],
    },
    ProviderSpec {
        id: "openrouter",
        display_name: "OpenRouter",
        base_url: BaseUrl::Fixed("https://openrouter.ai"),
        key_optional: false,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        // The model list answers without a key: the key endpoint judges it.
        key_check_path: Some("/api/v1/key"),
        models: ModelListing {
            path: "/api/v1/models",
            shape: ListShape {
                name_field: Some("name"),
                ..ListShape::OPENAI
            },
            public: true,
            ..ModelListing::OPENAI
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &["sk-or-v1-"],
    },
    ProviderSpec {
        id: "together",
        display_name: "Together AI",
        base_url: BaseUrl::Fixed("https://api.together.xyz"),
        key_optional: false,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        key_check_path: None,
        models: ModelListing {
            // The answer is a bare JSON array of models.
            shape: ListShape {
                items_field: None,
                name_field: Some("display_name"),
                owner_field: Some("organization"),
                ..ListShape::OPENAI
            },
            ..ModelListing::OPENAI
        },
        bad_request: BadRequestMeans::NotAKeyVerdict,
        key_prefixes: &["tgp_v1_"],
    },
    ProviderSpec {
        id: "xai",
        display_name: "xAI",
        base_url: BaseUrl::Fixed("https://api.x.ai"),
        key_optional: false,
        key_placement: KeyPlacement::Bearer,
        extra_headers: &[],
        key_check_path: None,
        models: ModelListing::OPENAI,
        // xAI answers a wrong key with 400 "Incorrect API key provided".
        bad_request: BadRequestMeans::InvalidKey,
        key_prefixes: &["xai-"],
    },
];

/// Looks a provider up by its wire id (exact, case-sensitive: ids are fixed lowercase).
pub fn find(id: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.id == id)
}

/// `"a, b, c"`: the supported ids, for error messages.
pub fn supported_ids() -> String {
    PROVIDERS.iter().map(|p| p.id).collect::<Vec<_>>().join(", ")
}

/// `"a, b"`: the ids of the providers whose keys name their own endpoint.
pub fn per_key_endpoint_ids() -> String {
    PROVIDERS
        .iter()
        .filter(|p| p.endpoint_per_key())
        .map(|p| p.id)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_sorted_unique_and_well_formed() {
        let ids: Vec<&str> = PROVIDERS.iter().map(|p| p.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "PROVIDERS must be sorted by id without duplicates");
        for p in PROVIDERS {
            assert!(
                p.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{} is not a lowercase id",
                p.id
            );
            let url = match p.base_url {
                BaseUrl::Fixed(url) | BaseUrl::PerKey { example: url } => url,
            };
            assert!(url.starts_with("https://"), "{}", p.id);
            assert!(!url.ends_with('/'), "{}", p.id);
            assert!(
                !p.key_optional || p.endpoint_per_key(),
                "{}: only a user's own server may need no key",
                p.id
            );
            assert!(p.models.path.starts_with('/'), "{}", p.id);
            assert!(
                p.key_prefixes.windows(2).all(|w| w[0].len() >= w[1].len()),
                "{}: prefixes must be longest first",
                p.id
            );
            if p.models.public {
                assert!(
                    p.key_check_path.is_some(),
                    "{}: a public listing needs a key check",
                    p.id
                );
            }
        }
    }

    #[test]
    fn lookup_is_exact() {
        assert_eq!(find("groq").map(|p| p.display_name), Some("Groq"));
        assert!(find("GROQ").is_none());
        assert!(find("groq ").is_none());
        assert!(find("").is_none());
        assert_eq!(
            find("google_gemini").unwrap().base_url_env_var(),
            "PROVIDER_BASE_URL_GOOGLE_GEMINI"
        );
    }
}
