//! The `events` Lambda (SQS `customers-inbound`): applies tier changes and order facts from
//! other services, reporting the messages that failed so only they are retried.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = shared::config::DatabaseConfig::load().await?;
    let concurrency = config.pool_size;
    let db = Db::open(&config).await?;
    let sources = &shared::config::InboundConfig::from_env();
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let db = db.clone();
        async move {
            Ok::<SqsBatchResponse, Error>(
                shared::events::inbound::handle_batch(&db, sources, event.payload, concurrency).await,
            )
        }
    }))
    .await
}
