//! Credit reservation benchmark: the credit router in process (token check, JSON, routing,
//! the tenant transaction) against the same reservation SQL run directly with tokio-postgres,
//! on one hot account and on 10,000 accounts, at 1, 8 and 64 clients. Each cell alternates the
//! two paths in rounds so that drift (WAL fsync, checkpoints) falls on both alike.
//!
//! Run with `make bench-credit` (`BENCH_SECONDS` per path and cell, default 6).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use serde_json::json;
use shared::auth::{issue_hs256_token, TokenVerifier};
use shared::config::{AuthConfig, TokenKeys};
use shared::db::Db;
use shared::http::AppState;
use tower::ServiceExt;
use uuid::Uuid;

mod common;
use common::credit::{direct_pool, direct_reservation, seed_accounts};
use common::{admin, measure, runtime_config, Cell, Xorshift};

const SECRET: &str = "bench-secret";
const SPREAD_ACCOUNTS: usize = 10_000;
const ROUNDS: u32 = 3;

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

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let organization = Uuid::new_v4();
    let database = format!("cs_bench_{}", Uuid::new_v4().simple());
    println!("seeding {} accounts in {database} ...", SPREAD_ACCOUNTS + 1);
    let customers = Arc::new(seed_accounts(&database, organization, SPREAD_ACCOUNTS).await);
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
                measure(
                    &mut service,
                    clients,
                    round,
                    "self",
                    || async {},
                    move |(), turn| through_service(router.clone(), token.clone(), pick_here(turn)),
                )
                .await;
                let (pool, sql, pick_here) = (direct_pool(&database, clients), sql.clone(), pick.clone());
                measure(
                    &mut direct_path,
                    clients,
                    round,
                    "self",
                    || async {},
                    move |(), turn| direct_reservation(pool.clone(), sql.clone(), organization, pick_here(turn)),
                )
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
                service.cpu_micros_per_call(),
                direct_path.per_second(),
                direct_path.percentile_ms(0.50),
                direct_path.percentile_ms(0.99),
                direct_path.cpu_micros_per_call(),
                100.0 * service.per_second() / direct_path.per_second(),
            );
        }
    }
    admin("postgres").await.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.ok();
}
