use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_unchanged, person, TestApp, TestResponse};

fn credit(customer: Uuid) -> String {
    format!("/api/v1/customers/{customer}/credit")
}

async fn use_credit(app: &TestApp, customer: Uuid, order: Uuid, amount: &str) -> TestResponse {
    let body = json!({"order_id": order, "amount": amount});
    app.as_org(app.org_a, Method::POST, &format!("{}/usages", credit(customer)), Some(body)).await
}

async fn account(app: &TestApp, customer: Uuid) -> Value {
    app.as_org(app.org_a, Method::GET, &credit(customer), None).await.body
}

#[tokio::test]
async fn an_account_opens_pending_and_only_an_approver_can_approve_it() {
    let app = TestApp::spawn().await;
    let customer = app.create_customer(app.org_a, person("Ana", "Crédito")).await;
    let opened = app.as_org(app.org_a, Method::POST, &credit(customer), Some(json!({"credit_limit": "500.00"}))).await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    assert_eq!(opened.body["status"], "pending");
    assert_eq!(opened.body["payment_term_days"], 30);
    assert_eq!(opened.body["credit_available"], "500.00");

    let twice = app.as_org(app.org_a, Method::POST, &credit(customer), Some(json!({"credit_limit": "1"}))).await;
    assert_eq!(twice.code(), "credit_account_exists");

    let refused = use_credit(&app, customer, Uuid::new_v4(), "10.00").await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.code(), "credit_not_approved");
    assert_eq!(
        (&refused.body["status"], &refused.body["account_status"]),
        (&json!(422), &json!("pending")),
        "the problem's status stays the HTTP status: {}",
        refused.body
    );

    let writer = app.token(app.org_a, &["credit:read", "credit:write"]);
    let forbidden = app.call(Method::POST, &format!("{}/approve", credit(customer)), Some(&writer), None).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let approved = app.as_org(app.org_a, Method::POST, &format!("{}/approve", credit(customer)), None).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(approved.body["approved_by"], "tester");
    assert!(approved.body["approved_at"].is_string());
}

#[tokio::test]
async fn an_approver_approves_only_the_limit_they_state() {
    let app = TestApp::spawn().await;
    let customer = app.create_customer(app.org_a, person("Ana", "Propuesta")).await;
    let writer = app.token(app.org_a, &["credit:read", "credit:write"]);
    let proposal = json!({"credit_limit": "9999999999.99"});
    let opened = app.call(Method::POST, &credit(customer), Some(&writer), Some(proposal)).await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let approve = format!("{}/approve", credit(customer));

    let mismatch = app.as_org(app.org_a, Method::POST, &approve, Some(json!({"credit_limit": "5000.00"}))).await;
    assert_eq!(mismatch.status, StatusCode::CONFLICT, "{}", mismatch.body);
    assert_eq!(mismatch.code(), "approval_limit_mismatch");
    let still = account(&app, customer).await;
    assert_eq!((still["status"].as_str(), still["approved_by"].as_str()), (Some("pending"), None));
    assert_eq!(app.count("credit_movements").await, 1, "only the opening is recorded");

    let invalid = app.as_org(app.org_a, Method::POST, &approve, Some(json!({"credit_limit": "-1"}))).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", invalid.body);

    let stated = json!({"credit_limit": "9999999999.99"});
    let approved = app.as_org(app.org_a, Method::POST, &approve, Some(stated)).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    let statement = app.as_org(app.org_a, Method::GET, &format!("{}/statement", credit(customer)), None).await;
    let approval = &statement.body["items"][1];
    assert_eq!((approval["kind"].as_str(), approval["actor"].as_str()), (Some("approved"), Some("tester")));
    assert_eq!(approval["credit_limit_after"], "9999999999.99");
}

#[tokio::test]
async fn using_credit_twice_for_the_same_order_charges_once() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "300.00", 30).await;
    let order = Uuid::new_v4();
    let first = use_credit(&app, customer, order, "120.50").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["amount"], "120.50");
    assert_eq!(first.body["status"], "pending");
    let replay = use_credit(&app, customer, order, "120.5").await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body["usage_id"], first.body["usage_id"]);
    let other_amount = use_credit(&app, customer, order, "99.00").await;
    assert_eq!(other_amount.status, StatusCode::CONFLICT);
    assert_eq!(other_amount.code(), "order_amount_mismatch");
    let other_customer = app.approved_account(app.org_a, "300.00", 30).await;
    let elsewhere = use_credit(&app, other_customer, order, "120.50").await;
    assert_eq!(elsewhere.code(), "order_amount_mismatch", "an order belongs to one customer");

    let now = account(&app, customer).await;
    assert_eq!((now["credit_used"].as_str(), now["credit_available"].as_str()), (Some("120.50"), Some("179.50")));
    assert_eq!(app.count("credit_usages").await, 1);
}

