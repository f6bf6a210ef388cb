//! Credit invariants under concurrency: many clients using, releasing and paying at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{TestApp, TestResponse};

/// A small deterministic generator, one per client.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// An order some client charged, so others can replay, mismatch or release it.
#[derive(Clone, Copy)]
struct Charged {
    customer: Uuid,
    order: Uuid,
    amount_cents: u64,
    released: bool,
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Runs `clients` concurrent clients of `operations` each against the accounts: 60% uses
/// (a fifth of them repeating a charged order), 25% releases (a tenth of them repeating a
/// release), 15% payments. Returns the count of each status seen.
/// Sends a write as a well-behaved client does: a 503 (the database briefly out of reach, or a
/// lock or pool wait timed out under the load) is retried after its `Retry-After` with the same
/// order id, usage or `Idempotency-Key`, which the API applies once. Answers the last response
/// and how many 503s came before it.
async fn write_retrying(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (TestResponse, usize) {
    let token = app.token(app.org_a, crate::helpers::ALL);
    for retries in 0..30 {
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let body = body.as_ref().map_or_else(axum::body::Body::empty, |b| axum::body::Body::from(b.to_string()));
        let response = app.send(request.body(body).unwrap()).await;
        if response.status != StatusCode::SERVICE_UNAVAILABLE {
            return (response, retries);
        }
        let seconds = response.headers.get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
        tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    }
    panic!("{path} answered 503 thirty times");
}

async fn mixed_workload(
    app: &Arc<TestApp>,
    accounts: &[Uuid],
    hot: Uuid,
    clients: u64,
    operations: u64,
) -> HashMap<u16, usize> {
    let charged: Arc<Mutex<Vec<Charged>>> = Arc::default();
    let first_usage: Arc<Mutex<HashMap<Uuid, String>>> = Arc::default();
    let tasks = (0..clients).map(|client| {
        let (app, charged, first_usage, accounts) =
            (app.clone(), charged.clone(), first_usage.clone(), accounts.to_vec());
        tokio::spawn(async move {
            let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ ((client + 1) * 0x1000_0001));
            let mut statuses = HashMap::new();
            for _ in 0..operations {
                let customer =
                    if dice.roll(2) == 0 { hot } else { accounts[dice.roll(accounts.len() as u64) as usize] };
                let roll = dice.roll(100);
                let response = if roll < 60 {
                    let earlier = {
                        let charged = charged.lock().unwrap();
                        (dice.roll(5) == 0 && !charged.is_empty())
                            .then(|| charged[dice.roll(charged.len() as u64) as usize])
                    };
                    let (customer, order, cents) = match earlier {
                        Some(c) if dice.roll(4) == 0 => (c.customer, c.order, c.amount_cents + 1),
                        Some(c) => (c.customer, c.order, c.amount_cents),
                        None => (customer, Uuid::new_v4(), 100 + dice.roll(5_000)),
                    };
                    let body = json!({"order_id": order, "amount": money(cents)});
                    let path = format!("/api/v1/customers/{customer}/credit/usages");
                    let (response, retried) = write_retrying(&app, Method::POST, &path, Some(body), None).await;
                    *statuses.entry(503).or_insert(0) += retried;
                    match response.status {
                        StatusCode::CREATED => {
                            let usage = response.body["usage_id"].as_str().unwrap().to_string();
                            assert!(
                                first_usage.lock().unwrap().insert(order, usage).is_none(),
                                "order {order} charged twice"
                            );
                            charged.lock().unwrap().push(Charged {
                                customer,
                                order,
                                amount_cents: cents,
                                released: false,
                            });
                        }
                        StatusCode::OK => {
                            let usage = response.body["usage_id"].as_str().unwrap();
                            assert_eq!(
                                first_usage.lock().unwrap().get(&order).map(String::as_str),
                                Some(usage),
                                "replay of {order}"
                            );
                        }
                        StatusCode::CONFLICT => {
                            let code = response.code();
                            assert!(["order_amount_mismatch", "order_released"].contains(&code), "{}", response.body)
                        }
                        StatusCode::UNPROCESSABLE_ENTITY => {
                            assert_eq!(response.code(), "insufficient_credit");
                            let available: Decimal =
                                response.body["credit_available"].as_str().unwrap().parse().unwrap();
                            assert!(
                                available < Decimal::new(cents as i64, 2),
                                "refused {cents} cents: {}",
                                response.body
                            );
                        }
                        other => panic!("use answered {other}: {}", response.body),
                    }
                    response
                } else if roll < 85 {
                    let target = {
                        let mut charged = charged.lock().unwrap();
                        let open: Vec<usize> = (0..charged.len()).filter(|i| !charged[*i].released).collect();
                        let released: Vec<usize> = (0..charged.len()).filter(|i| charged[*i].released).collect();
                        let pick = if dice.roll(10) == 0 && !released.is_empty() {
                            Some(released[dice.roll(released.len() as u64) as usize])
                        } else if !open.is_empty() {
                            Some(open[dice.roll(open.len() as u64) as usize])
                        } else {
                            None
                        };
                        pick.map(|i| {
                            charged[i].released = true;
                            charged[i]
                        })
                    };
                    let Some(target) = target else { continue };
                    let path = format!("/api/v1/customers/{}/credit/usages/{}/release", target.customer, target.order);
                    let (response, retried) = write_retrying(&app, Method::POST, &path, None, None).await;
                    *statuses.entry(503).or_insert(0) += retried;
                    match response.status {
                        StatusCode::OK => assert_eq!(response.body["status"], "cancelled"),
                        StatusCode::CONFLICT => assert_eq!(response.code(), "usage_already_paid"),
                        other => panic!("release answered {other}: {}", response.body),
                    }
                    response
                } else {
                    let body = json!({"amount": money(100 + dice.roll(3_000)), "payment_method": "cash"});
                    let path = format!("/api/v1/customers/{customer}/credit/payments");
                    let key = Uuid::new_v4().to_string();
                    let (response, retried) = write_retrying(&app, Method::POST, &path, Some(body), Some(&key)).await;
                    *statuses.entry(503).or_insert(0) += retried;
                    match response.status {
                        StatusCode::CREATED => {}
                        StatusCode::UNPROCESSABLE_ENTITY => {
                            assert_eq!(response.code(), "payment_exceeds_balance")
                        }
                        other => panic!("payment answered {other}: {}", response.body),
                    }
                    response
                };
                *statuses.entry(response.status.as_u16()).or_insert(0) += 1;
            }
            statuses
        })
    });
    let mut totals = HashMap::new();
    for task in futures_util::future::join_all(tasks).await {
        for (status, count) in task.expect("a client panicked") {
            *totals.entry(status).or_insert(0) += count;
        }
    }
    totals
}

/// Every account: `0 <= credit_used <= credit_limit`, `credit_used` equals what open usages
/// still owe, payments were settled in full, and the movements replay to `credit_used`.
async fn assert_credit_invariants(app: &TestApp) {
    let rows = app
        .admin()
        .await
        .query(
            "SELECT a.credit_account_id, a.credit_limit, a.credit_used,
                    (SELECT COALESCE(sum(u.amount - u.amount_paid), 0) FROM credit_usages u
                      WHERE u.credit_account_id = a.credit_account_id AND u.status IN ('pending', 'overdue')) AS owed,
                    (SELECT COALESCE(sum(u.amount_paid), 0) FROM credit_usages u WHERE u.credit_account_id = a.credit_account_id) AS settled,
                    (SELECT COALESCE(sum(p.amount), 0) FROM credit_payments p WHERE p.credit_account_id = a.credit_account_id) AS paid,
                    (SELECT COALESCE(sum(m.amount), 0) FROM credit_movements m WHERE m.credit_account_id = a.credit_account_id) AS replayed,
                    (SELECT count(*) FROM (SELECT credit_used_after,
                                                  sum(amount) OVER (ORDER BY movement_seq) AS running
                                           FROM credit_movements m WHERE m.credit_account_id = a.credit_account_id) r
                      WHERE r.running <> r.credit_used_after) AS broken_replays
             FROM credit_accounts a",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let (limit, used, owed): (Decimal, Decimal, Decimal) = (row.get(1), row.get(2), row.get(3));
        let (settled, paid, replayed): (Decimal, Decimal, Decimal) = (row.get(4), row.get(5), row.get(6));
        let account: Uuid = row.get(0);
        assert!(used >= Decimal::ZERO && used <= limit, "{account}: used {used} of {limit}");
        assert_eq!(used, owed, "{account}: credit_used vs what open usages owe");
        assert_eq!(settled, paid, "{account}: payments settled on usages vs recorded");
        assert_eq!(replayed, used, "{account}: movements replay to credit_used");
        assert_eq!(row.get::<_, i64>(7), 0, "{account}: credit_used_after disagrees with the replay");
    }
    let doubles: i64 = app
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM (SELECT order_id FROM credit_usages GROUP BY order_id HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doubles, 0, "an order was charged twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_never_overdraw_and_never_charge_an_order_twice() {
    let app = Arc::new(TestApp::spawn().await);
    let hot = app.approved_account(app.org_a, "2000.00", 30).await;
    let mut accounts = Vec::new();
    for _ in 0..16 {
        accounts.push(app.approved_account(app.org_a, "300.00", 30).await);
    }
    // `make bench-credit` runs this at a larger size through CREDIT_STRESS_OPERATIONS.
    let operations = std::env::var("CREDIT_STRESS_OPERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(24);
    let started = std::time::Instant::now();
    let statuses = mixed_workload(&app, &accounts, hot, 64, operations).await;
    println!("64 clients x {operations} operations in {:.1?}: statuses {statuses:?}", started.elapsed());
    assert!(statuses.get(&201).copied().unwrap_or(0) > 100, "{statuses:?}");
    assert!(statuses.get(&422).copied().unwrap_or(0) > 0, "the limits were reached: {statuses:?}");
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "replays and releases happened: {statuses:?}");
    assert_credit_invariants(&app).await;
}

/// Runs `calls` at once and answers their (status, body) pairs.
async fn all_at_once(
    app: &Arc<TestApp>,
    calls: Vec<(Method, String, Option<serde_json::Value>, Option<String>)>,
) -> Vec<(u16, serde_json::Value)> {
    let tasks = calls.into_iter().map(|(method, path, body, key)| {
        let app = app.clone();
        tokio::spawn(async move {
            let (answer, _) = write_retrying(&app, method, &path, body, key.as_deref()).await;
            (answer.status.as_u16(), answer.body)
        })
    });
    futures_util::future::join_all(tasks).await.into_iter().map(|task| task.expect("a client panicked")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_racing_one_new_order_or_one_idempotency_key_write_it_once() {
    let app = Arc::new(TestApp::spawn().await);
    let customer = app.approved_account(app.org_a, "500.00", 30).await;
    let path = format!("/api/v1/customers/{customer}/credit");

    let order = json!({"order_id": Uuid::new_v4(), "amount": "40.00"});
    let racing = (0..16).map(|_| (Method::POST, format!("{path}/usages"), Some(order.clone()), None)).collect();
    let answers = all_at_once(&app, racing).await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 1, "one client charged the order: {answers:?}");
    let usage_ids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|(status, body)| {
            assert!(*status == 201 || *status == 200, "{body}");
            body["usage_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(usage_ids.len(), 1, "every client got the same usage");

    let payment = json!({"amount": "15.00", "payment_method": "card"});
    let racing = (0..16)
        .map(|_| (Method::POST, format!("{path}/payments"), Some(payment.clone()), Some("pay-race-1".into())))
        .collect();
    let answers = all_at_once(&app, racing).await;
    for (status, body) in &answers {
        assert!(matches!(status, 200 | 201) || body["code"] == "payment_in_progress", "{status} {body}");
    }
    assert_eq!(answers.iter().filter(|(status, _)| *status == 201).count(), 1, "{answers:?}");
    assert_eq!(app.count("credit_payments").await, 1, "one payment under the shared key");
    assert_credit_invariants(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limit_changes_suspensions_and_the_overdue_job_in_flight_keep_the_invariants() {
    let app = Arc::new(TestApp::spawn().await);
    let customer = app.approved_account(app.org_a, "300.00", 0).await;
    let path = format!("/api/v1/customers/{customer}/credit");
    let mut calls = Vec::new();
    for n in 0..48 {
        let call = match n % 6 {
            0 => (Method::PATCH, path.clone(), Some(json!({"credit_limit": money(20_000 + n * 500)})), None),
            1 => (Method::POST, format!("{path}/suspend"), Some(json!({"reason": "review"})), None),
            2 => (Method::POST, format!("{path}/reactivate"), Some(json!({"reason": "cleared"})), None),
            3 => (
                Method::POST,
                format!("{path}/payments"),
                Some(json!({"amount": "5.00", "payment_method": "cash"})),
                None,
            ),
            _ => (
                Method::POST,
                format!("{path}/usages"),
                Some(json!({"order_id": Uuid::new_v4(), "amount": "25.00"})),
                None,
            ),
        };
        calls.push(call);
    }
    let core = app.core.clone();
    let overdue = tokio::spawn(async move {
        let tomorrow = chrono::Utc::now().date_naive() + chrono::Days::new(1);
        for _ in 0..5 {
            shared::credit::mark_overdue(&core, tomorrow).await.unwrap();
        }
    });
    let answers = all_at_once(&app, calls).await;
    overdue.await.unwrap();
    for (status, body) in &answers {
        assert!(*status < 500, "{status} {body}");
    }
    // Whether a racing use found the account approved depends on the interleaving (all may
    // meet a suspension); after the race the account still takes a use.
    let used = answers.iter().filter(|(status, _)| *status == 201).count();
    eprintln!("{used} of 16 racing uses went through");
    let raised = app.as_org(app.org_a, Method::PATCH, &path, Some(json!({"credit_limit": "5000.00"}))).await;
    assert_eq!(raised.status, 200, "{}", raised.body);
    app.as_org(app.org_a, Method::POST, &format!("{path}/reactivate"), Some(json!({"reason": "cleared"}))).await;
    let after = app
        .as_org(
            app.org_a,
            Method::POST,
            &format!("{path}/usages"),
            Some(json!({"order_id": Uuid::new_v4(), "amount": "25.00"})),
        )
        .await;
    assert_eq!(after.status, 201, "a use after the race: {}", after.body);
    assert_credit_invariants(&app).await;
}

/// A use refused while the account was suspended, explained after a reactivation, once
/// answered `insufficient_credit` with far more than the amount available. Every answer must
/// agree with itself: a use goes through, or is refused for a reason its own body shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_use_is_explained_by_the_state_that_refuses_it() {
    let app = Arc::new(TestApp::spawn().await);
    let customer = app.approved_account(app.org_a, "1000.00", 30).await;
    let path = format!("/api/v1/customers/{customer}/credit");
    let (mut used, mut not_approved) = (0, 0);
    for _ in 0..30 {
        let mut calls = vec![
            (Method::POST, format!("{path}/suspend"), Some(json!({"reason": "review"})), None),
            (Method::POST, format!("{path}/reactivate"), Some(json!({"reason": "cleared"})), None),
        ];
        for _ in 0..6 {
            let body = json!({"order_id": Uuid::new_v4(), "amount": "1.00"});
            calls.push((Method::POST, format!("{path}/usages"), Some(body), None));
        }
        for (status, body) in all_at_once(&app, calls).await.into_iter().skip(2) {
            match status {
                201 => used += 1,
                422 if body["code"] == "credit_not_approved" => {
                    assert_ne!(body["account_status"], "approved", "{body}");
                    not_approved += 1;
                }
                _ => panic!("a 1.00 use of a 1000.00 account answered {status}: {body}"),
            }
        }
        app.as_org(app.org_a, Method::POST, &format!("{path}/reactivate"), Some(json!({"reason": "cleared"}))).await;
    }
    eprintln!("{used} uses went through, {not_approved} met a suspension");
    assert_credit_invariants(&app).await;
}
