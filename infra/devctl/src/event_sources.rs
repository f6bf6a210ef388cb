//! AWS's part around the functions during `make dev`: the SQS event source mapping of
//! `customers-inbound` (batches of up to 10 to the `events` function, deleting only the
//! messages it did not report as failed) and the schedules of `outbox-relay`,
//! `credit-overdue` and `rfm`, all through the invoke API of `cargo lambda watch`.

use std::time::Duration;

use anyhow::Context;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use local_aws::RetryPolicy;
use serde_json::{json, Value};
use shared::error::loggable;

/// How often the nightly jobs run locally (the first run is at start-up).
const OVERDUE_EVERY: Duration = Duration::from_secs(24 * 3600);
const RFM_EVERY: Duration = Duration::from_secs(24 * 3600);

pub async fn run(endpoint: &str, functions: &str, relay_every: Duration) -> anyhow::Result<()> {
    shared::telemetry::init();
    let sqs = aws_sdk_sqs::Client::new(&shared::aws::for_emulator(endpoint).await);
    let queues = local_aws::create_queues(&sqs, "", RetryPolicy::default()).await?;
    let invoker = Invoker {
        http: reqwest::Client::builder().timeout(Duration::from_secs(900)).build()?,
        functions: functions.trim_end_matches('/').to_string(),
    };
    invoker.wait_until_serving().await?;
    tracing::info!(
        queue = queues.inbound,
        "event sources running: inbound queue -> events, timers -> outbox-relay, credit-overdue, rfm"
    );

    let timers = invoker.clone();
    tokio::spawn(async move {
        let mut relay = tokio::time::interval(relay_every);
        let mut overdue = tokio::time::interval(OVERDUE_EVERY);
        let mut rfm = tokio::time::interval(RFM_EVERY);
        relay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        overdue.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rfm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (function, event) = tokio::select! {
                _ = relay.tick() => ("outbox-relay", schedule_event("outbox-relay-every-minute")),
                _ = overdue.tick() => ("credit-overdue", schedule_event("credit-overdue-nightly")),
                _ = rfm.tick() => ("rfm", schedule_event("rfm-nightly")),
            };
            match timers.invoke(function, &event).await {
                Ok(report) if function == "outbox-relay" && report["published"].as_u64() == Some(0) => {}
                Ok(report) => tracing::info!(function, %report, "scheduled run"),
                Err(error) => tracing::warn!(function, error = %loggable(&error), "scheduled run failed"),
            }
        }
    });

    loop {
        let invoker = &invoker;
        let polled = local_aws::poll_once(&sqs, &queues.inbound, 5, |event| async move {
            let answer = invoker.invoke("events", &serde_json::to_value(&event)?).await?;
            serde_json::from_value::<SqsBatchResponse>(answer).context("the events function answered no batch response")
        })
        .await;
        match polled {
            Ok(report) => {
                if let Some(error) = &report.consumer_error {
                    tracing::warn!(error = %loggable(error), "the consumer failed; the whole batch returns to the queue");
                }
                if report.received > 0 {
                    tracing::info!(received = report.received, failed = report.failed, "inbound batch applied")
                }
            }
            Err(error) => {
                tracing::warn!(error = %loggable(&error), "polling the inbound queue failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Sends the message bodies of the SQS event in `data_file` to the local inbound queue.
pub async fn send_inbound(endpoint: &str, data_file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(data_file).with_context(|| format!("reading {}", data_file.display()))?;
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&text).with_context(|| format!("{} is not an SQS event", data_file.display()))?;
    let sqs = aws_sdk_sqs::Client::new(&shared::aws::for_emulator(endpoint).await);
    let queues = local_aws::create_queues(&sqs, "", RetryPolicy::default()).await?;
    for body in event.records.iter().filter_map(|record| record.body.as_deref()) {
        sqs.send_message()
            .queue_url(&queues.inbound)
            .message_body(body)
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .context("sending to the inbound queue")?;
    }
    println!("sent {} messages to {}", event.records.len(), queues.inbound);
    Ok(())
}

#[derive(Clone)]
struct Invoker {
    http: reqwest::Client,
    functions: String,
}

impl Invoker {
    /// Invokes `function` with `event` the way `cargo lambda invoke` does.
    async fn invoke(&self, function: &str, event: &Value) -> anyhow::Result<Value> {
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.functions);
        let response = self.http.post(&url).json(event).send().await.with_context(|| format!("invoking {function}"))?;
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body: Value = response.json().await.with_context(|| format!("reading {function}'s answer"))?;
        anyhow::ensure!(
            status.is_success() && !function_error && body.get("errorType").is_none(),
            "{function} failed ({status}): {body}"
        );
        Ok(body)
    }

    /// Waits until `cargo lambda watch` accepts connections.
    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let url = reqwest::Url::parse(&self.functions).context("--functions is not a URL")?;
        let address = (url.host_str().unwrap_or("127.0.0.1").to_string(), url.port_or_known_default().unwrap_or(9000));
        while tokio::net::TcpStream::connect(address.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }
}

/// An EventBridge scheduled event, as the rule `rule` sends it.
fn schedule_event(rule: &str) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": chrono::Utc::now(),
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{rule}")],
        "detail": {}
    })
}
