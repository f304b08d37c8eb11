//! Runs the real `mailmind-local` binary on a random port, as a user would,
//! and keeps everything it prints (for the "no key in the logs" checks).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailmind::adapters::local_access_key::LocalAccessKey;
use mailmind::auth::Hs256Verifier;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::workspace_binary;

/// The local Invoke API's path for `credentials-resolve`.
pub const INVOKE_PATH: &str = "/2015-03-31/functions/credentials-resolve/invocations";

/// The HS256 secret the test servers run with.
/// (At least 32 bytes: shorter HS256 secrets are refused.)
pub const TEST_JWT_SECRET: &str = "e2e-test-secret-not-the-default-0123456789";

pub struct LocalServer {
    child: Option<Child>,
    pub base_url: String,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    /// Extra command-line flags (`--sandbox`, `--cors-origin ...`), kept for restarts.
    args: Vec<String>,
    output: Arc<Mutex<String>>,
    collectors: Vec<tokio::task::JoinHandle<()>>,
    verifier: Hs256Verifier,
    http: reqwest::Client,
}

/// An answer from the server: status, headers and the body as text and JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    /// Reads `response` whole.
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }
}

impl LocalServer {
    /// Starts `mailmind-local --port 0 --data-dir <data_dir>` with extra environment.
    pub async fn start(data_dir: &Path, env: &[(String, String)]) -> LocalServer {
        Self::start_with_args(data_dir, env, &[]).await
    }

