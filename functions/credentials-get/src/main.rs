//! `GET /api/v1/credentials/{provider}/`: builds its one client (DynamoDB) once, then serves every
//! event with the shared handler.

use lambda_http::{Error, service_fn};
use mailmind::handlers::get_credential;
use mailmind::state::aws::Aws;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailmind::telemetry::init_json_logs();
    let state = Aws::from_env().await?.table_state();
    lambda_http::run(service_fn(|request| async {
        Ok::<_, std::convert::Infallible>(get_credential(&state, request).await)
    }))
    .await
}
