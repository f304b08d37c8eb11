//! The application state every handler takes, and how to build it for each
//! place the service runs. Built once per process.

use std::sync::Arc;

use crate::adapters::providers::{HttpProviderClient, ProviderClientConfig};
use crate::ports::{CredentialStore, Keyring, Notifier, ProviderClient};
use crate::service::CredentialService;

pub struct AppState {
    pub credentials: CredentialService,
}

impl AppState {
    pub fn new(
        store: Arc<dyn CredentialStore>,
        keyring: Arc<dyn Keyring>,
        providers: Arc<dyn ProviderClient>,
        notifier: Arc<dyn Notifier>,
    ) -> AppState {
        AppState {
            credentials: CredentialService::new(store, keyring, providers, notifier),
        }
    }

    pub fn store(&self) -> &Arc<dyn CredentialStore> {
        self.credentials.store()
    }
}

/// The real provider client from the environment's `PROVIDER_BASE_URL_<ID>`.
pub fn providers_from_env() -> Result<Arc<dyn ProviderClient>, StartupError> {
    let config = ProviderClientConfig::from_env().map_err(|e| StartupError(e.to_string()))?;
    Ok(Arc::new(HttpProviderClient::new(config)))
}

/// Configuration that keeps the service from starting, said in one sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

#[cfg(feature = "local")]
pub mod local {
    //! One machine: SQLite file and master key file in a data directory.

    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Arc;

    use super::{AppState, StartupError};
    use crate::adapters::local_keyring::LocalKeyring;
    use crate::adapters::notifier::ApiGatewayNotifier;
    use crate::adapters::sqlite_store::SqliteStore;
    use crate::ports::{CredentialStore, ProviderClient};

    pub const DATABASE_FILE: &str = "mailmind.db";
    pub const MASTER_KEY_FILE: &str = "master.key";

    /// Opens (or creates, mode 0700) the data directory, its master key and
    /// database; pushes go to `connections_endpoint` (the local `@connections`).
    pub fn build(
        data_dir: &Path,
        providers: Arc<dyn ProviderClient>,
        connections_endpoint: &str,
    ) -> Result<AppState, StartupError> {
        let shown = data_dir.display();
        if !data_dir.exists() {
            fs::create_dir_all(data_dir)
                .map_err(|e| StartupError(format!("cannot create data directory {shown}: {e}")))?;
            fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| StartupError(format!("cannot restrict data directory {shown}: {e}")))?;
        } else if !data_dir.is_dir() {
            return Err(StartupError(format!("data directory {shown} is not a directory")));
        }
        let keyring =
            LocalKeyring::open_or_create(&data_dir.join(MASTER_KEY_FILE)).map_err(|e| StartupError(e.to_string()))?;
        let store: Arc<dyn CredentialStore> = Arc::new(
            SqliteStore::open(&data_dir.join(DATABASE_FILE))
                .map_err(|e| StartupError(format!("cannot open the database in {shown}: {e}")))?,
        );
        let notifier = ApiGatewayNotifier::new(
            ApiGatewayNotifier::local_client(connections_endpoint),
            Arc::clone(&store),
        );
        Ok(AppState::new(store, Arc::new(keyring), providers, Arc::new(notifier)))
    }
}
