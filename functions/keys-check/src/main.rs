//! `POST /api/v1/credentials/{provider}/keys/{key_id}/check`.

use mailmind::handlers::check_key;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.validating_state()?;
    lambda::serve_http(state, check_key).await
}
