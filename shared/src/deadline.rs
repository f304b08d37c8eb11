//! One deadline per request, and every budget derived from it.
//!
//! A validating request chains reads, a key service call, a provider check,
//! one store write and pushes. Bounded separately, their sum could outlast
//! the function timeout: Lambda is killed, API Gateway answers 502/504, yet
//! the write may have committed, and the client's retry then gets `409`.
//! So each request gets one deadline ([`DEFAULT_REQUEST_BUDGET`], inside the
//! 29 s function timeout and the HTTP API's 30 s), and:
//! - every AWS SDK call is bounded by [`Budgets::sdk_operation`] (set once
//!   per process in `state.rs`);
//! - the provider check gets what is left minus the store write's and the
//!   final push's reserves ([`provider_budget`]);
//! - a store write starts only while its whole budget still fits before the
//!   deadline ([`write_fits`]); otherwise the request answers `503` with
//!   nothing stored.
//!
//! [`scope`] sets the deadline for a request's future (`lambda::serve_http`,
//! `lambda::serve_events`, the local gateway); outside one nothing is bounded
//! here (unit tests, tools).

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The whole of one request when `MAILMIND_REQUEST_DEADLINE_MS` is not set:
/// 4 s inside the 29 s function timeout (process start-up, the last push, and
/// the runtime's own answer fit there) and 5 s inside the HTTP API's 30 s.
pub const DEFAULT_REQUEST_BUDGET: Duration = Duration::from_secs(25);

/// The variable that overrides [`DEFAULT_REQUEST_BUDGET`], in milliseconds
/// (the tests use a short one).
pub const DEADLINE_ENV: &str = "MAILMIND_REQUEST_DEADLINE_MS";

/// The SDK operations one store write may take: `dynamo_store` retries a
/// transaction cancelled by a conflict up to 3 times (`TRANSACTION_ATTEMPTS`).
const STORE_WRITE_OPERATIONS: u32 = 3;

/// Every budget of a request, derived from its whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// The whole request.
    pub request: Duration,
    /// One AWS SDK operation, its retries included: 1/8 of the request, so
    /// the reads, the key service call and a store write's 3 operations
    /// together take at most 5/8 of it, leaving the rest to the provider.
    pub sdk_operation: Duration,
    /// One attempt of an SDK operation (the standard retry mode makes up to 3).
    pub sdk_attempt: Duration,
    /// Connecting to an AWS endpoint.
    pub sdk_connect: Duration,
    /// Reserved for the store write: all its SDK operations.
    pub store_write: Duration,
    /// Reserved for the final push after the write (a push is bounded by 1.5 s).
    pub final_push: Duration,
}

impl Budgets {
    /// The budgets of a request of `request` in all.
    pub fn new(request: Duration) -> Budgets {
        let sdk_operation = request / 8;
        Budgets {
            request,
            sdk_operation,
            sdk_attempt: sdk_operation / 2,
            sdk_connect: sdk_operation / 3,
            store_write: sdk_operation * STORE_WRITE_OPERATIONS,
            final_push: request * 3 / 50,
        }
    }

    /// [`DEFAULT_REQUEST_BUDGET`], or `MAILMIND_REQUEST_DEADLINE_MS`.
    pub fn from_env() -> Result<Budgets, BadDeadline> {
        Self::from_value(std::env::var(DEADLINE_ENV).ok().as_deref())
    }

    fn from_value(value: Option<&str>) -> Result<Budgets, BadDeadline> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(Budgets::new(DEFAULT_REQUEST_BUDGET)),
            // Below 1 s no SDK call could finish; above 29 s the function is killed first.
            Some(v) => match v.parse::<u64>() {
                Ok(ms @ 1_000..=29_000) => Ok(Budgets::new(Duration::from_millis(ms))),
                _ => Err(BadDeadline),
            },
        }
    }
}

/// `MAILMIND_REQUEST_DEADLINE_MS` is not a whole number of milliseconds from 1000 to 29000.
#[derive(Debug, thiserror::Error)]
#[error("MAILMIND_REQUEST_DEADLINE_MS must be a whole number of milliseconds from 1000 to 29000")]
pub struct BadDeadline;

