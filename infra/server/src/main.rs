//! `customer-server`: gRPC on `GRPC_PORT` (50007) and HTTP on `HTTP_PORT` (8007), configured
//! like the functions (`DATABASE_URL` or `DATABASE_SECRET_ARN`, `DATABASE_POOL_SIZE`, the JWT
//! settings, `OUTBOX_QUEUE_URL`). Stops on SIGTERM or Ctrl-C after the calls in flight.
//! `customer-server health` exits 0 when the server on this machine is serving.

use customer_server::{check_health, serve, GRPC_PORT, HTTP_PORT};
use shared::config::Config;
use shared::http::AppState;
use tokio::net::TcpListener;

fn port(name: &str, default: u16) -> anyhow::Result<u16> {
    match std::env::var(name) {
        Ok(text) => text.parse().map_err(|_| anyhow::anyhow!("{name} must be a port number, not `{text}`")),
        Err(_) => Ok(default),
    }
}

async fn terminated() {
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("health") {
        return check_health(port("GRPC_PORT", GRPC_PORT)?).await;
    }
    shared::telemetry::init();
    let config = Config::load().await?;
    let state = AppState::from_config(&config).await?;
    let (http_port, grpc_port) = (port("HTTP_PORT", HTTP_PORT)?, port("GRPC_PORT", GRPC_PORT)?);
    let http = TcpListener::bind(("0.0.0.0", http_port)).await?;
    let grpc = TcpListener::bind(("0.0.0.0", grpc_port)).await?;
    tracing::info!(http_port, grpc_port, pool_size = config.database.pool_size, "serving HTTP and gRPC");
    serve(state, http, grpc, terminated()).await
}