#[tokio::test]
async fn using_more_than_is_available_is_422_with_the_available_amount() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "100.00", 30).await;
    assert_eq!(use_credit(&app, customer, Uuid::new_v4(), "60.00").await.status, StatusCode::CREATED);
    let refused = use_credit(&app, customer, Uuid::new_v4(), "40.01").await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.code(), "insufficient_credit");
    assert_eq!(refused.body["credit_available"], "40.00");
    assert_eq!(use_credit(&app, customer, Uuid::new_v4(), "40.00").await.status, StatusCode::CREATED);

    let check = app
        .as_org(app.org_a, Method::POST, &format!("{}/check", credit(customer)), Some(json!({"amount": "0.01"})))
        .await;
    assert_eq!(check.body, json!({"available": false, "credit_available": "0.00", "status": "approved"}));
}

#[tokio::test]
async fn release_returns_the_credit_once_and_repeating_it_is_a_no_op() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "200.00", 30).await;
    let order = Uuid::new_v4();
    use_credit(&app, customer, order, "80.00").await;
    let path = format!("{}/usages/{order}/release", credit(customer));
    let released = app.as_org(app.org_a, Method::POST, &path, None).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert_eq!(released.body["status"], "cancelled");
    let again = app.as_org(app.org_a, Method::POST, &path, None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["usage_id"], released.body["usage_id"]);
    assert_eq!(account(&app, customer).await["credit_used"], "0.00");
    let unknown = app
        .as_org(app.org_a, Method::POST, &format!("{}/usages/{}/release", credit(customer), Uuid::new_v4()), None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let after_release = use_credit(&app, customer, order, "80.00").await;
    assert_eq!(after_release.status, StatusCode::CONFLICT, "a released order is not silently answered as charged");
    assert_eq!(after_release.code(), "order_released");
    assert_eq!(account(&app, customer).await["credit_used"], "0.00");
}

#[tokio::test]
async fn payments_settle_the_oldest_usages_first_and_are_idempotent() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "1000.00", 30).await;
    let orders: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for (order, amount) in orders.iter().zip(["100.00", "50.00", "70.00"]) {
        assert_eq!(use_credit(&app, customer, *order, amount).await.status, StatusCode::CREATED);
    }
    let token = app.token(app.org_a, crate::helpers::ALL);
    let pay = |key: &str, body: Value| {
        Request::builder()
            .method(Method::POST)
            .uri(format!("{}/payments", credit(customer)))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let body = json!({"amount": "130.00", "payment_method": "transfer", "payment_reference": "TRX-1"});
    let paid = app.send(pay("key-1", body.clone())).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    let replay = app.send(pay("key-1", body)).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body["payment_id"], paid.body["payment_id"]);
    let reused = app.send(pay("key-1", json!({"amount": "1.00", "payment_method": "cash"}))).await;
    assert_eq!(reused.status, StatusCode::CONFLICT);
    assert_eq!(reused.code(), "idempotency_conflict");

    let usages = app.as_org(app.org_a, Method::GET, &format!("{}/usages", credit(customer)), None).await;
    let settled: Vec<(String, String)> = usages.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["amount_paid"].as_str().unwrap().into(), u["status"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        settled,
        [("100.00".into(), "paid".into()), ("30.00".into(), "pending".into()), ("0.00".into(), "pending".into())]
    );
    assert_eq!(account(&app, customer).await["credit_used"], "90.00");

    let other_id_same_key = json!({"payment_id": Uuid::new_v4(), "amount": "130.00", "payment_method": "transfer",
                                   "payment_reference": "TRX-1"});
    let mismatch = app.send(pay("key-1", other_id_same_key)).await;
    assert_eq!(mismatch.code(), "idempotency_conflict", "a key and a payment_id that disagree are refused");
    let too_old = json!({"amount": "1.00", "payment_method": "cash", "payment_date": "-5000-01-01"});
    let refused_date =
        app.as_org(app.org_a, Method::POST, &format!("{}/payments", credit(customer)), Some(too_old)).await;
    assert_eq!(refused_date.status, StatusCode::UNPROCESSABLE_ENTITY);
    let by_id = json!({"payment_id": Uuid::new_v4(), "amount": "20.00", "payment_method": "cash"});
    let first =
        app.as_org(app.org_a, Method::POST, &format!("{}/payments", credit(customer)), Some(by_id.clone())).await;
    let second = app.as_org(app.org_a, Method::POST, &format!("{}/payments", credit(customer)), Some(by_id)).await;
    assert_eq!((first.status, second.status), (StatusCode::CREATED, StatusCode::OK));

    let too_much = json!({"amount": "70.01", "payment_method": "card"});
    let refused = app.as_org(app.org_a, Method::POST, &format!("{}/payments", credit(customer)), Some(too_much)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.code(), "payment_exceeds_balance");
    assert_eq!(refused.body["credit_used"], "70.00");

    let listed = app.as_org(app.org_a, Method::GET, &format!("{}/payments?limit=1", credit(customer)), None).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert!(listed.body["next_cursor"].is_string());
}

