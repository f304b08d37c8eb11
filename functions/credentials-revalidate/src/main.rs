//! `credentials-revalidate`: run on a schedule (EventBridge) to re-check
//! every credential whose verdict is older than `REVALIDATE_AFTER`.

use mailmind::handlers::revalidate::revalidate;
use mailmind::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda::Error> {
    let state = lambda::aws().await?.revalidating_state()?;
    lambda::serve_events(state, revalidate).await
}
