//! The application state every handler takes, and how to build it for each
//! place the service runs. Built once per process.

use std::sync::Arc;

use crate::adapters::notifier::NoNotifier;
use crate::adapters::providers::{HttpProviderClient, PlainHttp, ProviderClientConfig};
use crate::config::{ConfigError, Limits};
use crate::domain::endpoint::Endpoint;
use crate::domain::{ApiKey, CheckOutcome, ErrorReason, ProviderSpec};
use crate::ports::{
    ActivityStore, ConnectionStore, CredentialStore, DataKey, EncryptionContext, Keyring, KeyringError, LimitStore,
    Notifier, ProviderClient, WrappedKey,
};
use crate::service::{ConnectionService, CredentialService, RevalidationPolicy};

/// The services every handler reaches through.
pub struct AppState {
    /// Credentials: the REST routes.
    pub credentials: CredentialService,
    /// WebSocket connections: `$connect` and `$disconnect`.
    pub connections: ConnectionService,
}

impl AppState {
    /// A state over `store` (one adapter keeps credentials and connections);
    /// add only the ports a function uses, so a binary that never seals a key
    /// or calls a provider links neither client.
    pub fn builder<S: CredentialStore + ConnectionStore + LimitStore + ActivityStore + 'static>(
        store: Arc<S>,
    ) -> AppStateBuilder {
        AppStateBuilder {
            activity: Arc::clone(&store) as Arc<dyn ActivityStore>,
            credentials: Arc::clone(&store) as Arc<dyn CredentialStore>,
            limit_store: Arc::clone(&store) as Arc<dyn LimitStore>,
            limits: Limits::default(),
            connections: store,
            keyring: Arc::new(Unconfigured),
            providers: Arc::new(Unconfigured),
            notifier: Arc::new(NoNotifier),
            status_events: None,
        }
    }
}

/// What the scheduled `credentials-revalidate` function holds: the
/// validating services and the policy of its runs.
pub struct RevalidationState {
    /// Store, key service, provider client and pushes.
    pub app: AppState,
    /// Age, time budget and per-provider concurrency of a run.
    pub policy: RevalidationPolicy,
}

/// What `credentials-resolve` holds on Lambda: the services over the table
/// (no keyring: it answers keys sealed) and where its `rejected` reports,
/// which must open the key, are relayed.
pub struct ResolveState {
    /// Store, provider base URLs and pushes.
    pub app: AppState,
    /// The function that runs a `rejected` report.
    pub relay: Arc<dyn crate::ports::ReportRelay>,
}

/// Assembles an [`AppState`] from the ports a function needs.
pub struct AppStateBuilder {
    credentials: Arc<dyn CredentialStore>,
    connections: Arc<dyn ConnectionStore>,
    limit_store: Arc<dyn LimitStore>,
    activity: Arc<dyn ActivityStore>,
    limits: Limits,
    keyring: Arc<dyn Keyring>,
    providers: Arc<dyn ProviderClient>,
    notifier: Arc<dyn Notifier>,
    status_events: Option<Arc<dyn crate::ports::StatusEvents>>,
}

impl AppStateBuilder {
    /// The abuse limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Seals and opens keys (create, update, check).
    pub fn keyring(mut self, keyring: Arc<dyn Keyring>) -> Self {
        self.keyring = keyring;
        self
    }

    /// Asks providers about keys (create, update, check).
    pub fn providers(mut self, providers: Arc<dyn ProviderClient>) -> Self {
        self.providers = providers;
        self
    }

    /// Pushes status messages (create, update, check).
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Publishes every change of a key's status (none when not given).
    pub fn status_events(mut self, events: Option<Arc<dyn crate::ports::StatusEvents>>) -> Self {
        self.status_events = events;
        self
    }

    /// The state.
    pub fn build(self) -> AppState {
        let mut credentials = CredentialService::new(self.credentials, self.keyring, self.providers, self.notifier)
            .with_validation_limit(self.limit_store, self.limits.validations)
            .with_activity(self.activity)
            .with_previous_key_days(self.limits.previous_key_days);
        if let Some(events) = self.status_events {
            credentials = credentials.with_status_events(events);
        }
        AppState {
            credentials,
            connections: ConnectionService::new(self.connections)
                .with_max_per_user(self.limits.max_connections_per_user),
        }
    }
}

/// Stands in for a port a function was not built with: using it is a
/// deployment mistake, answered as an internal error, never a panic.
struct Unconfigured;

#[async_trait::async_trait]
impl Keyring for Unconfigured {
    async fn generate_data_key(&self, _: &EncryptionContext) -> Result<DataKey, KeyringError> {
        Err(KeyringError::Internal(
            "this function has no key service configured".into(),
        ))
    }

