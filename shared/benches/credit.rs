//! Credit reservation benchmark: the credit router in process (token check, JSON, routing,
//! the tenant transaction) against the same reservation SQL run directly with tokio-postgres,
//! on one hot account and on 10,000 accounts, at 1, 8 and 64 clients. Each cell alternates the
//! two paths in rounds so that drift (WAL fsync, checkpoints) falls on both alike.
//!
//! Run with `make bench-credit` (`BENCH_SECONDS` per path and cell, default 6).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use http::{Method, Request, StatusCode};
use serde_json::json;
use shared::auth::{issue_hs256_token, TokenVerifier};
use shared::config::{AuthConfig, TokenKeys};
use shared::db::{ConnectOptions, Db};
use shared::events::{types, OutboxEvent};
use shared::http::AppState;
use shared::money::Money;
use tower::ServiceExt;
use uuid::Uuid;

mod common;
use common::{admin, admin_config, runtime_config, Xorshift};

const SECRET: &str = "bench-secret";
const SPREAD_ACCOUNTS: usize = 10_000;
const ROUNDS: u32 = 3;

/// Reservations, their latencies, and this process's CPU over the runs of one path.
#[derive(Default)]
struct Cell {
    latencies: Vec<Duration>,
    elapsed: Duration,
    cpu: Duration,
    failures: usize,
}

impl Cell {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&mut self, q: f64) -> f64 {
        common::percentile_ms(&mut self.latencies, q)
    }

    fn cpu_micros_per_reservation(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }
}

/// User + system CPU time of this process so far (Linux clock ticks, 10 ms each).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// Runs `clients` loops of `reserve` for `duration` and adds what they did to `cell`.
async fn measure<F, Fut>(cell: &mut Cell, clients: usize, duration: Duration, reserve: F)
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let (started, cpu_before) = (Instant::now(), process_cpu());
    let deadline = started + duration;
    let seed = cell.latencies.len();
    let tasks = (0..clients).map(|client| {
        let reserve = reserve.clone();
        tokio::spawn(async move {
            let (mut latencies, mut failures, mut turn) = (Vec::new(), 0, seed + client * 7919);
            while Instant::now() < deadline {
                let began = Instant::now();
                if reserve(turn).await {
                    latencies.push(began.elapsed());
                } else {
                    failures += 1;
                }
                turn += 1;
            }
            (latencies, failures)
        })
    });
    for (latencies, failures) in futures_util::future::join_all(tasks).await.into_iter().map(Result::unwrap) {
        cell.latencies.extend(latencies);
        cell.failures += failures;
    }
    cell.elapsed += started.elapsed();
    cell.cpu += process_cpu().saturating_sub(cpu_before);
}

