//! Bounded work under outages and abuse: timeouts of the runtime role, retryable answers when
//! the database is away, a relay that drains any backlog in short runs, a publish after commit
//! that cannot hold a write's answer, and a vocabulary no concurrent rename can corrupt.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Method, Request, StatusCode};
use local_aws::RetryPolicy;
use serde_json::json;
use shared::app::App;
use shared::auth::{issue_hs256_token, TokenVerifier};
use shared::db::Db;
use shared::events::Relay;
use shared::http::AppState;
use tower::ServiceExt;
use uuid::Uuid;

use crate::helpers::*;

/// Longer than any answer these tests expect: a request still running then is hanging.
const HANG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_runtime_role_runs_under_statement_lock_and_idle_timeouts() {
    let app = TestApp::spawn().await;
    let (client, connection) = app_config(&app.database).connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    for setting in ["statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "temp_file_limit"] {
        let value: String = client.query_one(&format!("SHOW {setting}"), &[]).await.unwrap().get(0);
        assert!(!["0", "-1"].contains(&value.as_str()), "{setting} is unlimited for customer_app");
    }
}

#[tokio::test]
async fn a_write_waiting_on_a_lock_held_elsewhere_answers_a_retryable_503() {
    let app = TestApp::spawn().await;
    let customer = app.create_customer(app.org_a, person("Ana", "Bloqueada")).await;
    let holder = app.admin().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder.execute("SELECT 1 FROM customers WHERE customer_id = $1 FOR UPDATE", &[&customer]).await.unwrap();

    let path = format!("/api/v1/customers/{customer}");
    let patch = app.as_org(app.org_a, Method::PATCH, &path, Some(json!({"notes": "x"})));
    let answer = tokio::time::timeout(HANG, patch).await.expect("a held row lock must not hold the request");
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert_eq!(answer.code(), "service_unavailable");
    assert_eq!(answer.content_type(), "application/problem+json");
    assert_eq!(answer.headers.get(http::header::RETRY_AFTER).unwrap(), "1");
    holder.batch_execute("ROLLBACK").await.unwrap();

    let notes = app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers/{customer}"), None).await;
    assert_eq!(notes.body["notes"], serde_json::Value::Null, "the refused write changed nothing");
}

#[tokio::test]
async fn a_statement_cancelled_by_its_timeout_is_unavailable_not_unexpected() {
    let app = TestApp::spawn().await;
    let mut connection = app.db.connection().await.unwrap();
    let tx = connection.begin(app.org_a).await.unwrap();
    tx.execute("SET LOCAL statement_timeout = '50ms'", &[]).await.unwrap();
    let cancelled = tx.execute("SELECT pg_sleep(2)", &[]).await.unwrap_err();
    let error = shared::error::ApiError::from(anyhow::Error::new(cancelled).context("sleeping"));
    assert!(matches!(error, shared::error::ApiError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_database_answers_a_retryable_503() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut nowhere = tokio_postgres::Config::new();
    nowhere.host("127.0.0.1").port(port).user("customer_app").dbname("customer_service");
    let state = AppState {
        app: App::new(Db::from_config(nowhere, 2).unwrap()),
        verifier: Arc::new(TokenVerifier::new(&hs256_auth()).await.unwrap()),
    };
    let router = shared::customers::routes::router(state);
    let token = issue_hs256_token(SECRET, Uuid::new_v4(), "tester", ALL, Duration::from_secs(60)).unwrap();
    for _ in 0..3 {
        let request = Request::get(format!("/api/v1/customers/{}", Uuid::new_v4()))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = tokio::time::timeout(HANG, router.clone().oneshot(request)).await.expect("answers").unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(http::header::RETRY_AFTER).unwrap(), "1");
    }
}

/// An SQS endpoint that accepts connections and never answers.
async fn silent_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (endpoint, task)
}

/// The deployed function times out after 10 s; a write whose publish could outlast the budget
/// would answer an error after it committed, and a retried payment would be charged twice.
#[tokio::test]
async fn a_committed_write_answers_its_success_however_slow_the_queue_is() {
    let (endpoint, _silent) = silent_endpoint().await;
    let sqs = aws_sdk_sqs::Client::new(&shared::aws::for_emulator(&endpoint).await);
    let app = TestApp::spawn_publishing_to(Some((sqs, format!("{endpoint}/123456789012/customers-events.fifo")))).await;
    let lambda_timeout = shared::events::AFTER_COMMIT_BUDGET * 3;
    let create = app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(person("Eva", "Lenta")));
    let created = tokio::time::timeout(lambda_timeout, create).await.expect("the publish held the answer");
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let pending: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM outbox WHERE published_at IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 1, "the event waits for the scheduled relay");
}

/// A write's publish sends the events of the customers it wrote, not the organization's backlog.
#[tokio::test]
async fn the_publish_after_a_write_sends_that_writes_events_only() {
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy::default()).await;
    let app = TestApp::spawn_publishing_to(Some((sqs.clone(), queues.outbound.clone()))).await;
    let admin = app.admin().await;
    admin
        .execute(
            "INSERT INTO outbox (event_id, organization_id, event_type, message_group, payload, occurred_at) \
             SELECT gen_random_uuid(), $1, 'customers.customer.updated', 'customer:' || n, '{}'::jsonb, now() \
             FROM generate_series(1, 600) n",
            &[&app.org_a],
        )
        .await
        .unwrap();

    let customer = app.create_customer(app.org_a, person("Noa", "Propia")).await;

    let received = drain(&sqs, &queues.outbound).await;
    assert_eq!(received.len(), 1, "only the write's own event leaves with it");
    let body: serde_json::Value = serde_json::from_str(received[0].body().unwrap()).unwrap();
    assert_eq!(body["data"]["customer_id"], customer.to_string());
    let pending: i64 =
        admin.query_one("SELECT count(*) FROM outbox WHERE published_at IS NULL", &[]).await.unwrap().get(0);
    assert_eq!(pending, 600, "the backlog is the scheduled relay's");
}

