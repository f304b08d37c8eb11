//! `PATCH /api/v1/credentials/{provider}/keys/{key_id}`.

use mailmind::handlers::patch_key;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_http(state, patch_key).await
}
