//! `PUT /api/v1/credentials/{provider}/`: builds its clients (DynamoDB, KMS, the provider HTTP
//! client, the WebSocket push client) once, then serves every request with
//! the shared handler.

use lambda_http::{Error, service_fn};
use mailmind::handlers::update_credential;
use mailmind::state::aws::Aws;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailmind::telemetry::init_json_logs();
    let state = Aws::from_env().await?.validating_state()?;
    lambda_http::run(service_fn(|request| async {
        Ok::<_, std::convert::Infallible>(update_credential(&state, request).await)
    }))
    .await
}
