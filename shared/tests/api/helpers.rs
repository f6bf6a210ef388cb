//! A fresh, migrated database per test, the customers router over it, and request helpers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
pub use local_aws::emulator_endpoint;
use local_aws::Queues;
use serde_json::Value;
use shared::app::App;
use shared::auth::{issue_hs256_token, TokenVerifier};
use shared::cache::Cache;
use shared::config::{AuthConfig, CacheConfig, TokenKeys};
use shared::db::Db;
use shared::events::Relay;
use shared::http::AppState;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;
use uuid::Uuid;

pub const SECRET: &str = "test-secret";
pub const ALL: &[&str] = &[
    "customers:read",
    "customers:write",
    "customers:admin",
    "credit:read",
    "credit:write",
    "credit:approve",
    "segments:read",
    "segments:write",
];

/// The admin (owner) connection string: `ADMIN_DATABASE_URL`, set by `make test`.
pub fn admin_url() -> String {
    std::env::var("ADMIN_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn hs256_auth() -> AuthConfig {
    AuthConfig {
        keys: TokenKeys::Hs256Secret(SECRET.into()),
        organization_claim: "org_id".into(),
        audience: None,
        issuer: None,
    }
}

pub struct TestApp {
    /// The customers function's router. With `TEST_HTTP_API=server`, all three routers are the
    /// container server's one router, so the same route tests check its HTTP side.
    pub router: Router,
    /// The credit function's router; requests whose path has `/credit` go here.
    pub credit: Router,
    /// The search function's router; `/customers/search` goes here.
    pub search: Router,
    /// The segments function's router; `/segments...` and `/customers/{id}/segment...` go here.
    pub segments: Router,
    /// The runtime role's pool, as the functions use it.
    pub db: Db,
    /// The application handle the routers share (publishing when the app was spawned so).
    pub core: App,
    pub database: String,
    pub org_a: Uuid,
    pub org_b: Uuid,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn content_type(&self) -> &str {
        self.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

async fn admin_client(database: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = admin_url().parse().expect("ADMIN_DATABASE_URL parses");
    config.dbname(database);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at ADMIN_DATABASE_URL ({e}); run `make test`"));
    tokio::spawn(connection);
    client
}

/// The runtime role's connection settings for `database`.
pub fn app_config(database: &str) -> tokio_postgres::Config {
    let mut config: tokio_postgres::Config = admin_url().parse().expect("ADMIN_DATABASE_URL parses");
    config.user("customer_app").dbname(database);
    if let Ok(password) = std::env::var("APP_DATABASE_PASSWORD") {
        config.password(password);
    }
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_publishing_to(None).await
    }

    /// A test app whose writes publish their events to `outbound` (an SQS client and a queue
    /// URL) right after they commit, as a deployed function with `OUTBOX_QUEUE_URL` does.
    pub async fn spawn_publishing_to(outbound: Option<(aws_sdk_sqs::Client, String)>) -> Self {
        Self::spawn_with(outbound, cache_config(&redis_url())).await
    }

    /// A test app reading through a cache configured as `cache` (every other test app uses the
    /// shared Redis of `make test`, so every route test also checks that no read is stale).
    pub async fn spawn_with(outbound: Option<(aws_sdk_sqs::Client, String)>, cache: CacheConfig) -> Self {
        let database = format!("cs_test_{}", Uuid::new_v4().simple());
        let maintenance = admin_client("postgres").await;
        maintenance.execute(&format!("CREATE DATABASE {database}"), &[]).await.expect("create test database");
        let mut admin: tokio_postgres::Config = admin_url().parse().unwrap();
        admin.dbname(&database);
        shared::migrations::run(&admin.into()).await.expect("migrations apply");
        let db = Db::from_config(app_config(&database), 32).expect("pool");
        let verifier = TokenVerifier::new(&hs256_auth()).await.expect("verifier");
        let core = match outbound {
            Some((sqs, queue_url)) => {
                App::publishing_with(db.clone(), Arc::new(Relay::new(db.clone(), sqs, queue_url)))
            }
            None => App::new(db.clone()),
        };
        let core = core.with_cache(Cache::from_config(&cache).expect("cache settings"));
        let state = AppState { app: core.clone(), verifier: Arc::new(verifier) };
        let (router, credit, search, segments) = if std::env::var("TEST_HTTP_API").as_deref() == Ok("server") {
            let all = shared::routes::all(state);
            (all.clone(), all.clone(), all.clone(), all)
        } else {
            (
                shared::customers::routes::router(state.clone()),
                shared::credit::routes::router(state.clone()),
                shared::search::routes::router(state.clone()),
                shared::segments::routes::router(state),
            )
        };
        Self { router, credit, search, segments, db, core, database, org_a: Uuid::new_v4(), org_b: Uuid::new_v4() }
    }

    /// A connection as the owner, which sees every tenant: for arranging and asserting.
    pub async fn admin(&self) -> tokio_postgres::Client {
        admin_client(&self.database).await
    }

    pub fn token(&self, organization: Uuid, scopes: &[&str]) -> String {
        issue_hs256_token(SECRET, organization, "tester", scopes, Duration::from_secs(600)).unwrap()
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let path = request.uri().path();
        let router = if path.starts_with("/api/v1/customers/search") {
            &self.search
        } else if path.starts_with("/api/v1/segments")
            || path.ends_with("/segment")
            || path.ends_with("/segment/recalculate")
        {
            &self.segments
        } else if path.contains("/credit") {
            &self.credit
        } else {
            &self.router
        };
        Self::answer(router, request).await
    }

    /// A GET of `path` from one function's router (for its own OpenAPI document).
    pub async fn get_from(router: &Router, path: &str) -> TestResponse {
        Self::answer(router, Request::get(path).body(Body::empty()).unwrap()).await
    }

    async fn answer(router: &Router, request: Request<Body>) -> TestResponse {
        let response = router.clone().oneshot(request).await.expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        TestResponse { status, headers, body }
    }

    /// A request with an optional bearer token and JSON body.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> TestResponse {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request.header("content-type", "application/json").body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    /// A request with every customers scope of `organization`.
    pub async fn as_org(&self, organization: Uuid, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let token = self.token(organization, ALL);
        self.call(method, path, Some(&token), body).await
    }

    /// Creates a customer in `organization` and returns its id.
    pub async fn create_customer(&self, organization: Uuid, body: Value) -> Uuid {
        let response = self.as_org(organization, Method::POST, "/api/v1/customers", Some(body)).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.body["customer_id"].as_str().unwrap().parse().unwrap()
    }

    /// A customer of `organization` with an approved credit account of `limit`.
    pub async fn approved_account(&self, organization: Uuid, limit: &str, term_days: i64) -> Uuid {
        let customer = self.create_customer(organization, person("Crédito", "Cliente")).await;
        let path = format!("/api/v1/customers/{customer}/credit");
        let opened = self
            .as_org(
                organization,
                Method::POST,
                &path,
                Some(serde_json::json!({"credit_limit": limit, "payment_term_days": term_days})),
            )
            .await;
        assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
        let approved = self.as_org(organization, Method::POST, &format!("{path}/approve"), None).await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
        customer
    }

    /// Every row `organization` has in every table with an `organization_id` (found in the
    /// catalog), as the owner reads them: equal snapshots before and after a call prove it
    /// changed nothing of that organization.
    pub async fn snapshot(&self, organization: Uuid) -> Vec<(String, String)> {
        let admin = self.admin().await;
        let tables = admin
            .query(
                "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
                 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
                   AND a.attname = 'organization_id' AND NOT a.attisdropped ORDER BY 1",
                &[],
            )
            .await
            .unwrap();
        let mut rows = Vec::new();
        for table in tables.iter().map(|row| row.get::<_, String>(0)) {
            let sql = format!(
                "SELECT coalesce(json_agg(t::text ORDER BY t::text), '[]')::text FROM {table} t \
                 WHERE organization_id = $1"
            );
            rows.push((table, admin.query_one(&sql, &[&organization]).await.unwrap().get(0)));
        }
        rows
    }

    /// The answer to a call about another organization's resource: the one fixed not-found
    /// problem, so it can carry nothing read from that organization.
    pub fn not_found_problem() -> Value {
        serde_json::json!({
            "type": "urn:customer-service:problem:not_found",
            "title": "Not Found",
            "status": 404,
            "detail": "No such resource in this organization.",
            "code": "not_found",
        })
    }

    /// Rows of a table across all tenants, as the owner sees them.
    pub async fn count(&self, table: &str) -> i64 {
        self.admin().await.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let database = self.database.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                admin_client("postgres")
                    .await
                    .execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"), &[])
                    .await
                    .ok();
            });
        })
        .join()
        .ok();
    }
}

