//! What AWS does around the functions, done locally against the emulator: the queues of the
//! SPEC, and an event source mapping that hands `customers-inbound` to the consumer in
//! batches and deletes only the messages it did not report as failed. For `devctl`, the
//! tests and the benchmarks; no function links it.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use aws_config::timeout::TimeoutConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use serde_json::json;

pub const INBOUND_QUEUE: &str = "customers-inbound";
pub const INBOUND_DLQ: &str = "customers-inbound-dlq";
pub const OUTBOUND_QUEUE: &str = "customers-events.fifo";

/// The address `infra/local/services.sh` starts the emulator on.
pub const DEFAULT_EMULATOR_ENDPOINT: &str = "http://127.0.0.1:5000";

/// Where the emulator of `make test` and `make dev` answers: `AWS_ENDPOINT_URL`, which
/// `infra/local/services.sh` sets, or [`DEFAULT_EMULATOR_ENDPOINT`].
pub fn emulator_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| DEFAULT_EMULATOR_ENDPOINT.into())
}

/// Messages the event source mapping hands over at most per invocation, as in `template.yaml`.
pub const BATCH_SIZE: i32 = 10;

/// How the inbound queue retries: a failed message is received again after
/// `visibility_timeout_seconds`, and moves to the DLQ after `max_receives` receives.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub visibility_timeout_seconds: u32,
    pub max_receives: u32,
}

impl Default for RetryPolicy {
    /// As `customers-inbound` in `template.yaml` (a test compares them).
    fn default() -> Self {
        Self { visibility_timeout_seconds: 180, max_receives: 5 }
    }
}

/// URLs of the SPEC's local queues.
#[derive(Debug, Clone)]
pub struct Queues {
    pub inbound: String,
    pub inbound_dlq: String,
    pub outbound: String,
}

/// Creates the queues (or finds them: creating a queue that exists answers its URL), each
/// name prefixed by `prefix` so tests can have their own, and gives the inbound queue `retry`
/// whatever an older run left on it, as a stack update would.
pub async fn create_queues(sqs: &aws_sdk_sqs::Client, prefix: &str, retry: RetryPolicy) -> anyhow::Result<Queues> {
    let create = |name: String, attributes: HashMap<QueueAttributeName, String>| async move {
        let output = sqs
            .create_queue()
            .queue_name(&name)
            .set_attributes(Some(attributes))
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .with_context(|| format!("creating the queue {name}"))?;
        output.queue_url().map(str::to_string).with_context(|| format!("no URL for the queue {name}"))
    };
    let inbound_dlq = create(format!("{prefix}{INBOUND_DLQ}"), HashMap::new()).await?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&inbound_dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)
        .context("reading the DLQ's ARN")?
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .context("the emulator answered no ARN for the DLQ")?;
    let redrive = json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": retry.max_receives.to_string() });
    let inbound = create(format!("{prefix}{INBOUND_QUEUE}"), HashMap::new()).await?;
    sqs.set_queue_attributes()
        .queue_url(&inbound)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(QueueAttributeName::VisibilityTimeout, retry.visibility_timeout_seconds.to_string())
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)
        .context("setting the inbound queue's retry policy")?;
    let outbound = create(
        format!("{prefix}{OUTBOUND_QUEUE}"),
        HashMap::from([(QueueAttributeName::FifoQueue, "true".to_string())]),
    )
    .await?;
    Ok(Queues { inbound, inbound_dlq, outbound })
}

/// One poll of an event source mapping.
#[derive(Debug, Default)]
pub struct PollReport {
    pub received: usize,
    pub failed: usize,
    /// Why the consumer itself failed, when it did (then every message failed). Left to the
    /// caller to log, which knows how to keep personal data out of it.
    pub consumer_error: Option<anyhow::Error>,
}

/// Receives one batch from `queue_url` (waiting up to `wait_seconds` for the first message),
/// hands it to `consumer` as Lambda would, and deletes the messages not reported as failed.
/// When the consumer itself fails, nothing is deleted and the whole batch returns.
pub async fn poll_once<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait_seconds: i32,
    consumer: F,
) -> anyhow::Result<PollReport>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = anyhow::Result<SqsBatchResponse>>,
{
    let output = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(BATCH_SIZE)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .customize()
        .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(long_poll_timeout(wait_seconds)))
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)
        .context("receiving from the inbound queue")?;
    let messages = output.messages();
    if messages.is_empty() {
        return Ok(PollReport::default());
    }
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(lambda_record).collect();
    let received = messages.len();
    let response = match consumer(event).await {
        Ok(response) => response,
        Err(error) => return Ok(PollReport { received, failed: received, consumer_error: Some(error) }),
    };
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    let done = messages.iter().filter(|message| message.message_id().is_some_and(|id| !failed.contains(&id)));
    delete_batch(sqs, queue_url, done).await.context("deleting applied messages")?;
    Ok(PollReport { received, failed: failed.len(), consumer_error: None })
}

