//! WebSocket `$default`: ping/pong, no AWS client.

use mailmind::handlers::websocket::default;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    lambda::serve_events((), default).await
}
