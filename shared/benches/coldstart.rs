//! Cold start and footprint of every Lambda binary: the release binary (what `bootstrap` is)
//! started as Lambda starts it, against a Lambda Runtime API served by this process on
//! loopback, until it answers its first invocation (an API Gateway request for the HTTP
//! functions, an empty SQS batch for the consumer, a scheduled event for the jobs). Next to it,
//! the floor: the same database pool opened here (connect and role check, as every function
//! does at cold start), so that "ready" is the cold start without the database connect. Also
//! the binary's size and the process's peak resident memory (`VmHWM`) after its first answer.
//!
//! Run with `make bench-coldstart`; `BIN_DIR` names the release binaries (the script builds
//! them), `COLDSTART_RUNS` the starts per function (default 7; the median is reported).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use shared::auth::issue_hs256_token;
use shared::config::DatabaseConfig;
use shared::db::Db;
use tokio::sync::mpsc;
use uuid::Uuid;

mod common;
use common::{admin, admin_config, print_conditions, runtime_url};

const SECRET: &str = "coldstart-secret";

/// What a function's first invocation is.
enum Invocation {
    /// An API Gateway HTTP API (payload 2.0) request: method, path, query.
    Http(&'static str, &'static str, &'static str),
    /// An SQS batch with no records.
    Sqs,
    /// An EventBridge scheduled event.
    Schedule,
}

const FUNCTIONS: [(&str, Invocation); 8] = [
    ("customers", Invocation::Http("GET", "/api/v1/customers/{customer}", "")),
    ("credit", Invocation::Http("GET", "/api/v1/customers/{customer}/credit", "")),
    ("search", Invocation::Http("GET", "/api/v1/customers/search", "q=ana")),
    ("segments", Invocation::Http("GET", "/api/v1/segments", "")),
    ("events", Invocation::Sqs),
    ("outbox-relay", Invocation::Schedule),
    ("credit-overdue", Invocation::Schedule),
    ("rfm", Invocation::Schedule),
];

impl Invocation {
    fn event(&self, customer: Uuid, token: &str) -> Value {
        match self {
            Invocation::Http(method, path, query) => {
                let path = path.replace("{customer}", &customer.to_string());
                json!({
                    "version": "2.0",
                    "routeKey": "$default",
                    "rawPath": path,
                    "rawQueryString": query,
                    "headers": {"authorization": format!("Bearer {token}"), "host": "api.example.com"},
                    "requestContext": {
                        "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                        "domainPrefix": "api", "requestId": "coldstart", "routeKey": "$default", "stage": "$default",
                        "time": "02/Dec/2026:10:00:00 +0000", "timeEpoch": 1_795_428_000_000u64,
                        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}
                    },
                    "isBase64Encoded": false
                })
            }
            Invocation::Sqs => json!({ "Records": [] }),
            Invocation::Schedule => json!({
                "version": "0", "id": "coldstart", "detail-type": "Scheduled Event", "source": "aws.events",
                "account": "123456789012", "time": "2026-12-02T03:00:00Z", "region": "us-east-1",
                "resources": [], "detail": {}
            }),
        }
    }
}

/// The Runtime API of one start: hands out `event` once, then reports the answer.
#[derive(Clone)]
struct RuntimeApi {
    event: Arc<Mutex<Option<Value>>>,
    answers: mpsc::UnboundedSender<(Instant, Result<Value, String>)>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    let event = api.event.lock().unwrap().take();
    let Some(event) = event else { return std::future::pending().await };
    let mut headers = HeaderMap::new();
    let deadline = (chrono::Utc::now() + chrono::TimeDelta::seconds(30)).timestamp_millis();
    headers.insert("lambda-runtime-aws-request-id", "coldstart-1".parse().unwrap());
    headers.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().unwrap());
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:f".parse().unwrap(),
    );
    headers.insert("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".parse().unwrap());
    (headers, event.to_string())
}

async fn answered(State(api): State<RuntimeApi>, Path(_id): Path<String>, body: String) -> &'static str {
    let answer = serde_json::from_str(&body).map_err(|_| body);
    api.answers.send((Instant::now(), answer)).ok();
    "{}"
}

async fn failed(State(api): State<RuntimeApi>, body: String) -> &'static str {
    api.answers.send((Instant::now(), Err(body))).ok();
    "{}"
}

/// One measured start.
struct Start {
    to_answer: Duration,
    peak_kib: u64,
}

