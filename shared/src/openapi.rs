//! The OpenAPI 3.1 document of the REST API (`docs/openapi.json`, served by
//! the local server at `GET /api/v1/openapi.json`), built from the code so it
//! cannot drift from it:
//!
//! - the paths and methods come from [`Route::ALL`] (an exhaustive `match`
//!   below makes a new route fail to compile until it is described);
//! - the bodies' schemas are derived (`utoipa::ToSchema`) from the structs the
//!   handlers serialize: [`CredentialView`], [`ModelView`], [`ErrorBody`], and
//!   the wire enums ([`CredentialStatus`], [`ErrorReason`]) from their one table;
//! - the provider ids come from [`provider::PROVIDERS`].
//!
//! Why `utoipa` (5.x): it is the most used and best kept OpenAPI crate for
//! Rust, derives schemas from the serde types themselves (honouring
//! `skip_serializing_if`, `flatten`, `rename`), and writes OpenAPI 3.1.
//! The paths are assembled with its builders rather than `#[utoipa::path]`
//! on the handlers: every handler has the same signature (`Request` in,
//! `Response` out), so the per-route facts (body, answers, error codes) are
//! data, kept here in one table next to the route list.
//!
//! Behind the `openapi` feature: only the local server and the tests build
//! it, the Lambda functions do not carry it.
//!
//! Regenerate the committed file with
//! `UPDATE_OPENAPI=1 cargo test -p mailmind-tests --test suite openapi`.

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::ToSchema;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Required, Schema, ServerBuilder, Tag};

use crate::domain::activity::{ActivityEntryView, ActivityKind, ActivityPageView, CheckedBy};
use crate::domain::api_key::MAX_KEY_BYTES;
use crate::domain::endpoint::MAX_ENDPOINT_BYTES;
use crate::domain::provider::{self, PROVIDERS};
use crate::domain::{CredentialStatus, CredentialView, ErrorReason, ModelInfo, ModelView, UsageOutcome};
use crate::handlers::Route;
use crate::handlers::protocol::{ApiError, ErrorBody, MAX_BODY_BYTES};

/// The path the local server serves the document at (no token needed).
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// The name of the bearer JWT security scheme.
const BEARER: &str = "bearerAuth";

/// `POST /credentials/`'s body: one branch per kind of provider, told apart
/// by `provider` (grouped from [`PROVIDERS`]): a provider with a fixed root
/// takes no `base_url`; one whose keys name their endpoint needs it, and may
/// take a blank key. The handler reads the body field by field (so each fault
/// gets its own `detail`); this only describes it.
fn create_request_schema() -> Schema {
    let mut branches = OneOfBuilder::new().description(Some(
        "A provider id and its key; for azure_openai and openai_compatible also the key's own endpoint.",
    ));
    for (per_key, optional) in [(false, false), (true, false), (true, true)] {
        let ids: Vec<&str> = PROVIDERS
            .iter()
            .filter(|p| p.endpoint_per_key() == per_key && p.key_optional == optional)
            .map(|p| p.id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        let provider = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A provider id."))
            .enum_values(Some(ids));
        let mut branch = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("provider", provider)
            .required("provider")
            .property("api_key", api_key_schema(optional));
        if !optional {
            branch = branch.required("api_key");
        }
        branch = if per_key {
            branch.property("base_url", base_url_schema()).required("base_url")
        } else {
            let none = ObjectBuilder::new()
                .schema_type(Type::Null)
                .description(Some("Only for providers whose keys name their own endpoint."));
            branch.property("base_url", none)
        };
        branches = branches.item(branch);
    }
    branches.build().into()
}

/// `PUT /credentials/{provider}/`'s body (described only, as above). The
/// body may also hold `provider`, which must then equal the path's provider
/// (or be `null`); JSON Schema cannot tie a body field to a path parameter,
/// so that rule is in the request body's description, not in this schema.
#[derive(Serialize, ToSchema)]
struct UpdateCredentialRequest {
    /// The new key; see [`api_key_schema`].
    #[schema(schema_with = required_api_key_schema)]
    api_key: String,
    /// See [`base_url_schema`]; left out or `null`, the stored endpoint stays.
    #[schema(schema_with = replacement_base_url_schema)]
    base_url: Option<String>,
}

fn required_api_key_schema() -> Schema {
    api_key_schema(false)
}

/// `PUT`'s `base_url`: an endpoint, or `null` to keep the stored one.
fn replacement_base_url_schema() -> Schema {
    OneOfBuilder::new()
        .item(base_url_schema())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "azure_openai and openai_compatible only: the key's new endpoint (see base_url of \
             CreateCredentialRequest); left out or null, the stored endpoint stays. Any other \
             provider answers 400 invalid_request (JSON Schema cannot tie a body field to the \
             path's provider).",
        ))
        .build()
        .into()
}

