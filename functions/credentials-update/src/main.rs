//! `PUT /api/v1/credentials/{provider}`.

use mailmind::handlers::update_credential;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.validating_state()?;
    lambda::serve_http(state, update_credential).await
}
