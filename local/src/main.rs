//! `mailmind-local`: the whole credential service on one machine. It plays
//! API Gateway (JWT check, HTTP API events) in front of the very handlers the
//! Lambda functions run, over SQLite and a local master key.

mod cors;
mod doors;
mod gateway;
mod header_limit;
mod invoke;
mod kms;
mod loopback;
mod openapi;
mod settings_page;
mod websocket;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use mailmind::AppState;
use mailmind::auth::{Hs256Verifier, TokenVerifier};
use mailmind::config::{Limits, parse_duration};
use mailmind::service::RevalidationPolicy;
use tokio::net::TcpListener;

const USAGE: &str = "\
Usage: mailmind-local [--port PORT] [--data-dir DIR] [--sandbox] [--cors-origin ORIGIN]...
                      [LIMITS] [--revalidate-after D] [--revalidate-every D]
       mailmind-local --token USER

  --port PORT      TCP port on 127.0.0.1 (default 3000; 0 picks a free one)
  --data-dir DIR   where the database, master key and AWS access key live
                   (default ./.mailmind)
  --sandbox        answer key checks from a built-in simulator, never a provider:
                   a key containing sandbox-<outcome> gets that outcome (valid,
                   invalid, rate-limited, quota-exhausted, timeout, unavailable,
                   bad-response); any other key is invalid
  --cors-origin ORIGIN
                   answer this origin (e.g. http://localhost:5173) with CORS
                   headers on /api/v1, and accept its WebSockets; repeatable
  --validation-limit N          key checks (create, update, check) per user
                                per window (default 10; 0: no limit)
  --validation-window SECS      that window (default 60)
  --max-connections-per-user N  live sockets per user (default 10; 0: no cap)
  --previous-key-days N         days a replaced key is kept to roll back to (1-90, default 7)
  --revalidate-after D  re-check in the background every key whose verdict is
                   older than D, a duration like 24h, 90s (default 24h)
  --revalidate-every D  how often that runs (default 1h; 0 turns it off)
  --events-file FILE  append every change of a key's status to FILE, one JSON
                   line each, as EventBridge delivers it on AWS
  --token USER     print a bearer token for USER (valid 30 days) and exit;
                   it also works for `sam local` (same LOCAL_JWT_SECRET)

The settings page is at / (signed in with the demo token).

Lambda Invoke (credentials-resolve), KMS Decrypt and @connections take only
the access key made on first start in <data-dir>/aws-credentials (mode 0600,
AWS shared-credentials format: AWS_SHARED_CREDENTIALS_FILE=<that file>),
SigV4-signed, or its secret as `Authorization: Bearer <secret>`.

Environment:
  LOCAL_JWT_SECRET            HS256 secret for bearer tokens (default: a documented dev secret)
  PROVIDER_BASE_URL_<ID>      replace a provider's base URL, e.g. PROVIDER_BASE_URL_GROQ
  PROVIDER_TIMEOUT_MS         bound on one key check (default 10000)
  PROVIDER_CONNECT_TIMEOUT_MS bound on connecting to a provider (default 3000)
  MAILMIND_LOG                log filter (default warn,mailmind=info,mailmind_local=info)";

/// `--revalidate-every` when not given.
const DEFAULT_REVALIDATE_EVERY: Duration = Duration::from_secs(3600);

/// The demo user the start-up banner makes a token for.
const DEMO_USER: &str = "demo-user";

/// Shared by every request: the handlers' state, the token checks (the HTTP
/// API's JWT authorizer and the WebSocket `$connect` authorizer) and the live sockets.
pub struct LocalGateway {
    pub app: AppState,
    pub verifier: Hs256Verifier,
    pub ws_verifier: TokenVerifier,
    pub sockets: websocket::Sockets,
    /// `--cors-origin`: also allowed to open sockets.
    pub cors_origins: cors::AllowedOrigins,
    /// Each request's deadline and budgets (`MAILMIND_REQUEST_DEADLINE_MS`).
    pub budgets: mailmind::deadline::Budgets,
    /// The "KMS key" of the local KMS `Decrypt`: the data directory's master key.
    pub kms_key: mailmind::adapters::local_keyring::LocalKeyring,
}

/// Tokens the demo token and `--token` are valid for.
const TOKEN_TTL_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, PartialEq, Eq)]
struct Options {
    port: u16,
    data_dir: PathBuf,
    /// `--token USER`: print a token and exit.
    token_for: Option<String>,
    /// `--sandbox`: simulated providers.
    sandbox: bool,
    /// `--cors-origin`, each time it is given.
    cors_origins: cors::AllowedOrigins,
    /// The abuse limits.
    limits: Limits,
    /// `--revalidate-after`: the age at which a verdict is checked again.
    revalidate_after: Duration,
    /// `--revalidate-every`: the period of background runs; zero: none.
    revalidate_every: Duration,
    /// `--events-file`: where status changes are appended.
    events_file: Option<PathBuf>,
}