/// `POST .../keys/`'s body (described only, as above).
#[derive(Serialize, ToSchema)]
struct CreateKeyRequest {
    /// See [`key_name_schema`].
    #[schema(schema_with = key_name_schema)]
    name: String,
    /// The key; see [`api_key_schema`] (blank allowed for `openai_compatible`).
    #[schema(schema_with = required_api_key_schema)]
    api_key: String,
    /// Its place in the provider's order, lower first; default after the others.
    #[schema(minimum = 0, maximum = 1000, example = 1)]
    priority: Option<u32>,
    /// See [`base_url_schema`].
    #[schema(schema_with = replacement_base_url_schema)]
    base_url: Option<String>,
}

/// A key's name, as `named_key::parse_name` takes it: surrounding
/// whitespace trimmed, then 1 to 64 characters with no control character.
fn key_name_schema() -> Schema {
    let printable = "[^\\u0000-\\u001F\\u007F-\\u009F]";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(crate::domain::named_key::MAX_NAME_CHARS))
        .pattern(Some(format!(
            "^{printable}*[^{WHITE_SPACE}\\u0000-\\u001F\\u007F-\\u009F]{printable}*$"
        )))
        .description(Some(
            "The user's name for the key: surrounding whitespace trimmed, then 1 to 64 characters, \
             no control characters; unique per provider (case aside), else `409 key_name_taken`.",
        ))
        .examples(["work"])
        .build()
        .into()
}

/// `PATCH .../keys/{key_id}/`'s body: at least one of its fields.
fn patch_key_request_schema() -> Schema {
    let schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Any of the key's name, place and switch; at least one."))
        .property("name", key_name_schema())
        .property(
            "priority",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(1000))
                .description(Some("A new place in the order, lower first.")),
        )
        .property(
            "enabled",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some("Off: never chosen; on: chosen in its turn.")),
        )
        .build();
    // At least one of the three (other fields are ignored, as everywhere).
    let one_of_them =
        ["name", "priority", "enabled"].map(|field| Schema::Object(ObjectBuilder::new().required(field).build()));
    Schema::AllOf(
        AllOfBuilder::new()
            .item(Schema::Object(schema))
            .item(Schema::AnyOf(
                one_of_them
                    .into_iter()
                    .fold(utoipa::openapi::schema::AnyOfBuilder::new(), |any, s| any.item(s))
                    .build(),
            ))
            .build(),
    )
}

/// The document schemas the derive collects (with what they refer to).
#[derive(OpenApi)]
#[openapi(components(schemas(
    CredentialView,
    ActivityPageView,
    ActivityEntryView,
    ActivityKind,
    CheckedBy,
    UsageOutcome,
    ModelView,
    ModelInfo,
    CredentialStatus,
    ErrorReason,
    ErrorBody,
    UpdateCredentialRequest,
    CreateKeyRequest,
    crate::domain::credential::KeySummary
)))]
struct Schemas;

/// A supported provider id (one enum value per entry of [`PROVIDERS`]).
fn provider_id_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(PROVIDERS.iter().map(|p| p.id)))
        .examples(["groq"])
        .build()
        .into()
}

/// Whitespace as Rust's `char::is_whitespace` (Unicode `White_Space`) sees it,
/// spelled out: `\s` differs between regex dialects.
const WHITE_SPACE: &str = r"\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// The key input rules of `ApiKey::parse` as a pattern: surrounding
/// whitespace, then at least one character that is neither whitespace nor a
/// control character. The byte limit is stated, not patterned (JSON Schema
/// counts characters, not bytes).
fn api_key_schema(blank_allowed: bool) -> Schema {
    // The key's characters, one or more; optional where a blank key is allowed.
    let key = format!("[^{WHITE_SPACE}\\u0000-\\u001F\\u007F-\\u009F]+");
    let key = if blank_allowed { format!("(?:{key})?") } else { key };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^[{WHITE_SPACE}]*{key}[{WHITE_SPACE}]*$")))
        .description(Some(format!(
            "The provider API key. Surrounding whitespace is trimmed; the rest must be {} to \
             {MAX_KEY_BYTES} bytes (UTF-8) with no whitespace or control characters. A key \
             carrying another provider's distinctive prefix (`sk-ant-`, `sk-or-`, `gsk_`, \
             `AIza`, `xai-`, `tgp_v1_`) answers `400 key_provider_mismatch` (a rule across \
             two fields, so not in this schema).{}",
            if blank_allowed { 0 } else { 1 },
            if blank_allowed {
                " Blank or left out: a server that needs no key."
            } else {
                ""
            }
        )))
        // Provider-neutral, so the example is valid under every provider.
        .examples(["key-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH9xQa"])
        .build()
        .into()
}

/// A key's own endpoint (`BaseUrl::PerKey` providers only).
fn base_url_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::SchemaFormat::Custom("uri".into())))
        .max_length(Some(MAX_ENDPOINT_BYTES))
        .description(Some(format!(
            "The key's own endpoint, for {} only (any other provider answers `400 invalid_request`; \
             required on create, and a replacement without it keeps the stored one). An `https` URL \
             without user name, query or fragment, on port 443 unless the operator allows more; \
             its host must not be or resolve to a loopback, private, carrier-grade NAT, link-local, \
             unique-local, multicast or reserved address. Otherwise `400 endpoint_not_allowed`, \
             saying why.",
            crate::domain::provider::per_key_endpoint_ids()
        )))
        .examples(["https://llm.example.com/v1"])
        .build()
        .into()
}