#[tokio::test]
async fn the_limit_never_goes_below_what_is_used_and_needs_an_approver() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "500.00", 30).await;
    use_credit(&app, customer, Uuid::new_v4(), "300.00").await;
    let below = app.as_org(app.org_a, Method::PATCH, &credit(customer), Some(json!({"credit_limit": "299.99"}))).await;
    assert_eq!(below.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(below.code(), "limit_below_used");
    let writer = app.token(app.org_a, &["credit:read", "credit:write"]);
    let forbidden =
        app.call(Method::PATCH, &credit(customer), Some(&writer), Some(json!({"credit_limit": "900.00"}))).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let terms = app.call(Method::PATCH, &credit(customer), Some(&writer), Some(json!({"payment_term_days": 45}))).await;
    assert_eq!(terms.status, StatusCode::OK, "{}", terms.body);
    assert_eq!(terms.body["payment_term_days"], 45);
    let raised = app.as_org(app.org_a, Method::PATCH, &credit(customer), Some(json!({"credit_limit": "300.00"}))).await;
    assert_eq!(raised.status, StatusCode::OK);
    assert_eq!(raised.body["credit_available"], "0.00");
}

#[tokio::test]
async fn suspended_and_cancelled_accounts_cannot_be_used_but_can_be_paid() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "500.00", 30).await;
    use_credit(&app, customer, Uuid::new_v4(), "100.00").await;
    let path = credit(customer);
    let suspended =
        app.as_org(app.org_a, Method::POST, &format!("{path}/suspend"), Some(json!({"reason": "mora"}))).await;
    assert_eq!(suspended.body["status"], "suspended");
    assert_eq!(suspended.body["suspension_reason"], "mora");
    assert_eq!(use_credit(&app, customer, Uuid::new_v4(), "1.00").await.code(), "credit_not_approved");
    let no_reason = app.as_org(app.org_a, Method::POST, &format!("{path}/reactivate"), Some(json!({}))).await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    let back =
        app.as_org(app.org_a, Method::POST, &format!("{path}/reactivate"), Some(json!({"reason": "pagó"}))).await;
    assert_eq!(back.body["status"], "approved");
    assert_eq!(back.body["suspended_at"], Value::Null);
    let cancelled =
        app.as_org(app.org_a, Method::POST, &format!("{path}/cancel"), Some(json!({"reason": "cierre"}))).await;
    assert_eq!(cancelled.body["status"], "cancelled");
    let approve_again = app.as_org(app.org_a, Method::POST, &format!("{path}/approve"), None).await;
    assert_eq!(approve_again.code(), "invalid_status_transition");
    let paid = app
        .as_org(
            app.org_a,
            Method::POST,
            &format!("{path}/payments"),
            Some(json!({"amount": 100, "payment_method": "cash"})),
        )
        .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
}

