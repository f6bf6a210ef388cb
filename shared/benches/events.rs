//! Inbound event benchmark: one consumer (one Lambda instance) applying SQS batches of 10
//! through `handle_batch`, next to the same statements run directly with tokio-postgres. The
//! mix is 40% tier changes, 50% completed orders and 10% cancellations, over 10,000 customers
//! of one organization. The two paths alternate in rounds over fresh events, each first in turn.
//!
//! Then the outbound side: customer creations through the customers router with and without
//! the publish after commit to the emulator's FIFO queue, and what that publish adds to a
//! request.
//!
//! Run with `make bench-events` (`BENCH_EVENTS` per path and round, default 3,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::body::Body;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use http::{Method, Request, StatusCode};
use local_aws::{create_queues, drain, RetryPolicy};
use serde_json::json;
use shared::app::App;
use shared::auth::{issue_hs256_token, TokenVerifier};
use shared::config::{AuthConfig, InboundConfig, TokenKeys};
use shared::db::{ConnectOptions, Db};
use shared::events::inbound::handle_batch;
use shared::events::Relay;
use shared::http::AppState;
use tokio_postgres::types::ToSql;
use tower::ServiceExt;
use uuid::Uuid;

mod common;
use common::{admin, admin_config, percentile_ms, print_conditions, rotation, runtime_config, Xorshift};

const CUSTOMERS: usize = 10_000;
const SECRET: &str = "bench-secret";
const ROUNDS: usize = 3;

const REFRESH: &str = "UPDATE customers SET last_purchase_at = \
    (SELECT max(occurred_at) FROM purchases p WHERE p.customer_id = $1 AND p.status = 'completed') \
    WHERE customer_id = $1";

/// One inbound event, as the body of a message and as the values the direct path binds.
struct Event {
    body: String,
    id: Uuid,
    kind: Kind,
}

enum Kind {
    Tier { customer: Uuid, tier: &'static str, time: DateTime<Utc> },
    Completed { customer: Uuid, order: Uuid, amount: rust_decimal::Decimal, at: DateTime<Utc> },
    Cancelled { customer: Uuid, order: Uuid, at: DateTime<Utc> },
}

struct Workload {
    organization: Uuid,
    customers: Vec<Uuid>,
    random: Xorshift,
    completed: Vec<(Uuid, Uuid)>,
    clock: DateTime<Utc>,
}

impl Workload {
    fn next(&mut self) -> Event {
        self.clock += chrono::Duration::milliseconds(1);
        let id = Uuid::now_v7();
        let customer = self.customers[self.random.below(self.customers.len())];
        let roll = self.random.below(10);
        let (event_type, data, kind) = if roll < 4 {
            let tier = ["bronze", "silver", "gold", "platinum"][self.random.below(4)];
            let data = json!({"customer_id": customer, "old_tier": "bronze", "new_tier": tier});
            ("pricing.loyalty.tier_changed", data, Kind::Tier { customer, tier, time: self.clock })
        } else if roll < 9 || self.completed.is_empty() {
            let order = Uuid::now_v7();
            let amount = rust_decimal::Decimal::new(1_000 + self.random.below(50_000) as i64, 2);
            self.completed.push((customer, order));
            let data = json!({"order_id": order, "customer_id": customer, "total_amount": amount.to_string(),
                              "completed_at": self.clock});
            ("orders.order.completed", data, Kind::Completed { customer, order, amount, at: self.clock })
        } else {
            let (customer, order) = self.completed.swap_remove(self.random.below(self.completed.len()));
            let data = json!({"order_id": order, "customer_id": customer, "cancelled_at": self.clock});
            ("orders.order.cancelled", data, Kind::Cancelled { customer, order, at: self.clock })
        };
        let source = if event_type.starts_with("orders.") { "order-service" } else { "pricing-service" };
        let body = json!({"id": id, "type": event_type, "source": source, "time": self.clock,
                          "organization_id": self.organization, "data": data})
        .to_string();
        Event { body, id, kind }
    }

