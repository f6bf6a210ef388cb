//! The local queues on the SQS emulator of `make test` (`AWS_ENDPOINT_URL`).

use aws_sdk_sqs::types::QueueAttributeName;
use local_aws::{create_queues, RetryPolicy};

/// A client of the emulator, with its dummy credentials.
async fn emulator() -> aws_sdk_sqs::Client {
    let endpoint = local_aws::emulator_endpoint();
    aws_sdk_sqs::Client::new(&shared::aws::for_emulator(&endpoint).await)
}

#[tokio::test]
async fn queues_left_by_an_older_run_take_the_retry_policy_of_this_one() {
    let sqs = emulator().await;
    let prefix = format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    create_queues(&sqs, &prefix, RetryPolicy { visibility_timeout_seconds: 30, max_receives: 2 })
        .await
        .unwrap_or_else(|e| panic!("the SQS emulator does not answer ({e:#}); run `make test`"));

    let queues = create_queues(&sqs, &prefix, RetryPolicy::default()).await.unwrap();

    let output = sqs
        .get_queue_attributes()
        .queue_url(&queues.inbound)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = output.attributes().unwrap();
    let redrive: serde_json::Value = serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(attributes[&QueueAttributeName::VisibilityTimeout], "180");
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5", "{redrive}");
    for url in [&queues.inbound, &queues.inbound_dlq, &queues.outbound] {
        sqs.delete_queue().queue_url(url).send().await.unwrap();
    }
}
