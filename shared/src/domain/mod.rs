//! The domain: providers, keys, users, credentials, models. No I/O here.

pub mod activity;
pub mod api_key;
pub mod credential;
pub mod endpoint;
pub mod key_prefix;
pub mod model;
pub mod named_key;
pub mod provider;
pub mod quota;
pub mod status_change;
pub mod usage;
pub mod user;
mod wire_enum;

pub use api_key::{ApiKey, KeyInputError};
pub use credential::{
    CheckOutcome, CheckState, CredentialStatus, CredentialView, ErrorReason, FailedAttempt, PreviousKey, PreviousNote,
    SealedKey, StatusEvent, StoredCredential,
};
pub use model::{ModelInfo, ModelList, ModelView};
pub use provider::ProviderSpec;
pub use status_change::StatusChange;
pub use usage::{ReportResult, UsageOutcome};
pub use user::UserId;