/// Fails naming each table whose rows differ between two [`TestApp::snapshot`]s.
pub fn assert_unchanged(before: &[(String, String)], after: &[(String, String)], call: &str) {
    let changed: Vec<&str> =
        before.iter().zip(after).filter(|(b, a)| b != a).map(|(table, _)| table.0.as_str()).collect();
    assert!(before.len() == after.len() && changed.is_empty(), "{call} changed {changed:?}");
}

/// The Redis of `make test` (`REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Cache settings over `url` for tests: a timeout long enough for a loaded test machine.
pub fn cache_config(url: &str) -> CacheConfig {
    CacheConfig {
        url: Some(url.into()),
        ttl: Duration::from_secs(300),
        timeout: Duration::from_millis(500),
        pause: Duration::from_secs(1),
    }
}

/// A fresh customer body with unique contact values.
pub fn person(first: &str, last: &str) -> Value {
    let n = Uuid::new_v4().as_u128() % 10_000_000;
    serde_json::json!({
        "first_name": first,
        "last_name": last,
        "email": format!("{}.{}.{n}@example.com", first.to_lowercase(), last.to_lowercase()),
    })
}

/// An SQS client of the shared emulator.
pub async fn shared_sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&shared::aws::for_emulator(&emulator_endpoint()).await)
}

