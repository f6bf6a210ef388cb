//! The container server over real sockets: gRPC with a tonic client (every RPC, tenancy, tokens,
//! scopes, idempotency, a concurrent storm, health, reflection, graceful shutdown) and its
//! HTTP side's merged OpenAPI document. Its HTTP routes also pass every route test with
//! `TEST_HTTP_API=server` (see `TestApp`).

use std::sync::Arc;
use std::time::Duration;

use customer_server::proto::customer_service_client::CustomerServiceClient;
use customer_server::proto::*;
use serde_json::json;
use shared::auth::TokenVerifier;
use shared::http::AppState;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::auth::{claims, sign_hs256};
use crate::helpers::*;

/// A running server on two free loopback ports, stopped by `stop`.
struct Server {
    grpc: String,
    http: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(app: &TestApp) -> Self {
        let state =
            AppState { app: app.core.clone(), verifier: Arc::new(TokenVerifier::new(&hs256_auth()).await.unwrap()) };
        let (http, grpc) =
            (TcpListener::bind("127.0.0.1:0").await.unwrap(), TcpListener::bind("127.0.0.1:0").await.unwrap());
        let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(customer_server::serve(state, http, grpc, async {
            stopped.await.ok();
        }));
        Self { grpc: format!("http://{grpc_addr}"), http: format!("http://{http_addr}"), stop: Some(stop), task }
    }

