//! AWS Lambda's Invoke API in front of function processes under the Runtime
//! API emulator: `POST /2015-03-31/functions/{name}/invocations` hands the
//! payload to the process registered as `{name}` and answers what it
//! answered, a function error with `X-Amz-Function-Error` as Lambda does. So
//! a real `aws-sdk-lambda` client (a consumer's, or `credentials-resolve`
//! relaying a report) reaches a real function binary.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::lambda_emulator::{LambdaProcess, Outcome};

type Registry = Arc<Mutex<HashMap<String, Arc<LambdaProcess>>>>;

/// The Invoke API on a loopback port.
pub struct InvokeApi {
    /// `http://127.0.0.1:<port>`: the value of `AWS_ENDPOINT_URL_LAMBDA`.
    pub url: String,
    functions: Registry,
}

impl InvokeApi {
    pub async fn start() -> InvokeApi {
        let functions = Registry::default();
        let app = axum::Router::new()
            .route("/2015-03-31/functions/{name}/invocations", axum::routing::post(invoke))
            .with_state(Arc::clone(&functions));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        InvokeApi { url, functions }
    }

    /// A consumer's client named `consumer`: invokes `credentials-resolve`
    /// through this API and opens keys with the KMS at `kms_endpoint`.
    pub fn consumer(
        &self,
        config: &aws_config::SdkConfig,
        kms_endpoint: &str,
        consumer: &str,
    ) -> mailmind_keys::KeyClient {
        let lambda = aws_sdk_lambda::config::Builder::from(config)
            .endpoint_url(&self.url)
            .build();
        let kms = aws_sdk_kms::config::Builder::from(config)
            .endpoint_url(kms_endpoint)
            .build();
        mailmind_keys::KeyClient::new(
            aws_sdk_lambda::Client::from_conf(lambda),
            aws_sdk_kms::Client::from_conf(kms),
            "credentials-resolve",
        )
        .with_consumer(consumer)
    }

    /// Answers invocations of `name` with `process`.
    pub fn register(&self, name: &str, process: Arc<LambdaProcess>) {
        self.functions.lock().unwrap().insert(name.to_owned(), process);
    }
}

async fn invoke(State(functions): State<Registry>, Path(name): Path<String>, body: Bytes) -> Response {
    let process = functions.lock().unwrap().get(&name).cloned();
    let Some(process) = process else {
        return (
            StatusCode::NOT_FOUND,
            [("x-amzn-errortype", "ResourceNotFoundException")],
            format!("{{\"message\":\"Function not found: {name}\"}}"),
        )
            .into_response();
    };
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match process.invoke(event).await {
        Outcome::Response(answer) => (StatusCode::OK, answer.to_string()).into_response(),
        Outcome::Error(error) => (
            StatusCode::OK,
            [("x-amz-function-error", "Unhandled")],
            error.to_string(),
        )
            .into_response(),
    }
}