    fn batches(&mut self, events: usize) -> Vec<Vec<Event>> {
        let mut all: Vec<Event> = (0..events).map(|_| self.next()).collect();
        let mut batches = Vec::new();
        while !all.is_empty() {
            let rest = all.split_off(all.len().min(10));
            batches.push(std::mem::replace(&mut all, rest));
        }
        batches
    }
}

fn sqs_event(batch: &[Event]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = batch
        .iter()
        .map(|e| {
            let mut message = SqsMessage::default();
            message.message_id = Some(e.id.to_string());
            message.body = Some(e.body.clone());
            message
        })
        .collect();
    event
}

async fn through_service(app: &App, batches: &[Vec<Event>], concurrency: usize) -> usize {
    let mut failures = 0;
    for batch in batches {
        failures +=
            handle_batch(app, &InboundConfig::default(), sqs_event(batch), concurrency).await.batch_item_failures.len();
    }
    failures
}

async fn direct(pool: &Pool, organization: Uuid, batches: &[Vec<Event>], concurrency: usize) -> usize {
    let mut failures = 0;
    for batch in batches {
        let results = futures_util::stream::iter(batch)
            .map(|event| apply_direct(pool, organization, event))
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        failures += results.iter().filter(|ok| !**ok).count();
    }
    failures
}

/// The consumer's statements, prepared once per connection as the service's are, bound
/// straight from the generated values.
async fn apply_direct(pool: &Pool, organization: Uuid, event: &Event) -> bool {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    run(&tx, shared::db::SET_TENANT_SQL, &[&organization.to_string()]).await;
    let (event_type, customer) = match &event.kind {
        Kind::Tier { customer, .. } => ("pricing.loyalty.tier_changed", *customer),
        Kind::Completed { customer, .. } => ("orders.order.completed", *customer),
        Kind::Cancelled { customer, .. } => ("orders.order.cancelled", *customer),
    };
    let inserted = run(
        &tx,
        "INSERT INTO inbound_events (organization_id, event_id, event_type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&organization, &event.id, &event_type],
    )
    .await;
    if inserted == 0 {
        return true;
    }
    run(&tx, "SELECT 1 FROM customers WHERE customer_id = $1 FOR NO KEY UPDATE", &[&customer]).await;
    match &event.kind {
        Kind::Tier { customer, tier, time } => {
            run(&tx,
                "UPDATE customers SET loyalty_tier = $2, tier_updated_at = $3, version = version + 1, updated_at = now() \
                 WHERE customer_id = $1 AND (tier_updated_at IS NULL OR tier_updated_at < $3)",
                &[customer, tier, time],
            )
            .await;
        }
        Kind::Completed { customer, order, amount, at } => {
            run(
                &tx,
                "INSERT INTO purchases (organization_id, order_id, customer_id, total_amount, occurred_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id, order_id) DO NOTHING",
                &[&organization, order, customer, amount, at],
            )
            .await;
            run(&tx, REFRESH, &[customer]).await;
        }
        Kind::Cancelled { customer, order, at } => {
            run(&tx,
                "INSERT INTO purchases (organization_id, order_id, customer_id, total_amount, occurred_at, status, cancelled_at) \
                 VALUES ($1, $2, $3, 0, $4, 'cancelled', $4) ON CONFLICT (organization_id, order_id) DO UPDATE \
                 SET status = 'cancelled', cancelled_at = EXCLUDED.cancelled_at, updated_at = now() \
                 WHERE purchases.status = 'completed'",
                &[&organization, order, customer, at],
            )
            .await;
            run(&tx, REFRESH, &[customer]).await;
        }
    }
    tx.commit().await.is_ok()
}

async fn run(tx: &deadpool_postgres::Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
    let statement = tx.prepare_cached(sql).await.unwrap();
    tx.execute(&statement, params).await.unwrap()
}

async fn seed(database: &str, organization: Uuid) -> Vec<Uuid> {
    let maintenance = admin("postgres").await;
    maintenance.execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"), &[]).await.unwrap();
    maintenance.execute(&format!("CREATE DATABASE {database}"), &[]).await.unwrap();
    shared::migrations::run(&admin_config(database).into()).await.unwrap();
    let client = admin(database).await;
    client.execute("INSERT INTO organizations (organization_id) VALUES ($1)", &[&organization]).await.unwrap();
    let rows = client
        .query(
            "INSERT INTO customers (customer_id, organization_id, first_name, last_name) \
             SELECT gen_random_uuid(), $1, 'Cliente', 'Número ' || n FROM generate_series(1, $2::int) n \
             RETURNING customer_id",
            &[&organization, &(CUSTOMERS as i32)],
        )
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::var("BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(3_000);
    let database = format!("cs_bench_events_{}", std::process::id());
    let organization = Uuid::new_v4();
    eprintln!("seeding {CUSTOMERS} customers in {database}");
    let customers = seed(&database, organization).await;
    let mut workload = Workload {
        organization,
        customers,
        random: Xorshift(0x9e37_79b9_7f4a_7c15),
        completed: Vec::new(),
        // Behind the clock, so no event is refused as dated in the future however many are made.
        clock: Utc::now() - chrono::Duration::hours(1),
    };

    print_conditions(
        &admin(&database).await,
        &[
            ("customers", format!("{CUSTOMERS} in one organization")),
            (
                "consumer connections",
                "1, then 4 (the events function's DATABASE_POOL_SIZE), as many batches at once".into(),
            ),
            ("events", format!("{events} per path and round, {ROUNDS} rounds, each path first in turn")),
            ("creations", "100 per round without and with the publish after commit, to the local emulator".into()),
        ],
    )
    .await;
    println!("\n| connections | service events/s | direct events/s | service / direct |");
    println!("|---|---|---|---|");
    for concurrency in [1, 4] {
        let db = Db::from_config(runtime_config(&database), concurrency).unwrap();
        let pool = Pool::builder(Manager::from_config(
            runtime_config(&database),
            ConnectOptions::from(runtime_config(&database)).tls.connector().unwrap(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        ))
        .max_size(concurrency)
        .build()
        .unwrap();
        let (mut service_time, mut direct_time) = (Duration::ZERO, Duration::ZERO);
        for round in 0..ROUNDS {
            eprintln!("  {concurrency} connection(s), round {}/{ROUNDS}: {events} events per path", round + 1);
            for path in rotation(round, 2) {
                let batches = workload.batches(events);
                let started = Instant::now();
                if path == 0 {
                    let failed = through_service(&App::new(db.clone()), &batches, concurrency).await;
                    assert_eq!(failed, 0, "the service failed events");
                    service_time += started.elapsed();
                } else {
                    let failed = direct(&pool, organization, &batches, concurrency).await;
                    assert_eq!(failed, 0, "the direct path failed events");
                    direct_time += started.elapsed();
                }
            }
        }
        let total = (events * ROUNDS) as f64;
        let (service, direct) = (total / service_time.as_secs_f64(), total / direct_time.as_secs_f64());
        println!("| {concurrency} | {service:.0} | {direct:.0} | {:.0}% |", 100.0 * service / direct);
    }
    publish_after_commit(&database, organization).await;
    let maintenance = admin("postgres").await;
    maintenance.execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"), &[]).await.unwrap();
}

/// Creation latency through the customers router without and with the publish after commit.
async fn publish_after_commit(database: &str, organization: Uuid) {
    const PER_ROUND: usize = 100;
    let endpoint = local_aws::emulator_endpoint();
    let sqs = aws_sdk_sqs::Client::new(&shared::aws::for_emulator(&endpoint).await);
    let prefix = format!("bench{}-", std::process::id());
    let queues = create_queues(&sqs, &prefix, RetryPolicy::default())
        .await
        .unwrap_or_else(|e| panic!("the SQS emulator at {endpoint} does not answer ({e:#}); run `make bench-events`"));
    let db = Db::from_config(runtime_config(database), 4).unwrap();
    let auth = AuthConfig {
        keys: TokenKeys::Hs256Secret(SECRET.into()),
        organization_claim: "org_id".into(),
        audience: None,
        issuer: None,
    };
    let verifier = Arc::new(TokenVerifier::new(&auth).await.unwrap());
    let relay = Arc::new(Relay::new(db.clone(), sqs.clone(), &queues.outbound));
    let without = shared::customers::routes::router(AppState { app: App::new(db.clone()), verifier: verifier.clone() });
    let with = shared::customers::routes::router(AppState { app: App::publishing_with(db, relay.clone()), verifier });
    let token =
        issue_hs256_token(SECRET, organization, "bench", &["customers:write"], Duration::from_secs(3600)).unwrap();

    relay.publish_all(std::time::Instant::now() + std::time::Duration::from_secs(60)).await.unwrap();
    let (mut plain, mut publishing) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        eprintln!("  creations, round {}/{ROUNDS}: {PER_ROUND} without and {PER_ROUND} with the publish", round + 1);
        for path in rotation(round, 2) {
            if path == 0 {
                for _ in 0..PER_ROUND {
                    plain.push(create_customer(&without, &token).await);
                }
                relay.publish_all(std::time::Instant::now() + std::time::Duration::from_secs(60)).await.unwrap();
            } else {
                for _ in 0..PER_ROUND {
                    publishing.push(create_customer(&with, &token).await);
                }
            }
        }
    }
    let mut send_alone = Vec::new();
    for _ in 0..PER_ROUND {
        let started = Instant::now();
        sqs.send_message()
            .queue_url(&queues.outbound)
            .message_body("{}")
            .message_group_id("bench")
            .message_deduplication_id(Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
        send_alone.push(started.elapsed());
    }
    let arrived = drain(&sqs, &queues.outbound).await.unwrap().len() - PER_ROUND;
    assert_eq!(arrived, 2 * PER_ROUND * ROUNDS, "every creation's event reaches the queue");
    let (plain_p50, plain_p95) = (percentile_ms(&mut plain, 0.5), percentile_ms(&mut plain, 0.95));
    let (publishing_p50, publishing_p95) = (percentile_ms(&mut publishing, 0.5), percentile_ms(&mut publishing, 0.95));
    println!("\n| customer creation | p50 | p95 |");
    println!("|---|---|---|");
    println!("| events left for the scheduled relay | {plain_p50:.1} ms | {plain_p95:.1} ms |");
    println!("| published before the answer | {publishing_p50:.1} ms | {publishing_p95:.1} ms |");
    println!(
        "| (one SQS send to the emulator, alone) | {:.1} ms | {:.1} ms |",
        percentile_ms(&mut send_alone, 0.5),
        percentile_ms(&mut send_alone, 0.95)
    );
    println!(
        "\nThe publish adds {:.1} ms at p50; each event is in the queue when its request answers.",
        publishing_p50 - plain_p50
    );
}

async fn create_customer(router: &axum::Router, token: &str) -> Duration {
    let n = Uuid::new_v4().simple().to_string();
    let body = json!({"first_name": "Cliente", "last_name": "Nuevo", "email": format!("c{n}@example.com")}).to_string();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/customers")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let started = Instant::now();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    started.elapsed()
}