    async fn client(&self) -> CustomerServiceClient<Channel> {
        CustomerServiceClient::connect(self.grpc.clone()).await.expect("the gRPC port answers")
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().expect("the server stops cleanly");
    }
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn error_code(status: &Status) -> &str {
    status.metadata().get("error-code").and_then(|value| value.to_str().ok()).unwrap_or_default()
}

fn use_credit(customer: Uuid, order: Uuid, amount: &str) -> UseCreditRequest {
    UseCreditRequest { customer_id: customer.to_string(), order_id: order.to_string(), amount: amount.into() }
}

#[tokio::test]
async fn every_rpc_answers_as_the_http_api_does() {
    let app = TestApp::spawn().await;
    let server = Server::start(&app).await;
    let mut client = server.client().await;
    let token = app.token(app.org_a, ALL);
    let customer = app.approved_account(app.org_a, "300.00", 30).await;
    let other = app.create_customer(app.org_b, person("Otra", "Empresa")).await;

    let read = client.get_customer(with_token(GetCustomerRequest { customer_id: customer.to_string() }, &token));
    let read = read.await.unwrap().into_inner();
    let over_http = app.as_org(app.org_a, http::Method::GET, &format!("/api/v1/customers/{customer}"), None).await;
    assert_eq!(read.customer_id, customer.to_string());
    assert_eq!(json!(read.first_name), over_http.body["first_name"]);
    assert_eq!((read.status.as_str(), read.loyalty_tier.as_str()), ("active", "bronze"));

    let missing = Uuid::new_v4();
    let ids = vec![missing.to_string(), customer.to_string(), other.to_string(), customer.to_string()];
    let batch = client.batch_get_customers(with_token(BatchGetCustomersRequest { customer_ids: ids }, &token));
    let found: Vec<String> = batch.await.unwrap().into_inner().customers.into_iter().map(|c| c.customer_id).collect();
    assert_eq!(found, [customer.to_string(), customer.to_string()], "missing and other-tenant ids are absent");
    let too_many = BatchGetCustomersRequest { customer_ids: vec![customer.to_string(); 101] };
    let refused = client.batch_get_customers(with_token(too_many, &token)).await.unwrap_err();
    assert_eq!((refused.code(), error_code(&refused)), (Code::InvalidArgument, "validation_failed"));

    let tier = GetLoyaltyTierRequest { customer_id: customer.to_string(), amount: Some("150.00".into()) };
    let tier = client.get_loyalty_tier(with_token(tier, &token)).await.unwrap().into_inner();
    assert_eq!((tier.loyalty_tier.as_str(), tier.points), ("bronze", Some(150)));

    let account = GetCreditAccountRequest { customer_id: customer.to_string() };
    let account = client.get_credit_account(with_token(account, &token)).await.unwrap().into_inner();
    assert_eq!((account.status.as_str(), account.credit_available.as_str()), ("approved", "300.00"));

    let check = CheckCreditAvailabilityRequest { customer_id: customer.to_string(), amount: "300.01".into() };
    let check = client.check_credit_availability(with_token(check, &token)).await.unwrap().into_inner();
    assert!(!check.available);

    let order = Uuid::new_v4();
    let first =
        client.use_credit(with_token(use_credit(customer, order, "120.00"), &token)).await.unwrap().into_inner();
    assert!(!first.replayed);
    let again =
        client.use_credit(with_token(use_credit(customer, order, "120.00"), &token)).await.unwrap().into_inner();
    assert!(again.replayed, "the same order and amount answers the first usage");
    assert_eq!(again.usage.as_ref().unwrap().usage_id, first.usage.as_ref().unwrap().usage_id);
    let mismatch = client.use_credit(with_token(use_credit(customer, order, "99.00"), &token)).await.unwrap_err();
    assert_eq!((mismatch.code(), error_code(&mismatch)), (Code::Aborted, "order_amount_mismatch"));
    let too_much = client.use_credit(with_token(use_credit(customer, Uuid::new_v4(), "180.01"), &token)).await;
    let too_much = too_much.unwrap_err();
    assert_eq!((too_much.code(), error_code(&too_much)), (Code::FailedPrecondition, "insufficient_credit"));
    assert!(too_much.message().contains("180.00"), "the message says what is available: {}", too_much.message());
    let bad_amount = client.use_credit(with_token(use_credit(customer, Uuid::new_v4(), "1.001"), &token)).await;
    assert_eq!(bad_amount.unwrap_err().code(), Code::InvalidArgument);

    let payment = RecordPaymentRequest {
        customer_id: customer.to_string(),
        payment_id: Some(Uuid::new_v4().to_string()),
        amount: "20.00".into(),
        payment_method: "cash".into(),
        payment_reference: None,
        payment_date: None,
    };
    let paid = client.record_payment(with_token(payment.clone(), &token)).await.unwrap().into_inner();
    assert!(!paid.replayed);
    assert!(client.record_payment(with_token(payment, &token)).await.unwrap().into_inner().replayed);

    let release = ReleaseCreditRequest { customer_id: customer.to_string(), order_id: order.to_string() };
    let released = client.release_credit(with_token(release, &token)).await.unwrap().into_inner();
    assert_eq!(released.status, "cancelled");
    let account = app.as_org(app.org_a, http::Method::GET, &format!("/api/v1/customers/{customer}/credit"), None).await;
    assert_eq!(account.body["credit_used"], "0.00", "120 used, 20 paid, 100 released");
    server.stop().await;
}

#[tokio::test]
async fn another_tenant_gets_not_found_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let server = Server::start(&app).await;
    let mut client = server.client().await;
    let customer = app.approved_account(app.org_a, "300.00", 30).await;
    let intruder = app.token(app.org_b, ALL);

    let read = client.get_customer(with_token(GetCustomerRequest { customer_id: customer.to_string() }, &intruder));
    assert_eq!(read.await.unwrap_err().code(), Code::NotFound);
    let account = GetCreditAccountRequest { customer_id: customer.to_string() };
    assert_eq!(client.get_credit_account(with_token(account, &intruder)).await.unwrap_err().code(), Code::NotFound);
    let charge = client.use_credit(with_token(use_credit(customer, Uuid::new_v4(), "10.00"), &intruder)).await;
    assert_eq!(charge.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.count("credit_usages").await, 0, "nothing was charged");
    server.stop().await;
}