/// A handful of flags do not justify a command-line parser dependency.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        port: 3000,
        data_dir: PathBuf::from(".mailmind"),
        token_for: None,
        sandbox: false,
        cors_origins: cors::AllowedOrigins::default(),
        limits: Limits::default(),
        revalidate_after: RevalidationPolicy::DEFAULT_AFTER,
        revalidate_every: DEFAULT_REVALIDATE_EVERY,
        events_file: None,
    };
    let (mut validation_limit, mut validation_window) = (None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                options.port = value()?
                    .parse()
                    .map_err(|_| "--port must be a number from 0 to 65535")?
            }
            "--data-dir" => options.data_dir = PathBuf::from(value()?),
            "--token" => {
                let user = value()?;
                if mailmind::domain::UserId::parse(&user).is_none() {
                    return Err("--token needs a user id of 1 to 256 printable characters".into());
                }
                options.token_for = Some(user);
            }
            "--sandbox" if inline.is_none() => options.sandbox = true,
            "--cors-origin" => options.cors_origins.add(&value()?)?,
            "--validation-limit" => validation_limit = Some(value()?),
            "--validation-window" => validation_window = Some(value()?),
            "--max-connections-per-user" => {
                options.limits.max_connections_per_user = mailmind::config::max_connections(&value()?)?
            }
            "--previous-key-days" => options.limits.previous_key_days = mailmind::config::previous_key_days(&value()?)?,
            "--revalidate-after" => {
                options.revalidate_after = parse_duration(&value()?).map_err(|e| format!("--revalidate-after: {e}"))?;
                if options.revalidate_after.is_zero() {
                    return Err("--revalidate-after must be more than 0".into());
                }
            }
            "--revalidate-every" => {
                options.revalidate_every = parse_duration(&value()?).map_err(|e| format!("--revalidate-every: {e}"))?
            }
            "--events-file" => options.events_file = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    options.limits.validations =
        mailmind::config::validation_limit(validation_limit.as_deref(), validation_window.as_deref())?;
    Ok(Some(options))
}

