//! `GET /api/v1/credentials/{provider}/keys`.

use mailmind::handlers::list_keys;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_http(state, list_keys).await
}