/// The document, as the local server serves it and `docs/openapi.json` holds it.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Schemas::openapi();
    doc.info.title = "MailMind credential service".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(DESCRIPTION.into());
    doc.info.license = None;
    doc.info.contact = None;
    doc.servers = Some(vec![
        ServerBuilder::new()
            .url("http://127.0.0.1:3000")
            .description(Some("mailmind-local (the default port)"))
            .build(),
        ServerBuilder::new()
            .url("https://{api-id}.execute-api.{region}.amazonaws.com")
            .description(Some("AWS: the stack output HttpApiUrl"))
            .parameter(
                "api-id",
                utoipa::openapi::server::ServerVariableBuilder::new().default_value("api-id"),
            )
            .parameter(
                "region",
                utoipa::openapi::server::ServerVariableBuilder::new().default_value("eu-west-1"),
            )
            .build(),
    ]);
    doc.security = Some(vec![SecurityRequirement::new::<_, [&str; 0], &str>(BEARER, [])]);
    doc.tags = Some(vec![
        Tag::new("credentials"),
        Tag::new("keys"),
        Tag::new("models"),
        Tag::new("meta"),
    ]);

    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("CreateCredentialRequest".into(), RefOr::T(create_request_schema()));
    components
        .schemas
        .insert("PatchKeyRequest".into(), RefOr::T(patch_key_request_schema()));
    components.security_schemes.insert(
        BEARER.into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT whose `sub` is the user (1 to 256 bytes, no control characters). AWS: \
                     verified by the HTTP API's JWT authorizer. Locally: HS256 with \
                     LOCAL_JWT_SECRET (`mailmind-local --token USER` prints one).",
                ))
                .build(),
        ),
    );
    components.responses.insert(
        "MethodNotAllowed".into(),
        RefOr::T(error_response(
            "Local server only: the path exists, not with this method (any method not listed for \
             the path). The `Allow` header lists the path's methods (RFC 9110).",
            &[ApiError::method_not_allowed()],
            &[allow_header()],
        )),
    );

    components.responses.insert(
        "NotFound".into(),
        RefOr::T(error_response(
            "Local server only: no route has this path (on AWS, API Gateway's own 404).",
            &[ApiError::not_found()],
            &[],
        )),
    );
    components.responses.insert(
        "ForbiddenOrigin".into(),
        RefOr::T(error_response(
            "Local server only, 403 to a WebSocket upgrade (docs/asyncapi.yaml) whose `Origin` \
             is a page of another site.",
            &[ApiError::forbidden_origin()],
            &[],
        )),
    );
    components.responses.insert(
        "TooManyConnections".into(),
        RefOr::T(error_response(
            "429 to a WebSocket connect (docs/asyncapi.yaml) when the user already has the most \
             live sockets allowed (`--max-connections-per-user`, `MaxConnectionsPerUser`).",
            &[ApiError::new(
                429,
                "too_many_connections",
                "At most 10 live connections per user; close one to open another.",
            )],
            &[],
        )),
    );

    let mut paths = PathsBuilder::new();
    for route in Route::ALL {
        let path = route.path_template();
        let operation = operation(route);
        let method = match route.method().as_str() {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "DELETE" => HttpMethod::Delete,
            "PATCH" => HttpMethod::Patch,
            other => unreachable!("route keys use standard methods, not {other}"),
        };
        paths = paths.path(path, PathItem::new(method, operation));
    }
    paths = paths.path(
        DOCUMENT_PATH,
        PathItem::new(
            HttpMethod::Get,
            OperationBuilder::new()
                .operation_id(Some("openapi"))
                .tag("meta")
                .summary(Some("This document"))
                .description(Some("Local server only; needs no token."))
                .securities(Some(Vec::<SecurityRequirement>::new()))
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("The OpenAPI document")
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(ObjectBuilder::new().schema_type(Type::Object).build()))
                                .build(),
                        )
                        .header("Cache-Control", cache_control_header())
                        .build(),
                )
                .response(
                    "403",
                    error_response("The `Host` is not a loopback name.", &[ApiError::forbidden_host()], &[]),
                )
                .build(),
        ),
    );
    let mut built = paths.build();
    // A path item per template (with and without the `{provider}` segment),
    // holding every method of that template.
    let mut merged = utoipa::openapi::path::Paths::new();
    for (path, item) in std::mem::take(&mut built.paths) {
        match merged.paths.get_mut(&path) {
            Some(existing) => existing.merge_operations(item),
            None => {
                merged.paths.insert(path, item);
            }
        }
    }
    doc.paths = merged;
    doc
}

/// The document as `docs/openapi.json` holds it: pretty JSON with a final newline.
pub fn document_json() -> String {
    let text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    // utoipa 5.5 writes a Link's `operationId` as `operation_id` (its Link
    // struct lacks the camelCase rename); no other object here has that key.
    let mut text = text.replace("\"operation_id\": ", "\"operationId\": ");
    text.push('\n');
    text
}

