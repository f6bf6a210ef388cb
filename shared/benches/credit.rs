//! Credit reservation benchmark, on one hot account and on 10,000 accounts, at 1, 8 and 64
//! clients, three paths taking turns in rounds (each goes first in turn):
//! - service: the credit router in process (token check, JSON, routing, the tenant
//!   transaction) over one pool of as many connections as clients, events left in the outbox;
//! - deployed: as the credit function runs in AWS, one instance per client (its own router and
//!   a pool of `DATABASE_POOL_SIZE` = 2 connections, as in template.yaml), each write published
//!   after its commit to the emulator's FIFO queue, as `OUTBOX_QUEUE_URL` makes it;
//! - direct: the same reservation SQL on tokio-postgres, the floor.
//!
//! For the deployed path it also reports what the writers do to the organization's publish
//! lock: the share of events published right after their commit (the rest found the lock
//! taken and wait for the scheduled relay) and publishes per second.
//!
//! Run with `make bench-credit` (`BENCH_SECONDS` per path and cell, default 6).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use local_aws::{create_queues, RetryPolicy};
use serde_json::json;
use shared::app::App;
use shared::auth::{issue_hs256_token, TokenVerifier};
use shared::config::{AuthConfig, TokenKeys};
use shared::db::Db;
use shared::events::Relay;
use shared::http::AppState;
use tower::ServiceExt;
use uuid::Uuid;

mod common;
use common::credit::{direct_pool, direct_reservation, seed_accounts};
use common::{admin, measure, print_conditions, rotation, runtime_config, Cell, Xorshift};

const SECRET: &str = "bench-secret";
const SPREAD_ACCOUNTS: usize = 10_000;
const CLIENTS: [usize; 3] = [1, 8, 64];
const ROUNDS: usize = 3;
/// The credit function's `DATABASE_POOL_SIZE` in template.yaml (its Globals).
const DEPLOYED_POOL_SIZE: usize = 2;

