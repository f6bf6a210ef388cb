//! AWS clients: settings from the environment (region, credentials, and `AWS_ENDPOINT_URL`
//! for the local emulator), with timeouts short enough that an unreachable SQS never holds a
//! request for long.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Settings as a deployed function sees them: the execution role, the region, and
/// `AWS_ENDPOINT_URL` when set.
pub async fn from_env() -> SdkConfig {
    loader().load().await
}

/// Settings for an emulator at `endpoint` (tests and local tools), with its dummy credentials.
pub async fn for_emulator(endpoint: &str) -> SdkConfig {
    loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())))
        .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
        .load()
        .await
}

fn loader() -> ConfigLoader {
    let https =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
}
