//! `GET /api/v1/credentials/{provider}/activity`.

use mailmind::handlers::credential_activity;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_http(state, credential_activity).await
}