#[tokio::test]
async fn bad_amounts_get_422_and_write_nothing() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "500.00", 30).await;
    let before = (app.count("credit_usages").await, app.count("credit_movements").await, app.count("outbox").await);
    for amount in [
        json!("0"),
        json!(0),
        json!("-5.00"),
        json!(-5),
        json!("1.005"),
        json!("abc"),
        json!(1000000000000000i64),
        json!("1e3"),
        json!(1.5),
        json!(null),
        json!(""),
        json!("  "),
    ] {
        let body = json!({"order_id": Uuid::new_v4(), "amount": amount});
        let response = app.as_org(app.org_a, Method::POST, &format!("{}/usages", credit(customer)), Some(body)).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}: {}", response.body);
        assert_eq!(response.body["errors"][0]["field"], "amount", "{amount}");
        let payment = json!({"amount": amount, "payment_method": "cash"});
        let response =
            app.as_org(app.org_a, Method::POST, &format!("{}/payments", credit(customer)), Some(payment)).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}");
    }
    for body in [
        json!({"order_id": "not-a-uuid", "amount": "1.00"}),
        json!({"amount": "1.00"}),
        json!({"order_id": Uuid::new_v4(), "amount": "1.00", "extra": true}),
    ] {
        let response =
            app.as_org(app.org_a, Method::POST, &format!("{}/usages", credit(customer)), Some(body.clone())).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let bad_method = json!({"amount": "1.00", "payment_method": "bitcoin"});
    let response =
        app.as_org(app.org_a, Method::POST, &format!("{}/payments", credit(customer)), Some(bad_method)).await;
    assert_eq!(response.body["errors"][0]["field"], "payment_method");
    for limit in [json!("-1"), json!("10.999"), json!("x")] {
        let other = app.create_customer(app.org_a, person("Sin", "Cuenta")).await;
        let response = app.as_org(app.org_a, Method::POST, &credit(other), Some(json!({"credit_limit": limit}))).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{limit}");
    }
    let after = (app.count("credit_usages").await, app.count("credit_movements").await, app.count("outbox").await - 3);
    assert_eq!(before, after, "only the three customers created above wrote anything");
}

#[tokio::test]
async fn every_credit_route_answers_404_for_another_organizations_account() {
    let app = TestApp::spawn().await;
    let theirs = app.approved_account(app.org_b, "500.00", 30).await;
    let order = Uuid::new_v4();
    let charged = app
        .as_org(
            app.org_b,
            Method::POST,
            &format!("{}/usages", credit(theirs)),
            Some(json!({"order_id": order, "amount": "10.00"})),
        )
        .await;
    assert_eq!(charged.status, StatusCode::CREATED);
    let base = credit(theirs);
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, base.clone(), None),
        (Method::POST, base.clone(), Some(json!({"credit_limit": "1.00"}))),
        (Method::PATCH, base.clone(), Some(json!({"payment_term_days": 10}))),
        (Method::POST, format!("{base}/approve"), None),
        (Method::POST, format!("{base}/suspend"), Some(json!({"reason": "x"}))),
        (Method::POST, format!("{base}/reactivate"), Some(json!({"reason": "x"}))),
        (Method::POST, format!("{base}/cancel"), Some(json!({"reason": "x"}))),
        (Method::POST, format!("{base}/check"), Some(json!({"amount": "1.00"}))),
        (Method::POST, format!("{base}/usages"), Some(json!({"order_id": Uuid::new_v4(), "amount": "1.00"}))),
        (Method::GET, format!("{base}/usages"), None),
        (Method::POST, format!("{base}/usages/{order}/release"), None),
        (Method::POST, format!("{base}/payments"), Some(json!({"amount": "1.00", "payment_method": "cash"}))),
        (Method::GET, format!("{base}/payments"), None),
        (Method::GET, format!("{base}/statement"), None),
    ];
    let theirs_before = app.snapshot(app.org_b).await;
    for (method, path, body) in routes {
        let response = app.as_org(app.org_a, method.clone(), &path, body).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{method} {path}: {}", response.body);
        assert_eq!(response.body, TestApp::not_found_problem(), "{method} {path} answers nothing of theirs");
        assert_unchanged(&theirs_before, &app.snapshot(app.org_b).await, &format!("{method} {path}"));
    }
    let same_order = app
        .as_org(
            app.org_a,
            Method::POST,
            &format!("{}/usages", credit(app.approved_account(app.org_a, "50.00", 30).await)),
            Some(json!({"order_id": order, "amount": "10.00"})),
        )
        .await;
    assert_eq!(same_order.status, StatusCode::CREATED, "order ids are per organization");
    let still = app.as_org(app.org_b, Method::GET, &base, None).await;
    assert_eq!((still.body["status"].as_str(), still.body["credit_used"].as_str()), (Some("approved"), Some("10.00")));
}

