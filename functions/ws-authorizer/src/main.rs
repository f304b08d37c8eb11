//! WebSocket `$connect` authorizer: builds the token verifier (and its JWKS
//! client) once, then answers Allow (`principalId` = `sub`) or Deny.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailmind::auth::TokenVerifier;
use mailmind::handlers::websocket::authorize;
use mailmind::lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    mailmind::telemetry::init_json_logs();
    let verifier = TokenVerifier::from_env()?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async {
            Ok::<_, Error>(authorize(&verifier, event.payload).await)
        },
    ))
    .await
}