/// The local queues under a prefix of this test's own.
pub async fn own_queues(sqs: &aws_sdk_sqs::Client, retry: local_aws::RetryPolicy) -> Queues {
    let prefix = format!("t{}-", &Uuid::new_v4().simple().to_string()[..12]);
    local_aws::create_queues(sqs, &prefix, retry).await.unwrap_or_else(|e| {
        panic!("the SQS emulator at {} does not answer ({e:#}); run `make test`", emulator_endpoint())
    })
}

/// Every message of `queue_url`, received and deleted.
pub async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    local_aws::drain(sqs, queue_url).await.expect("the emulator answers")
}

/// A private emulator (moto) on a port of its own, which a test can stop and start; killed on
/// drop. Its state is in memory, so a restart begins with no queues.
pub struct PrivateEmulator {
    port: u16,
    process: Option<std::process::Child>,
}

impl PrivateEmulator {
    /// Picks a free port and starts nothing: the emulator is down.
    pub fn down() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, process: None }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `moto_server` (installed by `make test`) and waits until it answers.
    pub async fn start(&mut self) {
        let binary = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = std::process::Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} ({e}); run `make test`, which installs moto"));
        self.process = Some(child);
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not answer on :{} within 30 s", self.port);
    }
}

impl Drop for PrivateEmulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A relay pass's stop time that leaves it all the time it needs.
pub fn a_minute_from_now() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(60)
}

/// Every log line this thread writes while it lives, through the same `fmt` layer and filter
/// the functions use, at the most verbose level. Tests run on a current-thread runtime, so the
/// spawned tasks they await log here too.
pub struct CapturedLogs {
    buffer: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct BufferWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub fn start() -> Self {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let filter = shared::telemetry::without_statement_parameters("trace".parse().expect("a level"));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || BufferWriter(writer.clone()))
            .finish()
            .with(filter);
        Self { buffer, _guard: tracing::subscriber::set_default(subscriber) }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("log buffer")).into_owned()
    }

    /// The lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text().lines().filter(|line| line.contains(needle)).map(str::to_owned).collect()
    }
}
