//! `DELETE /api/v1/credentials/{provider}/keys/{key_id}`.

use mailmind::handlers::delete_key;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_http(state, delete_key).await
}
