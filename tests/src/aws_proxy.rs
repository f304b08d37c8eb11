//! A counting proxy in front of `moto_server`: every AWS request passes
//! through it, and it records the operation (`GetItem`, `Decrypt`, ...), so
//! tests and the benchmark can say exactly which AWS calls an action made.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};

/// Forwards everything to moto and records which AWS operation each request was.
#[derive(Clone)]
pub struct CountingProxy {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<String>>>,
    /// Every call as the IAM action it needs (`dynamodb:GetItem`), never taken.
    actions: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// Operations held without an answer and never forwarded (see [`CountingProxy::stall`]).
    stalled: Arc<Mutex<Vec<String>>>,
}

async fn forward(
    State(proxy): State<CountingProxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let operation = target
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned())
        .unwrap_or_else(|| format!("{method} {}", uri.path()));
    proxy.calls.lock().unwrap().push(operation.clone());
    if let Some(action) = target.and_then(iam_action) {
        proxy.actions.lock().unwrap().insert(action);
    }
    if proxy.stalled.lock().unwrap().contains(&operation) {
        // A hung endpoint: no answer until the client gives up (which drops
        // this future), and nothing reaches moto.
        std::future::pending::<()>().await;
    }
    let url = format!(
        "{}{}",
        proxy.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = proxy.http.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// The IAM action an `x-amz-target` needs: `DynamoDB_20120810.GetItem` is
/// `dynamodb:GetItem`, `TrentService.Decrypt` is `kms:Decrypt`.
fn iam_action(target: &str) -> Option<String> {
    let (service, operation) = target.split_once('.')?;
    let prefix = match service {
        s if s.starts_with("DynamoDB_") => "dynamodb",
        "TrentService" => "kms",
        "AWSEvents" => "events",
        _ => return None,
    };
    Some(format!("{prefix}:{operation}"))
}

impl CountingProxy {
    /// A proxy on a free loopback port in front of `upstream`; its URL.
    pub async fn start(upstream: &str) -> (CountingProxy, String) {
        let proxy = CountingProxy {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            calls: Arc::new(Mutex::new(Vec::new())),
            actions: Arc::default(),
            stalled: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new().fallback(forward).with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (proxy, format!("http://{address}"))
    }

    /// From now on, requests for `operation` (e.g. `TransactWriteItems`) hang
    /// unanswered and are never forwarded: a stalled AWS endpoint.
    pub fn stall(&self, operation: &str) {
        self.stalled.lock().unwrap().push(operation.to_owned());
    }

    /// Ends every [`CountingProxy::stall`].
    pub fn unstall(&self) {
        self.stalled.lock().unwrap().clear();
    }

    /// Every action the calls so far needed, as IAM names them.
    pub fn actions(&self) -> std::collections::BTreeSet<String> {
        self.actions.lock().unwrap().clone()
    }

    /// The operations received since the last `take`, in order.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

/// `env` (a function's environment) with `AWS_ENDPOINT_URL` aimed at `proxy_url`.
pub fn through_proxy(mut env: Vec<(String, String)>, proxy_url: &str) -> Vec<(String, String)> {
    for (k, v) in env.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = proxy_url.to_owned();
        }
    }
    env
}
