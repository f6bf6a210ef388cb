//! The read cache against real Redis: fresh after every kind of write, scoped by the token's
//! organization, and never required (Redis cut or silent behind a line the test controls).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use shared::auth::Caller;
use shared::cache::{customer_key, Changes, View};
use shared::error::ApiError;
use shared::segments::{run_organization, RunOptions};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

use crate::events_inbound::{batch, completed, handle_batch, tier_event};
use crate::helpers::{cache_config, person, redis_url, TestApp};

/// Reads `path` twice as `organization`: the second answer must come from the cache and
/// equal the first. Returns the answer.
async fn read_twice(app: &TestApp, organization: Uuid, path: &str) -> Value {
    let first = app.as_org(organization, Method::GET, path, None).await;
    assert_eq!(first.status, StatusCode::OK, "{path}: {}", first.body);
    let hits = app.core.cache.stats().hits;
    let second = app.as_org(organization, Method::GET, path, None).await;
    assert_eq!(second.status, StatusCode::OK, "{path}: {}", second.body);
    assert_eq!(app.core.cache.stats().hits, hits + 1, "{path}: the second read was not a cache hit");
    assert_eq!(first.body, second.body, "{path}: the cached answer differs from the database's");
    second.body
}

/// Caches the customer's two views, runs `write`, and returns both views as read afterwards.
async fn after<F: std::future::Future<Output = ()>>(app: &TestApp, customer: Uuid, write: F) -> (Value, Value) {
    let (one, whole) = (format!("/api/v1/customers/{customer}"), format!("/api/v1/customers/{customer}/360"));
    read_twice(app, app.org_a, &one).await;
    read_twice(app, app.org_a, &whole).await;
    write.await;
    (read_twice(app, app.org_a, &one).await, read_twice(app, app.org_a, &whole).await)
}

#[tokio::test]
async fn a_cached_read_after_each_kind_of_write_answers_the_new_data() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "500.00", 30).await;
    let base = format!("/api/v1/customers/{customer}");

    let (one, whole) = after(&app, customer, async {
        let patch = app.as_org(app.org_a, Method::PATCH, &base, Some(json!({"first_name": "Renombrada"}))).await;
        assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    })
    .await;
    assert_eq!((one["first_name"].as_str(), whole["first_name"].as_str()), (Some("Renombrada"), Some("Renombrada")));

    let (_, whole) = after(&app, customer, async {
        let address =
            json!({"address_type": "shipping", "address_line1": "Calle 50", "city": "Panamá", "country": "PA"});
        let added = app.as_org(app.org_a, Method::POST, &format!("{base}/addresses"), Some(address)).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    })
    .await;
    assert_eq!(whole["default_shipping_address"]["address_line1"], "Calle 50");

    let (one, _) = after(&app, customer, async {
        let event = tier_event(app.org_a, customer, "gold", Utc::now());
        assert!(handle_batch(&app.core, batch(&[event]), 1).await.batch_item_failures.is_empty());
    })
    .await;
    assert_eq!(one["loyalty_tier"], "gold");
    let card = read_twice(&app, app.org_a, &format!("{base}/loyalty")).await;
    assert_eq!(card["loyalty_tier"], "gold");

    let (one, whole) = after(&app, customer, async {
        let order = completed(app.org_a, customer, Uuid::new_v4(), "80.00", Utc::now());
        assert!(handle_batch(&app.core, batch(&[order]), 1).await.batch_item_failures.is_empty());
    })
    .await;
    assert!(one["last_purchase_at"].is_string() && whole["last_purchase_at"].is_string(), "{one} {whole}");

    let (_, whole) = after(&app, customer, async {
        let usage = json!({"order_id": Uuid::new_v4(), "amount": "120.00"});
        let used = app.as_org(app.org_a, Method::POST, &format!("{base}/credit/usages"), Some(usage)).await;
        assert_eq!(used.status, StatusCode::CREATED, "{}", used.body);
    })
    .await;
    assert_eq!((whole["credit_used"].as_str(), whole["credit_available"].as_str()), (Some("120.00"), Some("380.00")));

    let (_, whole) = after(&app, customer, async {
        let far = Utc::now().date_naive() + chrono::Days::new(400);
        assert_eq!(shared::credit::mark_overdue(&app.core, far).await.unwrap(), 1);
    })
    .await;
    assert_eq!(whole["overdue_amount"], "120.00");

    let (_, whole) = after(&app, customer, async {
        run_organization(&app.core, app.org_a, RunOptions::nightly(Utc::now().date_naive())).await.unwrap();
    })
    .await;
    assert!(whole["segment_code"].is_string() && whole["rfm_score"].is_number(), "{whole}");

    let (one, whole) = after(&app, customer, async {
        let erased = app.as_org(app.org_a, Method::DELETE, &base, None).await;
        assert_eq!(erased.status, StatusCode::NO_CONTENT, "{}", erased.body);
    })
    .await;
    assert!(one["first_name"].is_null() && whole["email"].is_null() && one["erased_at"].is_string());
}

