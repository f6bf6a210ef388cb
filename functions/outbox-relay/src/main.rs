//! The `outbox-relay` Lambda (EventBridge, every minute): publishes every organization's
//! pending events to the outbound FIFO queue, including any left behind while SQS was down.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::db::Db;
use shared::events::{stop_before, Relay, RelayReport};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = shared::config::DatabaseConfig::load().await?;
    let queue_url = shared::config::EventsConfig::from_env()
        .outbox_queue_url
        .ok_or("environment variable OUTBOX_QUEUE_URL is not set")?;
    let db = Db::open(&config).await?;
    let relay = Relay::new(db, aws_sdk_sqs::Client::new(&shared::aws::from_env().await), queue_url);
    let relay = &relay;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let deadline = event.context.deadline();
        let report = relay.publish_all(stop_before(deadline)).await?;
        let seconds_left = deadline.duration_since(std::time::SystemTime::now()).unwrap_or_default().as_secs();
        if report == RelayReport::default() {
            lambda_runtime::tracing::debug!(seconds_left, "nothing to relay");
        } else {
            lambda_runtime::tracing::info!(?report, seconds_left, "outbox relayed");
        }
        Ok::<_, Error>(serde_json::to_value(report)?)
    }))
    .await
}
