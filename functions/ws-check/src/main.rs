//! WebSocket `check` route: `{"action":"check","provider":..}`.

use mailmind::handlers::websocket::check;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.validating_state()?;
    lambda::serve_events(state, check).await
}
