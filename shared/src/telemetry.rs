//! Tracing setup: JSON lines in Lambda (or when `AWS_LAMBDA_LOG_FORMAT=JSON`), plain text locally.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"))
        || std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(without_statement_parameters(filter)).with_target(false);
    if json {
        builder.json().without_time().init();
    } else {
        builder.init();
    }
}

/// `filter` with tokio-postgres held at info whatever the level: at debug it logs every
/// statement's parameters, which are personal data.
pub fn without_statement_parameters(filter: EnvFilter) -> EnvFilter {
    filter.add_directive("tokio_postgres=info".parse().expect("a valid directive"))
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
    fn at_debug_level_the_statement_parameters_tokio_postgres_logs_are_left_out() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(without_statement_parameters(EnvFilter::new("debug,tokio_postgres=trace")))
            .with_writer(move || Buffer(writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "tokio_postgres::query", "executing statement s1 with parameters: [\"ana@example.com\"]");
            tracing::debug!(target: "shared::customers", "other debug lines stay");
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert!(text.contains("other debug lines stay"), "{text}");
        assert!(!text.contains("ana@example.com"), "{text}");
    }
}
