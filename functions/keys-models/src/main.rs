//! `GET /api/v1/credentials/{provider}/keys/{key_id}/models`.

use mailmind::handlers::key_models;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_http(state, key_models).await
}
