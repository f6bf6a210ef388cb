//! The `events` Lambda (SQS `customers-inbound`): applies tier changes and order facts from
//! other services, reporting the messages that failed so only they are retried.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use shared::app::App;
use shared::config::{DatabaseConfig, EventsConfig, InboundConfig};
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = DatabaseConfig::load().await?;
    let concurrency = config.pool_size;
    let cache = shared::cache::Cache::load().await?;
    let app = &App::with_events(Db::open(&config).await?, &EventsConfig::from_env()).await.with_cache(cache);
    let sources = &InboundConfig::from_env();
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(
            shared::events::inbound::handle_batch(app, sources, event.payload, concurrency).await,
        )
    }))
    .await
}
