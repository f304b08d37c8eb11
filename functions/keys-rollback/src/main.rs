//! `POST /api/v1/credentials/{provider}/keys/{key_id}/rollback`.

use mailmind::handlers::rollback_key;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.validating_state()?;
    lambda::serve_http(state, rollback_key).await
}
