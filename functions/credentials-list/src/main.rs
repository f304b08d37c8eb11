//! `GET /api/v1/credentials`.

use mailmind::handlers::list_credentials;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_http(state, list_credentials).await
}
