//! Adapters: the ports implemented over real infrastructure.

#[cfg(feature = "aws")]
pub mod aws_errors;
#[cfg(any(feature = "aws", feature = "local"))]
pub mod credential_record;
#[cfg(feature = "aws")]
pub mod dynamo_store;
pub mod egress;
#[cfg(feature = "aws")]
pub mod kms_keyring;
#[cfg(feature = "aws")]
pub mod lambda_relay;
#[cfg(feature = "local")]
pub mod local_access_key;
#[cfg(feature = "local")]
pub mod local_keyring;
#[cfg(feature = "aws")]
pub mod model_chunks;
pub mod notifier;
pub mod provider_wire;
pub mod providers;
#[cfg(feature = "local")]
pub mod sandbox;
#[cfg(feature = "local")]
pub mod sqlite_store;
pub mod status_events;