#[tokio::test]
async fn the_statement_replays_every_movement_with_who_and_when() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "400.00", 30).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    use_credit(&app, customer, a, "150.00").await;
    use_credit(&app, customer, b, "50.00").await;
    app.as_org(app.org_a, Method::POST, &format!("{}/usages/{a}/release", credit(customer)), None).await;
    app.as_org(
        app.org_a,
        Method::POST,
        &format!("{}/payments", credit(customer)),
        Some(json!({"amount": "20.00", "payment_method": "card"})),
    )
    .await;
    app.as_org(app.org_a, Method::PATCH, &credit(customer), Some(json!({"credit_limit": "600.00"}))).await;

    let statement = app.as_org(app.org_a, Method::GET, &format!("{}/statement", credit(customer)), None).await;
    assert_eq!(statement.status, StatusCode::OK, "{}", statement.body);
    let items = statement.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["opened", "approved", "used", "used", "released", "payment", "limit_changed"]);
    let amounts: Vec<&str> = items.iter().map(|m| m["amount"].as_str().unwrap()).collect();
    assert_eq!(amounts, ["0.00", "0.00", "150.00", "50.00", "-150.00", "-20.00", "0.00"]);
    for movement in items {
        assert_eq!(movement["running_credit_used"], movement["credit_used_after"], "{movement}");
        assert_eq!(movement["actor"], "tester");
    }
    assert_eq!(statement.body["credit_used"], "30.00");
    assert_eq!(items.last().unwrap()["running_credit_used"], "30.00");
    assert_eq!(items.last().unwrap()["credit_limit_after"], "600.00");

    let page = app.as_org(app.org_a, Method::GET, &format!("{}/statement?limit=4", credit(customer)), None).await;
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = app
        .as_org(app.org_a, Method::GET, &format!("{}/statement?limit=4&cursor={cursor}", credit(customer)), None)
        .await;
    assert_eq!(rest.body["items"][0]["kind"], "released");
    assert_eq!(rest.body["items"][0]["running_credit_used"], "50.00", "the replay spans pages");

    let types: Vec<String> = app
        .admin()
        .await
        .query("SELECT event_type FROM outbox WHERE event_type LIKE 'customers.credit.%' ORDER BY occurred_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        types,
        [
            "customers.credit.opened",
            "customers.credit.approved",
            "customers.credit.used",
            "customers.credit.used",
            "customers.credit.released",
            "customers.credit.payment_recorded",
            "customers.credit.limit_changed"
        ]
    );
}