const DESCRIPTION: &str = "The REST API of the MailMind credential service: store, replace, \
check and delete a user's AI-provider API keys and list the models they unlock. The contract \
in prose is docs/API.md; live status updates come over the WebSocket described by \
docs/asyncapi.yaml.\n\n\
Every path also works with a trailing slash (`/api/v1/credentials/`). Every answer of the \
service carries `Cache-Control: no-store`. Errors have the shape `{\"detail\", \"code\"}`.\n\n\
On AWS, API Gateway refuses a missing or bad token itself with `401 {\"message\":\"Unauthorized\"}` \
and answers unknown routes with its own `404`; the `not_found`, `method_not_allowed` and \
`forbidden_host` answers come from the local server only. A method a path does not have \
answers `405 method_not_allowed` with an `Allow` header (components/responses/MethodNotAllowed).\n\n\
`credentials-resolve` (resolve/report, for other MailMind functions) is not part of this HTTP \
API: it is a Lambda function invoked with `lambda:InvokeFunction` (see docs/API.md).";

/// A success answer: status and response.
type Answer = (String, utoipa::openapi::Response);
/// An error status and the errors answered with it.
type ErrorAnswers = (&'static str, Vec<ApiError>);

/// The facts of one route: its answers beyond the common ones.
fn operation(route: Route) -> utoipa::openapi::path::Operation {
    let provider_in_path = route.path_template().contains("{provider}");
    let (id, tag, summary, description) = match route {
        Route::ListCredentials => (
            "listCredentials",
            "credentials",
            "Every supported provider with its status",
            "One entry per supported provider, sorted by id, whether or not a key is set.",
        ),
        Route::CreateCredential => (
            "createCredential",
            "credentials",
            "Store a new key",
            "Seals the key, then asks the provider. `valid` or `error` (no verdict: rate limit, \
             outage...) store the key and answer `201`; `invalid` stores nothing (`422`).",
        ),
        Route::GetCredential => (
            "getCredential",
            "credentials",
            "The status of one provider's key",
            "`404 credential_not_found` when no key is set.",
        ),
        Route::UpdateCredential => (
            "updateCredential",
            "credentials",
            "Replace the key",
            "Never creates a key. `invalid` changes nothing (`422`); `valid` or `error` store the \
             new key.",
        ),
        Route::DeleteCredential => (
            "deleteCredential",
            "credentials",
            "Delete the key and its models",
            "Answers `204` with no body.",
        ),
        Route::CheckCredential => (
            "checkCredential",
            "credentials",
            "Check the stored key again",
            "No body is needed (one is ignored but counts towards the size limit). Never `422`: \
             a check only records what the provider says.",
        ),
        Route::ListModels => (
            "listModels",
            "models",
            "The stored models of the key",
            "Sorted by `model_id`; `[]` when nothing was discovered, including when no key is set.",
        ),
        Route::CredentialActivity => (
            "credentialActivity",
            "credentials",
            "The key's activity history, newest first",
            "What was done with the key and by whom: `set`, `replaced`, `checked`, `used` (at most \
             one entry per consumer per hour), `reported`, `deleted`; never the key. Entries are \
             kept 90 days and outlive a deleted key. `entries` is `[]` when there is no history, \
             including when no key was ever set. Consumer names are labels the calling MailMind \
             function chose, not proof of who called.",
        ),
        Route::ListKeys => (
            "listKeys",
            "keys",
            "The provider's keys, in its order",
            "Up to 5 named keys, each with its status, sorted by `priority`, then age. The \
             provider routes act on the primary key: the first enabled one. `[]` without keys.",
        ),
        Route::CreateKey => (
            "createKey",
            "keys",
            "Add another key",
            "Named (unique per provider), placed at `priority` (default: after the others), \
             checked like `POST /credentials/`: `valid` or `error` store it (`201`), `invalid` \
             stores nothing (`422`). The provider's first key gets the id `default`.",
        ),
        Route::GetKey => (
            "getKey",
            "keys",
            "One key's status",
            "`404 key_not_found` when the provider has no key with this id.",
        ),
        Route::PatchKey => (
            "patchKey",
            "keys",
            "Rename, reorder or switch a key",
            "Any of `name`, `priority`, `enabled`; the key and its status stay. Disabling the \
             primary key makes the next enabled one primary.",
        ),
        Route::DeleteKey => (
            "deleteKey",
            "keys",
            "Delete one key and its models",
            "Answers `204` with no body; the provider's other keys stay.",
        ),
        Route::ReplaceKey => (
            "replaceKey",
            "keys",
            "Rotate a key",
            "The new key is checked first and replaces the old one only when the provider finds \
             it valid: `invalid` is `422`, no verdict `503 key_not_verified`, and the old key \
             stays in use either way. Honours `If-Match`.",
        ),
        Route::CheckKey => (
            "checkKey",
            "keys",
            "Check one key again",
            "As `POST .../check/` does for the primary key, for this one. Never `422`.",
        ),
        Route::RollbackKey => (
            "rollbackKey",
            "keys",
            "Roll a key back to its previous version",
            "A replaced key is kept sealed as the key's previous version for `PreviousKeyDays` \
             (7 by default; the key's `previous_key_hint` and `rollback_until` show it). The \
             previous version is checked again and restores it only when the provider finds it \
             valid: `invalid` is `422`, no verdict `503 key_not_verified`, and the current key \
             stays either way. The key it replaces becomes the previous version in turn, so a \
             rollback can be undone. Honours `If-Match`; pushes the new status.",
        ),
        Route::KeyModels => (
            "keyModels",
            "keys",
            "The stored models of one key",
            "Sorted by `model_id`; `[]` when nothing was discovered.",
        ),
    };
    let mut op = OperationBuilder::new()
        .operation_id(Some(id))
        .tag(tag)
        .summary(Some(summary))
        .description(Some(description));
    if route == Route::CredentialActivity {
        op = op
            .parameter(
                ParameterBuilder::new()
                    .name("limit")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some("Entries per page, 1 to 100 (default 50)."))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(100))
                            .default(Some(json!(50))),
                    ))
                    .example(Some(json!(20))),
            )
            .parameter(
                ParameterBuilder::new()
                    .name("cursor")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(
                        "Opaque: the `next_cursor` of the previous page. Anything else answers \
                         `400 invalid_request`.",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
    }
    if matches!(
        route,
        Route::ReplaceKey | Route::PatchKey | Route::DeleteKey | Route::RollbackKey
    ) {
        op = op.parameter(
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Entity tags from the key's `ETag` (RFC 9110): only if the key still has one of \
                     them; else `412 precondition_failed` and nothing changes. `*` or none: any.",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .example(Some(json!("\"5d01c0a1e2f3a4b5\""))),
        );
    }
    if route.path_template().contains("{key_id}") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("key_id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(
                    "A key's id: `default` or `k` and 10 hex digits. Any other is `404 key_not_found`.",
                ))
                .schema(Some(
                    ObjectBuilder::new().schema_type(Type::String).max_length(Some(64)),
                ))
                .example(Some(json!("default"))),
        );
    }
    if provider_in_path {
        op = op.parameter(
            ParameterBuilder::new()
                .name("provider")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("A provider id. Unknown ids answer `404 unknown_provider`."))
                .schema(Some(provider_id_schema()))
                .example(Some(json!("groq"))),
        );
    }

    // (status, description, error codes) beyond the common ones.
    let unknown_in_path = ApiError::unknown_provider(404, "x");
    let not_found = ApiError::new(404, "credential_not_found", "No Groq API key is set.");
    let invalid = ApiError::invalid_request("Field 'api_key' is required.");
    let rejected = ApiError::new(
        422,
        "key_rejected",
        "Groq rejected this API key: it is not valid. Nothing was stored.",
    );
    let mismatch = ApiError::new(400, "key_provider_mismatch", "This looks like an Anthropic key.");
    let endpoint_refused = ApiError::from(crate::service::ServiceError::EndpointNotAllowed(
        crate::domain::endpoint::EndpointRefusal::ResolvesTo {
            host: "llm.internal.example".into(),
            reason: "a private address",
        },
    ));
    let too_many = ApiError {
        retry_after_secs: Some(42),
        ..ApiError::new(
            429,
            "too_many_requests",
            "Too many key checks: at most 10 every 60 seconds. Nothing was changed; try again in 42 seconds.",
        )
    };
    let status_object = |status: &str, what: &str, example: Value| {
        (
            status.to_owned(),
            json_response(what, CredentialView::name().as_ref(), example, false),
        )
    };
    let key_not_found = ApiError::new(404, "key_not_found", "No such Groq API key.");
    let stale = ApiError::new(
        412,
        "precondition_failed",
        "This Groq API key changed since it was read (If-Match). Nothing was changed; read it again.",
    );
    let not_verified = ApiError {
        retry_after_secs: Some(30),
        ..ApiError::new(
            503,
            "key_not_verified",
            "Groq could not check the new API key (no verdict); the current key stays in use. Try again later.",
        )
    };
    let name_taken = ApiError::new(
        409,
        "key_name_taken",
        "Another Groq API key has this name. Choose another one.",
    );
    let key_view = || {
        let mut view = example_valid();
        view["priority"] = json!(0);
        view["enabled"] = json!(true);
        if let Some(object) = view.as_object_mut() {
            object.remove("keys_count");
            object.remove("keys");
        }
        view
    };
    let (success, body, errors): (Vec<Answer>, Option<&str>, Vec<ErrorAnswers>) = match route {
        Route::ListCredentials => (
            vec![(
                "200".into(),
                json_response(
                    "One status object per supported provider, sorted by id",
                    CredentialView::name().as_ref(),
                    json!([example_valid(), example_unset()]),
                    true,
                ),
            )],
            None,
            vec![],
        ),
        Route::CreateCredential => (
            vec![status_object(
                "201",
                "Stored: the check found `valid`, or `error` (no verdict; the key is kept)",
                example_valid(),
            )],
            Some("CreateCredentialRequest"),
            vec![
                (
                    "400",
                    vec![
                        invalid.clone(),
                        ApiError::unknown_provider(400, "gpt"),
                        mismatch.clone(),
                        endpoint_refused.clone(),
                    ],
                ),
                (
                    "409",
                    vec![ApiError::new(
                        409,
                        "credential_exists",
                        "A Groq API key is already set. Use PUT to replace it.",
                    )],
                ),
                ("422", vec![rejected.clone()]),
                ("429", vec![too_many.clone()]),
            ],
        ),
        Route::GetCredential => (
            vec![status_object("200", "The status object", example_valid())],
            None,
            vec![("404", vec![unknown_in_path.clone(), not_found.clone()])],
        ),
        Route::UpdateCredential => (
            vec![status_object(
                "200",
                "Replaced: the check found `valid`, or `error` (no verdict; the new key is kept)",
                example_error(),
            )],
            Some("UpdateCredentialRequest"),
            vec![
                ("400", vec![invalid.clone(), mismatch, endpoint_refused]),
                ("404", vec![unknown_in_path.clone(), not_found.clone()]),
                ("422", vec![rejected]),
                ("429", vec![too_many.clone()]),
            ],
        ),
        Route::DeleteCredential => (
            vec![deleted()],
            None,
            vec![("404", vec![unknown_in_path.clone(), not_found.clone()])],
        ),
        Route::CheckCredential => (
            vec![status_object(
                "200",
                "The status object after a fresh check",
                example_valid(),
            )],
            None,
            vec![
                ("404", vec![unknown_in_path.clone(), not_found]),
                ("429", vec![too_many]),
            ],
        ),
        Route::ListModels => (
            vec![(
                "200".into(),
                json_response(
                    "The stored models, sorted by `model_id`",
                    ModelView::name().as_ref(),
                    json!([{"provider": "groq", "model_id": "llama-3.1-8b-instant",
                            "model_name": "llama-3.1-8b-instant", "context_window": 131072,
                            "owned_by": "Meta", "discovered_at": "2026-11-24T19:00:00Z"}]),
                    true,
                ),
            )],
            None,
            vec![("404", vec![unknown_in_path.clone()])],
        ),
        Route::ListKeys => (
            vec![(
                "200".into(),
                json_response(
                    "One status object per key, in the provider's order",
                    CredentialView::name().as_ref(),
                    json!([key_view()]),
                    true,
                ),
            )],
            None,
            vec![("404", vec![unknown_in_path.clone()])],
        ),
        Route::CreateKey => (
            vec![status_object(
                "201",
                "Added: the check found `valid`, or `error`",
                key_view(),
            )],
            Some("CreateKeyRequest"),
            vec![
                ("400", vec![invalid.clone(), mismatch.clone(), endpoint_refused.clone()]),
                ("404", vec![unknown_in_path.clone()]),
                (
                    "409",
                    vec![
                        name_taken.clone(),
                        ApiError::new(
                            409,
                            "too_many_keys",
                            "At most 5 Groq API keys per provider; delete one to add another.",
                        ),
                    ],
                ),
                ("422", vec![rejected.clone()]),
                ("429", vec![too_many.clone()]),
            ],
        ),
        Route::GetKey => (
            vec![status_object("200", "The key's status object", key_view())],
            None,
            vec![("404", vec![unknown_in_path.clone(), key_not_found.clone()])],
        ),
        Route::PatchKey => (
            vec![status_object("200", "The key's status object, as changed", key_view())],
            Some("PatchKeyRequest"),
            vec![
                (
                    "400",
                    vec![ApiError::invalid_request(
                        "Give at least one of 'name', 'priority' and 'enabled'.",
                    )],
                ),
                ("404", vec![unknown_in_path.clone(), key_not_found.clone()]),
                ("409", vec![name_taken]),
                ("412", vec![stale.clone()]),
            ],
        ),
        Route::DeleteKey => (
            vec![deleted()],
            None,
            vec![
                ("404", vec![unknown_in_path.clone(), key_not_found]),
                ("412", vec![stale]),
            ],
        ),
        Route::ReplaceKey => (
            vec![status_object("200", "Rotated: the new key was found valid", key_view())],
            Some("UpdateCredentialRequest"),
            vec![
                ("400", vec![invalid.clone(), endpoint_refused.clone()]),
                ("404", vec![unknown_in_path.clone(), key_not_found.clone()]),
                ("412", vec![stale.clone()]),
                ("422", vec![rejected.clone()]),
                ("429", vec![too_many.clone()]),
                ("503", vec![not_verified.clone()]),
            ],
        ),
        Route::RollbackKey => (
            vec![status_object(
                "200",
                "Rolled back: the previous version was found valid",
                key_view(),
            )],
            None,
            vec![
                ("404", vec![unknown_in_path.clone(), key_not_found.clone()]),
                (
                    "409",
                    vec![ApiError::new(
                        409,
                        "no_previous_key",
                        "This Groq API key has no previous version to roll back to: a replaced key is kept for a \
                         limited time only. Nothing was changed.",
                    )],
                ),
                ("412", vec![stale.clone()]),
                ("422", vec![rejected.clone()]),
                ("429", vec![too_many.clone()]),
                ("503", vec![not_verified.clone()]),
            ],
        ),
        Route::CheckKey => (
            vec![status_object(
                "200",
                "The key's status object after a fresh check",
                key_view(),
            )],
            None,
            vec![
                ("404", vec![unknown_in_path.clone(), key_not_found.clone()]),
                ("429", vec![too_many.clone()]),
            ],
        ),
        Route::KeyModels => (
            vec![(
                "200".into(),
                json_response(
                    "The key's stored models, sorted by `model_id`",
                    ModelView::name().as_ref(),
                    json!([{"provider": "groq", "model_id": "llama-3.1-8b-instant",
                            "model_name": "llama-3.1-8b-instant", "context_window": 131072,
                            "owned_by": "Meta", "discovered_at": "2026-11-24T19:00:00Z"}]),
                    true,
                ),
            )],
            None,
            vec![("404", vec![unknown_in_path.clone(), key_not_found.clone()])],
        ),
        Route::CredentialActivity => (
            vec![(
                "200".into(),
                json_response(
                    "A page of the history, newest first",
                    ActivityPageView::name().as_ref(),
                    json!({"entries": [
                        {"at": "2026-11-24T21:00:00Z", "event": "checked", "status": "invalid", "by": "report"},
                        {"at": "2026-11-24T21:00:00Z", "event": "reported", "outcome": "rejected", "consumer": "digest"},
                        {"at": "2026-11-24T20:00:00Z", "event": "used", "consumer": "digest"},
                        {"at": "2026-11-24T19:00:00Z", "event": "checked", "status": "valid", "by": "user"},
                        {"at": "2026-11-24T18:59:58Z", "event": "set", "key_hint": "gsk_…9xQa"}
                    ], "next_cursor": "MjAyNi0xMS0yNFQxODo1OTo1OC4wMDBaIzBhMWIyYzNkNGU1ZjZhN2I"}),
                    false,
                ),
            )],
            None,
            vec![
                (
                    "400",
                    vec![ApiError::invalid_request(
                        "'limit' must be a whole number from 1 to 100.",
                    )],
                ),
                ("404", vec![unknown_in_path]),
            ],
        ),
    };
    let names_a_key = matches!(
        route,
        Route::CreateKey | Route::GetKey | Route::ReplaceKey | Route::PatchKey | Route::CheckKey | Route::RollbackKey
    );
    for (status, mut response) in success {
        if route == Route::CreateCredential {
            response = with_links_to_the_created_key(response);
        }
        if names_a_key {
            response.headers.insert(
                "ETag".into(),
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some(
                        "The key's revision, quoted: send it back in `If-Match` to change or delete \
                         only the key as read. It changes when the key is replaced.",
                    ))
                    .build(),
            );
        }
        op = op.response(status, response);
    }
    if let Some(schema) = body {
        let provider_rule = if route == Route::UpdateCredential {
            " It may also hold `provider`: it must then be the provider of the path, or `null` \
             (otherwise `400 invalid_request`)."
        } else {
            ""
        };
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .description(Some(format!(
                    "A JSON object (at most {MAX_BODY_BYTES} bytes; `Content-Type` is not checked; \
                     fields the route does not read are ignored).{provider_rule}"
                )))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema)))
                        .build(),
                )
                .build(),
        ));
    }

    // The answers every route can give, merged with the route's own by status.
    let mut by_status: Vec<(&str, Vec<ApiError>)> = errors;
    let common: [(&str, ApiError); 6] = [
        ("401", ApiError::unauthenticated()),
        ("403", ApiError::forbidden_host()),
        ("413", ApiError::payload_too_large()),
        (
            "431",
            ApiError::new(431, "headers_too_large", "Request headers are larger than 10 KiB."),
        ),
        (
            "503",
            ApiError::new(
                503,
                "service_unavailable",
                "Storage or key service is temporarily unavailable. Nothing was changed; please retry.",
            ),
        ),
        (
            "500",
            ApiError::new(
                500,
                "internal",
                "Something went wrong on our side. Nothing was changed.",
            ),
        ),
    ];
    for (status, error) in common {
        match by_status.iter_mut().find(|(s, _)| *s == status) {
            Some((_, list)) => list.push(error),
            None => by_status.push((status, vec![error])),
        }
    }
    by_status.sort_by_key(|(status, _)| *status);
    for (status, errors) in by_status {
        let headers = if status == "401" {
            vec![("WWW-Authenticate", always("Bearer"))]
        } else if status == "429" {
            vec![(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                    .description(Some("Whole seconds until the user's validation budget opens again."))
                    .build(),
            )]
        } else {
            vec![]
        };
        op = op.response(status, error_response(error_summary(status), &errors, &headers));
    }
    op.build()
}

