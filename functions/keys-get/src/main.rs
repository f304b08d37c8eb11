//! `GET /api/v1/credentials/{provider}/keys/{key_id}`.

use mailmind::handlers::get_key;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_http(state, get_key).await
}
