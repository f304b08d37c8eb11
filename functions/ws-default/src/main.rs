//! WebSocket `$default`: answers `{"action":"ping"}` with `{"type":"pong"}`
//! (the route response goes back to the client). Needs no AWS client.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailmind::handlers::websocket::default;
use mailmind::lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailmind::telemetry::init_json_logs();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async { Ok::<_, Error>(default(event.payload).await) },
    ))
    .await
}
