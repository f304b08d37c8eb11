//! Every integration and end-to-end test of the workspace, in one test
//! binary: each module links the AWS SDK, SQLite and axum, so one binary
//! links them once instead of once per file.
//!
//! Run one area with a filter on its module path, e.g.
//! `cargo test -p mailmind-tests --test suite e2e_local::` or
//! `cargo test -p mailmind-tests --test suite providers::`.
//!
//! A new area is a new module here, never a new file in `tests/tests/`
//! (which would be a binary of its own).

mod asyncapi;
mod bounded;
mod consistency;
mod cors;
mod deadline;
mod e2e_local;
mod e2e_revalidate;
mod e2e_websocket;
mod egress_guard;
mod keyring_kms;
mod keyring_local;
mod lambda_functions;
mod lambda_limits;
mod lambda_resolve;
mod lambda_revalidate;
mod lambda_websocket;
mod local_doors;
mod log_leaks;
mod metrics;
mod openapi;
mod providers;
mod sam_local;
mod sandbox;
mod service_keys;
mod service_limits;
mod settings_page;
mod sharper_verdicts;
mod status_events;
mod store_dynamodb;
mod store_sqlite;
mod template;
mod ws_authorizer;
mod ws_authorizer_hardening;
mod ws_check;
