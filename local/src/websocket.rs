//! The WebSocket half of API Gateway, played locally: `GET /ws?token=` runs
//! the shared `$connect` authorizer and handler before the upgrade, every
//! message goes to the route its `action` selects (`check`, else `$default`),
//! whose answer is the route response, a closed socket runs `$disconnect`;
//! and the API Gateway
//! Management API (`/@connections/{id}`) that the shared notifier posts to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use mailmind::handlers::protocol::ApiError;
use mailmind::handlers::websocket;
use mailmind::lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use mailmind::lambda_events::encodings::Body;
use mailmind::lambda_events::iam::IamPolicyEffect;
use mailmind::lambda_events::query_map::QueryMap;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::LocalGateway;
use crate::gateway::lambda_to_axum;

const STAGE: &str = "local";
const API_ID: &str = "local";

/// What the management API knows of a live socket.
struct Socket {
    outbox: mpsc::UnboundedSender<Message>,
    connected_at: DateTime<Utc>,
    last_active_at: DateTime<Utc>,
    source_ip: String,
    user_agent: Option<String>,
}

/// Live sockets by connection id.
#[derive(Default)]
pub struct Sockets(Mutex<HashMap<String, Socket>>);

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Socket>> {
        // No code path panics with the lock held; a poisoned map is still sound.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Who is connected, as every WebSocket event of the connection carries it.
#[derive(Clone)]
struct Peer {
    connection_id: String,
    user_id: String,
    connected_at: DateTime<Utc>,
    source_ip: String,
    user_agent: Option<String>,
}

impl Peer {
    /// The event API Gateway sends a WebSocket route of this connection.
    fn event(&self, route_key: &str, event_type: &str, body: Option<String>) -> ApiGatewayWebsocketProxyRequest {
        let now = Utc::now();
        let mut event = ApiGatewayWebsocketProxyRequest::default();
        let context = &mut event.request_context;
        context.route_key = Some(route_key.to_owned());
        context.event_type = Some(event_type.to_owned());
        context.connection_id = Some(self.connection_id.clone());
        context.connected_at = self.connected_at.timestamp_millis();
        context.request_time_epoch = now.timestamp_millis();
        context.request_time = Some(mailmind::time::to_api_gateway(&now));
        context.request_id = Some(mailmind::ids::random_hex(8));
        context.extended_request_id = context.request_id.clone();
        context.message_direction = Some("IN".to_owned());
        context.stage = Some(STAGE.to_owned());
        context.apiid = Some(API_ID.to_owned());
        context.domain_name = Some("127.0.0.1".to_owned());
        context.identity.source_ip = Some(self.source_ip.clone());
        context.identity.user_agent = self.user_agent.clone();
        context
            .authorizer
            .fields
            .insert("principalId".to_owned(), Value::String(self.user_id.clone()));
        if event_type == "MESSAGE" {
            context.message_id = Some(mailmind::ids::random_hex(8));
        }
        event.is_base64_encoded = false;
        event.body = body;
        event
    }
}

/// `GET /ws?token=<JWT>`: authorize, run `$connect`, then upgrade.
pub async fn upgrade(
    State(gateway): State<Arc<LocalGateway>>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // A page of another site may not open a socket in the user's name.
    let origin = headers.get("origin").map(|v| v.to_str().unwrap_or("\u{0}"));
    if !crate::loopback::is_allowed_origin(origin) && !gateway.cors_origins.allows(origin) {
        return lambda_to_axum(ApiError::forbidden_origin().into_response());
    }
    // API Gateway runs the authorizer before anything else.
    let mut request = ApiGatewayCustomAuthorizerRequestTypeRequest::default();
    request.method_arn = Some(format!(
        "arn:aws:execute-api:local:000000000000:{API_ID}/{STAGE}/$connect"
    ));
    request.query_string_parameters = QueryMap::from(query);
    request.headers = headers.clone();
    let decision = websocket::authorize(&gateway.ws_verifier, request).await;
    let allowed = decision
        .policy_document
        .statement
        .iter()
        .all(|s| s.effect == IamPolicyEffect::Allow)
        && !decision.policy_document.statement.is_empty();
    let user_id = match (allowed, decision.principal_id) {
        (true, Some(user_id)) => user_id,
        _ => return lambda_to_axum(ApiError::unauthenticated().into_response()),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let peer = Peer {
        connection_id: connection_id(),
        user_id,
        connected_at: Utc::now(),
        source_ip: address.ip().to_string(),
        user_agent: headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    // Registered before $connect stores it, so a push racing the upgrade is
    // queued for the socket instead of being answered 410 (and forgotten).
    let (outbox, inbox) = mpsc::unbounded_channel();
    gateway.sockets.lock().insert(
        peer.connection_id.clone(),
        Socket {
            outbox,
            connected_at: peer.connected_at,
            last_active_at: peer.connected_at,
            source_ip: peer.source_ip.clone(),
            user_agent: peer.user_agent.clone(),
        },
    );
    let connected = websocket::connect(&gateway.app, peer.event("$connect", "CONNECT", None)).await;
    if connected.status_code != 200 {
        gateway.sockets.lock().remove(&peer.connection_id);
        // The cap on sockets per user: the handshake fails with `$connect`'s answer.
        if connected.status_code == 429
            && let Some(Body::Text(body)) = connected.body
        {
            let headers = [(axum::http::header::CONTENT_TYPE, "application/json")];
            return (StatusCode::TOO_MANY_REQUESTS, headers, body).into_response();
        }
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let failed = (Arc::clone(&gateway), peer.clone());
    upgrade
        .on_failed_upgrade(move |_| {
            let (gateway, peer) = failed;
            tokio::spawn(async move { hang_up(&gateway, &peer, "upgrade failed").await });
        })
        .on_upgrade(move |socket| serve(gateway, peer, socket, inbox))
}

/// API Gateway's connection ids are opaque strings; so are these.
fn connection_id() -> String {
    mailmind::ids::random_hex(10)
}

async fn serve(gateway: Arc<LocalGateway>, peer: Peer, socket: WebSocket, mut inbox: mpsc::UnboundedReceiver<Message>) {
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(message) = inbox.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
    });
    let reason = loop {
        let text = match stream.next().await {
            Some(Ok(Message::Text(text))) => text.to_string(),
            Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) => break "client closed",
            Some(Err(_)) => break "connection lost",
            None => break "connection lost",
        };
        if let Some(socket) = gateway.sockets.lock().get_mut(&peer.connection_id) {
            socket.last_active_at = Utc::now();
        }
        if selects_check_route(&text) {
            // A check waits on the provider: like API Gateway, the socket
            // keeps taking messages meanwhile.
            let (gateway, peer) = (Arc::clone(&gateway), peer.clone());
            tokio::spawn(async move {
                let answer = websocket::check(&gateway.app, peer.event("check", "MESSAGE", Some(text))).await;
                send_route_response(&gateway, &peer, answer);
            });
            continue;
        }
        let answer = websocket::default(&(), peer.event("$default", "MESSAGE", Some(text))).await;
        send_route_response(&gateway, &peer, answer);
    };
    writer.abort();
    hang_up(&gateway, &peer, reason).await;
}

/// API Gateway's route selection (`$request.body.action`): a JSON message
/// whose `action` is `check` goes to the `check` route; anything else to `$default`.
fn selects_check_route(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| v.get("action").and_then(Value::as_str) == Some("check"))
}

