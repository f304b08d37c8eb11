//! The local server's AWS-shaped doors are locked (Lambda Invoke,
//! `@connections`, KMS `Decrypt`): real AWS SDK clients signing with the
//! access key the server made in its data directory get in; the same request
//! with a flipped signature byte, without `Authorization`, signed with a
//! wrong secret, an unknown key id or 20 minutes ago does not. CORS stays on
//! the REST API. KMS `Decrypt` opens what the local keyring wrapped.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_lambda::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_lambda::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_lambda::error::{BoxError, ProvideErrorMetadata};
use aws_sdk_lambda::primitives::Blob;
use mailmind::adapters::local_keyring::LocalKeyring;
use mailmind::domain::{UserId, provider};
use mailmind::ports::{EncryptionContext, Keyring};
use mailmind_tests::local_server::LocalServer;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const FRONTEND: &str = "http://localhost:5173";

async fn server(dir: &tempfile::TempDir) -> LocalServer {
    LocalServer::start_with_args(&dir.path().join("data"), &[], &["--cors-origin", FRONTEND]).await
}

/// A request as an SDK client sent it, signature and all.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Keeps the last request its client sent (after signing).
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Option<Recorded>>>);

impl Recorder {
    fn take(&self) -> Recorded {
        self.0.lock().unwrap().take().expect("the client sent a request")
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        *self.0.lock().unwrap() = Some(Recorded {
            method: request.method().to_owned(),
            uri: request.uri().to_owned(),
            headers: request
                .headers()
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
                .collect(),
            body: request.body().bytes().unwrap_or_default().to_vec(),
        });
        Ok(())
    }
}

/// A client of AWS SDK crate `$sdk` for the local server, signing with
/// `$credentials` at the real time or at `$clock`, recording into `$recorder`.
macro_rules! client {
    ($sdk:ident, $server:expr, $credentials:expr, $clock:expr, $recorder:expr) => {{
        let mut config = $sdk::Config::builder()
            .behavior_version($sdk::config::BehaviorVersion::latest())
            .region($sdk::config::Region::new("eu-west-1"))
            .endpoint_url(&$server.base_url)
            .credentials_provider($credentials)
            .retry_config($sdk::config::retry::RetryConfig::disabled())
            .interceptor($recorder.clone());
        let clock: Option<SystemTime> = $clock;
        if let Some(at) = clock {
            config = config.time_source(aws_smithy_async::time::StaticTimeSource::new(at));
        }
        $sdk::Client::from_conf(config.build())
    }};
}

/// A wrong signer's call: 403, with the error type and message word of `kind`.
fn assert_refused<E: ProvideErrorMetadata + std::fmt::Debug>(
    error: &aws_sdk_lambda::error::SdkError<E, aws_sdk_lambda::config::http::HttpResponse>,
    (code, word): (&str, &str),
) {
    assert_eq!(error.raw_response().unwrap().status().as_u16(), 403, "{error:?}");
    assert_eq!(error.code(), Some(code), "{error:?}");
    assert!(error.message().is_some_and(|m| m.contains(word)), "{error:?}");
}

/// The ways of getting it wrong an SDK client can be made to take: a wrong
/// secret, an unknown key id, a signature 20 minutes old; and the error type
/// each gets, with a word of its message.
fn wrong_signers(s: &LocalServer) -> Vec<(Credentials, Option<SystemTime>, (&'static str, &'static str))> {
    let key = s.aws_credentials();
    let id = key.access_key_id();
    vec![
        (
            Credentials::new(id, "not-the-secret", None, None, "test"),
            None,
            ("InvalidSignatureException", "does not match"),
        ),
        (
            Credentials::new(
                "AKIALOCALNOTTHISONE0",
                key.secret().expose_secret().to_owned(),
                None,
                None,
                "test",
            ),
            None,
            ("UnrecognizedClientException", "security token"),
        ),
        (
            s.sdk_credentials(),
            Some(SystemTime::now() - Duration::from_secs(20 * 60)),
            ("InvalidSignatureException", "expired"),
        ),
    ]
}

/// The error type of a refusal: `x-amzn-ErrorType` (Lambda, API Gateway)
/// or the JSON body's `__type` (KMS).
async fn refusal_kind(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let kind = header.or_else(|| body["__type"].as_str().map(str::to_owned));
    (status, kind.unwrap_or(text))
}