/// The running request's deadline and budgets.
#[derive(Debug, Clone, Copy)]
struct Current {
    at: Instant,
    budgets: Budgets,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// Kept between a request's deadline and the function's own (Lambda's
/// deadline for the invocation): the last push and the runtime's answer.
pub const FUNCTION_TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

/// Runs `request` (one request's whole future) under a deadline `budgets.request` from now.
pub async fn scope<F: Future>(budgets: Budgets, request: F) -> F::Output {
    scope_within(budgets, None, request).await
}

/// [`scope`], but the deadline never falls later than `function_deadline`
/// (Lambda's, for this invocation) less [`FUNCTION_TIMEOUT_MARGIN`]: a
/// function whose `Timeout` is short gets a short request.
pub async fn scope_within<F: Future>(budgets: Budgets, function_deadline: Option<SystemTime>, request: F) -> F::Output {
    let mut budget = budgets.request;
    if let Some(end) = function_deadline {
        let left = end.duration_since(SystemTime::now()).unwrap_or_default();
        budget = budget.min(left.saturating_sub(FUNCTION_TIMEOUT_MARGIN));
    }
    let current = Current {
        at: Instant::now() + budget,
        budgets,
    };
    CURRENT.scope(current, request).await
}

/// Time left before the running request's deadline; `None` outside a [`scope`].
pub fn remaining() -> Option<Duration> {
    CURRENT
        .try_with(|c| c.at.saturating_duration_since(Instant::now()))
        .ok()
}

/// How long the provider check may take: what is left once the store write
/// and the final push are reserved (zero when nothing is: the check then
/// times out at once and the key is stored with status `error` / `timeout`,
/// as for a slow provider); `None` outside a [`scope`].
pub fn provider_budget() -> Option<Duration> {
    CURRENT
        .try_with(|c| {
            let left = c.at.saturating_duration_since(Instant::now());
            left.saturating_sub(c.budgets.store_write + c.budgets.final_push)
        })
        .ok()
}

/// True if a store write started now would end, whatever happens to it,
/// before the request's deadline (always true outside a [`scope`]).
pub fn write_fits() -> bool {
    CURRENT
        .try_with(|c| c.at.saturating_duration_since(Instant::now()) >= c.budgets.store_write)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budgets_add_up_inside_the_request() {
        let b = Budgets::new(DEFAULT_REQUEST_BUDGET);
        assert_eq!(b.sdk_operation, Duration::from_millis(3125));
        assert_eq!(b.final_push, Duration::from_millis(1500));
        // Reads, key service and the write: what the provider cannot have.
        let fixed = b.sdk_operation * 2 + b.store_write + b.final_push;
        assert!(fixed < b.request, "{fixed:?}");
        assert!(b.sdk_attempt * 2 <= b.sdk_operation && b.sdk_connect < b.sdk_attempt);
    }

    #[test]
    fn the_variable_is_a_bounded_number_of_milliseconds() {
        assert_eq!(Budgets::from_value(None).unwrap().request, DEFAULT_REQUEST_BUDGET);
        assert_eq!(Budgets::from_value(Some(" ")).unwrap().request, DEFAULT_REQUEST_BUDGET);
        assert_eq!(
            Budgets::from_value(Some("4000")).unwrap().request,
            Duration::from_secs(4)
        );
        for bad in ["999", "29001", "-5", "2.5", "soon"] {
            assert!(Budgets::from_value(Some(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_shrink_as_the_request_runs() {
        let b = Budgets::new(Duration::from_secs(8));
        assert_eq!(provider_budget(), None, "outside a request nothing is cut");
        assert!(write_fits());
        scope(b, async {
            assert_eq!(remaining(), Some(Duration::from_secs(8)));
            // 8 s − 3 s (write) − 0.48 s (push).
            assert_eq!(provider_budget(), Some(Duration::from_millis(4520)));
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(provider_budget(), Some(Duration::ZERO));
            assert!(write_fits(), "3 s left: just enough for the write");
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert!(!write_fits());
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_function_timeout_cuts_the_request_short() {
        let b = Budgets::new(Duration::from_secs(8));
        let roomy = SystemTime::now() + Duration::from_secs(60);
        scope_within(b, Some(roomy), async {
            assert_eq!(remaining(), Some(Duration::from_secs(8)));
        })
        .await;
        // 5 s to the function's end, 2 s of margin: under 3 s, too little
        // for the 3 s write reserve.
        let tight = SystemTime::now() + Duration::from_secs(5);
        scope_within(b, Some(tight), async {
            assert!(remaining().unwrap() <= Duration::from_secs(3));
            assert_eq!(provider_budget(), Some(Duration::ZERO));
            assert!(!write_fits());
        })
        .await;
    }
}