#[tokio::main]
async fn main() -> ExitCode {
    mailmind::telemetry::init_json_logs();
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("mailmind-local: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(user) = &options.token_for {
        let (secret, _) = mailmind::auth::local_jwt_secret();
        println!("{}", Hs256Verifier::new(secret.as_bytes()).issue(user, TOKEN_TTL_SECS));
        return ExitCode::SUCCESS;
    }
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mailmind-local: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", options.port))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let base_url = format!("http://{address}");

    let providers: Arc<dyn mailmind::ports::ProviderClient> = if options.sandbox {
        Arc::new(mailmind::adapters::sandbox::SandboxProviderClient::new().map_err(|e| e.to_string())?)
    } else {
        mailmind::state::providers_from_env(mailmind::adapters::providers::PlainHttp::Allowed)
            .map_err(|e| e.to_string())?
    };
    let status_events = match &options.events_file {
        Some(path) => {
            let file = mailmind::adapters::status_events::EventsFile::open(path)
                .map_err(|e| format!("--events-file {}: {e}", path.display()))?;
            Some(Arc::new(file) as Arc<dyn mailmind::ports::StatusEvents>)
        }
        None => None,
    };
    let app = mailmind::state::local::build_with_limits(
        &options.data_dir,
        providers,
        &base_url,
        options.limits,
        status_events,
    )
    .map_err(|e| e.to_string())?;
    let (secret, secret_is_default) = mailmind::auth::local_jwt_secret();
    let verifier = Hs256Verifier::checked(secret.as_bytes()).map_err(|e| format!("LOCAL_JWT_SECRET: {e}"))?;
    let demo_token = verifier.issue(DEMO_USER, TOKEN_TTL_SECS);
    let access_key = mailmind::state::local::access_key(&options.data_dir).map_err(|e| e.to_string())?;
    let kms_key = mailmind::adapters::local_keyring::LocalKeyring::open_or_create(
        &options.data_dir.join(mailmind::state::local::MASTER_KEY_FILE),
    )
    .map_err(|e| e.to_string())?;
    let gateway = Arc::new(LocalGateway {
        app,
        ws_verifier: TokenVerifier::Hs256(Box::new(verifier.clone())),
        verifier,
        sockets: websocket::Sockets::default(),
        cors_origins: options.cors_origins.clone(),
        budgets: mailmind::deadline::Budgets::from_env().map_err(|e| e.to_string())?,
        kms_key,
    });
    let access_key_id = access_key.access_key_id().to_owned();
    let doorkeeper = Arc::new(doors::Doorkeeper::new(access_key));
    let settings_page = Arc::new(settings_page::SettingsPage {
        demo_token: demo_token.clone(),
        sandbox: options.sandbox,
    });

    if !options.revalidate_every.is_zero() {
        spawn_revalidation(Arc::clone(&gateway), options.revalidate_after, options.revalidate_every);
    }

    let router = Router::new()
        // The settings page; POST is AWS KMS's JSON protocol (Decrypt only).
        .route(
            "/",
            get(move || async move { settings_page.render() }).post(kms::handle),
        )
        .route("/ws", get(websocket::upgrade))
        .route(
            "/@connections/{connection_id}",
            post(websocket::post_to_connection)
                .get(websocket::get_connection)
                .delete(websocket::delete_connection),
        )
        // AWS Lambda's Invoke API for credentials-resolve.
        .route("/2015-03-31/functions/{function}/invocations", post(invoke::invoke))
        // The REST API's OpenAPI document (no token).
        .route(mailmind::openapi::DOCUMENT_PATH, axum::routing::any(openapi::document))
        .fallback(gateway::rest)
        .with_state(gateway)
        // Invoke, KMS and @connections: the data directory's access key only.
        .layer(axum::middleware::from_fn_with_state(doorkeeper, doors::guard))
        // For this machine only: DNS rebinding gets no answer.
        .layer(axum::middleware::from_fn(loopback::loopback_only))
        // Headers over API Gateway's 10 KiB: the contract's JSON error.
        .layer(axum::middleware::from_fn(header_limit::limit_headers));
    let router = options.cors_origins.apply(router);
    // Before the banner: whoever reads it may signal at once.
    let shutdown = shutdown_signal()?;

    let data_dir = std::fs::canonicalize(&options.data_dir).unwrap_or(options.data_dir);
    let credentials_file = data_dir.join(mailmind::state::local::ACCESS_KEY_FILE);
    println!(
        "MailMind credential service listening on {base_url}\n\
         data directory: {}\n\
         JWT secret: {}\n\
         demo token (user \"{DEMO_USER}\", valid 30 days):\n  {demo_token}\n\
         try:\n  curl -s {base_url}/api/v1/credentials/ -H \"Authorization: Bearer {demo_token}\"\n\
         live key status: ws://{address}/ws?token=<token>\n\
         other MailMind functions: Lambda Invoke of credentials-resolve, KMS Decrypt at endpoint {base_url}\n\
         AWS access key: {access_key_id} (secret in {credentials}, mode 0600; \
         AWS_SHARED_CREDENTIALS_FILE={credentials})\n\
         settings page: {base_url}/\n{sandbox}{cors}",
        data_dir.display(),
        if secret_is_default {
            "development default (set LOCAL_JWT_SECRET to change it)"
        } else {
            "from LOCAL_JWT_SECRET"
        },
        credentials = credentials_file.display(),
        sandbox = if options.sandbox {
            "SANDBOX ON: key checks are simulated and no provider is called; a key containing \
             sandbox-<outcome> gets that outcome (valid, invalid, rate-limited, quota-exhausted, timeout, \
             unavailable, bad-response), any other key is invalid\n"
        } else {
            ""
        },
        cors = if options.cors_origins.is_empty() {
            String::new()
        } else {
            format!("CORS allowed for: {}\n", options.cors_origins.list().join(", "))
        },
    );
    tracing::info!(address = %address, "listening");

    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Background re-validation in this process, the same run the scheduled
/// `credentials-revalidate` function makes: one every `every`, each within
/// that much time (so runs do not pile up).
fn spawn_revalidation(gateway: Arc<LocalGateway>, after: Duration, every: Duration) {
    let policy = RevalidationPolicy {
        revalidate_after: after,
        budget: every,
        concurrency_per_provider: RevalidationPolicy::DEFAULT_CONCURRENCY,
    };
    tracing::info!(
        after_secs = after.as_secs(),
        every_secs = every.as_secs(),
        "background re-validation on"
    );
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            gateway.app.credentials.revalidate_due(&policy).await;
        }
    });
}