    /// [`LocalServer::start`] with extra command-line flags after `--data-dir`.
    pub async fn start_with_args(data_dir: &Path, env: &[(String, String)], args: &[&str]) -> LocalServer {
        let mut server = LocalServer {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
            base_url: String::new(),
            data_dir: data_dir.to_owned(),
            env: env.to_vec(),
            output: Arc::new(Mutex::new(String::new())),
            collectors: Vec::new(),
            verifier: Hs256Verifier::new(TEST_JWT_SECRET.as_bytes()),
            http: reqwest::Client::new(),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(workspace_binary("mailmind-local"));
        command
            .args(["--port", "0", "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOCAL_JWT_SECRET", TEST_JWT_SECRET)
            .env("PROVIDER_TIMEOUT_MS", "2000")
            .env("MAILMIND_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("mailmind-local starts");
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        collect(
            child.stdout.take().expect("stdout piped"),
            Arc::clone(&self.output),
            Some(url_tx),
        );
        collect(
            child.stderr.take().expect("stderr piped"),
            Arc::clone(&self.output),
            None,
        );
        let url = tokio::time::timeout(Duration::from_secs(20), url_rx)
            .await
            .unwrap_or_else(|_| panic!("mailmind-local did not start: {}", self.logs()))
            .unwrap_or_else(|_| panic!("mailmind-local exited: {}", self.logs()));
        self.base_url = url;
        self.child = Some(child);
    }

    /// Stops the server with SIGTERM (a clean shutdown) and waits for it.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let pid = child.id().expect("running child has a pid");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("server stops within 10 s of SIGTERM")
            .expect("wait for server");
        // Everything it printed, read to the end, before anyone inspects the logs.
        for collector in self.collectors.drain(..) {
            let _ = collector.await;
        }
        status
    }

    /// Stops and starts again on the same data directory (new port).
    pub async fn restart(&mut self) {
        let status = self.stop().await;
        assert!(status.success(), "clean shutdown, got {status}");
        self.spawn().await;
    }

    /// Everything the server printed so far (banner and JSON logs).
    pub fn logs(&self) -> String {
        self.output.lock().expect("log buffer").clone()
    }

    /// The output once it holds `needle` (the start-up banner is still being
    /// written when the server already answers; [`crate::once_it_holds`]).
    pub async fn logs_with(&self, needle: &str) -> String {
        crate::once_it_holds(|| self.logs(), needle).await
    }

    /// The server's AWS credentials file, `<data-dir>/aws-credentials` (made
    /// on its first start, mode 0600, AWS shared-credentials format).
    pub fn aws_credentials_file(&self) -> PathBuf {
        self.data_dir.join(mailmind::state::local::ACCESS_KEY_FILE)
    }

    /// The access key the server's AWS-shaped doors (Lambda Invoke, KMS
    /// Decrypt, `@connections`) accept, read from [`Self::aws_credentials_file`].
    pub fn aws_credentials(&self) -> LocalAccessKey {
        let path = self.aws_credentials_file();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        LocalAccessKey::parse(&text).unwrap_or_else(|| panic!("{} holds no key pair", path.display()))
    }

    /// [`Self::aws_credentials`] for an AWS SDK client (`credentials_provider`).
    pub fn sdk_credentials(&self) -> aws_sdk_lambda::config::Credentials {
        let key = self.aws_credentials();
        aws_sdk_lambda::config::Credentials::new(
            key.access_key_id(),
            key.secret().expose_secret().to_owned(),
            None,
            None,
            "mailmind-local",
        )
    }

    /// The environment for a child process (an SDK, boto3, the AWS CLI) to
    /// call this server's Lambda Invoke and KMS with its access key:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SHARED_CREDENTIALS_FILE` (the same key pair), `AWS_CONFIG_FILE`
    /// (`/dev/null`), `AWS_DEFAULT_REGION`/`AWS_REGION` (`us-east-1`),
    /// `AWS_ENDPOINT_URL_LAMBDA` and `AWS_ENDPOINT_URL_KMS` (this server).
    pub fn aws_env(&self) -> Vec<(String, String)> {
        let key = self.aws_credentials();
        [
            ("AWS_ACCESS_KEY_ID", key.access_key_id().to_owned()),
            ("AWS_SECRET_ACCESS_KEY", key.secret().expose_secret().to_owned()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                self.aws_credentials_file().display().to_string(),
            ),
            ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL_LAMBDA", self.base_url.clone()),
            ("AWS_ENDPOINT_URL_KMS", self.base_url.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// A valid bearer token for `user`.
    pub fn token(&self, user: &str) -> String {
        self.verifier.issue(user, 3600)
    }

    /// A request with an optional bearer token and raw body.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        Answer::read(request.send().await.expect("server answers")).await
    }

    /// `call` as `user`.
    pub async fn call_as(&self, user: &str, method: &str, path: &str, body: Option<&str>) -> Answer {
        self.call(method, path, Some(&self.token(user)), body).await
    }

    /// `POST /api/v1/credentials/` of `api_key` for `provider`, as `user`.
    pub async fn post_key(&self, user: &str, provider: &str, api_key: &str) -> Answer {
        self.post_body(user, &serde_json::json!({"provider": provider, "api_key": api_key}))
            .await
    }

    /// `POST /api/v1/credentials/` of `body`, as `user`.
    pub async fn post_body(&self, user: &str, body: &serde_json::Value) -> Answer {
        self.call_as(user, "POST", "/api/v1/credentials/", Some(&body.to_string()))
            .await
    }

    /// The ids `GET /api/v1/credentials/{provider}/models/` lists for `user`, in its order.
    pub async fn model_ids(&self, user: &str, provider: &str) -> Vec<String> {
        let listed = self
            .call_as(user, "GET", &format!("/api/v1/credentials/{provider}/models/"), None)
            .await;
        let models = listed
            .json
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {}", listed.text));
        models
            .iter()
            .map(|m| m["model_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A `credentials-resolve` request through the local Invoke API, with
    /// the server's access key as a bearer secret; its JSON answer.
    pub async fn invoke_resolve(&self, request: &serde_json::Value) -> serde_json::Value {
        let secret = self.aws_credentials().secret().expose_secret().to_owned();
        let answer = reqwest::Client::new()
            .post(format!("{}{INVOKE_PATH}", self.base_url))
            .header("authorization", format!("Bearer {secret}"))
            .body(request.to_string())
            .send()
            .await
            .expect("server answers");
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("a JSON answer")
    }

    /// `PUT /api/v1/credentials/{provider}/` replacing the key with `api_key`, as `user`.
    pub async fn put_key(&self, user: &str, provider: &str, api_key: &str) -> Answer {
        let body = serde_json::json!({"api_key": api_key}).to_string();
        let path = format!("/api/v1/credentials/{provider}/");
        self.call_as(user, "PUT", &path, Some(&body)).await
    }
}

/// Copies a child's output into `sink`; reports the URL from the banner line.
fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    sink: Arc<Mutex<String>>,
    mut url_tx: Option<tokio::sync::oneshot::Sender<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("MailMind credential service listening on ")
                && let Some(tx) = url_tx.take()
            {
                let _ = tx.send(rest.trim().to_owned());
            }
            let mut out = sink.lock().expect("log buffer");
            out.push_str(&line);
            out.push('\n');
        }
    })
}
