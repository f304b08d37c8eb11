//! WebSocket `$connect`: builds its one client (DynamoDB) once, then serves every
//! event with the shared handler.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailmind::handlers::websocket::connect;
use mailmind::lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use mailmind::state::aws::Aws;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailmind::telemetry::init_json_logs();
    let state = Aws::from_env().await?.table_state();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async {
            Ok::<_, Error>(connect(&state, event.payload).await)
        },
    ))
    .await
}