fn events_in_drain_test() -> i64 {
    std::env::var("RELAY_DRAIN_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000)
}

/// A backlog across 50 organizations, a quarter of it owned by one customer (whose events go
/// one per batch), drains completely through repeated runs cut short by their deadline: each
/// event once, each message group in write order. `RELAY_DRAIN_EVENTS` sets the size
/// (`make bench-relay` runs 20,000).
#[tokio::test]
async fn a_large_backlog_drains_through_short_runs_each_event_once_in_order() {
    let total = events_in_drain_test();
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy::default()).await;
    let app = TestApp::spawn().await;
    let organizations: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let admin = app.admin().await;
    admin
        .execute(
            "INSERT INTO outbox (event_id, organization_id, event_type, message_group, payload, occurred_at)
             SELECT id, org, 'customers.customer.updated', grp,
                    jsonb_build_object('id', id, 'type', 'customers.customer.updated', 'data', '{}'::jsonb), now()
             FROM (SELECT n, gen_random_uuid() AS id,
                          CASE WHEN n % 4 = 0 THEN ($1::uuid[])[1] ELSE ($1::uuid[])[1 + n % 50] END AS org,
                          CASE WHEN n % 4 = 0 THEN 'customer:heavy' ELSE 'customer:' || (n % 500) END AS grp
                   FROM generate_series(1, $2::bigint) n) e
             ORDER BY n",
            &[&organizations, &total],
        )
        .await
        .unwrap();
    let written = admin.query("SELECT event_id, message_group FROM outbox ORDER BY seq", &[]).await.unwrap();

    let relay = Relay::new(app.db.clone(), sqs.clone(), &queues.outbound);
    let started = Instant::now();
    let (mut runs, mut cut_short) = (0, 0);
    let mut received = Vec::new();
    loop {
        let report = relay.publish_all(Instant::now() + Duration::from_secs(1)).await.unwrap();
        runs += 1;
        cut_short += u32::from(report.stopped_at_deadline);
        received.extend(drain(&sqs, &queues.outbound).await);
        if report.published == 0 && !report.stopped_at_deadline {
            break;
        }
        assert!(runs < 2_000, "the backlog does not drain");
    }
    let ids: Vec<Uuid> = received
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap())
        .map(|body| body["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let distinct: HashSet<Uuid> = ids.iter().copied().collect();
    println!(
        "relay drain: {total} events, {runs} runs ({cut_short} cut short), {} received, {} duplicates, {:.1} s",
        ids.len(),
        ids.len() - distinct.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(ids.len(), distinct.len(), "no event arrives twice");
    assert_eq!(distinct.len() as i64, total, "every event arrives");
    assert!(cut_short > 0, "runs were cut short by their deadline and the next went on");

    let order_of = |pairs: Vec<(Uuid, String)>| {
        let mut groups: HashMap<String, Vec<Uuid>> = HashMap::new();
        for (id, group) in pairs {
            groups.entry(group).or_default().push(id);
        }
        groups
    };
    let written_order = order_of(written.iter().map(|row| (row.get(0), row.get(1))).collect());
    let received_order = order_of(
        received
            .iter()
            .zip(&ids)
            .map(|(m, id)| {
                (*id, m.attributes().unwrap()[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId].clone())
            })
            .collect(),
    );
    assert!(received_order == written_order, "each message group arrives in write order");
    let pending: i64 =
        admin.query_one("SELECT count(*) FROM outbox WHERE published_at IS NULL", &[]).await.unwrap().get(0);
    assert_eq!(pending, 0);
}

/// A rename prunes the words of the former name no customer uses; a customer inserted at the
/// same time with that word must keep it in the vocabulary that corrects typed words.
#[tokio::test]
async fn a_rename_never_prunes_a_word_a_concurrent_insert_relies_on() {
    let app = TestApp::spawn().await;
    let renamed = app.create_customer(app.org_a, person("Pablo", "Uno")).await;
    let (inserter, connection) = app_config(&app.database).connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    inserter.batch_execute("BEGIN").await.unwrap();
    inserter
        .execute("SELECT set_config('app.current_organization_id', $1, true)", &[&app.org_a.to_string()])
        .await
        .unwrap();
    inserter
        .execute(
            "INSERT INTO customers (customer_id, organization_id, first_name, last_name) VALUES ($1, $2, 'Pablo', 'Dos')",
            &[&Uuid::new_v4(), &app.org_a],
        )
        .await
        .unwrap();

    let path = format!("/api/v1/customers/{renamed}");
    let rename = app.as_org(app.org_a, Method::PATCH, &path, Some(json!({"first_name": "Juan"})));
    let commit_later = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        inserter.batch_execute("COMMIT").await.unwrap();
    };
    let (answer, ()) = tokio::join!(rename, commit_later);
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    let words: Vec<String> = app
        .admin()
        .await
        .query("SELECT word FROM name_words WHERE organization_id = $1 ORDER BY word", &[&app.org_a])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(words.contains(&"pablo".to_string()), "the new customer's word was pruned: {words:?}");
    assert!(words.contains(&"juan".to_string()));
}