fn send_route_response(gateway: &LocalGateway, peer: &Peer, answer: ApiGatewayProxyResponse) {
    if let Some(reply) = route_response(answer)
        && let Some(socket) = gateway.sockets.lock().get(&peer.connection_id)
    {
        let _ = socket.outbox.send(Message::Text(reply.into()));
    }
}

/// The body a route's integration answered with, which API Gateway sends back.
fn route_response(response: ApiGatewayProxyResponse) -> Option<String> {
    match response.body {
        Some(Body::Text(text)) => Some(text),
        Some(Body::Binary(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

async fn hang_up(gateway: &LocalGateway, peer: &Peer, reason: &str) {
    gateway.sockets.lock().remove(&peer.connection_id);
    let mut event = peer.event("$disconnect", "DISCONNECT", None);
    event.request_context.disconnect_reason = Some(reason.to_owned());
    event.request_context.disconnect_status_code = Some(if reason == "client closed" { 1000 } else { 1006 });
    websocket::disconnect(&gateway.app, event).await;
}

fn gone() -> Response {
    // What API Gateway answers for a connection that is no more.
    (
        StatusCode::GONE,
        [
            ("x-amzn-errortype", "GoneException"),
            ("content-type", "application/json"),
        ],
        r#"{"message":null}"#,
    )
        .into_response()
}

/// `POST /@connections/{id}`: delivers the body to that socket.
pub async fn post_to_connection(
    State(gateway): State<Arc<LocalGateway>>,
    Path(connection_id): Path<String>,
    body: Bytes,
) -> Response {
    let sockets = gateway.sockets.lock();
    let Some(socket) = sockets.get(&connection_id) else {
        return gone();
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    if socket.outbox.send(Message::Text(text.into())).is_err() {
        return gone();
    }
    StatusCode::OK.into_response()
}

/// `GET /@connections/{id}`: what API Gateway knows of the connection.
pub async fn get_connection(State(gateway): State<Arc<LocalGateway>>, Path(connection_id): Path<String>) -> Response {
    let sockets = gateway.sockets.lock();
    let Some(socket) = sockets.get(&connection_id) else {
        return gone();
    };
    axum::Json(json!({
        "ConnectedAt": mailmind::time::to_stored(&socket.connected_at),
        "LastActiveAt": mailmind::time::to_stored(&socket.last_active_at),
        "Identity": {"SourceIp": socket.source_ip, "UserAgent": socket.user_agent},
    }))
    .into_response()
}

/// `DELETE /@connections/{id}`: closes the connection from the server side.
pub async fn delete_connection(
    State(gateway): State<Arc<LocalGateway>>,
    Path(connection_id): Path<String>,
) -> Response {
    let Some(socket) = gateway.sockets.lock().remove(&connection_id) else {
        return gone();
    };
    let _ = socket.outbox.send(Message::Close(None));
    StatusCode::NO_CONTENT.into_response()
}
