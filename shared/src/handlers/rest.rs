//! One async function per REST route of docs/API.md. Each takes the app state and
//! the `lambda_http::Request` API Gateway delivers (or the local server
//! builds), and always answers: errors become the JSON error shape.

use std::future::Future;
use std::time::Instant;

use lambda_http::ext::RequestExt;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, Response};

use super::protocol::{
    ApiError, body_bytes, caller, check_body_size, json_object, json_response, no_content, path_provider, take_string,
};
use crate::AppState;
use crate::domain::activity::{self, ActivityPageView, ActivityPosition, ActivityQuery};
use crate::domain::named_key::{self, KeyId};
use crate::domain::provider;
use crate::domain::{ApiKey, ProviderSpec, UserId};
use crate::service::{IfMatch, KeyInput, KeyPatch};

/// `GET /api/v1/credentials/`
pub async fn list_credentials(state: &AppState, req: Request) -> Response<Body> {
    respond(Route::ListCredentials, req, |user, _req| async move {
        let views = state.credentials.list(&user).await?;
        Ok(json_response(200, &views))
    })
    .await
}

/// `POST /api/v1/credentials/` with `{"provider": .., "api_key": ..}`
pub async fn create_credential(state: &AppState, req: Request) -> Response<Body> {
    respond(Route::CreateCredential, req, |user, req| async move {
        let bytes = body_bytes(req);
        let mut body = json_object(&bytes)?;
        let provider_id = take_string(&mut body, "provider")?;
        let provider = provider::find(&provider_id).ok_or_else(|| ApiError::unknown_provider(400, &provider_id))?;
        let key = key_input(&mut body, provider, Required::OnCreate)?;
        let view = state.credentials.create(&user, provider, key).await?;
        Ok(json_response(201, &view))
    })
    .await
}

/// The handlers of the routes that take no body and answer `200` with what
/// the credential service's method of the same role returns.
macro_rules! read_handlers {
    ($( $(#[$doc:meta])* $handler:ident: $route:ident => $method:ident; )*) => {$(
        $(#[$doc])*
        pub async fn $handler(state: &AppState, req: Request) -> Response<Body> {
            read_at_provider(Route::$route, req, |user, provider| async move {
                state.credentials.$method(&user, provider).await
            })
            .await
        }
    )*};
}

read_handlers! {
    /// `GET /api/v1/credentials/{provider}/`
    get_credential: GetCredential => get;
    /// `POST /api/v1/credentials/{provider}/check/` (no body)
    check_credential: CheckCredential => check;
    /// `GET /api/v1/credentials/{provider}/models/`
    list_models: ListModels => models;
}

/// `GET /api/v1/credentials/{provider}/activity/?limit=&cursor=`
pub async fn credential_activity(state: &AppState, req: Request) -> Response<Body> {
    respond_at_provider(Route::CredentialActivity, req, |user, provider, req| async move {
        let query = activity_query(&req, chrono::Utc::now())?;
        let page = state.credentials.activity(&user, provider, &query).await?;
        Ok(json_response(200, &ActivityPageView::of(&page)))
    })
    .await
}

/// The page the query string asks for: `limit` 1 to 100 (default 50), and
/// `cursor` as a previous page's `next_cursor` gave it.
fn activity_query(req: &Request, now: chrono::DateTime<chrono::Utc>) -> Result<ActivityQuery, ApiError> {
    let params = req.query_string_parameters_ref();
    let single = |name: &str| -> Result<Option<&str>, ApiError> {
        match params.and_then(|p| p.all(name)) {
            None => Ok(None),
            Some(values) if values.len() == 1 => Ok(values.first().copied()),
            Some(_) => Err(ApiError::invalid_request(format!("Give '{name}' at most once."))),
        }
    };
    let limit = match single("limit")? {
        None => activity::DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=activity::MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "'limit' must be a whole number from 1 to {}.",
                    activity::MAX_PAGE
                ))
            })?,
    };
    let before = match single("cursor")? {
        None => None,
        Some(cursor) => Some(ActivityPosition::from_cursor(cursor).ok_or_else(|| {
            ApiError::invalid_request("'cursor' is not one this service gave out; use a page's 'next_cursor'.")
        })?),
    };
    Ok(ActivityQuery { limit, before, now })
}

