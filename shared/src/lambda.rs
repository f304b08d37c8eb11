//! What every Lambda function's `main` does, written once: JSON logs, the
//! clients built once per process, then every event handed to a shared
//! handler, a plain `async fn(&State, Event) -> Answer`. A `main` names its
//! clients and its handler, nothing else:
//!
//! ```text
//! let state = mailmind::lambda::aws().await?.validating_state()?;
//! mailmind::lambda::serve_http(state, mailmind::handlers::check_credential).await
//! ```
//!
//! Everything here is generic, so each function links only the handler and
//! the clients its `main` names.

use std::convert::Infallible;
use std::future::Future;

use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{Body, Request, RequestExt, Response, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use lambda_http::Error;

/// Installs the JSON logs and loads the AWS clients' configuration and table
/// from the environment (`TABLE_NAME`, the standard AWS variables).
#[cfg(feature = "aws")]
pub async fn aws() -> Result<crate::state::aws::Aws, Error> {
    crate::telemetry::init_json_logs();
    Ok(crate::state::aws::Aws::from_env().await?)
}

/// A handler over a state `S`: `async fn(&S, E) -> R` whose future is `Send`
/// (as the Lambda runtime requires). Implemented for every such function.
pub trait Handler<'a, S: 'a, E, R>: Fn(&'a S, E) -> Self::Future {
    /// The handler's future.
    type Future: Future<Output = R> + Send + 'a;
}

impl<'a, S: 'a, E, R, F, Fut> Handler<'a, S, E, R> for F
where
    F: Fn(&'a S, E) -> Fut,
    Fut: Future<Output = R> + Send + 'a,
{
    type Future = Fut;
}

/// Serves HTTP API (payload 2.0) events with `handler` over `state`, each
/// under one deadline ([`crate::deadline`]), never later than the function's.
pub async fn serve_http<S, H>(state: S, handler: H) -> Result<(), Error>
where
    S: Sync,
    H: for<'a> Handler<'a, S, Request, Response<Body>>,
{
    crate::telemetry::init_json_logs();
    let budgets = crate::deadline::Budgets::from_env()?;
    lambda_http::run(service_fn(|request: Request| {
        let function_deadline = request.lambda_context_ref().map(|c| c.deadline());
        let answer = crate::deadline::scope_within(budgets, function_deadline, handler(&state, request));
        async move { Ok::<_, Infallible>(answer.await) }
    }))
    .await
}

/// Serves events of type `E` (WebSocket routes, the `$connect` authorizer)
/// with `handler` over `state`, each under one deadline ([`crate::deadline`]).
pub async fn serve_events<S, E, R, H>(state: S, handler: H) -> Result<(), Error>
where
    S: Sync,
    E: DeserializeOwned,
    R: Serialize,
    H: for<'a> Handler<'a, S, E, R>,
{
    crate::telemetry::init_json_logs();
    let budgets = crate::deadline::Budgets::from_env()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<E>| {
        let function_deadline = Some(event.context.deadline());
        let answer = crate::deadline::scope_within(budgets, function_deadline, handler(&state, event.payload));
        async move { Ok::<_, Error>(answer.await) }
    }))
    .await
}