#[tokio::test]
async fn a_batch_read_takes_what_the_cache_holds_and_reads_only_the_rest() {
    let app = TestApp::spawn().await;
    let first = app.create_customer(app.org_a, person("Primera", "Lote")).await;
    let second = app.create_customer(app.org_a, person("Segunda", "Lote")).await;
    let caller = Caller::service(app.org_a, "tester");
    let unknown = Uuid::new_v4();
    read_twice(&app, app.org_a, &format!("/api/v1/customers/{first}")).await;

    let before = app.core.cache.stats();
    let asked = [second, unknown, first, second];
    let answered = shared::customers::get_many(&app.core, &caller, &asked).await.unwrap();
    let ids: Vec<Uuid> = answered.iter().map(|customer| customer.customer_id).collect();
    assert_eq!(ids, [second, first, second], "the order asked, unknown ids left out");
    let after = app.core.cache.stats();
    assert_eq!((after.hits - before.hits, after.misses - before.misses), (1, 3));

    let again = shared::customers::get_many(&app.core, &caller, &asked).await.unwrap();
    assert_eq!(again.iter().map(|customer| customer.customer_id).collect::<Vec<_>>(), ids);
    assert_eq!(app.core.cache.stats().hits - after.hits, 3, "every known id is now cached");
}

/// The race the stamps close: a reader reads the database, a writer commits and invalidates,
/// then the reader stores what it read. That value must never be served.
#[tokio::test]
async fn a_value_read_before_an_invalidation_is_never_served_after_it() {
    let app = TestApp::spawn().await;
    let cache = &app.core.cache;
    let organization = app.org_a;
    for round in 0..2 {
        let customer = Uuid::new_v4();
        let changes = &if round == 0 {
            Changes { customers: vec![customer], organization: false }
        } else {
            Changes { customers: vec![], organization: true }
        };
        let stale: Result<Value, ApiError> = cache
            .read(organization, View::Customer, customer, || async {
                cache.invalidate(organization, changes).await;
                Ok(json!({ "round": round, "value": "old" }))
            })
            .await;
        assert_eq!(stale.unwrap()["value"], "old", "the reader itself answers what it read");
        let fresh: Value = cache
            .read(organization, View::Customer, customer, || async { Ok(json!({ "round": round, "value": "new" })) })
            .await
            .unwrap();
        assert_eq!(fresh["value"], "new", "round {round}: the value stored after the invalidation was served");
        let cached: Value = cache
            .read(organization, View::Customer, customer, || async { panic!("round {round}: not cached") })
            .await
            .unwrap();
        assert_eq!(cached["value"], "new");
    }
}

#[tokio::test]
async fn another_organizations_customer_is_never_served_from_the_cache() {
    let app = TestApp::spawn().await;
    let customer = app.create_customer(app.org_a, person("Ajena", "Cliente")).await;
    for path in [format!("/api/v1/customers/{customer}"), format!("/api/v1/customers/{customer}/360")] {
        read_twice(&app, app.org_a, &path).await;
        for _ in 0..2 {
            let other = app.as_org(app.org_b, Method::GET, &path, None).await;
            assert_eq!(other.status, StatusCode::NOT_FOUND, "{path}: {}", other.body);
            assert_eq!(other.body, TestApp::not_found_problem());
        }
    }
    let caller = Caller::service(app.org_b, "tester");
    assert!(shared::customers::get_many(&app.core, &caller, &[customer]).await.unwrap().is_empty());

    let client = redis::Client::open(redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.expect("the Redis of `make test` answers");
    let other_key: Vec<(String, Vec<u8>)> =
        redis::cmd("HGETALL").arg(customer_key(app.org_b, customer)).query_async(&mut redis).await.unwrap();
    assert!(other_key.is_empty(), "nothing of the customer was stored under the other organization");
    let own_key: Vec<(String, Vec<u8>)> =
        redis::cmd("HGETALL").arg(customer_key(app.org_a, customer)).query_async(&mut redis).await.unwrap();
    assert!(!own_key.is_empty(), "the customer's views are stored under its own organization");
}

/// What a [`RedisLine`] does with the connections the service makes to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Forwards them to the Redis of `make test`.
    Up,
    /// Closes them at once, as a stopped Redis would.
    Down,
    /// Accepts them and never answers, as an overloaded or partitioned Redis would.
    Silent,
}

