//! MailMind credential service: the library every Lambda function and the
//! local server link. Domain and ports are I/O-free; adapters implement the
//! ports; handlers are the route entry points; the service is the one
//! implementation of every behaviour. docs/ARCHITECTURE.md draws the layers
//! and has the recipes for adding a provider, a route, a function or a store.

#![warn(missing_docs)]

pub mod adapters;
pub mod audit;
pub mod auth;
pub mod config;
pub mod deadline;
pub mod deploy;
pub mod domain;
pub mod envelope;
pub mod handlers;
pub mod ids;
pub mod lambda;
pub mod metrics;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod ports;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod time;

pub use lambda_http::aws_lambda_events as lambda_events;
pub use state::AppState;