/// Sends `recorded` again, with its headers changed by `change`.
async fn replay(recorded: &Recorded, change: impl FnOnce(&mut Vec<(String, String)>)) -> reqwest::Response {
    let mut headers = recorded.headers.clone();
    change(&mut headers);
    let mut request = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(recorded.method.as_bytes()).unwrap(),
            &recorded.uri,
        )
        .body(recorded.body.clone());
    for (name, value) in headers {
        // reqwest writes these two itself, with the same values.
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    request.send().await.expect("server answers")
}

fn set_authorization(headers: &mut Vec<(String, String)>, value: Option<String>) {
    headers.retain(|(name, _)| name != "authorization");
    if let Some(value) = value {
        headers.push(("authorization".to_owned(), value));
    }
}

/// Replays what a client with the right key sent: as is, and as a bearer
/// request, it passes (`accepted`); with a flipped signature byte, without
/// `Authorization` or with a wrong bearer secret it is refused with `403`.
async fn assert_only_the_key_opens(s: &LocalServer, recorded: &Recorded, accepted: u16) {
    let secret = s.aws_credentials().secret().expose_secret().to_owned();
    let as_sent = replay(recorded, |_| {}).await;
    assert_eq!(as_sent.status().as_u16(), accepted, "{:?}", as_sent.text().await);

    let flipped = replay(recorded, |headers| {
        let (_, value) = headers.iter_mut().find(|(n, _)| n == "authorization").unwrap();
        let last = value.pop().unwrap();
        value.push(if last == '0' { '1' } else { '0' });
    })
    .await;
    assert_eq!(
        refusal_kind(flipped).await,
        (403, "InvalidSignatureException".to_owned())
    );

    let unsigned = replay(recorded, |headers| set_authorization(headers, None)).await;
    assert_eq!(
        refusal_kind(unsigned).await,
        (403, "MissingAuthenticationTokenException".to_owned())
    );

    let bearer = replay(recorded, |headers| {
        set_authorization(headers, Some(format!("Bearer {secret}")))
    })
    .await;
    assert_eq!(bearer.status().as_u16(), accepted);
    let wrong_bearer = replay(recorded, |headers| {
        set_authorization(headers, Some(format!("Bearer {secret}x")))
    })
    .await;
    assert_eq!(
        refusal_kind(wrong_bearer).await,
        (403, "UnrecognizedClientException".to_owned())
    );

    // Signed for another service: the key is right, the door is not.
    let other_service = replay(recorded, |headers| {
        let (_, value) = headers.iter_mut().find(|(n, _)| n == "authorization").unwrap();
        *value = value
            .replace("/lambda/", "/sts/")
            .replace("/kms/", "/sts/")
            .replace("/execute-api/", "/sts/");
    })
    .await;
    assert_eq!(
        refusal_kind(other_service).await,
        (403, "InvalidSignatureException".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_key_is_made_once_private_and_announced_without_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = server(&dir).await;
    let file = s.aws_credentials_file();
    let key = s.aws_credentials();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(key.access_key_id().starts_with("AKIALOCAL"), "{}", key.access_key_id());
    assert_eq!(key.access_key_id().len(), 20);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("[default]\naws_access_key_id = "),
        "{}",
        text.lines().next().unwrap()
    );

    let banner = s.logs_with("AWS access key: ").await;
    assert!(banner.contains(&format!("AWS access key: {}", key.access_key_id())));
    let shown = std::fs::canonicalize(&file).unwrap();
    assert!(banner.contains(&shown.display().to_string()), "{banner}");

    s.restart().await;
    let again = s.aws_credentials();
    assert_eq!(again.access_key_id(), key.access_key_id());
    assert_eq!(again.secret().expose_secret(), key.secret().expose_secret());
    // Still accepted after the restart.
    let recorder = Recorder::default();
    let lambda = client!(aws_sdk_lambda, s, s.sdk_credentials(), None, recorder);
    let answer = lambda
        .invoke()
        .function_name("credentials-resolve")
        .payload(Blob::new(r#"{"action":"resolve","user_id":"alice","provider":"groq"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status_code(), 200);
    s.stop().await;
    assert!(
        !s.logs().contains(key.secret().expose_secret()),
        "the secret reached the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invoke_door_takes_only_the_local_access_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir).await;
    let recorder = Recorder::default();
    let lambda = client!(aws_sdk_lambda, s, s.sdk_credentials(), None, recorder);
    let resolve = r#"{"action":"resolve","user_id":"alice","provider":"groq"}"#;
    let answer = lambda
        .invoke()
        .function_name("credentials-resolve")
        .payload(Blob::new(resolve))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status_code(), 200);
    let body: Value = serde_json::from_slice(answer.payload().unwrap().as_ref()).unwrap();
    assert_eq!(body["error"]["code"], "credential_not_found", "{body}");
    assert_only_the_key_opens(&s, &recorder.take(), 200).await;

    for (credentials, clock, kind) in wrong_signers(&s) {
        let wrong = client!(aws_sdk_lambda, s, credentials, clock, recorder);
        let error = wrong
            .invoke()
            .function_name("credentials-resolve")
            .payload(Blob::new(resolve))
            .send()
            .await
            .unwrap_err();
        assert_refused(&error, kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connections_door_takes_only_the_local_access_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir).await;
    let recorder = Recorder::default();
    let management = client!(aws_sdk_apigatewaymanagement, s, s.sdk_credentials(), None, recorder);
    // Through the door, the connection is gone: 410 is API Gateway's answer.
    let error = management
        .post_to_connection()
        .connection_id("no-such-connection")
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new("{}"))
        .send()
        .await
        .unwrap_err();
    assert!(
        error.as_service_error().is_some_and(|e| e.is_gone_exception()),
        "{error:?}"
    );
    assert_only_the_key_opens(&s, &recorder.take(), 410).await;

    for (credentials, clock, kind) in wrong_signers(&s) {
        let wrong = client!(aws_sdk_apigatewaymanagement, s, credentials, clock, recorder);
        let error = wrong
            .get_connection()
            .connection_id("no-such-connection")
            .send()
            .await
            .unwrap_err();
        assert_refused(&error, kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_decrypt_opens_what_the_local_keyring_wrapped_for_the_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir).await;
    // The data key a sealed record carries, wrapped under the server's master key.
    let keyring = LocalKeyring::open_or_create(&s.data_dir.join(mailmind::state::local::MASTER_KEY_FILE)).unwrap();
    let groq = provider::find("groq").unwrap();
    let context = EncryptionContext::new(&UserId::parse("alice").unwrap(), groq);
    let data_key = keyring.generate_data_key(&context).await.unwrap();

    let recorder = Recorder::default();
    let kms = client!(aws_sdk_kms, s, s.sdk_credentials(), None, recorder);
    let decrypt = |kms: &aws_sdk_kms::Client, blob: &[u8], user: &str, key_id: &str| {
        kms.decrypt()
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
            .key_id(key_id)
            .encryption_context("app", "mailmind")
            .encryption_context("user", user)
            .encryption_context("provider", "groq")
            .send()
    };
    let opened = decrypt(&kms, &data_key.wrapped, "alice", &data_key.key_id)
        .await
        .unwrap();
    assert_eq!(opened.plaintext().unwrap().as_ref(), data_key.plaintext.as_slice());
    assert_eq!(opened.key_id(), Some(data_key.key_id.as_str()));
    assert_eq!(
        opened.encryption_algorithm(),
        Some(&aws_sdk_kms::types::EncryptionAlgorithmSpec::SymmetricDefault)
    );
    assert_only_the_key_opens(&s, &recorder.take(), 200).await;

    // What does not open: another user's context, a tampered blob, another key.
    let mut tampered = data_key.wrapped.clone();
    *tampered.last_mut().unwrap() ^= 1;
    for (blob, user, key_id, kind) in [
        (
            &data_key.wrapped,
            "bob",
            data_key.key_id.as_str(),
            "InvalidCiphertextException",
        ),
        (
            &tampered,
            "alice",
            data_key.key_id.as_str(),
            "InvalidCiphertextException",
        ),
        (
            &data_key.wrapped,
            "alice",
            "arn:aws:kms:eu-west-1:111122223333:key/other",
            "IncorrectKeyException",
        ),
    ] {
        let error = decrypt(&kms, blob, user, key_id).await.unwrap_err();
        assert_eq!(error.raw_response().unwrap().status().as_u16(), 400);
        assert_eq!(error.code(), Some(kind), "{error:?}");
    }
    let error = kms
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(data_key.wrapped.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some("InvalidCiphertextException"),
        "no context: {error:?}"
    );

    for (credentials, clock, kind) in wrong_signers(&s) {
        let wrong = client!(aws_sdk_kms, s, credentials, clock, recorder);
        let error = decrypt(&wrong, &data_key.wrapped, "alice", &data_key.key_id)
            .await
            .unwrap_err();
        assert_refused(&error, kind);
    }

    // Other operations and malformed input, with the key as a bearer token.
    let secret = s.aws_credentials().secret().expose_secret().to_owned();
    let raw = |target: &str, body: &str| {
        reqwest::Client::new()
            .post(format!("{}/", s.base_url))
            .header("authorization", format!("Bearer {secret}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .body(body.to_owned())
            .send()
    };
    let wrapped = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &data_key.wrapped);
    for (target, body, kind) in [
        ("TrentService.Encrypt", "{}".to_owned(), "UnknownOperationException"),
        ("TrentService.Decrypt", "{}".to_owned(), "ValidationException"),
        ("TrentService.Decrypt", "[1]".to_owned(), "SerializationException"),
        (
            "TrentService.Decrypt",
            json!({"CiphertextBlob": wrapped, "EncryptionContext": {"app": "mailmind", "user": "alice", "provider": "groq", "x": "y"}}).to_string(),
            "InvalidCiphertextException",
        ),
    ] {
        let (status, got) = refusal_kind(raw(target, &body).await.unwrap()).await;
        assert_eq!((status, got.as_str()), (400, kind), "{target} {body}");
    }
    let answer = raw(
        "TrentService.Decrypt",
        &json!({"CiphertextBlob": wrapped, "EncryptionContext": {"app": "mailmind", "user": "alice", "provider": "groq"}})
            .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["KeyId"], data_key.key_id.as_str());
    assert_eq!(answer["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_rest_api_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir).await;
    let secret = s.aws_credentials().secret().expose_secret().to_owned();
    let http = reqwest::Client::new();
    let rest = http
        .get(format!("{}/api/v1/credentials/", s.base_url))
        .header("origin", FRONTEND)
        .bearer_auth(s.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 200);
    assert_eq!(rest.headers()["access-control-allow-origin"], FRONTEND);

    let cors_headers = |headers: &reqwest::header::HeaderMap| -> Vec<String> {
        headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .map(|name| name.to_string())
            .collect()
    };
    let invoke = format!("{}/2015-03-31/functions/credentials-resolve/invocations", s.base_url);
    let connections = format!("{}/@connections/abc", s.base_url);
    let kms = format!("{}/", s.base_url);
    // Accepted (with the key) or not, from the allowed origin: no CORS.
    for (method, url, status) in [
        (reqwest::Method::POST, &invoke, 200),
        (reqwest::Method::GET, &connections, 410),
        (reqwest::Method::POST, &kms, 400),
    ] {
        let with_key = http
            .request(method.clone(), url)
            .header("origin", FRONTEND)
            .bearer_auth(&secret)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(with_key.status(), status, "{url}");
        assert!(cors_headers(with_key.headers()).is_empty(), "{url}");
        let preflight = http
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", FRONTEND)
            .header("access-control-request-method", method.as_str())
            .header("access-control-request-headers", "authorization,content-type")
            .send()
            .await
            .unwrap();
        assert!(cors_headers(preflight.headers()).is_empty(), "preflight {url}");
        assert_ne!(preflight.status(), 200, "preflight {url}");
    }
}

/// boto3 with nothing but the environment (`AWS_ENDPOINT_URL_KMS`, and the
/// key from `AWS_SHARED_CREDENTIALS_FILE` alone) opens a data key through
/// the local KMS; botocore's own signer is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_decrypts_through_the_local_kms_with_the_credentials_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir).await;
    let keyring = LocalKeyring::open_or_create(&s.data_dir.join(mailmind::state::local::MASTER_KEY_FILE)).unwrap();
    let context = EncryptionContext::new(&UserId::parse("alice").unwrap(), provider::find("groq").unwrap());
    let data_key = keyring.generate_data_key(&context).await.unwrap();
    let script = r#"
import sys, boto3
kms = boto3.client("kms")
out = kms.decrypt(CiphertextBlob=bytes.fromhex(sys.argv[1]), KeyId=sys.argv[2],
                  EncryptionContext={"app": "mailmind", "user": "alice", "provider": "groq"})
try:
    kms.decrypt(CiphertextBlob=bytes.fromhex(sys.argv[1]),
                EncryptionContext={"app": "mailmind", "user": "bob", "provider": "groq"})
    wrong = None
except kms.exceptions.InvalidCiphertextException as e:
    wrong = e.response["Error"]["Code"]
print(out["Plaintext"].hex(), wrong)
"#;
    let env = s
        .aws_env()
        .into_iter()
        .filter(|(name, _)| name != "AWS_ACCESS_KEY_ID" && name != "AWS_SECRET_ACCESS_KEY");
    let wrapped_hex: String = data_key.wrapped.iter().map(|b| format!("{b:02x}")).collect();
    let stdout = mailmind_tests::run_venv_python(script, &[&wrapped_hex, &data_key.key_id], env).await;
    let expected: String = data_key.plaintext.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(stdout.trim(), format!("{expected} InvalidCiphertextException"));
}