/// OpenAPI links from the key a `POST` created to the routes of that key, so
/// clients (and schemathesis's stateful phase) can follow one: created, then
/// read, replaced, checked, deleted, and read again (`404`). Not to
/// `listModels`: by the contract that list exists for every provider (`[]`
/// without a key), so it is no part of the key and outlives its deletion.
fn with_links_to_the_created_key(mut response: utoipa::openapi::Response) -> utoipa::openapi::Response {
    for (name, operation_id) in [
        ("GetCredential", "getCredential"),
        ("UpdateCredential", "updateCredential"),
        ("CheckCredential", "checkCredential"),
        ("DeleteCredential", "deleteCredential"),
    ] {
        response.links.insert(
            name.into(),
            RefOr::T(
                utoipa::openapi::link::LinkBuilder::new()
                    .operation_id(operation_id)
                    .parameter("provider", "$request.body#/provider")
                    .build(),
            ),
        );
    }
    response
}

fn error_summary(status: &str) -> &'static str {
    match status {
        "400" => "The body is not acceptable (see `code` and `detail`)",
        "401" => "Missing, malformed, forged or expired bearer token, or an unusable `sub`",
        "403" => "Local server only: the `Host` is not 127.0.0.1, localhost or [::1]",
        "404" => "Unknown provider in the path, or no key set",
        "409" => "A key is already set (use PUT), or another POST won a race",
        "413" => "The body is larger than 64 KiB",
        "422" => "The provider said the key is not valid; nothing was stored or changed",
        "429" => "The user's validation budget is spent (see `Retry-After`); nothing was called or changed",
        "431" => "Local server only: request line and headers over 10 KiB",
        "503" => "Storage or key service unavailable; nothing was changed, safe to retry",
        _ => "Anything else; nothing was changed",
    }
}

