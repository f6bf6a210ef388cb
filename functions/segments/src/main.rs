//! The `segments` Lambda: API Gateway HTTP events into the segments router.

use shared::config::Config;
use shared::http::AppState;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let config = Config::load().await?;
    let state = AppState::from_config(&config).await?;
    lambda_http::run(shared::segments::routes::router(state)).await
}
