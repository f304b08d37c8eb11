//! `credentials-resolve`: invoked by other MailMind functions
//! (`lambda:InvokeFunction`) to obtain a user's key, sealed, or report its
//! failure.

use mailmind::handlers::keys::resolve_function;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.resolving_state()?;
    lambda::serve_events(state, resolve_function).await
}
