//! WebSocket `$disconnect`: builds the AWS clients once, then serves every
//! event with the shared handler.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailmind::AppState;
use mailmind::handlers::websocket::disconnect;
use mailmind::lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use mailmind::state::aws::Aws;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailmind::telemetry::init_json_logs();
    let aws = Aws::from_env().await?;
    // Connections need the table only.
    let state = AppState::builder(aws.store()).build();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async {
            Ok::<_, Error>(disconnect(&state, event.payload).await)
        },
    ))
    .await
}