/// Resolves on SIGINT or SIGTERM, so in-flight requests finish and SQLite
/// closes cleanly. The handlers are installed when this is called, not when
/// the future is first polled: a SIGTERM right after the banner is then a
/// clean shutdown too, never the default action that kills the process.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_parse_with_defaults() {
        let defaults = Options {
            port: 3000,
            data_dir: ".mailmind".into(),
            token_for: None,
            sandbox: false,
            cors_origins: cors::AllowedOrigins::default(),
            limits: Limits::default(),
            revalidate_after: Duration::from_secs(24 * 3600),
            revalidate_every: Duration::from_secs(3600),
            events_file: None,
        };
        assert_eq!(args(&[]).unwrap().unwrap(), defaults);
        assert_eq!(
            args(&["--events-file", "/tmp/events.jsonl"])
                .unwrap()
                .unwrap()
                .events_file,
            Some("/tmp/events.jsonl".into())
        );
        assert_eq!(
            args(&["--port", "0", "--data-dir=/tmp/x"]).unwrap().unwrap(),
            Options {
                port: 0,
                data_dir: "/tmp/x".into(),
                ..defaults
            }
        );
        assert_eq!(args(&["--help"]).unwrap(), None);
        assert_eq!(
            args(&["--token", "alice"]).unwrap().unwrap().token_for.as_deref(),
            Some("alice")
        );
        assert!(args(&["--token", ""]).is_err());
        assert!(args(&["--port", "70000"]).is_err());
        assert!(args(&["--port"]).is_err());
        assert!(args(&["--verbose"]).is_err());
        let limits = args(&[
            "--validation-limit=3",
            "--validation-window",
            "600",
            "--max-connections-per-user",
            "2",
            "--previous-key-days=30",
        ])
        .unwrap()
        .unwrap()
        .limits;
        assert_eq!(limits.validations.per_window, 3);
        assert_eq!(limits.validations.window, chrono::Duration::seconds(600));
        assert_eq!(limits.max_connections_per_user, 2);
        assert_eq!(limits.previous_key_days, 30);
        assert!(args(&["--previous-key-days", "0"]).is_err());
        assert!(args(&["--validation-limit", "x"]).is_err());
        assert!(args(&["--validation-window", "0"]).is_err());
        assert!(args(&["--max-connections-per-user", "-1"]).is_err());
    }

    #[test]
    fn sandbox_and_cors_origins_parse() {
        let options = args(&[
            "--sandbox",
            "--cors-origin",
            "http://localhost:5173",
            "--cors-origin=https://app.example.com",
        ])
        .unwrap()
        .unwrap();
        assert!(options.sandbox);
        assert_eq!(
            options.cors_origins.list(),
            ["http://localhost:5173", "https://app.example.com"]
        );
        assert!(args(&["--sandbox=yes"]).is_err());
        assert!(args(&["--cors-origin", "*"]).is_err());
        assert!(args(&["--cors-origin"]).is_err());
        let quick = args(&["--revalidate-after", "2s", "--revalidate-every=0"])
            .unwrap()
            .unwrap();
        assert_eq!(quick.revalidate_after, Duration::from_secs(2));
        assert_eq!(quick.revalidate_every, Duration::ZERO);
        assert!(args(&["--revalidate-after", "0"]).is_err());
        assert!(args(&["--revalidate-every", "soon"]).is_err());
    }
}
