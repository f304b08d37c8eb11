//! `GET /api/v1/credentials/{provider}`.

use mailmind::handlers::get_credential;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_http(state, get_credential).await
}
