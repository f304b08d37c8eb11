//! `POST /api/v1/credentials/{provider}/keys`.

use mailmind::handlers::create_key;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.validating_state()?;
    lambda::serve_http(state, create_key).await
}
