//! Container server benchmark: the `customer-server` binary (profile `fast`, as its image) as a
//! process of its own on loopback ports, loaded from this process by N callers, each on its own
//! gRPC channel or HTTP connection, next to the same SQL run directly on tokio-postgres (the
//! floor): the same statements, each in a transaction that sets the tenant, over a pool as large
//! as the server's.
//! Workloads: `UseCredit` on one hot account and on 10,000, `GetCustomer`, `BatchGetCustomers`
//! (50 ids), HTTP `GET /api/v1/customers/{id}` and HTTP `POST .../credit/usages`, at 1, 8 and 64
//! callers. Each cell alternates the two paths in rounds, and which of them goes first.
//!
//! A second server process reads through Redis (`REDIS_URL`); the first has no cache. The
//! cached reads (`GetCustomer` and HTTP GET over the 10,000 customers) are measured against
//! the same reads on the uncached server, with the hit ratio Redis counted meanwhile (from
//! `INFO commandstats`: each miss stores its answer with one `HSET`, each read is one `HMGET`).
//!
//! Run with `make bench-server`; `SERVER_BIN` names the binary (the script builds it),
//! `BENCH_SECONDS` is per path and cell (default 4), `BENCH_SERVER_POOL` the pool size of the
//! server and of the floor (default 16, the deployed `DatabasePoolSize`), `BENCH_ONLY` keeps the
//! workloads whose label contains it (`BENCH_ONLY=GetCustomer`).

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use customer_server::proto::customer_service_client::CustomerServiceClient;
use customer_server::proto::{BatchGetCustomersRequest, GetCustomerRequest, UseCreditRequest};
use deadpool_postgres::Pool;
use serde_json::json;
use shared::auth::issue_hs256_token;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

mod common;
use common::credit::{direct_pool, direct_read, direct_reservation, seed_accounts};
use common::{admin, measure, print_conditions, Cell, Xorshift};

const SECRET: &str = "bench-secret";
const SPREAD_ACCOUNTS: usize = 10_000;
const BATCH: usize = 50;
const ROUNDS: u32 = 4;
const CLIENTS: [usize; 3] = [1, 8, 64];

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    UseCreditHot,
    UseCreditSpread,
    GetCustomer,
    BatchGetCustomers,
    HttpGetCustomer,
    HttpUseCreditHot,
    HttpUseCreditSpread,
    CachedGetCustomer,
    CachedHttpGetCustomer,
}

impl Workload {
    const ALL: [Workload; 9] = [
        Workload::UseCreditHot,
        Workload::UseCreditSpread,
        Workload::GetCustomer,
        Workload::BatchGetCustomers,
        Workload::HttpGetCustomer,
        Workload::HttpUseCreditHot,
        Workload::HttpUseCreditSpread,
        Workload::CachedGetCustomer,
        Workload::CachedHttpGetCustomer,
    ];

    fn label(self) -> &'static str {
        match self {
            Workload::UseCreditHot => "gRPC UseCredit, 1 hot account",
            Workload::UseCreditSpread => "gRPC UseCredit, 10,000 accounts",
            Workload::GetCustomer => "gRPC GetCustomer",
            Workload::BatchGetCustomers => "gRPC BatchGetCustomers (50)",
            Workload::HttpGetCustomer => "HTTP GET customer",
            Workload::HttpUseCreditHot => "HTTP POST credit usage, 1 hot",
            Workload::HttpUseCreditSpread => "HTTP POST credit usage, 10,000",
            Workload::CachedGetCustomer => "gRPC GetCustomer, cached",
            Workload::CachedHttpGetCustomer => "HTTP GET customer, cached",
        }
    }

    fn is_grpc(self) -> bool {
        matches!(
            self,
            Workload::UseCreditHot
                | Workload::UseCreditSpread
                | Workload::GetCustomer
                | Workload::BatchGetCustomers
                | Workload::CachedGetCustomer
        )
    }

    /// The same reads on the server without the cache, for a cached workload.
    fn uncached(self) -> Option<Workload> {
        match self {
            Workload::CachedGetCustomer => Some(Workload::GetCustomer),
            Workload::CachedHttpGetCustomer => Some(Workload::HttpGetCustomer),
            _ => None,
        }
    }

    fn on_hot_account(self) -> bool {
        matches!(self, Workload::UseCreditHot | Workload::HttpUseCreditHot)
    }
}

/// The server process on two free loopback ports; killed when dropped.
struct Server {
    child: Child,
    grpc: String,
    http: String,
}