/// `PUT /api/v1/credentials/{provider}/` with `{"api_key": ..}`
pub async fn update_credential(state: &AppState, req: Request) -> Response<Body> {
    respond_at_provider(Route::UpdateCredential, req, |user, provider, req| async move {
        let bytes = body_bytes(req);
        let mut body = json_object(&bytes)?;
        refuse_other_provider(&mut body, provider)?;
        let key = key_input(&mut body, provider, Required::OnReplace)?;
        let view = state.credentials.update(&user, provider, key).await?;
        Ok(json_response(200, &view))
    })
    .await
}

/// `DELETE /api/v1/credentials/{provider}/`
pub async fn delete_credential(state: &AppState, req: Request) -> Response<Body> {
    respond_at_provider(Route::DeleteCredential, req, |user, provider, _| async move {
        state.credentials.delete(&user, provider).await?;
        Ok(no_content())
    })
    .await
}

/// `GET /api/v1/credentials/{provider}/keys/`
pub async fn list_keys(state: &AppState, req: Request) -> Response<Body> {
    read_at_provider(Route::ListKeys, req, |user, provider| async move {
        state.credentials.list_keys(&user, provider).await
    })
    .await
}

/// `POST /api/v1/credentials/{provider}/keys/` with `{"name", "api_key",
/// "priority"?, "base_url"?}`
pub async fn create_key(state: &AppState, req: Request) -> Response<Body> {
    respond_at_provider(Route::CreateKey, req, |user, provider, req| async move {
        let bytes = body_bytes(req);
        let mut body = json_object(&bytes)?;
        refuse_other_provider(&mut body, provider)?;
        let name = key_name(&take_string(&mut body, "name")?)?;
        let priority = priority_field(&mut body)?;
        let key = key_input(&mut body, provider, Required::OnCreate)?;
        let view = state.credentials.add_key(&user, provider, name, priority, key).await?;
        Ok(with_etag(json_response(201, &view), &view))
    })
    .await
}

/// `GET /api/v1/credentials/{provider}/keys/{key_id}/`
pub async fn get_key(state: &AppState, req: Request) -> Response<Body> {
    respond_at_key(Route::GetKey, req, |user, provider, key, _| async move {
        let view = state.credentials.get_key(&user, provider, &key).await?;
        Ok(with_etag(json_response(200, &view), &view))
    })
    .await
}

/// `PUT /api/v1/credentials/{provider}/keys/{key_id}/` with `{"api_key",
/// "base_url"?}`, honouring `If-Match`: a rotation (the new key replaces
/// the old one only when the provider finds it valid)
pub async fn replace_key(state: &AppState, req: Request) -> Response<Body> {
    respond_at_key(Route::ReplaceKey, req, |user, provider, key, req| async move {
        let if_match = if_match(&req);
        let bytes = body_bytes(req);
        let mut body = json_object(&bytes)?;
        refuse_other_provider(&mut body, provider)?;
        let input = key_input(&mut body, provider, Required::OnReplace)?;
        let view = state
            .credentials
            .rotate_key(&user, provider, &key, input, if_match)
            .await?;
        Ok(with_etag(json_response(200, &view), &view))
    })
    .await
}

