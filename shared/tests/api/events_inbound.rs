//! The SQS consumer: tier changes and order facts applied at most once, bad messages failing
//! alone.

use std::sync::LazyLock;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, Utc};
use local_aws::{poll_once, RetryPolicy};
use serde_json::{json, Value};
use shared::config::InboundConfig;
use shared::events::inbound::{apply, InboundEnvelope, Rejection, MAX_FUTURE_SKEW};
use uuid::Uuid;

use crate::helpers::*;

/// An envelope from the contract's producer of `event_type`.
fn envelope(organization: Uuid, event_type: &str, time: DateTime<Utc>, data: Value) -> Value {
    let source = if event_type.starts_with("orders.") { "order-service" } else { "pricing-service" };
    json!({
        "id": Uuid::now_v7(),
        "type": event_type,
        "source": source,
        "time": time,
        "organization_id": organization,
        "data": data,
    })
}

pub(crate) fn tier_event(organization: Uuid, customer: Uuid, tier: &str, time: DateTime<Utc>) -> Value {
    envelope(
        organization,
        "pricing.loyalty.tier_changed",
        time,
        json!({"customer_id": customer, "old_tier": "bronze", "new_tier": tier}),
    )
}

pub(crate) fn completed(organization: Uuid, customer: Uuid, order: Uuid, amount: &str, at: DateTime<Utc>) -> Value {
    envelope(
        organization,
        "orders.order.completed",
        at,
        json!({"order_id": order, "customer_id": customer, "total_amount": amount, "completed_at": at}),
    )
}

fn cancelled(organization: Uuid, customer: Uuid, order: Uuid, at: DateTime<Utc>) -> Value {
    envelope(
        organization,
        "orders.order.cancelled",
        at,
        json!({"order_id": order, "customer_id": customer, "cancelled_at": at}),
    )
}

/// A Lambda SQS event of `bodies`, message ids `m0`, `m1`, ...
pub(crate) fn batch<B: ToString>(bodies: &[B]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(index, body)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("m{index}"));
            message.body = Some(body.to_string());
            message
        })
        .collect();
    event
}

/// The consumer as deployed with the default producers.
pub(crate) async fn handle_batch(
    app: &shared::app::App,
    event: SqsEvent,
    concurrency: usize,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    shared::events::inbound::handle_batch(app, &InboundConfig::default(), event, concurrency).await
}

async fn failures<B: ToString>(app: &TestApp, bodies: &[B]) -> Vec<String> {
    let mut failed: Vec<String> = handle_batch(&app.core, batch(bodies), 4)
        .await
        .batch_item_failures
        .into_iter()
        .map(|failure| failure.item_identifier)
        .collect();
    failed.sort();
    failed
}

async fn tier_of(app: &TestApp, customer: Uuid) -> (String, Option<DateTime<Utc>>) {
    let row = app
        .admin()
        .await
        .query_one("SELECT loyalty_tier, tier_updated_at FROM customers WHERE customer_id = $1", &[&customer])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// RFM's inputs of a customer: completed purchases, their total, and `last_purchase_at`.
async fn purchase_facts(app: &TestApp, customer: Uuid) -> (i64, String, Option<DateTime<Utc>>) {
    let admin = app.admin().await;
    let row = admin
        .query_one(
            "SELECT count(*), coalesce(sum(total_amount), 0)::text FROM purchases \
             WHERE customer_id = $1 AND status = 'completed'",
            &[&customer],
        )
        .await
        .unwrap();
    let last: Option<DateTime<Utc>> = admin
        .query_one("SELECT last_purchase_at FROM customers WHERE customer_id = $1", &[&customer])
        .await
        .unwrap()
        .get(0);
    (row.get(0), row.get(1), last)
}

/// A whole second `minutes_ago` before one instant fixed for the whole test run.
fn at(minutes_ago: i64) -> DateTime<Utc> {
    static NOW: LazyLock<DateTime<Utc>> =
        LazyLock::new(|| DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now is a valid time"));
    *NOW - Duration::minutes(minutes_ago)
}

#[tokio::test]
async fn the_newest_tier_wins_whatever_the_order_and_repeats() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let customer = app.create_customer(org, person("Lucía", "Batista")).await;
    let silver = tier_event(org, customer, "silver", at(30));
    let platinum = tier_event(org, customer, "platinum", at(10));
    let gold_older = tier_event(org, customer, "gold", at(20));

    assert!(failures(&app, std::slice::from_ref(&silver)).await.is_empty());
    assert_eq!(tier_of(&app, customer).await, ("silver".into(), Some(at(30))));
    assert!(failures(&app, &[platinum.clone(), platinum.clone(), gold_older.clone()]).await.is_empty());
    assert!(failures(&app, &[platinum, silver, gold_older]).await.is_empty());

    assert_eq!(tier_of(&app, customer).await, ("platinum".into(), Some(at(10))));
    assert_eq!(app.count("inbound_events").await, 3, "three distinct events, each recorded once");
    let loyalty = app.as_org(org, http::Method::GET, &format!("/api/v1/customers/{customer}/loyalty"), None).await;
    assert_eq!(loyalty.body["loyalty_tier"], "platinum");
    assert_eq!(loyalty.body["points_multiplier"], json!(2.0));
}

#[tokio::test]
async fn tier_events_racing_in_one_batch_leave_the_newest() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let customer = app.create_customer(org, person("Omar", "Mendoza")).await;
    let tiers = ["silver", "gold", "platinum", "bronze"];
    let events: Vec<Value> = (0..10).map(|n| tier_event(org, customer, tiers[n % 4], at(100 - n as i64))).collect();

    assert!(failures(&app, &events).await.is_empty());

    assert_eq!(tier_of(&app, customer).await, (tiers[9 % 4].into(), Some(at(91))));
}

