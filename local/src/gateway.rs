//! The HTTP half of API Gateway, played locally: verify the bearer token like
//! the JWT authorizer, build the HTTP API v2 event API Gateway would deliver,
//! let `lambda_http` turn it into a `Request` exactly as in Lambda, and call
//! the shared handler of the route.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body as AxumBody, to_bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription, ApiGatewayV2httpRequest,
    ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
};
use lambda_http::request::LambdaRequest;
use mailmind::auth::VerifiedClaims;
use mailmind::handlers::protocol::{ApiError, MAX_BODY_BYTES};
use mailmind::handlers::{Route, RouteMatch};

use crate::LocalGateway;

/// Every request that is not the WebSocket or `@connections`: the REST API.
pub async fn rest(
    State(gateway): State<Arc<LocalGateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<AxumBody>,
) -> Response {
    let (parts, body) = request.into_parts();
    let (route, route_key, parameters) = match Route::resolve(&parts.method, parts.uri.path()) {
        RouteMatch::Found {
            route,
            route_key,
            provider,
            key_id,
        } => {
            let parameters: HashMap<String, String> = [("provider", provider), ("key_id", key_id)]
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_owned(), value?)))
                .collect();
            (route, route_key, parameters)
        }
        // API Gateway answers unknown routes itself, before any authorizer.
        RouteMatch::NotFound => return lambda_to_axum(ApiError::not_found().into_response()),
        RouteMatch::MethodNotAllowed { allow } => {
            return lambda_to_axum(ApiError::method_not_allowed_response(&allow));
        }
    };
    let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
    let claims = match gateway.verifier.verify_header(authorization) {
        Ok(claims) => claims,
        Err(_) => return lambda_to_axum(ApiError::unauthenticated().into_response()),
    };
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return lambda_to_axum(ApiError::payload_too_large().into_response()),
    };
    let event = http_api_event(
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        route_key,
        parameters,
        &claims,
        peer,
    );
    let request: lambda_http::Request = LambdaRequest::ApiGatewayV2(event).into();
    // The one deadline of the request, as in `lambda::serve_http`.
    let answer = mailmind::deadline::scope(gateway.budgets, route.handle(&gateway.app, request)).await;
    lambda_to_axum(answer)
}

/// The HTTP API payload v2.0 event for one request, as API Gateway builds it
/// after its JWT authorizer accepted the token.
#[allow(clippy::too_many_arguments)]
pub fn http_api_event(
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    route_key: &str,
    path_parameters: HashMap<String, String>,
    claims: &VerifiedClaims,
    peer: SocketAddr,
) -> ApiGatewayV2httpRequest {
    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = method.clone();
    http.path = Some(uri.path().to_owned());
    http.protocol = Some("HTTP/1.1".to_owned());
    http.source_ip = Some(peer.ip().to_string());
    http.user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
    jwt.claims = claims.claims.clone();
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    authorizer.jwt = Some(jwt);

    let now = chrono::Utc::now();
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.route_key = Some(route_key.to_owned());
    context.account_id = Some("000000000000".to_owned());
    context.stage = Some("$default".to_owned());
    context.request_id = Some(mailmind::ids::random_hex(12));
    context.authorizer = Some(authorizer);
    context.apiid = Some("local".to_owned());
    context.domain_name = headers.get("host").and_then(|v| v.to_str().ok()).map(str::to_owned);
    context.time = Some(mailmind::time::to_api_gateway(&now));
    context.time_epoch = now.timestamp_millis();
    context.http = http;

    let mut event = ApiGatewayV2httpRequest::default();
    event.version = Some("2.0".to_owned());
    event.route_key = Some(route_key.to_owned());
    event.raw_path = Some(uri.path().to_owned());
    event.raw_query_string = Some(uri.query().unwrap_or_default().to_owned());
    event.headers = headers.clone();
    event.path_parameters = path_parameters;
    event.request_context = context;
    // API Gateway passes text as is and base64-encodes what is not UTF-8.
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => event.body = Some(text.to_owned()),
            Err(_) => {
                event.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
                event.is_base64_encoded = true;
            }
        }
    }
    event
}

/// Hands a handler's `lambda_http` response back to the HTTP client.
pub fn lambda_to_axum(response: lambda_http::Response<lambda_http::Body>) -> Response {
    let (parts, body) = response.into_parts();
    let body = match body {
        lambda_http::Body::Empty => AxumBody::empty(),
        lambda_http::Body::Text(text) => AxumBody::from(text),
        lambda_http::Body::Binary(bytes) => AxumBody::from(bytes),
        _ => AxumBody::empty(),
    };
    let mut response = Response::from_parts(parts, body);
    if response.status() == StatusCode::NO_CONTENT {
        *response.body_mut() = AxumBody::empty();
    }
    response.into_response()
}
