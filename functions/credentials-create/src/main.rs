//! `POST /api/v1/credentials/`: builds the AWS clients once, then serves every invocation
//! with the shared handler.

use lambda_http::{Error, service_fn};
use mailmind::AppState;
use mailmind::handlers::create_credential;
use mailmind::state::aws::Aws;
use mailmind::state::providers_from_env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailmind::telemetry::init_json_logs();
    let aws = Aws::from_env().await?;
    let state = AppState::builder(aws.store())
        .keyring(aws.kms_keyring()?)
        .providers(providers_from_env()?)
        .notifier(aws.notifier())
        .build();
    lambda_http::run(service_fn(|request| async {
        Ok::<_, std::convert::Infallible>(create_credential(&state, request).await)
    }))
    .await
}
