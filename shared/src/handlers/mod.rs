//! Entry points shared by the Lambda functions and the local server.

pub mod keys;
pub mod protocol;
pub mod rest;
pub mod revalidate;
pub mod websocket;

pub use rest::{
    Route, RouteMatch, check_credential, create_credential, credential_activity, delete_credential, get_credential,
    list_credentials, list_models, update_credential,
};
