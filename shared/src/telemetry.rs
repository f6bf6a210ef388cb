//! Tracing setup: JSON lines in Lambda (or when `AWS_LAMBDA_LOG_FORMAT=JSON`), plain text locally.
//! The level comes from `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL` as `target=level` directives
//! (`info`, `warn,shared=debug`); `info` when neither parses.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init() {
    let filter = ["RUST_LOG", "AWS_LAMBDA_LOG_LEVEL"]
        .iter()
        .find_map(|name| directives(&std::env::var(name).ok()?))
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"))
        || std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    // The builder's own cap (info) would hide what the filter lets through.
    let builder = tracing_subscriber::fmt().with_max_level(LevelFilter::TRACE).with_target(false);
    let filter = without_statement_parameters(filter);
    if json {
        builder.json().without_time().finish().with(filter).init();
    } else {
        builder.finish().with(filter).init();
    }
}

/// `target=level` directives, levels in any case (Lambda's `AWS_LAMBDA_LOG_LEVEL` is `DEBUG`).
fn directives(text: &str) -> Option<Targets> {
    text.to_ascii_lowercase().parse().ok()
}

/// `filter` with tokio-postgres held at info at most whatever the directives say: at debug it
/// logs every statement's parameters, which are personal data.
pub fn without_statement_parameters(filter: Targets) -> Targets {
    let default = filter.default_level().unwrap_or(LevelFilter::OFF);
    let others: Vec<(String, LevelFilter)> = filter
        .iter()
        .filter(|(target, _)| !target.starts_with("tokio_postgres"))
        .map(|(target, level)| (target.to_string(), level))
        .collect();
    Targets::new()
        .with_default(default)
        .with_targets(others)
        .with_target("tokio_postgres", default.min(LevelFilter::INFO))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn levels_are_read_in_any_case_and_per_target() {
        let lambda = directives("DEBUG").unwrap();
        assert_eq!(lambda.default_level(), Some(LevelFilter::DEBUG));
        let local = directives("warn,shared=debug").unwrap();
        assert!(local.would_enable("shared::customers", &tracing::Level::DEBUG));
        assert!(!local.would_enable("hyper", &tracing::Level::INFO));
        assert!(directives("shared=loud").is_none());
    }

    #[test]
    fn at_debug_level_the_statement_parameters_tokio_postgres_logs_are_left_out() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let filter = without_statement_parameters("debug,tokio_postgres::query=trace".parse().unwrap());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(LevelFilter::TRACE)
            .with_writer(move || Buffer(writer.clone()))
            .finish()
            .with(filter);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "tokio_postgres::query", "executing statement s1 with parameters: [\"ana@example.com\"]");
            tracing::debug!(target: "shared::customers", "other debug lines stay");
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert!(text.contains("other debug lines stay"), "{text}");
        assert!(!text.contains("ana@example.com"), "{text}");
    }
}
