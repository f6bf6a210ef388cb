//! The operations called directly, as a second transport (gRPC, a job) calls them: no router,
//! no extractor. The scope checks and the publish after commit come with the operation.

use local_aws::RetryPolicy;
use serde_json::json;
use shared::auth::{Caller, Scope};
use shared::credit::model::OpenAccountRequest;
use shared::customers::model::CreateCustomerRequest;
use shared::error::ApiError;
use shared::money::Money;
use shared::paging::PageRequest;

use crate::helpers::*;

fn new_customer(first: &str, last: &str) -> shared::customers::model::NewCustomer {
    let request: CreateCustomerRequest = serde_json::from_value(person(first, last)).unwrap();
    request.validate().unwrap()
}

fn forbidden_scope<T: std::fmt::Debug>(result: Result<T, ApiError>) -> &'static str {
    match result {
        Err(ApiError::Forbidden(scope)) => scope,
        other => panic!("expected forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn an_operation_refuses_a_caller_without_its_scope_and_serves_one_with_it() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let reader = Caller::with_scopes(org, "reader", &[Scope::CustomersRead, Scope::CreditRead]);
    let writer = Caller::with_scopes(org, "writer", &[Scope::CustomersRead, Scope::CustomersWrite, Scope::CreditWrite]);
    let approver = Caller::with_scopes(org, "approver", &[Scope::CreditApprove]);

    let refused = shared::customers::create(&app.core, &reader, new_customer("Ana", "Lectora")).await;
    assert_eq!(forbidden_scope(refused), "customers:write");
    assert_eq!(app.count("customers").await, 0, "a refused write changes nothing");

    let customer = shared::customers::create(&app.core, &writer, new_customer("Ana", "Escritora")).await.unwrap();
    let read = shared::customers::get(&app.core, &reader, customer.customer_id).await.unwrap();
    assert_eq!(read.customer_id, customer.customer_id);
    let listed =
        shared::customers::list(&app.core, &approver, Default::default(), PageRequest::parse(None, None).unwrap());
    assert_eq!(forbidden_scope(listed.await), "customers:read");
    let erase = shared::customers::erase(&app.core, &writer, customer.customer_id).await;
    assert_eq!(forbidden_scope(erase), "customers:admin");

    let proposal: OpenAccountRequest = serde_json::from_value(json!({"credit_limit": "500.00"})).unwrap();
    let account = shared::credit::open(&app.core, &writer, customer.customer_id, proposal.validate().unwrap()).await;
    assert_eq!(account.unwrap().status.to_string(), "pending");
    let approve = shared::credit::approve(&app.core, &writer, customer.customer_id, None).await;
    assert_eq!(forbidden_scope(approve), "credit:approve", "who proposes a limit cannot approve it");
    let limit = Money::parse_positive("500.00").unwrap();
    let approved = shared::credit::approve(&app.core, &approver, customer.customer_id, Some(limit)).await.unwrap();
    assert_eq!(approved.approved_by.as_deref(), Some("approver"));

    let raise = shared::credit::model::AccountChange { credit_limit: Some(limit), payment_term_days: None };
    let raised = shared::credit::change_terms(&app.core, &writer, customer.customer_id, None, raise).await;
    assert_eq!(forbidden_scope(raised), "credit:approve", "a limit change is an approval");
}

#[tokio::test]
async fn a_write_through_an_operation_has_its_event_in_the_queue_when_it_returns() {
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy::default()).await;
    let app = TestApp::spawn_publishing_to(Some((sqs.clone(), queues.outbound.clone()))).await;
    let caller = Caller::service(app.org_a, "job");

    let customer = shared::customers::create(&app.core, &caller, new_customer("Rosa", "Directa")).await.unwrap();

    let received = drain(&sqs, &queues.outbound).await;
    assert_eq!(received.len(), 1, "the event left before the operation returned");
    let body: serde_json::Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(body["type"], "customers.customer.created");
    assert_eq!(body["data"]["customer_id"], customer.customer_id.to_string());
    let pending: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM outbox WHERE published_at IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
}
