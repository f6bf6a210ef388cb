//! The nightly `rfm` Lambda (EventBridge schedule): scores every organization's customers (see
//! `shared::segments`). `{"as_of": "YYYY-MM-DD"}` in the event overrides today. Organizations
//! left when the deadline nears wait for the next night (`stopped` in the answer).
//! `NIGHTLY_ORGANIZATIONS_AT_ONCE` (default 2) organizations are scored at once (see
//! `shared::config::NightlyConfig`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;
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
    let nightly = shared::config::NightlyConfig::from_env(config.pool_size)?;
    let cache = shared::cache::Cache::load().await?;
    let app = App::new(Db::open(&config).await?).with_cache(cache);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let app = app.clone();
        async move {
            let trigger: Trigger = serde_json::from_value(event.payload).unwrap_or(Trigger { as_of: None });
            let as_of = trigger.as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let stop = shared::events::stop_before(event.context.deadline());
            let options = shared::segments::RunOptions::nightly(as_of);
            let keep_going = || std::time::Instant::now() < stop;
            let report =
                shared::segments::run_nightly(&app, options, nightly.organizations_at_once, keep_going).await?;
            lambda_runtime::tracing::info!(?report, "segment runs");
            if report.failed > 0 {
                return Err(Error::from(format!("the segment run failed in {} organizations", report.failed)));
            }
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