/// `PATCH /api/v1/credentials/{provider}/keys/{key_id}/` with any of
/// `{"name", "priority", "enabled"}`, honouring `If-Match`
pub async fn patch_key(state: &AppState, req: Request) -> Response<Body> {
    respond_at_key(Route::PatchKey, req, |user, provider, key, req| async move {
        let if_match = if_match(&req);
        let bytes = body_bytes(req);
        let mut body = json_object(&bytes)?;
        let patch = KeyPatch {
            name: optional_string(&mut body, "name")?.map(|n| key_name(&n)).transpose()?,
            priority: priority_field(&mut body)?,
            enabled: match body.remove("enabled") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::Bool(on)) => Some(on),
                Some(_) => return Err(ApiError::invalid_request("Field 'enabled' must be true or false.")),
            },
        };
        if patch == KeyPatch::default() {
            return Err(ApiError::invalid_request(
                "Give at least one of 'name', 'priority' and 'enabled'.",
            ));
        }
        let view = state
            .credentials
            .patch_key(&user, provider, &key, patch, &if_match)
            .await?;
        Ok(with_etag(json_response(200, &view), &view))
    })
    .await
}

/// `DELETE /api/v1/credentials/{provider}/keys/{key_id}/`, honouring `If-Match`
pub async fn delete_key(state: &AppState, req: Request) -> Response<Body> {
    respond_at_key(Route::DeleteKey, req, |user, provider, key, req| async move {
        let if_match = if_match(&req);
        state
            .credentials
            .delete_named_key(&user, provider, &key, &if_match)
            .await?;
        Ok(no_content())
    })
    .await
}

/// `POST /api/v1/credentials/{provider}/keys/{key_id}/check/` (no body)
pub async fn check_key(state: &AppState, req: Request) -> Response<Body> {
    respond_at_key(Route::CheckKey, req, |user, provider, key, _| async move {
        let view = state.credentials.check_key(&user, provider, &key).await?;
        Ok(with_etag(json_response(200, &view), &view))
    })
    .await
}

/// `POST /api/v1/credentials/{provider}/keys/{key_id}/rollback/` (no body),
/// honouring `If-Match`: the key's previous version is checked again and,
/// found valid, takes its place
pub async fn rollback_key(state: &AppState, req: Request) -> Response<Body> {
    respond_at_key(Route::RollbackKey, req, |user, provider, key, req| async move {
        let if_match = if_match(&req);
        let view = state.credentials.rollback_key(&user, provider, &key, if_match).await?;
        Ok(with_etag(json_response(200, &view), &view))
    })
    .await
}

/// `GET /api/v1/credentials/{provider}/keys/{key_id}/models/`
pub async fn key_models(state: &AppState, req: Request) -> Response<Body> {
    respond_at_key(Route::KeyModels, req, |user, provider, key, _| async move {
        Ok(json_response(
            200,
            &state.credentials.key_models(&user, provider, &key).await?,
        ))
    })
    .await
}

/// The request's `If-Match` (absent: any).
fn if_match(req: &Request) -> IfMatch {
    IfMatch::parse(req.headers().get(http::header::IF_MATCH).and_then(|v| v.to_str().ok()))
}

/// `response` with the key's `ETag` (its revision, quoted), where `view` has one.
fn with_etag(mut response: Response<Body>, view: &crate::domain::CredentialView) -> Response<Body> {
    if let Some(value) = view
        .etag
        .as_ref()
        .and_then(|revision| http::HeaderValue::from_str(&format!("\"{revision}\"")).ok())
    {
        response.headers_mut().insert(http::header::ETAG, value);
    }
    response
}

/// A key name as the user typed it ([`named_key::parse_name`]).
fn key_name(raw: &str) -> Result<String, ApiError> {
    named_key::parse_name(raw).map_err(|e| ApiError::invalid_request(e.to_string()))
}

/// The optional `priority`: a whole number from 0 to [`MAX_PRIORITY`].
fn priority_field(body: &mut serde_json::Map<String, serde_json::Value>) -> Result<Option<u32>, ApiError> {
    match body.remove("priority") {
        None | Some(serde_json::Value::Null) => Ok(None),
        // A whole number, however JSON spells it (`3` or `3.0`).
        Some(value) => value
            .as_f64()
            .filter(|p| p.fract() == 0.0 && (0.0..=f64::from(MAX_PRIORITY)).contains(p))
            .map(|p| Some(p as u32))
            .ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "Field 'priority' must be a whole number from 0 to {MAX_PRIORITY}."
                ))
            }),
    }
}