#[tokio::test]
async fn tokens_and_scopes_are_checked_as_on_http() {
    let app = TestApp::spawn().await;
    let server = Server::start(&app).await;
    let mut client = server.client().await;
    let customer = app.create_customer(app.org_a, person("Ana", "Token")).await;
    let ask = || GetCustomerRequest { customer_id: customer.to_string() };

    let none = client.get_customer(Request::new(ask())).await.unwrap_err();
    assert_eq!((none.code(), error_code(&none)), (Code::Unauthenticated, "unauthorized"));
    let expired = sign_hs256(SECRET, claims(app.org_a, "customers:read", -3600));
    let forged = sign_hs256("not-the-secret", claims(app.org_a, "customers:read", 600));
    for token in [expired, forged, "not.a.jwt".to_string()] {
        assert_eq!(client.get_customer(with_token(ask(), &token)).await.unwrap_err().code(), Code::Unauthenticated);
    }
    let credit_only = app.token(app.org_a, &["credit:read"]);
    let denied = client.get_customer(with_token(ask(), &credit_only)).await.unwrap_err();
    assert_eq!((denied.code(), error_code(&denied)), (Code::PermissionDenied, "forbidden"));
    let reader = app.token(app.org_a, &["customers:read", "credit:read"]);
    let charge = client.use_credit(with_token(use_credit(customer, Uuid::new_v4(), "1.00"), &reader)).await;
    assert_eq!(charge.unwrap_err().code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn a_storm_of_uses_on_one_account_never_overdraws_it() {
    let app = TestApp::spawn().await;
    let server = Server::start(&app).await;
    let customer = app.approved_account(app.org_a, "300.00", 30).await;
    let token = app.token(app.org_a, ALL);
    let mut calls = Vec::new();
    for _ in 0..64 {
        let (mut client, token) = (server.client().await, token.clone());
        calls.push(tokio::spawn(async move {
            client.use_credit(with_token(use_credit(customer, Uuid::new_v4(), "10.00"), &token)).await
        }));
    }
    let (mut charged, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => charged += 1,
            Err(status) if status.code() == Code::FailedPrecondition => refused += 1,
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    assert_eq!((charged, refused), (30, 34), "exactly the limit is charged");
    let used: String =
        app.admin().await.query_one("SELECT credit_used::text FROM credit_accounts", &[]).await.unwrap().get(0);
    assert_eq!(used, "300.00");
    server.stop().await;
}

#[tokio::test]
async fn health_is_serving_reflection_lists_the_service_and_http_serves_one_document() {
    let app = TestApp::spawn().await;
    let server = Server::start(&app).await;
    let channel = Channel::from_shared(server.grpc.clone()).unwrap().connect().await.unwrap();

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let asked = tonic_health::pb::HealthCheckRequest { service: "customers.v1.CustomerService".into() };
    let answer = health.check(asked).await.unwrap().into_inner();
    assert_eq!(answer.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let list = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([list]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(services)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a list of services");
    };
    let names: Vec<String> = services.service.into_iter().map(|service| service.name).collect();
    assert!(names.contains(&"customers.v1.CustomerService".to_string()), "{names:?}");

    let document: serde_json::Value =
        reqwest::get(format!("{}/api/v1/openapi.json", server.http)).await.unwrap().json().await.unwrap();
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/api/v1/customers/{id}",
        "/api/v1/customers/{id}/credit/usages",
        "/api/v1/customers/search",
        "/api/v1/segments",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the merged document: {:?}", paths.keys());
    }
    server.stop().await;
}

#[tokio::test]
async fn on_shutdown_a_call_in_flight_finishes() {
    let app = TestApp::spawn().await;
    let server = Server::start(&app).await;
    let mut client = server.client().await;
    let customer = app.approved_account(app.org_a, "300.00", 30).await;
    let token = app.token(app.org_a, ALL);

    let mut admin = app.admin().await;
    let holder = admin.transaction().await.unwrap();
    holder.execute("SELECT 1 FROM credit_accounts FOR UPDATE", &[]).await.unwrap();
    let call = tokio::spawn(async move {
        client.use_credit(with_token(use_credit(customer, Uuid::new_v4(), "10.00"), &token)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "the call waits on the row lock");
    holder.rollback().await.unwrap();
    assert!(call.await.unwrap().is_ok(), "the call in flight finished after shutdown began");
    stopping.await.unwrap();
}