    async fn decrypt_data_key(
        &self,
        _: WrappedKey<'_>,
        _: &EncryptionContext,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, KeyringError> {
        Err(KeyringError::Internal(
            "this function has no key service configured".into(),
        ))
    }
}

#[async_trait::async_trait]
impl ProviderClient for Unconfigured {
    async fn check(&self, provider: &'static ProviderSpec, _: Option<&Endpoint>, _: &ApiKey) -> CheckOutcome {
        tracing::error!(
            provider = provider.id,
            "this function has no provider client configured"
        );
        CheckOutcome::Failed {
            reason: ErrorReason::ProviderUnavailable,
            retry_after_secs: None,
        }
    }
}

/// The real provider client from the environment's `PROVIDER_BASE_URL_<ID>`.
pub fn providers_from_env(plain_http: PlainHttp) -> Result<Arc<dyn ProviderClient>, ConfigError> {
    let config = ProviderClientConfig::from_env(plain_http).map_err(|e| ConfigError(e.to_string()))?;
    Ok(Arc::new(HttpProviderClient::new(config)))
}

#[cfg(feature = "local")]
pub mod local {
    //! One machine: SQLite file and master key file in a data directory.

    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Arc;

    use super::{AppState, ConfigError, Limits};
    use crate::adapters::local_access_key::LocalAccessKey;
    use crate::adapters::local_keyring::LocalKeyring;
    use crate::adapters::notifier::ApiGatewayNotifier;
    use crate::adapters::sqlite_store::SqliteStore;
    use crate::ports::ProviderClient;

    /// The SQLite database in the data directory.
    pub const DATABASE_FILE: &str = "mailmind.db";
    /// The 32-byte master key in the data directory.
    pub const MASTER_KEY_FILE: &str = "master.key";
    /// The local server's AWS access key (shared-credentials format, mode
    /// 0600): what its Invoke, `@connections` and KMS doors accept.
    pub const ACCESS_KEY_FILE: &str = "aws-credentials";

    /// The data directory's access key, made on first use (mode 0600); an
    /// existing file another user owns or others may read is refused.
    pub fn access_key(data_dir: &Path) -> Result<LocalAccessKey, ConfigError> {
        let path = data_dir.join(ACCESS_KEY_FILE);
        if path.exists() {
            refuse_if_shared(&path, "credentials file", 0o600)?;
        }
        LocalAccessKey::open_or_create(&path).map_err(|e| ConfigError(e.to_string()))
    }

    /// Refuses `path` (the data directory or the master key) when another
    /// user owns it or group or others have any access to it: whoever can
    /// read the master key and the database can decrypt every stored key.
    /// The message says how to fix it (`chmod <mode> <path>`).
    fn refuse_if_shared(path: &Path, what: &str, fix_mode: u32) -> Result<(), ConfigError> {
        use std::os::unix::fs::MetadataExt;
        let shown = path.display();
        let metadata =
            fs::metadata(path).map_err(|e| ConfigError(format!("cannot inspect the {what} {shown}: {e}")))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if metadata.uid() != me {
            return Err(ConfigError(format!(
                "the {what} {shown} belongs to user id {}, not to this user ({me}); \
                 run as its owner, or fix it with: chown $(id -u) {shown} && chmod {fix_mode:o} {shown}",
                metadata.uid()
            )));
        }
        let mode = metadata.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError(format!(
                "the {what} {shown} is accessible by group or others (mode {mode:o}); \
                 fix it with: chmod {fix_mode:o} {shown}"
            )));
        }
        Ok(())
    }

    /// Opens (or creates, mode 0700) the data directory, its master key and
    /// access key (mode 0600) and database, refusing an existing directory or
    /// key file that another user owns or group or others may access; pushes
    /// go to `connections_endpoint` (the local `@connections`).
    pub fn build(
        data_dir: &Path,
        providers: Arc<dyn ProviderClient>,
        connections_endpoint: &str,
    ) -> Result<AppState, ConfigError> {
        build_with_limits(data_dir, providers, connections_endpoint, Limits::default(), None)
    }

    /// [`build`] with these abuse limits and, when given, where status
    /// changes are published (the local server's flags).
    pub fn build_with_limits(
        data_dir: &Path,
        providers: Arc<dyn ProviderClient>,
        connections_endpoint: &str,
        limits: Limits,
        status_events: Option<Arc<dyn crate::ports::StatusEvents>>,
    ) -> Result<AppState, ConfigError> {
        let shown = data_dir.display();
        if !data_dir.exists() {
            fs::create_dir_all(data_dir)
                .map_err(|e| ConfigError(format!("cannot create data directory {shown}: {e}")))?;
            fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| ConfigError(format!("cannot restrict data directory {shown}: {e}")))?;
        } else if !data_dir.is_dir() {
            return Err(ConfigError(format!("data directory {shown} is not a directory")));
        } else {
            refuse_if_shared(data_dir, "data directory", 0o700)?;
        }
        let master_key = data_dir.join(MASTER_KEY_FILE);
        if master_key.exists() {
            refuse_if_shared(&master_key, "master key file", 0o600)?;
        }
        let keyring = LocalKeyring::open_or_create(&master_key).map_err(|e| ConfigError(e.to_string()))?;
        let store = Arc::new(
            SqliteStore::open(&data_dir.join(DATABASE_FILE))
                .map_err(|e| ConfigError(format!("cannot open the database in {shown}: {e}")))?,
        );
        let access_key = access_key(data_dir)?;
        let notifier = ApiGatewayNotifier::new(
            ApiGatewayNotifier::local_client(
                connections_endpoint,
                access_key.access_key_id(),
                secrecy::ExposeSecret::expose_secret(access_key.secret()),
            ),
            Arc::clone(&store) as _,
        );
        Ok(AppState::builder(store)
            .keyring(Arc::new(keyring))
            .providers(providers)
            .notifier(Arc::new(notifier))
            .limits(limits)
            .status_events(status_events)
            .build())
    }
}