/// What every router of the run shares: the token verifier and the outbound queue.
struct Setup {
    database: String,
    verifier: Arc<TokenVerifier>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Setup {
    /// The credit router over a pool of `size` connections, all open (as after an instance's
    /// first requests), publishing after each commit when `publishing`; dropping it closes them.
    async fn router(&self, size: usize, publishing: bool) -> axum::Router {
        let db = Db::from_config(runtime_config(&self.database), size).unwrap();
        drop(futures_util::future::join_all((0..size).map(|_| db.connection())).await);
        let app = if publishing {
            App::publishing_with(db.clone(), Arc::new(Relay::new(db, self.sqs.clone(), &self.queue_url)))
        } else {
            App::new(db)
        };
        shared::credit::routes::router(AppState { app, verifier: self.verifier.clone() })
    }
}

/// One reservation through a credit router.
async fn through_service(router: axum::Router, token: Arc<str>, customer: Uuid) -> bool {
    let body = json!({"order_id": Uuid::new_v4(), "amount": "1.00"}).to_string();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/customers/{customer}/credit/usages"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    router.oneshot(request).await.map(|response| response.status() == StatusCode::CREATED).unwrap_or(false)
}

/// The events written since `after_seq`, and how many of them are published.
async fn outbox_since(client: &tokio_postgres::Client, after_seq: i64) -> (i64, i64) {
    let row = client
        .query_one("SELECT count(*), count(published_at) FROM outbox WHERE seq > $1", &[&after_seq])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Marks every pending event published, so a publish after commit finds no backlog left by the
/// paths that do not publish; answers the last sequence number.
async fn settle_outbox(client: &tokio_postgres::Client) -> i64 {
    client.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL", &[]).await.unwrap();
    client.query_one("SELECT coalesce(max(seq), 0) FROM outbox", &[]).await.unwrap().get(0)
}

/// A deployed cell's events: written, and published right after their commit.
#[derive(Default)]
struct Publishing {
    written: i64,
    published: i64,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let seconds = common::bench_seconds(6);
    let organization = Uuid::new_v4();
    let database = format!("cs_bench_{}", Uuid::new_v4().simple());
    println!("seeding {} accounts in {database} ...", SPREAD_ACCOUNTS + 1);
    let customers = Arc::new(seed_accounts(&database, organization, SPREAD_ACCOUNTS).await);
    let hot = customers[0];
    let token: Arc<str> =
        issue_hs256_token(SECRET, organization, "bench", &["credit:write"], Duration::from_secs(3600)).unwrap().into();
    let sql: Arc<str> = shared::credit::store::use_credit_sql().into();
    let endpoint = local_aws::emulator_endpoint();
    let sqs = aws_sdk_sqs::Client::new(&shared::aws::for_emulator(&endpoint).await);
    let queues = create_queues(&sqs, &format!("bench{}-", std::process::id()), RetryPolicy::default())
        .await
        .unwrap_or_else(|e| panic!("the SQS emulator at {endpoint} does not answer ({e:#}); run `make bench-credit`"));
    let auth = AuthConfig {
        keys: TokenKeys::Hs256Secret(SECRET.into()),
        organization_claim: "org_id".into(),
        audience: None,
        issuer: None,
    };
    let setup = Arc::new(Setup {
        database: database.clone(),
        verifier: Arc::new(TokenVerifier::new(&auth).await.unwrap()),
        sqs: sqs.clone(),
        queue_url: queues.outbound.clone(),
    });
    let owner = admin(&database).await;

    print_conditions(
        &owner,
        &[
            ("clients", format!("{CLIENTS:?}")),
            ("service pool", "as many connections as clients, one router, no publishing".into()),
            (
                "deployed",
                format!(
                    "one router per client (a Lambda instance), pool {DEPLOYED_POOL_SIZE} each \
                     (template.yaml DATABASE_POOL_SIZE), publishing after commit to {endpoint} (FIFO)"
                ),
            ),
            ("direct pool (the floor)", "as many connections as clients".into()),
            ("duration", format!("{seconds} s per path and cell, in {ROUNDS} rounds, each path first in turn")),
            ("token", "HS256, verified on every call".into()),
        ],
    )
    .await;
    println!(
        "service: the credit router in process, events left in the outbox; deployed: one instance per client \
         publishing after each commit; direct: the same SQL on tokio-postgres. cpu: this process's CPU per \
         reservation.\n"
    );
    let mut lock_rows = Vec::new();
    println!(
        "| accounts | clients | service/s | p50 | p99 | cpu | deployed/s | p50 | p99 | cpu | direct/s | p50 | p99 | cpu \
         | service / direct | deployed / direct |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, spread) in [("1 hot", false), ("10,000", true)] {
        for clients in CLIENTS {
            let customers = customers.clone();
            let pick = move |turn: usize| {
                if spread {
                    customers[1 + Xorshift(turn as u64 * 0x9E37_79B9 + 1).below(SPREAD_ACCOUNTS)]
                } else {
                    hot
                }
            };
            let mut cells: [Cell; 3] = Default::default();
            let mut publishing = Publishing::default();
            let round = Duration::from_secs(seconds) / ROUNDS as u32;
            for round_number in 0..ROUNDS {
                for path in rotation(round_number, 3) {
                    let (token, pick) = (token.clone(), pick.clone());
                    match path {
                        0 => {
                            let router = setup.router(clients, false).await;
                            measure(
                                &mut cells[0],
                                clients,
                                round,
                                "self",
                                || async {},
                                move |(), turn| through_service(router.clone(), token.clone(), pick(turn)),
                            )
                            .await;
                        }
                        1 => {
                            let after_seq = settle_outbox(&owner).await;
                            let setup = setup.clone();
                            let instance = move || {
                                let setup = setup.clone();
                                async move { setup.router(DEPLOYED_POOL_SIZE, true).await }
                            };
                            measure(&mut cells[1], clients, round, "self", instance, move |router, turn| {
                                through_service(router, token.clone(), pick(turn))
                            })
                            .await;
                            let (written, published) = outbox_since(&owner, after_seq).await;
                            publishing.written += written;
                            publishing.published += published;
                            sqs.purge_queue().queue_url(&queues.outbound).send().await.ok();
                        }
                        _ => {
                            let (pool, sql) = (direct_pool(&database, clients), sql.clone());
                            drop(futures_util::future::join_all((0..clients).map(|_| pool.get())).await);
                            measure(
                                &mut cells[2],
                                clients,
                                round,
                                "self",
                                || async {},
                                move |(), turn| direct_reservation(pool.clone(), sql.clone(), organization, pick(turn)),
                            )
                            .await;
                        }
                    }
                }
            }
            let [mut service, mut deployed, mut direct] = cells;
            let failures = match service.failures + deployed.failures + direct.failures {
                0 => String::new(),
                _ => format!(" failures: {} / {} / {}", service.failures, deployed.failures, direct.failures),
            };
            let mut columns = String::new();
            for cell in [&mut service, &mut deployed, &mut direct] {
                columns += &format!(
                    " {:.0} | {:.1} ms | {:.1} ms | {:.0} µs |",
                    cell.per_second(),
                    cell.percentile_ms(0.50),
                    cell.percentile_ms(0.99),
                    cell.cpu_micros_per_call()
                );
            }
            println!(
                "| {label} | {clients} |{columns} {:.0}% | {:.0}% |{failures}",
                100.0 * service.per_second() / direct.per_second(),
                100.0 * deployed.per_second() / direct.per_second(),
            );
            lock_rows.push(format!(
                "| {label} | {clients} | {} | {} ({:.0}%) | {} | {:.0} |",
                publishing.written,
                publishing.published,
                100.0 * publishing.published as f64 / publishing.written.max(1) as f64,
                publishing.written - publishing.published,
                publishing.published as f64 / deployed.elapsed.as_secs_f64(),
            ));
        }
    }
    println!(
        "\nThe deployed path's publish after commit: each takes the organization's publish lock without waiting \
         (pg_try_advisory_xact_lock); a writer that finds it taken leaves its event to the scheduled relay.\n"
    );
    println!("| accounts | writers | events written | published after commit | left for the relay | publishes/s |");
    println!("|---|---|---|---|---|---|");
    lock_rows.iter().for_each(|row| println!("{row}"));
    sqs.delete_queue().queue_url(&queues.outbound).send().await.ok();
    sqs.delete_queue().queue_url(&queues.inbound).send().await.ok();
    sqs.delete_queue().queue_url(&queues.inbound_dlq).send().await.ok();
    drop(owner);
    admin("postgres").await.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.ok();
}