/// Highest `priority` a key may be given (places beyond a handful mean nothing more).
const MAX_PRIORITY: u32 = 1000;

/// [`respond_at_provider`] for the routes of one key: `work` also gets the
/// key id the path names (one that cannot be an id is `404 key_not_found`).
async fn respond_at_key<F, Fut>(route: Route, req: Request, work: F) -> Response<Body>
where
    F: FnOnce(UserId, &'static ProviderSpec, KeyId, Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    respond_at_provider(route, req, |user, provider, req| async move {
        let key = path_key(&req).ok_or_else(|| ApiError::from(crate::service::ServiceError::KeyNotFound(provider)))?;
        work(user, provider, key, req).await
    })
    .await
}

/// The `{key_id}` path parameter (or, without one, the segment after `keys`).
fn path_key(req: &Request) -> Option<KeyId> {
    let given = req
        .path_parameters_ref()
        .and_then(|p| p.first("key_id"))
        .map(str::to_owned)
        .or_else(|| {
            let path = req.raw_http_path();
            let path = if path.is_empty() { req.uri().path() } else { path };
            let mut segments = path.split('/').skip_while(|s| *s != "keys");
            segments.next()?;
            segments.next().map(str::to_owned)
        })?;
    KeyId::parse(&given)
}

/// Which write a key comes with: a new credential's endpoint must be given,
/// a replacement may keep the stored one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Required {
    OnCreate,
    OnReplace,
}

/// `api_key` (absent or blank only where the provider's keys are optional)
/// and `base_url` (only, and on create always, for a provider whose keys
/// name their endpoint).
fn key_input(
    body: &mut serde_json::Map<String, serde_json::Value>,
    provider: &'static ProviderSpec,
    write: Required,
) -> Result<KeyInput, ApiError> {
    let raw = match optional_string(body, "api_key")? {
        Some(raw) => raw,
        None if provider.key_optional => Default::default(),
        None => return Err(ApiError::invalid_request("Field 'api_key' is required.")),
    };
    let key = ApiKey::parse_for(provider, &raw).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    let base_url = optional_string(body, "base_url")?.map(|url| url.trim().to_owned());
    match (provider.endpoint_per_key(), &base_url, write) {
        (true, None, Required::OnCreate) => Err(ApiError::invalid_request(format!(
            "Field 'base_url' is required for {} keys.",
            provider.display_name
        ))),
        (false, Some(_), _) => Err(ApiError::invalid_request(format!(
            "Field 'base_url' is only for providers whose keys name their own endpoint ({}).",
            provider::per_key_endpoint_ids()
        ))),
        _ => Ok(KeyInput { key, base_url }),
    }
}

/// An optional string field: `None` when absent or null.
fn optional_string(
    body: &mut serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<zeroize::Zeroizing<String>>, ApiError> {
    match body.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => take_string(body, field).map(Some),
    }
}

/// PUT names its provider in the path; a body naming another is a mistake.
fn refuse_other_provider(
    body: &mut serde_json::Map<String, serde_json::Value>,
    provider: &ProviderSpec,
) -> Result<(), ApiError> {
    match body.remove("provider") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::String(s)) if s == provider.id => Ok(()),
        Some(_) => Err(ApiError::invalid_request(
            "Field 'provider' must match the provider in the path, or be left out.",
        )),
    }
}

/// [`respond`] for the routes under `/credentials/{provider}`: `work` gets
/// the provider the path names (an unknown one is answered `404`).
async fn respond_at_provider<F, Fut>(route: Route, req: Request, work: F) -> Response<Body>
where
    F: FnOnce(UserId, &'static ProviderSpec, Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    respond(route, req, |user, req| async move {
        let provider = path_provider(&req)?;
        work(user, provider, req).await
    })
    .await
}

