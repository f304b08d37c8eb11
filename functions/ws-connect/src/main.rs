//! WebSocket `$connect`.

use mailmind::handlers::websocket::connect;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.table_state();
    lambda::serve_events(state, connect).await
}