#[cfg(feature = "aws")]
pub mod aws {
    //! AWS: DynamoDB table, KMS key, API Gateway Management API. Every client
    //! comes from one `aws-config` load, which honours the standard variables
    //! (region, credentials, `AWS_ENDPOINT_URL`), and is built once per process.

    use std::sync::Arc;

    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_config::timeout::TimeoutConfig;
    use aws_config::{BehaviorVersion, SdkConfig};
    use aws_sdk_dynamodb::config::SharedHttpClient;
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};

    use super::{AppState, ConfigError, Limits, ResolveState, RevalidationState};
    use crate::adapters::dynamo_store::DynamoStore;
    use crate::adapters::kms_keyring::KmsKeyring;
    use crate::adapters::lambda_relay::LambdaReportRelay;
    use crate::adapters::notifier::{ApiGatewayNotifier, LazyNotifier, NoNotifier};
    use crate::adapters::providers::PlainHttp;
    use crate::adapters::status_events::EventBridgeEvents;
    use crate::config::env;
    use crate::ports::{Keyring, Notifier};

    /// The roots of Amazon Trust Services, which sign every AWS endpoint.
    const AWS_ROOTS: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

    /// The SDK's HTTPS client, trusting AWS's own roots instead of the system
    /// store: loading and parsing the system store is most of a function's
    /// init time (docs/PERFORMANCE.md), and AWS endpoints need none of it.
    /// `AWS_CA_BUNDLE` (the SDKs' standard variable) adds a bundle of one's own.
    fn aws_https_client() -> Result<SharedHttpClient, ConfigError> {
        let mut trust = TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(AWS_ROOTS);
        if let Some(bundle) = env("AWS_CA_BUNDLE") {
            let pem =
                std::fs::read(&bundle).map_err(|e| ConfigError(format!("cannot read AWS_CA_BUNDLE {bundle}: {e}")))?;
            trust = trust.with_pem_certificate(pem);
        }
        let tls = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| ConfigError(format!("TLS set-up: {e}")))?;
        Ok(aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .tls_context(tls)
            .build_https())
    }

    /// The AWS side of a function: SDK configuration and the table.
    pub struct Aws {
        config: SdkConfig,
        store: Arc<DynamoStore>,
        limits: Limits,
    }

    impl Aws {
        /// Loads the SDK configuration and opens `TABLE_NAME`.
        pub async fn from_env() -> Result<Aws, ConfigError> {
            let table = env("TABLE_NAME").ok_or_else(|| ConfigError("TABLE_NAME must be set".into()))?;
            let limits = Limits::from_env()?;
            // A hung dependency must fail the request (503) well inside the
            // function timeout, not eat it: every SDK call gets its share of
            // the request's one deadline (`crate::deadline`).
            let budgets = crate::deadline::Budgets::from_env().map_err(|e| ConfigError(e.to_string()))?;
            let timeouts = TimeoutConfig::builder()
                .connect_timeout(budgets.sdk_connect)
                .operation_attempt_timeout(budgets.sdk_attempt)
                .operation_timeout(budgets.sdk_operation)
                .build();
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(aws_https_client()?)
                .timeout_config(timeouts);
            // Lambda puts the region and the role's credentials in the
            // environment: naming them spares every cold start the provider
            // chains (profile files, container endpoint, IMDS), about 0.3 ms
            // of init. Elsewhere (SnapStart, a laptop) the chains still apply.
            if let Some(region) = env("AWS_REGION") {
                loader = loader.region(aws_config::Region::new(region));
            }
            if env("AWS_ACCESS_KEY_ID").is_some() {
                loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
            }
            let config = loader.load().await;
            let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table));
            Ok(Aws { config, store, limits })
        }

        /// The KMS keyring over `KMS_KEY_ID`.
        pub fn kms_keyring(&self) -> Result<Arc<dyn Keyring>, ConfigError> {
            Ok(Arc::new(self.kms()?))
        }

        fn kms(&self) -> Result<KmsKeyring, ConfigError> {
            let key_id = env("KMS_KEY_ID").ok_or_else(|| ConfigError("KMS_KEY_ID must be set".into()))?;
            Ok(KmsKeyring::new(aws_sdk_kms::Client::new(&self.config), key_id))
        }

        /// For routes that only read, delete or track connections: the table alone.
        pub fn table_state(&self) -> AppState {
            AppState::builder(Arc::clone(&self.store)).limits(self.limits).build()
        }

        /// Where status changes go: `STATUS_EVENTS=eventbridge` (the
        /// template sets it for the functions granted `events:PutEvents`)
        /// publishes to the default bus; unset, nowhere.
        pub fn status_events(&self) -> Result<Option<Arc<dyn crate::ports::StatusEvents>>, ConfigError> {
            match env("STATUS_EVENTS").as_deref() {
                None => Ok(None),
                Some("eventbridge") => {
                    let client = aws_sdk_eventbridge::Client::new(&self.config);
                    Ok(Some(Arc::new(EventBridgeEvents::new(client))))
                }
                Some(other) => Err(ConfigError(format!(
                    "STATUS_EVENTS must be eventbridge or unset, not {other:?}"
                ))),
            }
        }

        /// For routes that validate keys: table, KMS, provider client and pushes.
        pub fn validating_state(&self) -> Result<AppState, ConfigError> {
            Ok(AppState::builder(Arc::clone(&self.store))
                .keyring(self.kms_keyring()?)
                .providers(super::providers_from_env(PlainHttp::Refused)?)
                .notifier(self.notifier())
                .status_events(self.status_events()?)
                .limits(self.limits)
                .build())
        }

        /// For `credentials-revalidate`: what validating routes use, and the
        /// run's policy from `REVALIDATE_AFTER`, `REVALIDATE_BUDGET` and
        /// `REVALIDATE_CONCURRENCY`.
        pub fn revalidating_state(&self) -> Result<RevalidationState, ConfigError> {
            Ok(RevalidationState {
                app: self.validating_state()?,
                policy: crate::config::revalidation_policy_from_env()?,
            })
        }

        /// For `credentials-resolve`: table, provider base URLs and pushes,
        /// whose client is built on the first report that pushes (a resolve
        /// never does); no KMS. `rejected` reports go to
        /// `REPORT_RELAY_FUNCTION`, invoked once (no retry: the re-check it
        /// runs is debounced anyway) within the provider timeout.
        pub fn resolving_state(&self) -> Result<ResolveState, ConfigError> {
            let aws = Aws {
                config: self.config.clone(),
                store: Arc::clone(&self.store),
                limits: self.limits,
            };
            let notifier = LazyNotifier::new(move || aws.notifier());
            let relay_function =
                env("REPORT_RELAY_FUNCTION").ok_or_else(|| ConfigError("REPORT_RELAY_FUNCTION must be set".into()))?;
            let budgets = crate::deadline::Budgets::from_env().map_err(|e| ConfigError(e.to_string()))?;
            let timeouts = TimeoutConfig::builder()
                .connect_timeout(budgets.sdk_connect)
                .operation_timeout(budgets.request)
                .build();
            let lambda = aws_sdk_lambda::config::Builder::from(&self.config)
                .timeout_config(timeouts)
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .build();
            Ok(ResolveState {
                app: AppState::builder(Arc::clone(&self.store))
                    .providers(super::providers_from_env(PlainHttp::Refused)?)
                    .notifier(Arc::new(notifier))
                    .status_events(self.status_events()?)
                    .build(),
                relay: Arc::new(LambdaReportRelay::new(
                    aws_sdk_lambda::Client::from_conf(lambda),
                    relay_function,
                )),
            })
        }

        /// Pushes over the WebSocket API at `WS_MANAGEMENT_ENDPOINT`
        /// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`);
        /// without one there is nobody to tell.
        pub fn notifier(&self) -> Arc<dyn Notifier> {
            match env("WS_MANAGEMENT_ENDPOINT") {
                Some(endpoint) => {
                    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&self.config)
                        .endpoint_url(endpoint)
                        .build();
                    let client = aws_sdk_apigatewaymanagement::Client::from_conf(config);
                    Arc::new(ApiGatewayNotifier::new(client, Arc::clone(&self.store) as _))
                }
                None => Arc::new(NoNotifier),
            }
        }
    }
}