/// `Cache-Control: no-store`, on every answer of the service.
/// `204` of a delete: no body.
fn deleted() -> Answer {
    (
        "204".into(),
        ResponseBuilder::new()
            .description("Deleted, with its models; no body")
            .header("Cache-Control", cache_control_header())
            .build(),
    )
}

fn cache_control_header() -> utoipa::openapi::header::Header {
    always("no-store")
}

/// A header whose value is always `value`.
fn always(value: &'static str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([value])),
        )
        .description(Some(format!("Always `{value}`.")))
        .build()
}

fn allow_header() -> (&'static str, utoipa::openapi::header::Header) {
    (
        "Allow",
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples(["GET, PUT, DELETE"]),
            )
            .description(Some("The path's methods, e.g. `GET, PUT, DELETE`."))
            .build(),
    )
}

/// A JSON success answer: the named schema, or an array of it.
fn json_response(description: &str, schema: &str, example: Value, array: bool) -> utoipa::openapi::Response {
    let schema: RefOr<Schema> = if array {
        ArrayBuilder::new().items(Ref::from_schema_name(schema)).into()
    } else {
        Ref::from_schema_name(schema).into()
    };
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(schema))
                .example(Some(example))
                .build(),
        )
        .header("Cache-Control", cache_control_header())
        .build()
}