impl Server {
    /// Starts `bin` on `database` with a pool of `pool`, reading through the Redis at `redis`
    /// if any, and waits until its health check answers.
    async fn start(bin: &str, database: &str, pool: usize, redis: Option<&str>) -> Self {
        let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (http_port, grpc_port) = (free_port(), free_port());
        let url = common::runtime_url(database);
        let mut command = Command::new(bin);
        match redis {
            Some(redis) => command.env("REDIS_URL", redis),
            None => command.env_remove("REDIS_URL"),
        };
        let child = command
            .env("DATABASE_URL", url)
            .env("DATABASE_POOL_SIZE", pool.to_string())
            .env("JWT_HS256_SECRET", SECRET)
            .env("HTTP_PORT", http_port.to_string())
            .env("GRPC_PORT", grpc_port.to_string())
            .env("RUST_LOG", std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .env_remove("OUTBOX_QUEUE_URL")
            .env_remove("JWT_JWKS_URL")
            .env_remove("DATABASE_SECRET_ARN")
            .spawn()
            .unwrap_or_else(|error| panic!("starting {bin}: {error}"));
        let mut server = Self {
            child,
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            http: format!("http://127.0.0.1:{http_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while customer_server::check_health(grpc_port).await.is_err() {
            assert!(server.child.try_wait().unwrap().is_none(), "the server exited at start");
            assert!(Instant::now() < deadline, "the server did not become healthy within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// SIGTERM, then waits for the calls in flight and the exit.
    fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.pid()]).status().ok();
        self.child.wait().ok();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Everything a caller needs, shared.
struct Fixture {
    organization: Uuid,
    customers: Vec<Uuid>,
    customer_texts: Vec<String>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
    bearer: String,
    use_credit_sql: Arc<str>,
    grpc: Endpoint,
    http: String,
    cached_grpc: Endpoint,
    cached_http: String,
}

impl Fixture {
    /// The customer a call charges or reads: the hot one, or one of the 10,000 others.
    fn pick(&self, workload: Workload, turn: usize) -> usize {
        match workload.on_hot_account() {
            true => 0,
            false => 1 + Xorshift(turn as u64 * 0x9E37_79B9 + 1).below(SPREAD_ACCOUNTS),
        }
    }

    fn batch(&self, turn: usize) -> impl Iterator<Item = usize> {
        let mut random = Xorshift(turn as u64 * 0x9E37_79B9 + 1);
        (0..BATCH).map(move |_| 1 + random.below(SPREAD_ACCOUNTS))
    }

    fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", self.authorization.clone());
        request
    }
}

/// One call through the server: gRPC on `channel` or HTTP on `http`, each the caller's own.
async fn through_server(
    fixture: Arc<Fixture>,
    workload: Workload,
    (channel, http): (Option<Channel>, Option<reqwest::Client>),
    turn: usize,
) -> bool {
    let customer = fixture.pick(workload, turn);
    let text = fixture.customer_texts[customer].clone();
    if let Some(channel) = channel {
        let mut client = CustomerServiceClient::new(channel);
        let request = |order: Uuid| UseCreditRequest {
            customer_id: text.clone(),
            order_id: order.to_string(),
            amount: "1.00".into(),
        };
        return match workload {
            Workload::UseCreditHot | Workload::UseCreditSpread => client
                .use_credit(fixture.grpc_request(request(Uuid::new_v4())))
                .await
                .is_ok_and(|r| !r.get_ref().replayed),
            Workload::GetCustomer | Workload::CachedGetCustomer => {
                client.get_customer(fixture.grpc_request(GetCustomerRequest { customer_id: text })).await.is_ok()
            }
            _ => {
                let customer_ids = fixture.batch(turn).map(|n| fixture.customer_texts[n].clone()).collect();
                let answer =
                    client.batch_get_customers(fixture.grpc_request(BatchGetCustomersRequest { customer_ids }));
                answer.await.is_ok_and(|r| r.get_ref().customers.len() == BATCH)
            }
        };
    }
    let http = http.expect("an HTTP caller has a client");
    let base = if workload.uncached().is_some() { &fixture.cached_http } else { &fixture.http };
    let url = format!("{base}/api/v1/customers/{text}");
    let (request, expected) = match workload {
        Workload::HttpGetCustomer | Workload::CachedHttpGetCustomer => (http.get(url), reqwest::StatusCode::OK),
        _ => {
            let body = json!({"order_id": Uuid::new_v4(), "amount": "1.00"});
            (http.post(format!("{url}/credit/usages")).json(&body), reqwest::StatusCode::CREATED)
        }
    };
    match request.header("authorization", &fixture.bearer).send().await {
        Ok(response) => response.status() == expected && response.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// The same work straight on the database: the reservation, the customer SELECT or the batch SELECT.
async fn direct(fixture: Arc<Fixture>, workload: Workload, pool: Pool, turn: usize) -> bool {
    let customer = fixture.customers[fixture.pick(workload, turn)];
    match workload {
        Workload::GetCustomer | Workload::HttpGetCustomer => {
            direct_read(pool, shared::customers::store::find_sql(), fixture.organization, &customer).await
        }
        Workload::BatchGetCustomers => {
            let ids: Vec<Uuid> = fixture.batch(turn).map(|n| fixture.customers[n]).collect();
            direct_read(pool, shared::customers::store::find_many_sql(), fixture.organization, &ids).await
        }
        _ => direct_reservation(pool, fixture.use_credit_sql.clone(), fixture.organization, customer).await,
    }
}

/// A caller's own connection to the server, used once before the timed window.
async fn connect(fixture: &Arc<Fixture>, workload: Workload) -> (Option<Channel>, Option<reqwest::Client>) {
    let state = if workload.is_grpc() {
        let endpoint = if workload.uncached().is_some() { &fixture.cached_grpc } else { &fixture.grpc };
        (Some(endpoint.connect().await.expect("the gRPC port answers")), None)
    } else {
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).http1_only().build().unwrap();
        (None, Some(client))
    };
    assert!(
        through_server(fixture.clone(), workload, state.clone(), 0).await,
        "a first {} call fails",
        workload.label()
    );
    state
}

/// Reads every customer once through the cached server (`BatchGetCustomers` of 100), so the
/// cached rows measure a cache in use rather than one filling.
async fn warm_cache(fixture: &Fixture) {
    let mut client = CustomerServiceClient::new(fixture.cached_grpc.connect().await.expect("the gRPC port answers"));
    for ids in fixture.customer_texts.chunks(100) {
        let request = fixture.grpc_request(BatchGetCustomersRequest { customer_ids: ids.to_vec() });
        let answer = client.batch_get_customers(request).await.expect("a warming batch answers");
        assert_eq!(answer.get_ref().customers.len(), ids.len());
    }
}

/// Redis's count of `HMGET` (cache reads, one per customer) and `HSET` (stores after a miss)
/// since it started.
fn cache_commands(redis: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO").arg("commandstats").query(redis).expect("Redis answers INFO");
    let calls = |command: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0)
    };
    (calls("hmget"), calls("hset"))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let bin =
        std::env::var("SERVER_BIN").expect("SERVER_BIN names the customer-server binary (make bench-server sets it)");
    let seconds = common::bench_seconds(4);
    let pool_size: usize = std::env::var("BENCH_SERVER_POOL").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let organization = Uuid::new_v4();
    let database = format!("cs_bench_{}", Uuid::new_v4().simple());
    println!("seeding {} customers with approved credit accounts in {database} ...", SPREAD_ACCOUNTS + 1);
    let customers = seed_accounts(&database, organization, SPREAD_ACCOUNTS).await;
    let server = Server::start(&bin, &database, pool_size, None).await;
    let redis_url =
        std::env::var("REDIS_URL").expect("REDIS_URL names the Redis of the cached server (make bench-server sets it)");
    let cached = Server::start(&bin, &database, pool_size, Some(&redis_url)).await;
    let mut redis = redis::Client::open(redis_url.as_str())
        .and_then(|client| client.get_connection())
        .expect("the Redis of REDIS_URL answers");
    let token = issue_hs256_token(
        SECRET,
        organization,
        "bench",
        &["customers:read", "credit:write"],
        Duration::from_secs(3600),
    )
    .unwrap();
    let fixture = Arc::new(Fixture {
        organization,
        customer_texts: customers.iter().map(Uuid::to_string).collect(),
        customers,
        authorization: format!("Bearer {token}").parse().unwrap(),
        bearer: format!("Bearer {token}"),
        use_credit_sql: shared::credit::store::use_credit_sql().into(),
        grpc: Endpoint::from_shared(server.grpc.clone()).unwrap(),
        http: server.http.clone(),
        cached_grpc: Endpoint::from_shared(cached.grpc.clone()).unwrap(),
        cached_http: cached.http.clone(),
    });
    let pool = direct_pool(&database, pool_size);

    print_conditions(
        &admin(&database).await,
        &[
            (
                "server",
                format!(
                    "{bin} (profile fast, as its image), process {}, RUST_LOG=warn, no OUTBOX_QUEUE_URL (events stay in the outbox)",
                    server.pid()
                ),
            ),
            ("server pool (DATABASE_POOL_SIZE)", pool_size.to_string()),
            (
                "cached server",
                format!("a second process ({}) with REDIS_URL={redis_url}, default cache settings", cached.pid()),
            ),
            ("direct pool (the floor)", format!("{pool_size}, shared by the callers like the server's")),
            ("callers", format!("{CLIENTS:?}, each on its own gRPC channel (HTTP/2) or HTTP/1.1 connection")),
            (
                "duration",
                format!("{seconds} s per path and cell, in {ROUNDS} rounds alternating which path goes first"),
            ),
            ("token", "HS256, verified on every call".into()),
        ],
    )
    .await;
    println!(
        "server: the customer-server process over loopback; direct: the same SQL on tokio-postgres. \
         CPU: the server process's, and the direct client's, per call.\n"
    );
    println!("| workload | callers | server/s | p50 | p99 | CPU | direct/s | p50 | p99 | CPU | server / direct |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let round = Duration::from_secs(seconds) / ROUNDS;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let mut cached_rows = Vec::new();
    for workload in Workload::ALL.into_iter().filter(|workload| workload.label().contains(&only)) {
        if workload.uncached().is_some() && cached_rows.is_empty() {
            warm_cache(&fixture).await;
        }
        for clients in CLIENTS {
            let (mut through, mut floor) = (Cell::default(), Cell::default());
            let (mut reads, mut stores) = (0, 0);
            for round_number in 0..ROUNDS {
                for server_turn in [round_number % 2 == 0, round_number % 2 == 1] {
                    let fixture = fixture.clone();
                    let connecting = fixture.clone();
                    if server_turn {
                        let pid = if workload.uncached().is_some() { cached.pid() } else { server.pid() };
                        let before = cache_commands(&mut redis);
                        measure(
                            &mut through,
                            clients,
                            round,
                            &pid,
                            || connect(&connecting, workload),
                            move |state, turn| through_server(fixture.clone(), workload, state, turn),
                        )
                        .await;
                        let after = cache_commands(&mut redis);
                        (reads, stores) = (reads + after.0 - before.0, stores + after.1 - before.1);
                    } else if let Some(uncached) = workload.uncached() {
                        measure(
                            &mut floor,
                            clients,
                            round,
                            &server.pid(),
                            || connect(&connecting, uncached),
                            move |state, turn| through_server(fixture.clone(), uncached, state, turn),
                        )
                        .await;
                    } else {
                        let pool = pool.clone();
                        measure(
                            &mut floor,
                            clients,
                            round,
                            "self",
                            || std::future::ready(pool.clone()),
                            move |pool, turn| direct(fixture.clone(), workload, pool, turn),
                        )
                        .await;
                    }
                }
            }
            let failures = match through.failures + floor.failures {
                0 => String::new(),
                _ => format!(" failures: {} / {}", through.failures, floor.failures),
            };
            let row = format!(
                "| {} | {clients} | {:.0} | {:.1} ms | {:.1} ms | {:.0} µs | {:.0} | {:.1} ms | {:.1} ms | {:.0} µs | {:.0}% |",
                workload.label(),
                through.per_second(),
                through.percentile_ms(0.50),
                through.percentile_ms(0.99),
                through.cpu_micros_per_call(),
                floor.per_second(),
                floor.percentile_ms(0.50),
                floor.percentile_ms(0.99),
                floor.cpu_micros_per_call(),
                100.0 * through.per_second() / floor.per_second(),
            );
            match workload.uncached() {
                None => println!("{row}{failures}"),
                Some(_) => {
                    let hit_ratio = 100.0 * (1.0 - stores as f64 / reads.max(1) as f64);
                    cached_rows.push(format!("{row} {hit_ratio:.1}% |{failures}"));
                }
            }
        }
    }
    if !cached_rows.is_empty() {
        println!(
            "\ncached: the server process reading through Redis, after reading every customer once through it; \
             uncached: the server without it. Hit ratio: 1 - HSET/HMGET calls Redis counted during the cached path.\n"
        );
        println!(
            "| workload | callers | cached/s | p50 | p99 | CPU | uncached/s | p50 | p99 | CPU | cached / uncached | hit ratio |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        cached_rows.iter().for_each(|row| println!("{row}"));
    }
    server.stop();
    cached.stop();
    drop(pool);
    admin("postgres").await.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.ok();
}
