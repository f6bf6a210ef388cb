//! The nightly `credit-overdue` Lambda (EventBridge schedule): marks usages past due as
//! overdue in every organization. `{"as_of": "YYYY-MM-DD"}` in the event overrides today.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::app::App;
use shared::db::Db;

#[derive(Deserialize)]
struct Trigger {
    as_of: Option<chrono::NaiveDate>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = shared::config::DatabaseConfig::load().await?;
    let cache = shared::cache::Cache::load().await?;
    let app = App::new(Db::open(&config).await?).with_cache(cache);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let app = app.clone();
        async move {
            let trigger: Trigger = serde_json::from_value(event.payload).unwrap_or(Trigger { as_of: None });
            let as_of = trigger.as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let marked = shared::credit::mark_overdue(&app, as_of).await?;
            lambda_runtime::tracing::info!(marked, %as_of, "usages marked overdue");
            Ok::<_, Error>(json!({ "marked": marked, "as_of": as_of }))
        }
    }))
    .await
}