/// Starts `binary` against a Runtime API handing out `event`; measures until its answer.
async fn start_once(binary: &str, env: &HashMap<&str, String>, event: Value) -> Start {
    let (answers, mut answer) = mpsc::unbounded_channel();
    let api = RuntimeApi { event: Arc::new(Mutex::new(Some(event))), answers };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(answered))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
        .route("/2018-06-01/runtime/init/error", post(failed))
        .with_state(api);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {binary}: {error}"));
    let outcome = tokio::time::timeout(Duration::from_secs(30), answer.recv()).await;
    let peak_kib = peak_resident_kib(child.id());
    child.kill().ok();
    let output = child.wait_with_output().unwrap();
    server.abort();
    let (at, result) = outcome
        .unwrap_or_else(|_| panic!("{binary} did not answer within 30 s: {}", String::from_utf8_lossy(&output.stderr)))
        .expect("an answer");
    if let Err(error) = result {
        panic!("{binary} failed its first invocation: {error}");
    }
    Start { to_answer: at - started, peak_kib }
}

/// `VmHWM` of a live process, in KiB.
fn peak_resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The size of `binary` without its symbols (`strip`, when the machine has it).
fn stripped_size(binary: &str) -> Option<u64> {
    let copy = std::env::temp_dir().join(format!("coldstart-{}", Uuid::new_v4().simple()));
    let stripped = Command::new("strip").arg("-o").arg(&copy).arg(binary).status().ok()?.success();
    let size = std::fs::metadata(&copy).ok().map(|m| m.len()).filter(|_| stripped);
    std::fs::remove_file(&copy).ok();
    size
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let bin_dir = std::env::var("BIN_DIR").expect("BIN_DIR names the release binaries (make bench-coldstart sets it)");
    let runs: usize = std::env::var("COLDSTART_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(7);
    let database = format!("cs_bench_{}", Uuid::new_v4().simple());
    let organization = Uuid::new_v4();
    admin("postgres").await.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
    shared::migrations::run(&admin_config(&database).into()).await.unwrap();
    admin(&database)
        .await
        .execute("INSERT INTO organizations (organization_id) VALUES ($1)", &[&organization])
        .await
        .unwrap();
    let scopes = ["customers:read", "credit:read", "segments:read"];
    let token = issue_hs256_token(SECRET, organization, "coldstart", &scopes, Duration::from_secs(3600)).unwrap();

    let url = runtime_url(&database);
    let env: HashMap<&str, String> = [
        ("DATABASE_URL", url.clone()),
        ("DATABASE_POOL_SIZE", "2".into()),
        ("JWT_HS256_SECRET", SECRET.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "coldstart".into()),
        ("AWS_SECRET_ACCESS_KEY", "coldstart".into()),
        ("AWS_LAMBDA_FUNCTION_NAME", "coldstart".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("OUTBOX_QUEUE_URL", "http://127.0.0.1:9/000000000000/customers-events.fifo".into()),
        ("RUST_LOG", "warn".into()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ]
    .into_iter()
    .collect();

    let database_config = DatabaseConfig { connection: url.parse().unwrap(), pool_size: 2 };
    let mut connects = Vec::new();
    for _ in 0..runs {
        let began = Instant::now();
        let db = Db::open(&database_config).await.expect("the runtime role connects");
        connects.push(began.elapsed().as_secs_f64() * 1000.0);
        drop(db);
    }
    let connect_ms = median(connects);

    print_conditions(
        &admin(&database).await,
        &[
            ("binaries", format!("{bin_dir}/<function> (release build; what cargo lambda packs as bootstrap)")),
            ("runtime api", "served by the bench on loopback; one invocation per start".into()),
            (
                "environment",
                "DATABASE_URL (loopback, no TLS), pool 2, HS256; no REDIS_URL; OUTBOX_QUEUE_URL set but never \
                 sent to (no invocation writes an event)"
                    .into(),
            ),
            ("starts", format!("{runs} per function, median reported")),
            (
                "floor",
                format!("the functions' pool opened in this process (connect and role check): {connect_ms:.1} ms"),
            ),
        ],
    )
    .await;
    println!(
        "| function | bootstrap size | stripped | start to first answer | database connect (floor) | ready without the connect | peak memory |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, invocation) in &FUNCTIONS {
        let binary = format!("{bin_dir}/{name}");
        let size =
            std::fs::metadata(&binary).unwrap_or_else(|_| panic!("{binary} is missing: build it (release)")).len();
        let mut starts = Vec::new();
        for _ in 0..runs {
            starts.push(start_once(&binary, &env, invocation.event(Uuid::new_v4(), &token)).await);
        }
        let answer_ms = median(starts.iter().map(|s| s.to_answer.as_secs_f64() * 1000.0).collect());
        let peak_mib = median(starts.iter().map(|s| s.peak_kib as f64 / 1024.0).collect());
        println!(
            "| {name} | {:.1} MB | {} | {answer_ms:.1} ms | {connect_ms:.1} ms | {:.1} ms | {peak_mib:.1} MB |",
            size as f64 / 1_000_000.0,
            stripped_size(&binary).map_or("-".into(), |bytes| format!("{:.1} MB", bytes as f64 / 1_000_000.0)),
            (answer_ms - connect_ms).max(0.0),
        );
    }
    admin("postgres").await.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.ok();
}
