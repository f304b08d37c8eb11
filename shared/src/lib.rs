//! MailMind credential service: the library every Lambda function and the
//! local server link. Domain and ports are I/O-free; adapters implement the
//! ports; handlers are the route entry points; the service is the one
//! implementation of every behaviour.

pub mod adapters;
pub mod auth;
pub mod domain;
pub mod envelope;
pub mod handlers;
pub mod ids;
pub mod ports;
pub mod service;
pub mod state;
pub mod telemetry;

pub use lambda_http::aws_lambda_events as lambda_events;
pub use state::AppState;