/// [`respond_at_provider`] for the routes that take no body and answer
/// `200` with what the service returns.
async fn read_at_provider<T, F, Fut>(route: Route, req: Request, work: F) -> Response<Body>
where
    T: serde::Serialize,
    F: FnOnce(UserId, &'static ProviderSpec) -> Fut,
    Fut: Future<Output = crate::service::Result<T>>,
{
    respond_at_provider(route, req, |user, provider, _| async move {
        Ok(json_response(200, &work(user, provider).await?))
    })
    .await
}

/// Authenticates, bounds the body, runs `work`, turns errors into their JSON
/// answer and logs one line per request, named by the route's function
/// (never a body, key or token).
async fn respond<F, Fut>(route: Route, req: Request, work: F) -> Response<Body>
where
    F: FnOnce(UserId, Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let started = Instant::now();
    let request_id = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    };
    let result = match caller(&req).and_then(|user| check_body_size(&req).map(|()| user)) {
        Ok(user) => work(user, req).await,
        Err(e) => Err(e),
    };
    let (response, code) = match result {
        Ok(response) => (response, None),
        Err(e) => {
            let code = e.code;
            (e.into_response(), Some(code))
        }
    };
    tracing::info!(
        route = route.function_name(),
        request_id,
        status = response.status().as_u16(),
        code,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request handled"
    );
    response
}

/// The REST routes of docs/API.md: the one list of them, which the local
/// server routes by and the tests hold `functions/`, `events/` and the
/// template against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/v1/credentials`
    ListCredentials,
    /// `POST /api/v1/credentials`
    CreateCredential,
    /// `GET /api/v1/credentials/{provider}`
    GetCredential,
    /// `PUT /api/v1/credentials/{provider}`
    UpdateCredential,
    /// `DELETE /api/v1/credentials/{provider}`
    DeleteCredential,
    /// `POST /api/v1/credentials/{provider}/check`
    CheckCredential,
    /// `GET /api/v1/credentials/{provider}/models`
    ListModels,
    /// `GET /api/v1/credentials/{provider}/activity`
    CredentialActivity,
    /// `GET /api/v1/credentials/{provider}/keys`
    ListKeys,
    /// `POST /api/v1/credentials/{provider}/keys`
    CreateKey,
    /// `GET /api/v1/credentials/{provider}/keys/{key_id}`
    GetKey,
    /// `PUT /api/v1/credentials/{provider}/keys/{key_id}`
    ReplaceKey,
    /// `PATCH /api/v1/credentials/{provider}/keys/{key_id}`
    PatchKey,
    /// `DELETE /api/v1/credentials/{provider}/keys/{key_id}`
    DeleteKey,
    /// `POST /api/v1/credentials/{provider}/keys/{key_id}/check`
    CheckKey,
    /// `GET /api/v1/credentials/{provider}/keys/{key_id}/models`
    KeyModels,
    /// `POST /api/v1/credentials/{provider}/keys/{key_id}/rollback`
    RollbackKey,
}

/// What a method and path resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The route, its API Gateway route key, and the `{provider}` path parameter.
    Found {
        /// The route.
        route: Route,
        /// Its API Gateway route key, e.g. `GET /api/v1/credentials/{provider}`.
        route_key: &'static str,
        /// The `{provider}` segment of the path, if the route has one.
        provider: Option<String>,
        /// The `{key_id}` segment of the path, if the route has one.
        key_id: Option<String>,
    },
    /// The path exists, not with this method; `allow` lists the methods it has
    /// (the `Allow` header of the `405`, RFC 9110).
    MethodNotAllowed {
        /// The path's methods, e.g. `GET, PUT, DELETE`.
        allow: String,
    },
    /// No route has this path.
    NotFound,
}

impl Route {
    /// Every route.
    pub const ALL: [Route; 17] = [
        Route::ListCredentials,
        Route::CreateCredential,
        Route::GetCredential,
        Route::UpdateCredential,
        Route::DeleteCredential,
        Route::CheckCredential,
        Route::ListModels,
        Route::CredentialActivity,
        Route::ListKeys,
        Route::CreateKey,
        Route::GetKey,
        Route::ReplaceKey,
        Route::PatchKey,
        Route::DeleteKey,
        Route::CheckKey,
        Route::KeyModels,
        Route::RollbackKey,
    ];