#[tokio::test]
async fn the_overdue_job_marks_usages_past_due_once_in_every_organization() {
    let app = TestApp::spawn().await;
    let a = app.approved_account(app.org_a, "500.00", 0).await;
    let b = app.approved_account(app.org_b, "500.00", 10).await;
    use_credit(&app, a, Uuid::new_v4(), "40.00").await;
    app.as_org(
        app.org_b,
        Method::POST,
        &format!("{}/usages", credit(b)),
        Some(json!({"order_id": Uuid::new_v4(), "amount": "60.00"})),
    )
    .await;
    let db = shared::app::App::new(shared::db::Db::from_config(crate::helpers::app_config(&app.database), 2).unwrap());
    let today = chrono::Utc::now().date_naive();

    assert_eq!(shared::credit::mark_overdue(&db, today).await.unwrap(), 0, "due today is not overdue yet");
    assert_eq!(shared::credit::mark_overdue(&db, today + chrono::Days::new(1)).await.unwrap(), 1);
    assert_eq!(shared::credit::mark_overdue(&db, today + chrono::Days::new(1)).await.unwrap(), 0, "once");
    assert_eq!(
        shared::credit::mark_overdue(&db, today + chrono::Days::new(11)).await.unwrap(),
        1,
        "organization B too"
    );

    assert_eq!(account(&app, a).await["overdue_amount"], "40.00");
    let view = app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers/{a}/360"), None).await;
    assert_eq!(view.body["overdue_amount"], "40.00");
    let overdue = app.as_org(app.org_a, Method::GET, &format!("{}/usages?status=overdue", credit(a)), None).await;
    assert_eq!(overdue.body["items"].as_array().unwrap().len(), 1);
    let events: i64 = app
        .admin()
        .await
        .query_one("SELECT count(*) FROM outbox WHERE event_type = 'customers.credit.overdue'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 2);
    let paid = app
        .as_org(
            app.org_a,
            Method::POST,
            &format!("{}/payments", credit(a)),
            Some(json!({"amount": "40.00", "payment_method": "cash"})),
        )
        .await;
    assert_eq!(paid.status, StatusCode::CREATED);
    assert_eq!(account(&app, a).await["overdue_amount"], "0.00");
}

#[tokio::test]
async fn business_dates_are_utc_dates_whatever_the_database_time_zone() {
    let app = TestApp::spawn().await;
    // At any hour, one of these two zones (UTC+14 and UTC-11) is on another date than UTC.
    for zone in ["Pacific/Kiritimati", "Pacific/Pago_Pago"] {
        let admin = app.admin().await;
        admin.batch_execute(&format!("ALTER DATABASE {} SET timezone = '{zone}'", app.database)).await.unwrap();
        let core =
            shared::app::App::new(shared::db::Db::from_config(crate::helpers::app_config(&app.database), 1).unwrap());
        let caller = shared::auth::Caller::service(app.org_a, "tester");
        let customer = app.approved_account(app.org_a, "100.00", 0).await;
        let amount = shared::money::Money::parse_positive("1.00").unwrap();
        let usage = shared::credit::use_credit(&core, &caller, customer, Uuid::new_v4(), amount).await.unwrap();
        let shared::credit::Written::Created(usage) = usage else { panic!("a new usage") };
        let today = chrono::Utc::now().date_naive();
        assert_eq!(usage.due_date, today, "a use on terms of 0 days is due today in UTC, under {zone}");
        assert_eq!(shared::credit::mark_overdue(&core, today).await.unwrap(), 0, "not overdue on its UTC due date");
    }
}

#[tokio::test]
async fn using_a_cancelled_account_is_refused_as_not_approved_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "500.00", 30).await;
    assert_eq!(use_credit(&app, customer, Uuid::new_v4(), "100.00").await.status, StatusCode::CREATED);
    let cancel = format!("{}/cancel", credit(customer));
    let cancelled = app.as_org(app.org_a, Method::POST, &cancel, Some(json!({"reason": "cierre"}))).await;
    assert_eq!(cancelled.body["status"], "cancelled");
    let before = app.snapshot(app.org_a).await;

    let refused = use_credit(&app, customer, Uuid::new_v4(), "10.00").await;

    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    assert_eq!(refused.code(), "credit_not_approved");
    assert_eq!(refused.body["account_status"], "cancelled");
    assert_unchanged(&before, &app.snapshot(app.org_a).await, "using a cancelled account");
}

#[tokio::test]
async fn suspend_reactivate_and_cancel_each_write_their_event_with_the_account_and_reason() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "500.00", 45).await;
    assert_eq!(use_credit(&app, customer, Uuid::new_v4(), "120.00").await.status, StatusCode::CREATED);
    let account_id = account(&app, customer).await["credit_account_id"].clone();
    let steps = [
        ("suspend", "mora", "customers.credit.suspended", "suspended"),
        ("reactivate", "pagó", "customers.credit.reactivated", "approved"),
        ("cancel", "cierre", "customers.credit.cancelled", "cancelled"),
    ];
    for (action, reason, _, _) in steps {
        let path = format!("{}/{action}", credit(customer));
        let changed = app.as_org(app.org_a, Method::POST, &path, Some(json!({"reason": reason}))).await;
        assert_eq!(changed.status, StatusCode::OK, "{action}: {}", changed.body);
    }

    let rows = app
        .admin()
        .await
        .query(
            "SELECT event_id, event_type, message_group, payload FROM outbox \
             WHERE event_type IN ('customers.credit.suspended', 'customers.credit.reactivated', \
                                  'customers.credit.cancelled') ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), steps.len(), "one event per change");
    for (row, (action, reason, event_type, status)) in rows.iter().zip(steps) {
        let (event_id, payload): (Uuid, Value) = (row.get(0), row.get(3));
        assert_eq!(row.get::<_, String>(1), event_type, "{action}");
        assert_eq!(row.get::<_, String>(2), format!("credit:{customer}"), "{action}");
        assert_eq!(payload["id"], json!(event_id), "{action}");
        assert_eq!(payload["type"], event_type, "{action}");
        assert_eq!(payload["source"], "customer-service", "{action}");
        assert_eq!(payload["organization_id"], json!(app.org_a), "{action}");
        assert!(payload["time"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
        let data = json!({
            "customer_id": customer, "credit_account_id": account_id, "status": status,
            "credit_limit": "500.00", "credit_used": "120.00", "payment_term_days": 45, "reason": reason,
        });
        assert_eq!(payload["data"], data, "{action}");
    }
}
