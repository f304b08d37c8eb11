//! `PUT /api/v1/credentials/{provider}/keys/{key_id}`.

use mailmind::handlers::replace_key;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.validating_state()?;
    lambda::serve_http(state, replace_key).await
}