#[tokio::test]
async fn a_bad_message_fails_alone_and_the_rest_of_the_batch_applies() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let customer = app.create_customer(org, person("José", "Pérez")).await;
    let other_tenant = app.create_customer(app.org_b, person("Ana", "Muñoz")).await;
    let order = Uuid::new_v4();
    let bodies = [
        tier_event(org, customer, "gold", at(5)).to_string(),
        "{not json".to_string(),
        envelope(org, "pricing.loyalty.points_expired", at(5), json!({"customer_id": customer})).to_string(),
        tier_event(org, Uuid::new_v4(), "gold", at(5)).to_string(),
        tier_event(org, other_tenant, "gold", at(5)).to_string(),
        tier_event(org, customer, "diamond", at(4)).to_string(),
        json!({"id": "not-a-uuid", "type": "orders.order.completed"}).to_string(),
        completed(org, customer, order, "-5.00", at(3)).to_string(),
        completed(org, customer, order, "150.00", at(3)).to_string(),
    ];

    let failed = failures(&app, &bodies).await;

    assert_eq!(failed, ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    assert_eq!(tier_of(&app, customer).await.0, "gold");
    assert_eq!(tier_of(&app, other_tenant).await.0, "bronze", "another tenant's customer is untouched");
    assert_eq!(purchase_facts(&app, customer).await.0, 1);
    assert_eq!(app.count("inbound_events").await, 2, "failed messages leave no trace, so a retry can apply them");
}

#[tokio::test]
async fn a_tier_event_dated_in_the_future_fails_alone_and_cannot_freeze_the_tier() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let customer = app.create_customer(org, person("Rosa", "Quintero")).await;
    let far_ahead = Utc::now() + Duration::days(365);
    let just_ahead = Utc::now() + MAX_FUTURE_SKEW - Duration::minutes(1);

    let failed = failures(&app, &[tier_event(org, customer, "platinum", far_ahead)]).await;
    assert_eq!(failed, ["m0"]);
    assert_eq!(tier_of(&app, customer).await, ("bronze".into(), None));
    assert_eq!(app.count("inbound_events").await, 0, "a refused event is not recorded");

    assert!(failures(&app, &[tier_event(org, customer, "gold", at(1))]).await.is_empty());
    assert_eq!(tier_of(&app, customer).await, ("gold".into(), Some(at(1))), "later events still apply");
    let skewed = tier_event(org, customer, "silver", just_ahead);
    assert!(failures(&app, &[skewed]).await.is_empty(), "a producer's clock a little ahead is tolerated");
    assert_eq!(tier_of(&app, customer).await.0, "silver");

    let order_from_the_future = completed(org, customer, Uuid::new_v4(), "10.00", far_ahead);
    assert_eq!(failures(&app, &[order_from_the_future]).await, ["m0"], "any event type");
}