/// A fresh database with one organization, a hot account and 10,000 more, all approved with
/// a limit no benchmark reaches. Returns the customers, the hot one first.
async fn seed(database: &str, organization: Uuid) -> Vec<Uuid> {
    admin("postgres").await.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
    shared::migrations::run(&admin_config(database).into()).await.unwrap();
    let client = admin(database).await;
    client.execute("INSERT INTO organizations (organization_id) VALUES ($1)", &[&organization]).await.unwrap();
    client
        .execute(
            "INSERT INTO customers (customer_id, organization_id, first_name, last_name)
             SELECT gen_random_uuid(), $1, 'Bench', 'Customer ' || g FROM generate_series(0, $2) g",
            &[&organization, &(SPREAD_ACCOUNTS as i32)],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO credit_accounts (credit_account_id, organization_id, customer_id, credit_limit, status,
                                          approved_at, approved_by)
             SELECT gen_random_uuid(), organization_id, customer_id, 9999999999.99, 'approved', now(), 'bench'
             FROM customers;
             ANALYZE",
        )
        .await
        .unwrap();
    client
        .query("SELECT customer_id FROM customers ORDER BY customer_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The credit router over a pool of `size` connections; dropping it closes them.
async fn service_router(database: &str, size: usize) -> axum::Router {
    let db = Db::from_config(runtime_config(database), size).unwrap();
    let auth = AuthConfig {
        keys: TokenKeys::Hs256Secret(SECRET.into()),
        organization_claim: "org_id".into(),
        audience: None,
        issuer: None,
    };
    shared::credit::routes::router(AppState {
        app: shared::app::App::new(db),
        verifier: Arc::new(TokenVerifier::new(&auth).await.unwrap()),
    })
}

/// A plain pool of `size` connections as the runtime role, with the service's TLS.
fn direct_pool(database: &str, size: usize) -> Pool {
    let config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let tls = ConnectOptions::from(runtime_config(database)).tls.connector().unwrap();
    Pool::builder(Manager::from_config(runtime_config(database), tls, config)).max_size(size).build().unwrap()
}

/// One reservation through the credit function's router.
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

/// The same reservation as the service makes it, straight on a pooled connection:
/// BEGIN, set the tenant, the reservation statement, COMMIT.
async fn direct(pool: Pool, sql: Arc<str>, organization: Uuid, customer: Uuid) -> bool {
    let run = async {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let set_tenant = tx.prepare_cached(shared::db::SET_TENANT_SQL).await?;
        tx.execute(&set_tenant, &[&organization.to_string()]).await?;
        let (order, amount) = (Uuid::new_v4(), Money::parse_positive("1.00").unwrap());
        let data = json!({"customer_id": customer, "order_id": order, "amount": amount});
        let event = OutboxEvent::new(organization, types::CREDIT_USED, customer, data)?;
        let statement = tx.prepare_cached(&sql).await?;
        let (usage_id, movement_id) = (Uuid::now_v7(), Uuid::now_v7());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&organization, &customer, &amount, &usage_id, &order, &"bench", &movement_id];
        let row = tx.query_opt(&statement, &[&params[..], &event.params()].concat()).await?;
        tx.commit().await?;
        anyhow::Ok(row.is_some())
    };
    run.await.unwrap_or(false)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let organization = Uuid::new_v4();
    let database = format!("cs_bench_{}", Uuid::new_v4().simple());
    println!("seeding {} accounts in {database} ...", SPREAD_ACCOUNTS + 1);
    let customers = Arc::new(seed(&database, organization).await);
    let hot = customers[0];
    let token: Arc<str> =
        issue_hs256_token(SECRET, organization, "bench", &["credit:write"], Duration::from_secs(3600)).unwrap().into();
    let sql: Arc<str> = shared::credit::store::use_credit_sql().into();

    println!(
        "\n{seconds} s per path and cell in {ROUNDS} alternating rounds. service: the credit router in process; \
         direct: the same SQL on tokio-postgres; cpu: this process's CPU per reservation.\n"
    );
    println!("| accounts | clients | service/s | p50 | p99 | cpu | direct/s | p50 | p99 | cpu | service / direct |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, spread) in [("1 hot", false), ("10,000", true)] {
        for clients in [1, 8, 64] {
            let customers = customers.clone();
            let pick = move |turn: usize| {
                if spread {
                    customers[1 + Xorshift(turn as u64 * 0x9E37_79B9 + 1).below(SPREAD_ACCOUNTS)]
                } else {
                    hot
                }
            };
            let (mut service, mut direct_path) = (Cell::default(), Cell::default());
            let round = Duration::from_secs(seconds) / ROUNDS;
            for _ in 0..ROUNDS {
                let (router, token, pick_here) =
                    (service_router(&database, clients).await, token.clone(), pick.clone());
                measure(&mut service, clients, round, move |turn| {
                    through_service(router.clone(), token.clone(), pick_here(turn))
                })
                .await;
                let (pool, sql, pick_here) = (direct_pool(&database, clients), sql.clone(), pick.clone());
                measure(&mut direct_path, clients, round, move |turn| {
                    direct(pool.clone(), sql.clone(), organization, pick_here(turn))
                })
                .await;
            }
            let failures = match service.failures + direct_path.failures {
                0 => String::new(),
                _ => format!(" failures: {} / {}", service.failures, direct_path.failures),
            };
            println!(
                "| {label} | {clients} | {:.0} | {:.1} ms | {:.1} ms | {:.0} µs | {:.0} | {:.1} ms | {:.1} ms | {:.0} µs | {:.0}% |{failures}",
                service.per_second(),
                service.percentile_ms(0.50),
                service.percentile_ms(0.99),
                service.cpu_micros_per_reservation(),
                direct_path.per_second(),
                direct_path.percentile_ms(0.50),
                direct_path.percentile_ms(0.99),
                direct_path.cpu_micros_per_reservation(),
                100.0 * service.per_second() / direct_path.per_second(),
            );
        }
    }
    admin("postgres").await.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.ok();
}