/// Receives and deletes every message of `queue_url` (with their system attributes), a batch
/// at a time so a FIFO queue hands over the next message of each group; stops when a receive
/// answers nothing. For tests and benchmarks against the emulator.
pub async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<Vec<aws_sdk_sqs::types::Message>> {
    let mut received = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(BATCH_SIZE)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .context("receiving from the queue")?;
        let messages = output.messages().to_vec();
        if messages.is_empty() {
            return Ok(received);
        }
        delete_batch(sqs, queue_url, &messages).await.context("deleting received messages")?;
        received.extend(messages);
    }
}

/// Deletes `messages` (up to one receive's worth) in one call; nothing to delete, no call.
async fn delete_batch<'a>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: impl IntoIterator<Item = &'a aws_sdk_sqs::types::Message>,
) -> anyhow::Result<()> {
    let entries = messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .build()
                .context("building a delete entry")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if entries.is_empty() {
        return Ok(());
    }
    sqs.delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)?;
    Ok(())
}

/// Time for a long poll of `wait_seconds` to answer, beyond the clients' short defaults.
fn long_poll_timeout(wait_seconds: i32) -> TimeoutConfig {
    let limit = Duration::from_secs(wait_seconds.max(0) as u64 + 5);
    TimeoutConfig::builder().operation_attempt_timeout(limit).operation_timeout(limit * 2).build()
}

/// A received message in the shape Lambda's SQS event gives it.
fn lambda_record(message: &aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id().map(str::to_string);
    record.receipt_handle = message.receipt_handle().map(str::to_string);
    record.body = message.body().map(str::to_string);
    record.md5_of_body = message.md5_of_body().map(str::to_string);
    record.attributes = message
        .attributes()
        .map(|attributes| attributes.iter().map(|(name, value)| (name.as_str().to_string(), value.clone())).collect())
        .unwrap_or_default();
    record.event_source = Some("aws:sqs".into());
    record
}

#[cfg(test)]
mod tests {
    use serde_yaml::Value;

    use super::*;

    /// `template.yaml`; CloudFormation's short forms (`!Sub`, `!GetAtt`...) read as tagged values.
    fn template() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
    }

    /// The name a queue gets after the stack's: `!Sub ${AWS::StackName}-NAME` gives `NAME`.
    fn queue_name(queue: &Value) -> &str {
        match &queue["QueueName"] {
            Value::Tagged(sub) if sub.tag == "Sub" => {
                sub.value.as_str().and_then(|name| name.strip_prefix("${AWS::StackName}-")).unwrap_or("")
            }
            other => panic!("QueueName is not a !Sub: {other:?}"),
        }
    }

    #[test]
    fn the_local_queues_are_set_as_in_template_yaml() {
        let template = template();
        let resource = |name: &str| &template["Resources"][name]["Properties"];
        let inbound = resource("CustomersInboundQueue");
        let retry = RetryPolicy::default();

        let batch_size = &resource("EventsFunction")["Events"]["Inbound"]["Properties"]["BatchSize"];
        assert_eq!(
            inbound["VisibilityTimeout"].as_u64(),
            Some(retry.visibility_timeout_seconds.into()),
            "VisibilityTimeout of CustomersInboundQueue"
        );
        assert_eq!(
            inbound["RedrivePolicy"]["maxReceiveCount"].as_u64(),
            Some(retry.max_receives.into()),
            "maxReceiveCount of CustomersInboundQueue"
        );
        assert_eq!(batch_size.as_i64(), Some(BATCH_SIZE.into()), "BatchSize of the events function's SQS event");
        assert_eq!(queue_name(inbound), INBOUND_QUEUE);
        assert_eq!(queue_name(resource("CustomersInboundDeadLetterQueue")), INBOUND_DLQ);
        assert_eq!(queue_name(resource("CustomersEventsQueue")), OUTBOUND_QUEUE);
        assert_eq!(resource("CustomersEventsQueue")["FifoQueue"].as_bool(), Some(true));
    }
}