/// An error answer: the `Error` shape with `code` limited to `errors`' codes,
/// and the first of them as the example.
fn error_response(
    description: &str,
    errors: &[ApiError],
    headers: &[(&str, utoipa::openapi::header::Header)],
) -> utoipa::openapi::Response {
    let mut codes: Vec<&str> = errors.iter().map(|e| e.code).collect();
    codes.dedup();
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name(ErrorBody::name()))
        .item(ObjectBuilder::new().property(
            "code",
            ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes)),
        ))
        .build();
    let mut content = ContentBuilder::new().schema(Some(Schema::AllOf(schema)));
    if let [error] = errors {
        content = content.example(Some(json!({"detail": error.detail, "code": error.code})));
    } else {
        content = content.examples_from_iter(errors.iter().map(|error| {
            (
                error.code,
                utoipa::openapi::example::ExampleBuilder::new()
                    .value(Some(json!({"detail": error.detail, "code": error.code})))
                    .build(),
            )
        }));
    }
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content.build())
        .header("Cache-Control", cache_control_header());
    for (name, header) in headers {
        response = response.header(*name, header.clone());
    }
    response.build()
}

fn example_valid() -> Value {
    json!({
        "provider": "groq", "provider_name": "Groq", "api_key_set": true, "key_hint": "gsk_…9xQa",
        "status": "valid", "status_message": "Groq API key is valid.",
        "last_checked_at": "2026-11-24T19:00:00Z", "models_count": 21,
        "created_at": "2026-11-24T18:59:58Z", "updated_at": "2026-11-24T19:00:00Z"
    })
}

fn example_error() -> Value {
    json!({
        "provider": "groq", "provider_name": "Groq", "api_key_set": true, "key_hint": "gsk_…9xQa",
        "status": "error",
        "status_message": "Could not check the Groq API key: Groq is rate limiting requests; try again in 58 s. The key was kept.",
        "status_reason": "rate_limited", "retry_after_seconds": 58,
        "last_checked_at": "2026-11-24T19:00:00Z", "models_count": 0,
        "created_at": "2026-11-24T19:00:00Z", "updated_at": "2026-11-24T19:00:00Z"
    })
}

fn example_unset() -> Value {
    let openai = provider::find("openai").map_or("OpenAI", |p| p.display_name);
    json!({
        "provider": "openai", "provider_name": openai, "api_key_set": false,
        "status": "unchecked", "status_message": format!("No {openai} API key is set.")
    })
}