    /// The API Gateway route key, `<METHOD> <path template>` (no trailing slash).
    pub fn route_key(self) -> &'static str {
        match self {
            Route::ListCredentials => "GET /api/v1/credentials",
            Route::CreateCredential => "POST /api/v1/credentials",
            Route::GetCredential => "GET /api/v1/credentials/{provider}",
            Route::UpdateCredential => "PUT /api/v1/credentials/{provider}",
            Route::DeleteCredential => "DELETE /api/v1/credentials/{provider}",
            Route::CheckCredential => "POST /api/v1/credentials/{provider}/check",
            Route::ListModels => "GET /api/v1/credentials/{provider}/models",
            Route::CredentialActivity => "GET /api/v1/credentials/{provider}/activity",
            Route::ListKeys => "GET /api/v1/credentials/{provider}/keys",
            Route::CreateKey => "POST /api/v1/credentials/{provider}/keys",
            Route::GetKey => "GET /api/v1/credentials/{provider}/keys/{key_id}",
            Route::ReplaceKey => "PUT /api/v1/credentials/{provider}/keys/{key_id}",
            Route::PatchKey => "PATCH /api/v1/credentials/{provider}/keys/{key_id}",
            Route::DeleteKey => "DELETE /api/v1/credentials/{provider}/keys/{key_id}",
            Route::CheckKey => "POST /api/v1/credentials/{provider}/keys/{key_id}/check",
            Route::KeyModels => "GET /api/v1/credentials/{provider}/keys/{key_id}/models",
            Route::RollbackKey => "POST /api/v1/credentials/{provider}/keys/{key_id}/rollback",
        }
    }

    /// The Lambda function that serves the route on AWS (`functions/<name>`),
    /// as [`crate::deploy::FUNCTIONS`] declares it.
    pub fn function_name(self) -> &'static str {
        crate::deploy::function_of(self).name
    }

    /// The method of the route key.
    pub fn method(self) -> http::Method {
        let (method, _) = self
            .route_key()
            .split_once(' ')
            .expect("route keys are '<METHOD> <path>'");
        method.parse().expect("route keys name standard methods")
    }

    /// The path template of the route key, e.g. `/api/v1/credentials/{provider}`.
    pub fn path_template(self) -> &'static str {
        self.route_key()
            .split_once(' ')
            .expect("route keys are '<METHOD> <path>'")
            .1
    }

    /// Dispatches to the route's handler.
    pub async fn handle(self, state: &AppState, req: Request) -> Response<Body> {
        match self {
            Route::ListCredentials => list_credentials(state, req).await,
            Route::CreateCredential => create_credential(state, req).await,
            Route::GetCredential => get_credential(state, req).await,
            Route::UpdateCredential => update_credential(state, req).await,
            Route::DeleteCredential => delete_credential(state, req).await,
            Route::CheckCredential => check_credential(state, req).await,
            Route::ListModels => list_models(state, req).await,
            Route::CredentialActivity => credential_activity(state, req).await,
            Route::ListKeys => list_keys(state, req).await,
            Route::CreateKey => create_key(state, req).await,
            Route::GetKey => get_key(state, req).await,
            Route::ReplaceKey => replace_key(state, req).await,
            Route::PatchKey => patch_key(state, req).await,
            Route::DeleteKey => delete_key(state, req).await,
            Route::CheckKey => check_key(state, req).await,
            Route::KeyModels => key_models(state, req).await,
            Route::RollbackKey => rollback_key(state, req).await,
        }
    }

    /// Resolves a request path the way the HTTP API's routes do: with or
    /// without the trailing slash.
    pub fn resolve(method: &http::Method, path: &str) -> RouteMatch {
        let Some(rest) = path.strip_prefix("/api/v1/credentials") else {
            return RouteMatch::NotFound;
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else if let Some(inner) = rest.strip_prefix('/') {
            inner.split('/').collect()
        } else {
            return RouteMatch::NotFound;
        };
        if segments.iter().any(|s| s.is_empty()) {
            return RouteMatch::NotFound;
        }
        let (template, provider, key_id) = match segments.as_slice() {
            [] => ("/api/v1/credentials", None, None),
            [p] => ("/api/v1/credentials/{provider}", Some(*p), None),
            [p, "check"] => ("/api/v1/credentials/{provider}/check", Some(*p), None),
            [p, "models"] => ("/api/v1/credentials/{provider}/models", Some(*p), None),
            [p, "activity"] => ("/api/v1/credentials/{provider}/activity", Some(*p), None),
            [p, "keys"] => ("/api/v1/credentials/{provider}/keys", Some(*p), None),
            [p, "keys", k] => ("/api/v1/credentials/{provider}/keys/{key_id}", Some(*p), Some(*k)),
            [p, "keys", k, "check"] => ("/api/v1/credentials/{provider}/keys/{key_id}/check", Some(*p), Some(*k)),
            [p, "keys", k, "rollback"] => (
                "/api/v1/credentials/{provider}/keys/{key_id}/rollback",
                Some(*p),
                Some(*k),
            ),
            [p, "keys", k, "models"] => (
                "/api/v1/credentials/{provider}/keys/{key_id}/models",
                Some(*p),
                Some(*k),
            ),
            _ => return RouteMatch::NotFound,
        };
        match Route::ALL
            .iter()
            .find(|r| r.path_template() == template && r.method() == method)
        {
            Some(route) => RouteMatch::Found {
                route: *route,
                route_key: route.route_key(),
                provider: provider.map(str::to_owned),
                key_id: key_id.map(str::to_owned),
            },
            None => RouteMatch::MethodNotAllowed {
                allow: Route::ALL
                    .iter()
                    .filter(|r| r.path_template() == template)
                    .map(|r| r.method().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn every_route_resolves_to_itself() {
        for route in Route::ALL {
            let path = route
                .path_template()
                .replace("{provider}", "groq")
                .replace("{key_id}", "default");
            for path in [path.clone(), format!("{path}/")] {
                assert!(
                    matches!(Route::resolve(&route.method(), &path), RouteMatch::Found { route: r, .. } if r == route),
                    "{route:?} {path}"
                );
            }
        }
    }

    #[test]
    fn routes_resolve_with_and_without_trailing_slash() {
        for path in ["/api/v1/credentials", "/api/v1/credentials/"] {
            assert!(matches!(
                Route::resolve(&Method::GET, path),
                RouteMatch::Found {
                    route: Route::ListCredentials,
                    provider: None,
                    ..
                }
            ));
        }
        for path in ["/api/v1/credentials/groq/check", "/api/v1/credentials/groq/check/"] {
            assert_eq!(
                Route::resolve(&Method::POST, path),
                RouteMatch::Found {
                    route: Route::CheckCredential,
                    route_key: "POST /api/v1/credentials/{provider}/check",
                    provider: Some("groq".into()),
                    key_id: None,
                }
            );
        }
        assert_eq!(
            Route::resolve(&Method::PATCH, "/api/v1/credentials/groq"),
            RouteMatch::MethodNotAllowed {
                allow: "GET, PUT, DELETE".into()
            }
        );
        assert_eq!(
            Route::resolve(&Method::GET, "/api/v1/credentials/groq/check/"),
            RouteMatch::MethodNotAllowed { allow: "POST".into() }
        );
        for path in [
            "/api/v1/credentialsX",
            "/api/v1/credentials//models",
            "/api/v1/credentials/groq/other",
            "/api/v2/credentials",
        ] {
            assert_eq!(Route::resolve(&Method::GET, path), RouteMatch::NotFound, "{path}");
        }
    }
}
