//! Entry points shared by the Lambda functions and the local server.

pub mod keys;
pub mod protocol;
pub mod rest;
pub mod revalidate;
pub mod websocket;

pub use rest::{
    Route, RouteMatch, check_credential, check_key, create_credential, create_key, credential_activity,
    delete_credential, delete_key, get_credential, get_key, key_models, list_credentials, list_keys, list_models,
    patch_key, replace_key, rollback_key, update_credential,
};
