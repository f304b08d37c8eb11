//! A Lambda Runtime API emulator, enough to run a real function binary as a
//! process the way Lambda does: the runtime long-polls `/next`, gets one event
//! with its request id and deadline, and posts the response (or an error).
//!
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// What the function answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    /// The runtime reported an invocation error (`/error`).
    Error(Value),
}

impl Outcome {
    /// The response, or a panic naming the error.
    pub fn response(self) -> Value {
        match self {
            Outcome::Response(v) => v,
            Outcome::Error(e) => panic!("the function reported an error: {e}"),
        }
    }
}

struct Invocation {
    id: String,
    event: Value,
}

struct Shared {
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_poll: Mutex<Option<Instant>>,
    first_poll_seen: tokio::sync::Notify,
    init_error: Mutex<Option<Value>>,
    function_name: String,
    /// The function's `Timeout` (30 s unless a test sets it).
    function_timeout: Mutex<Duration>,
    /// When each delivered invocation's time is up.
    deadlines: Mutex<HashMap<String, Instant>>,
}

/// One emulated Runtime API endpoint (one per function process, as in Lambda).
pub struct RuntimeApi {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    submit: mpsc::Sender<Invocation>,
}

const BASE: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    pub async fn start(function_name: &str) -> RuntimeApi {
        let (submit, queue) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(queue),
            waiting: Mutex::new(HashMap::new()),
            first_poll: Mutex::new(None),
            first_poll_seen: tokio::sync::Notify::new(),
            init_error: Mutex::new(None),
            function_name: function_name.to_owned(),
            function_timeout: Mutex::new(Duration::from_secs(30)),
            deadlines: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route(&format!("{BASE}/invocation/next"), get(next))
            .route(&format!("{BASE}/invocation/{{id}}/response"), post(respond))
            .route(&format!("{BASE}/invocation/{{id}}/error"), post(fail))
            .route(&format!("{BASE}/init/error"), post(init_error))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        RuntimeApi {
            address,
            shared,
            submit,
        }
    }

    /// Delivers `event` to the function and waits for its answer.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let id = format!("req-{}", mailmind::ids::random_hex(8));
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().expect("lock").insert(id.clone(), tx);
        self.submit.send(Invocation { id, event }).await.expect("queue open");
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no answer within 60 s (init error: {:?})",
                    self.shared.init_error.lock().expect("lock")
                )
            })
            .expect("answer channel")
    }

    /// Sets the function's `Timeout` for the invocations delivered from now
    /// on: their deadline header says it, and an answer after it becomes the
    /// `Sandbox.Timedout` error Lambda reports.
    pub fn set_function_timeout(&self, timeout: Duration) {
        *self.shared.function_timeout.lock().expect("lock") = timeout;
    }

    /// When the runtime first asked for work: the end of its init phase.
    pub async fn first_poll(&self) -> Instant {
        loop {
            let notified = self.shared.first_poll_seen.notified();
            if let Some(at) = *self.shared.first_poll.lock().expect("lock") {
                return at;
            }
            notified.await;
        }
    }

    pub fn init_error(&self) -> Option<Value> {
        self.shared.init_error.lock().expect("lock").clone()
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    {
        let mut first = shared.first_poll.lock().expect("lock");
        if first.is_none() {
            *first = Some(Instant::now());
            shared.first_poll_seen.notify_waiters();
        }
    }
    let invocation = shared.queue.lock().await.recv().await;
    let Some(Invocation { id, event }) = invocation else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let timeout = *shared.function_timeout.lock().expect("lock");
    shared
        .deadlines
        .lock()
        .expect("lock")
        .insert(id.clone(), Instant::now() + timeout);
    let deadline = chrono::Utc::now().timestamp_millis() + timeout.as_millis() as i64;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).expect("header value"));
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{}",
            shared.function_name
        ),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".into(),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, event.to_string())
}

fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    // As Lambda does: an answer after the function's timeout never reaches
    // the caller, who gets the timeout error instead.
    let deadline = shared.deadlines.lock().expect("lock").remove(id);
    let outcome = match deadline {
        Some(at) if Instant::now() > at => Outcome::Error(serde_json::json!({
            "errorType": "Sandbox.Timedout",
            "errorMessage": "Task timed out",
        })),
        _ => outcome,
    };
    match shared.waiting.lock().expect("lock").remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    settle(&shared, &id, Outcome::Response(value))
}

async fn fail(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    settle(&shared, &id, Outcome::Error(value))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    *shared.init_error.lock().expect("lock") = Some(value);
    StatusCode::ACCEPTED
}

/// A function binary running as a process under its own [`RuntimeApi`].
pub struct LambdaProcess {
    pub api: RuntimeApi,
    pub started_at: Instant,
    child: Child,
    output: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    collectors: Vec<tokio::task::JoinHandle<()>>,
}

impl LambdaProcess {
    /// Starts `binary` with the variables Lambda sets plus `env`, and the
    /// switch that lets it reach the tests' plain-HTTP fake providers on
    /// loopback (`env` may turn it off).
    pub async fn start(binary: &std::path::Path, env: &[(String, String)]) -> LambdaProcess {
        let name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("function")
            .to_owned();
        let api = RuntimeApi::start(&name).await;
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let started_at = Instant::now();
        let mut child = Command::new(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/24/[$LATEST]0123456789abcdef")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env(mailmind::adapters::providers::ALLOW_LOOPBACK_HTTP, "1")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let collectors = vec![
            collect(
                child.stdout.take().expect("stdout"),
                vec![Arc::clone(&output), Arc::clone(&stdout)],
            ),
            collect(child.stderr.take().expect("stderr"), vec![Arc::clone(&output)]),
        ];
        LambdaProcess {
            api,
            started_at,
            child,
            output,
            stdout,
            collectors,
        }
    }

    pub async fn invoke(&self, event: Value) -> Outcome {
        self.api.invoke(event).await
    }

    /// Everything the process printed (its JSON logs).
    pub fn logs(&self) -> String {
        self.output.lock().expect("lock").clone()
    }

    /// What the process printed on stdout alone (where EMF metric lines go).
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    /// [`Self::stdout`] once it holds `needle` ([`crate::once_it_holds`]).
    pub async fn stdout_with(&self, needle: &str) -> String {
        crate::once_it_holds(|| self.stdout(), needle).await
    }

    /// The process id, for resource measurements.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits (at most `limit`) for the process to end on its own, e.g. after
    /// refusing to start; then everything it printed, read to the end.
    pub async fn exit(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
        let status = tokio::time::timeout(limit, self.child.wait()).await.ok()?.ok()?;
        for collector in self.collectors.drain(..) {
            let _ = collector.await;
        }
        Some((status, self.logs()))
    }
}

fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    sinks: Vec<Arc<Mutex<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            for sink in &sinks {
                let mut out = sink.lock().expect("lock");
                out.push_str(&line);
                out.push('\n');
            }
        }
    })
}