#[tokio::test]
async fn an_event_not_from_its_types_producer_fails_alone() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let customer = app.create_customer(org, person("Iván", "Sucre")).await;
    let with_source = |mut event: Value, source: &str| {
        event["source"] = json!(source);
        event
    };
    let bodies = [
        with_source(tier_event(org, customer, "platinum", at(5)), "order-service"),
        with_source(completed(org, customer, Uuid::new_v4(), "10.00", at(5)), "pricing-service"),
        with_source(cancelled(org, customer, Uuid::new_v4(), at(5)), "someone-else"),
        tier_event(org, customer, "gold", at(4)),
        completed(org, customer, Uuid::new_v4(), "20.00", at(4)),
    ];

    assert_eq!(failures(&app, &bodies).await, ["m0", "m1", "m2"]);
    assert_eq!(tier_of(&app, customer).await.0, "gold");
    assert_eq!(purchase_facts(&app, customer).await.0, 1);
    assert_eq!(app.count("inbound_events").await, 2, "refused events are not recorded");

    let renamed = InboundConfig { pricing_source: "pricing-v2".into(), ..InboundConfig::default() };
    let event: InboundEnvelope =
        serde_json::from_value(with_source(tier_event(org, customer, "silver", at(3)), "pricing-v2")).unwrap();
    assert!(apply(&app.core, &renamed, &event).await.is_ok(), "the producer's name is configured");
    let refused = apply(&app.core, &InboundConfig::default(), &event).await;
    assert!(matches!(refused, Err(Rejection::WrongSource { .. })), "{refused:?}");
}

#[tokio::test]
async fn a_completed_order_counts_once_and_a_cancelled_one_leaves_rfm() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let customer = app.create_customer(org, person("María", "González")).await;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let first_done = completed(org, customer, first, "100.00", at(60));
    let second_done = completed(org, customer, second, "50.25", at(30));

    assert!(failures(&app, &[first_done.clone(), second_done.clone()]).await.is_empty());
    assert!(failures(&app, &[first_done, completed(org, customer, first, "100.00", at(60))]).await.is_empty());
    assert_eq!(purchase_facts(&app, customer).await, (2, "150.25".into(), Some(at(30))));

    assert!(failures(&app, &[cancelled(org, customer, second, at(20))]).await.is_empty());
    assert_eq!(purchase_facts(&app, customer).await, (1, "100.00".into(), Some(at(60))));

    let late = Uuid::new_v4();
    assert!(failures(&app, &[cancelled(org, customer, late, at(10))]).await.is_empty());
    assert!(failures(&app, &[completed(org, customer, late, "70.00", at(15))]).await.is_empty());
    assert_eq!(
        purchase_facts(&app, customer).await,
        (1, "100.00".into(), Some(at(60))),
        "a completion arriving after its cancellation does not bring the order back"
    );
}

#[tokio::test]
async fn from_the_queue_a_batch_of_ten_applies_in_one_invocation_and_a_poison_message_reaches_the_dlq() {
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy { visibility_timeout_seconds: 0, max_receives: 2 }).await;
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let customer = app.create_customer(org, person("Lucía", "Batista")).await;
    let mut bodies: Vec<String> =
        (0..9).map(|n| completed(org, customer, Uuid::new_v4(), "10.00", at(n)).to_string()).collect();
    bodies.insert(4, "{not json".into());
    for body in &bodies {
        sqs.send_message().queue_url(&queues.inbound).message_body(body).send().await.unwrap();
    }

    let mut batch_sizes = Vec::new();
    for _ in 0..10 {
        let report = poll_once(&sqs, &queues.inbound, 0, |event| {
            batch_sizes.push(event.records.len());
            let core = app.core.clone();
            async move { Ok(handle_batch(&core, event, 4).await) }
        })
        .await
        .unwrap();
        if report.received == 0 {
            break;
        }
    }

    assert_eq!(batch_sizes[0], 10, "the first invocation gets the whole batch: {batch_sizes:?}");
    assert_eq!(purchase_facts(&app, customer).await.0, 9);
    let dead = drain(&sqs, &queues.inbound_dlq).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("{not json"));
    assert!(drain(&sqs, &queues.inbound).await.is_empty());
}

#[test]
fn the_example_events_are_lambda_sqs_events() {
    for file in ["tier-changed.json", "orders-batch.json"] {
        let path = format!("{}/../functions/events/events/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!event.records.is_empty());
    }
}
