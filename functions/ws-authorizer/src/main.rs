//! WebSocket `$connect` authorizer.

use mailmind::auth::TokenVerifier;
use mailmind::handlers::websocket::authorize;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let verifier = TokenVerifier::from_env()?;
    lambda::serve_events(verifier, authorize).await
}