/// A TCP line between the service and Redis that a test can cut or silence; a change drops
/// the connections already open.
struct RedisLine {
    url: String,
    line: watch::Sender<Line>,
}

impl RedisLine {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let upstream: SocketAddr =
            redis_url().trim_start_matches("redis://").trim_end_matches('/').parse().expect("REDIS_URL is host:port");
        let (line, watching) = watch::channel(Line::Up);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut watching = watching.clone();
                let line = *watching.borrow_and_update();
                tokio::spawn(async move {
                    match line {
                        Line::Down => {}
                        Line::Silent => {
                            let mut buffer = [0u8; 1024];
                            loop {
                                tokio::select! {
                                    read = socket.read(&mut buffer) => if read.map_or(true, |n| n == 0) { break },
                                    _ = watching.changed() => break,
                                }
                            }
                        }
                        Line::Up => {
                            let Ok(mut redis) = TcpStream::connect(upstream).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut socket, &mut redis) => {}
                                _ = watching.changed() => {}
                            }
                        }
                    }
                });
            }
        });
        Self { url, line }
    }

    fn set(&self, line: Line) {
        self.line.send_replace(line);
    }
}

#[tokio::test]
async fn with_redis_cut_or_silent_every_read_answers_from_the_database_and_the_cache_comes_back() {
    let line = RedisLine::start().await;
    let mut config = cache_config(&line.url);
    config.timeout = Duration::from_millis(200);
    let app = TestApp::spawn_with(None, config.clone()).await;
    let customer = app.approved_account(app.org_a, "300.00", 30).await;
    let base = format!("/api/v1/customers/{customer}");
    let cached = [base.clone(), format!("{base}/360"), format!("{base}/loyalty")];
    for path in &cached {
        read_twice(&app, app.org_a, path).await;
    }
    let reads = [
        base.clone(),
        format!("{base}/360"),
        format!("{base}/loyalty"),
        format!("{base}/addresses"),
        format!("{base}/credit"),
        format!("{base}/export"),
        "/api/v1/customers?limit=5".to_string(),
    ];

    for broken in [Line::Down, Line::Silent] {
        line.set(broken);
        tokio::time::sleep(config.pause).await;
        let before = app.core.cache.stats();
        for path in &reads {
            let answer = app.as_org(app.org_a, Method::GET, path, None).await;
            assert_eq!(answer.status, StatusCode::OK, "{broken:?} {path}: {}", answer.body);
        }
        let renamed = app.as_org(app.org_a, Method::PATCH, &base, Some(json!({"notes": format!("{broken:?}")}))).await;
        assert_eq!(renamed.status, StatusCode::OK, "{broken:?}: a write does not need the cache: {}", renamed.body);
        let after = app.core.cache.stats();
        assert_eq!(after.hits, before.hits, "{broken:?}: nothing was served from a Redis that does not answer");
        assert!(
            after.skipped - before.skipped >= 2,
            "{broken:?}: after the first failure, reads skip Redis instead of waiting for it: {before:?} {after:?}"
        );
    }

    line.set(Line::Up);
    let caller = Caller::service(app.org_a, "tester");
    let mut filled = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = app.core.cache.stats().hits;
        let once = shared::customers::get(&app.core, &caller, customer).await.unwrap();
        let twice = shared::customers::get(&app.core, &caller, customer).await.unwrap();
        assert_eq!(twice.notes.as_deref(), Some("Silent"), "the last write's data, never an older cached one");
        assert_eq!(once.version, twice.version);
        if app.core.cache.stats().hits > before {
            filled = true;
            break;
        }
    }
    assert!(filled, "with Redis back, reads are cached again without a restart");
}
