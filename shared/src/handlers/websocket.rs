//! The WebSocket API's handlers: the `$connect` authorizer, `$connect`,
//! `$disconnect`, `$default` and `check`. They take the events API Gateway sends for a
//! WebSocket API (no HTTP method on `$disconnect`/`$default`), which the local
//! server builds the same way.

use std::time::Instant;

use chrono::{TimeZone, Utc};
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use lambda_http::aws_lambda_events::encodings::Body;
use lambda_http::aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde::Serialize;
use serde_json::{Value, json};

use super::protocol::ApiError;
use crate::AppState;
use crate::auth::TokenVerifier;
use crate::domain::{UserId, provider};

/// `$connect` authorizer (REQUEST type, token in the `token` query
/// parameter): Allow with `principalId` = the token's `sub`, or Deny.
pub async fn authorize(
    verifier: &TokenVerifier,
    event: ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> ApiGatewayCustomAuthorizerResponse {
    let started = Instant::now();
    let token = event
        .query_string_parameters
        .first("token")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let verdict = if token.is_empty() {
        None
    } else {
        verifier.verify(&token).await.ok().map(|claims| claims.sub.to_string())
    };
    let method_arn = event.method_arn.unwrap_or_default();
    let (effect, principal) = match &verdict {
        Some(sub) => (IamPolicyEffect::Allow, sub.clone()),
        None => (IamPolicyEffect::Deny, "anonymous".to_owned()),
    };
    tracing::info!(
        route = "ws-authorizer",
        allowed = verdict.is_some(),
        token_present = !token.is_empty(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "authorization decided"
    );
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = effect;
    statement.resource = vec![method_arn];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    response.principal_id = Some(principal);
    response.policy_document = policy;
    response.context = match verdict {
        Some(sub) => json!({ "sub": sub }),
        None => json!({}),
    };
    response
}

/// The user the authorizer let in, from `requestContext.authorizer.principalId`
/// (API Gateway passes it to every route of the connection).
fn principal(event: &ApiGatewayWebsocketProxyRequest) -> Option<UserId> {
    event
        .request_context
        .authorizer
        .fields
        .get("principalId")
        .and_then(Value::as_str)
        .and_then(UserId::parse)
}

fn reply(status: i64, body: Option<Value>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.body = body.map(|b| Body::Text(b.to_string()));
    response
}

/// `$connect`: remembers the connection for its user.
pub async fn connect(state: &AppState, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let Some(user) = principal(&event) else {
        tracing::warn!(route = "ws-connect", "no authorizer principal: refusing the connection");
        return reply(401, None);
    };
    let Some(connection_id) = event.request_context.connection_id.clone() else {
        return reply(400, None);
    };
    let connected_at = Utc
        .timestamp_millis_opt(event.request_context.connected_at)
        .single()
        .filter(|t| t.timestamp() > 0)
        .unwrap_or_else(Utc::now);
    match state.connections.connect(user, connection_id, connected_at).await {
        Ok(()) => reply(200, None),
        // Refused: the handshake fails, the user's open sockets stay.
        Err(e @ crate::service::ServiceError::TooManyConnections(_)) => {
            let error = super::protocol::ApiError::from(e);
            reply(429, Some(json!({"detail": error.detail, "code": error.code})))
        }
        Err(e) => {
            tracing::error!(route = "ws-connect", error = %e, "cannot store the connection");
            reply(500, None)
        }
    }
}

/// `$disconnect`: forgets the connection (its TTL cleans up if this fails).
pub async fn disconnect(state: &AppState, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let (Some(user), Some(connection_id)) = (principal(&event), event.request_context.connection_id.as_deref()) else {
        tracing::warn!(
            route = "ws-disconnect",
            "no principal or connection id; the TTL will clean up"
        );
        return reply(200, None);
    };
    if let Err(e) = state.connections.disconnect(&user, connection_id).await {
        tracing::warn!(route = "ws-disconnect", connection_id, error = %e, "cannot forget the connection");
    }
    reply(200, None)
}

/// `$default`: `{"action":"ping"}` → `{"type":"pong"}`; anything else a
/// [`SocketError`]. The body goes back to the client as the route response.
/// Needs no state (`&()`), like every route handler takes one.
pub async fn default(_: &(), event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let message = event.body.as_deref().unwrap_or_default();
    let answer = match serde_json::from_str::<Value>(message) {
        Ok(value) => match value.get("action").and_then(Value::as_str) {
            Some("ping") => json!({"type": "pong"}),
            _ => UNKNOWN_ACTION.message(),
        },
        Err(_) => SocketError::from(&not_an_object()).message(),
    };
    reply(200, Some(answer))
}

/// A message whose `action` no route takes (a socket's own refusal: no REST
/// route answers it).
const UNKNOWN_ACTION: SocketError<'static> = SocketError {
    code: "unknown_action",
    detail: "Supported actions: ping, check.",
    retry_after_seconds: None,
};

/// A socket message that is not a JSON object.
fn not_an_object() -> ApiError {
    ApiError::invalid_request("Messages must be JSON objects.")
}

/// `check` route: `{"action":"check","provider":"groq"}` runs the same
/// validation as `POST /credentials/{provider}/check/`, whose `checking` and
/// verdict are pushed to all of the user's sockets. A check that cannot run
/// is answered on this socket only (the route response):
/// `{"type":"error","data":{"code":..,"detail":..}}`, made from the same
/// [`ApiError`] the REST route would answer, so every code the service can
/// give reaches the socket with no code of its own here.
pub async fn check(state: &AppState, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let started = Instant::now();
    let result = run_check(state, &event).await;
    let code = result.as_ref().err().map(|e| e.code);
    tracing::info!(
        route = "ws-check",
        request_id = event.request_context.request_id.as_deref(),
        code,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "socket check handled"
    );
    match result {
        // The verdict went to every socket already; nothing more to say here.
        Ok(()) => reply(200, None),
        Err(e) => reply(200, Some(SocketError::from(&e).message())),
    }
}

async fn run_check(state: &AppState, event: &ApiGatewayWebsocketProxyRequest) -> Result<(), ApiError> {
    let user = principal(event).ok_or_else(ApiError::unauthenticated)?;
    let message = event.body.as_deref().unwrap_or_default();
    let Ok(Value::Object(body)) = serde_json::from_str::<Value>(message) else {
        return Err(not_an_object());
    };
    let given = match body.get("provider") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Null) | None => return Err(ApiError::invalid_request("Field 'provider' is required.")),
        Some(_) => return Err(ApiError::invalid_request("Field 'provider' must be a string.")),
    };
    let provider = provider::find(given).ok_or_else(|| ApiError::unknown_provider(400, given))?;
    state.credentials.check(&user, provider).await?;
    Ok(())
}

