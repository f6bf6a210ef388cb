//! The container server: gRPC (`customers.v1.CustomerService`, health, reflection) and the
//! functions' HTTP API, over the same operations, the same token verification and the same
//! publish after commit as the Lambdas.

pub mod grpc;
mod messages;
pub mod status;

use std::future::{Future, IntoFuture};

use axum::serve::ListenerExt;
use shared::http::AppState;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

/// The generated messages, server and client of `proto/customers/v1/customers.proto`.
pub mod proto {
    tonic::include_proto!("customers.v1");

    /// The compiled proto, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/customers_descriptor.bin"));
}

/// The HTTP port of the seed's service.
pub const HTTP_PORT: u16 = 8007;
/// The gRPC port of the seed's service.
pub const GRPC_PORT: u16 = 50007;

/// Serves HTTP on `http` and gRPC on `grpc` until `shutdown` resolves; then takes no new calls,
/// lets the ones in flight finish, and returns.
pub async fn serve(
    state: AppState,
    http: TcpListener,
    grpc: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<proto::customer_service_server::CustomerServiceServer<grpc::Grpc>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let grpc_server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(proto::customer_service_server::CustomerServiceServer::new(grpc::Grpc::new(state.clone())))
        .serve_with_incoming_shutdown(without_nagle(grpc), stop.clone().cancelled_owned());
    let http = http.tap_io(|socket| {
        socket.set_nodelay(true).ok();
    });
    let http_server =
        axum::serve(http, shared::routes::all(state)).with_graceful_shutdown(stop.clone().cancelled_owned());
    let stopper = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing the calls in flight");
        stopper.cancel();
    });
    let (http_result, grpc_result) = tokio::join!(http_server.into_future(), grpc_server);
    stop.cancel();
    http_result?;
    grpc_result?;
    Ok(())
}

/// The connections of `listener` with Nagle's algorithm off: an answer written in several
/// frames (a batch of customers) otherwise waits for the caller's delayed ACK, about 40 ms.
fn without_nagle(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener)
        .map(|accepted| accepted.and_then(|socket| socket.set_nodelay(true).map(|()| socket)))
}

/// Asks the gRPC health service on this machine's `grpc_port` whether the server is serving:
/// the container's health check, with no shell or curl in the image.
pub async fn check_health(grpc_port: u16) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(2));
    let mut health = tonic_health::pb::health_client::HealthClient::new(endpoint.connect().await?);
    let asked = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let status = health.check(asked).await?.into_inner().status();
    anyhow::ensure!(status == ServingStatus::Serving, "the server answers {status:?}");
    Ok(())
}
