//! `GET /api/v1/credentials/`: builds the AWS clients once, then serves every invocation
//! with the shared handler.

use lambda_http::{Error, service_fn};
use mailmind::AppState;
use mailmind::handlers::list_credentials;
use mailmind::state::aws::Aws;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailmind::telemetry::init_json_logs();
    let aws = Aws::from_env().await?;
    // Reads and deletes need the table only: no KMS, provider or push client.
    let state = AppState::builder(aws.store()).build();
    lambda_http::run(service_fn(|request| async {
        Ok::<_, std::convert::Infallible>(list_credentials(&state, request).await)
    }))
    .await
}