/// The one shape of every error a socket is answered with, `$default`'s and
/// `check`'s alike: `{"type":"error","data":{"code","detail"}}`, the `code`
/// and `detail` of the [`ApiError`] a REST route would answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SocketError<'a> {
    /// For programs, e.g. `credential_not_found`.
    pub code: &'a str,
    /// A sentence for people.
    pub detail: &'a str,
    /// A socket has no headers: `too_many_requests` says here when to retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl SocketError<'_> {
    /// The message.
    pub fn message(&self) -> Value {
        json!({"type": "error", "data": self})
    }
}

impl<'a> From<&'a ApiError> for SocketError<'a> {
    fn from(error: &'a ApiError) -> Self {
        SocketError {
            code: error.code,
            detail: &error.detail,
            retry_after_seconds: error.retry_after_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn default_route_answers_ping_and_refuses_the_rest() {
        let mut event = ApiGatewayWebsocketProxyRequest::default();
        let body = |r: ApiGatewayProxyResponse| match r.body {
            Some(Body::Text(t)) => serde_json::from_str::<Value>(&t).unwrap(),
            other => panic!("{other:?}"),
        };
        event.body = Some(r#"{"action":"ping"}"#.into());
        assert_eq!(body(default(&(), event.clone()).await), json!({"type": "pong"}));
        event.body = Some(r#"{"action":"shout"}"#.into());
        assert_eq!(
            body(default(&(), event.clone()).await),
            json!({"type": "error", "data": {"code": "unknown_action", "detail": "Supported actions: ping, check."}})
        );
        event.body = Some("ping".into());
        assert_eq!(
            body(default(&(), event).await),
            json!({"type": "error", "data": {"code": "invalid_request", "detail": "Messages must be JSON objects."}})
        );
    }
}
