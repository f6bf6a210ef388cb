use http::{Method, Request, StatusCode};
use serde_json::json;

use crate::helpers::{person, TestApp};

#[tokio::test]
async fn creating_a_customer_answers_201_with_location_etag_and_normalized_values() {
    let app = TestApp::spawn().await;
    let body = json!({
        "first_name": " José ", "last_name": "Pérez", "email": "Jose.Perez@Example.com",
        "phone": "6123-4567", "document_type": "cedula", "document_number": " 8-123 -456 ",
        "birth_date": "1990-05-01", "tags": ["vip", "vip", "mayorista"], "metadata": {"source": "pos"}
    });
    let response = app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(body)).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let id = response.body["customer_id"].as_str().unwrap();
    assert_eq!(response.headers["location"], format!("/api/v1/customers/{id}").as_str());
    assert_eq!(response.headers["etag"], "\"1\"");
    let c = &response.body;
    assert_eq!(c["first_name"], "José");
    assert_eq!(c["phone"], "+50761234567");
    assert_eq!(c["document_number"], "8-123-456");
    assert_eq!(c["email"], "Jose.Perez@Example.com");
    assert_eq!(c["tags"], json!(["vip", "mayorista"]));
    assert_eq!(
        (c["status"].as_str(), c["loyalty_tier"].as_str(), c["customer_type"].as_str()),
        (Some("active"), Some("bronze"), Some("b2c"))
    );

    let events = app.admin().await.query("SELECT event_type, payload FROM outbox", &[]).await.unwrap();
    assert_eq!(events.len(), 1, "the created event is written with the customer");
    assert_eq!(events[0].get::<_, String>(0), "customers.customer.created");
    let payload: serde_json::Value = events[0].get(1);
    assert_eq!(payload["data"]["customer_id"], json!(id));
    assert!(!payload.to_string().contains("Pérez"), "events carry no personal data");
}

#[tokio::test]
async fn duplicates_in_one_organization_get_409_naming_the_field_and_other_organizations_may_reuse_them() {
    let app = TestApp::spawn().await;
    app.create_customer(
        app.org_a,
        json!({"first_name": "Ana", "last_name": "Uno", "email": "ana@example.com",
        "phone": "6123-4567", "document_type": "cedula", "document_number": "8-1-1"}),
    )
    .await;
    let cases = [
        (json!({"first_name": "B", "last_name": "B", "email": "ANA@Example.COM"}), "duplicate_email"),
        (json!({"first_name": "B", "last_name": "B", "phone": "+507 6123 4567"}), "duplicate_phone"),
        (
            json!({"first_name": "B", "last_name": "B", "document_type": "cedula", "document_number": " 8-1-1"}),
            "duplicate_document",
        ),
    ];
    for (body, code) in &cases {
        let response = app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(body.clone())).await;
        assert_eq!(response.status, StatusCode::CONFLICT, "{code}");
        assert_eq!(response.code(), *code);
        assert!(!response.body.to_string().contains("ana@example.com"), "no personal data in errors");
    }
    assert_eq!(app.count("customers").await, 1);
    for (body, _) in cases {
        let response = app.as_org(app.org_b, Method::POST, "/api/v1/customers", Some(body)).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    }
}

#[tokio::test]
async fn a_patch_that_would_duplicate_another_customers_phone_gets_409() {
    let app = TestApp::spawn().await;
    app.create_customer(app.org_a, json!({"first_name": "A", "last_name": "A", "phone": "61234567"})).await;
    let other = app.create_customer(app.org_a, person("B", "B")).await;
    let response = app
        .as_org(app.org_a, Method::PATCH, &format!("/api/v1/customers/{other}"), Some(json!({"phone": "6123 4567"})))
        .await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.code(), "duplicate_phone");
}

#[tokio::test]
async fn patch_with_a_stale_if_match_gets_412_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app.create_customer(app.org_a, person("Ana", "Versión")).await;
    let path = format!("/api/v1/customers/{id}");
    let token = app.token(app.org_a, crate::helpers::ALL);
    let patch = |etag: &str, body: serde_json::Value| {
        Request::builder()
            .method(Method::PATCH)
            .uri(&path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("if-match", etag)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let first = app.send(patch("\"1\"", json!({"first_name": "Anita"}))).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.headers["etag"], "\"2\"");
    let stale = app.send(patch("\"1\"", json!({"first_name": "Otra"}))).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.code(), "version_mismatch");
    let now = app.as_org(app.org_a, Method::GET, &path, None).await;
    assert_eq!(now.body["first_name"], "Anita");
    assert_eq!(now.headers["etag"], "\"2\"");
}

#[tokio::test]
async fn patch_clears_with_null_keeps_absent_fields_and_records_status_changes() {
    let app = TestApp::spawn().await;
    let id = app
        .create_customer(
            app.org_a,
            json!({"first_name": "Ana", "last_name": "Z", "email": "z@example.com", "notes": "n"}),
        )
        .await;
    let path = format!("/api/v1/customers/{id}");
    let response = app
        .as_org(
            app.org_a,
            Method::PATCH,
            &path,
            Some(json!({"email": null, "status": "blocked", "status_reason": "fraude"})),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["email"], json!(null));
    assert_eq!(response.body["notes"], "n");
    assert_eq!(response.body["status"], "blocked");
    let history = app.as_org(app.org_a, Method::GET, &format!("{path}/export"), None).await;
    let history = history.body["status_history"].as_array().unwrap().clone();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["to_status"], "blocked");
    assert_eq!(history[1]["reason"], "fraude");
    assert_eq!(history[1]["changed_by"], "tester");
    let types: Vec<String> = app
        .admin()
        .await
        .query("SELECT event_type FROM outbox ORDER BY occurred_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        types,
        ["customers.customer.created", "customers.customer.updated", "customers.customer.status_changed"]
    );

    let null_name = app.as_org(app.org_a, Method::PATCH, &path, Some(json!({"first_name": null}))).await;
    assert_eq!(null_name.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_list_pages_with_a_cursor_and_filters_by_status_and_type() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut body = person("Cliente", &format!("N{i}"));
        if i % 2 == 0 {
            body["customer_type"] = json!("b2b");
        }
        ids.push(app.create_customer(app.org_a, body).await.to_string());
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/customers?limit=2".to_string();
    loop {
        let page = app.as_org(app.org_a, Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(
            page.body["items"].as_array().unwrap().iter().map(|c| c["customer_id"].as_str().unwrap().to_string()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/customers?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every customer once, in creation order");
    let b2b = app.as_org(app.org_a, Method::GET, "/api/v1/customers?customer_type=b2b&status=active", None).await;
    assert_eq!(b2b.body["items"].as_array().unwrap().len(), 3);
    let tier = app.as_org(app.org_a, Method::GET, "/api/v1/customers?loyalty_tier=gold", None).await;
    assert_eq!(tier.body["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn addresses_keep_one_default_per_kind_and_both_counts_as_both() {
    let app = TestApp::spawn().await;
    let id = app.create_customer(app.org_a, person("Ana", "Casa")).await;
    let path = format!("/api/v1/customers/{id}/addresses");
    let add = |body: serde_json::Value| app.as_org(app.org_a, Method::POST, &path, Some(body));
    let first = add(json!({"address_line1": "Calle 1", "city": "Panamá"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["is_default"], true, "the first address is the default");
    let billing =
        add(json!({"address_type": "billing", "address_line1": "Calle 2", "city": "David", "is_default": true})).await;
    assert_eq!(billing.body["is_default"], true);
    let both =
        add(json!({"address_type": "both", "address_line1": "Calle 3", "city": "Colón", "is_default": true})).await;
    assert_eq!(both.body["country"], "PA");
    let list = app.as_org(app.org_a, Method::GET, &path, None).await;
    let defaults: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["is_default"] == true)
        .map(|a| a["address_line1"].as_str().unwrap())
        .collect();
    assert_eq!(defaults, ["Calle 3"], "a default `both` address replaces both defaults");

    let shipping_id = first.body["address_id"].as_str().unwrap();
    let again =
        app.as_org(app.org_a, Method::PATCH, &format!("{path}/{shipping_id}"), Some(json!({"is_default": true}))).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let view = app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers/{id}/360"), None).await;
    assert_eq!(view.body["default_shipping_address"]["address_line1"], "Calle 1");
    assert_eq!(view.body["default_billing_address"], json!(null), "the `both` default was unset");

    let removed = app.as_org(app.org_a, Method::DELETE, &format!("{path}/{shipping_id}"), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(app.count("addresses").await, 2);
}

#[tokio::test]
async fn the_360_view_shows_credit_segment_and_overdue_amount() {
    let app = TestApp::spawn().await;
    let id = app.create_customer(app.org_a, person("Ana", "Vista")).await;
    let admin = app.admin().await;
    let account = uuid::Uuid::now_v7();
    admin.execute("INSERT INTO credit_accounts (credit_account_id, organization_id, customer_id, credit_limit, credit_used, status) \
                   VALUES ($1, $2, $3, 1000, 300, 'approved')", &[&account, &app.org_a, &id]).await.unwrap();
    admin.execute("INSERT INTO credit_usages (usage_id, organization_id, credit_account_id, order_id, amount, amount_paid, status, due_date, created_by) \
                   VALUES ($1, $2, $3, $4, 300, 50, 'overdue', current_date - 5, 't')",
                  &[&uuid::Uuid::now_v7(), &app.org_a, &account, &uuid::Uuid::new_v4()]).await.unwrap();
    let view = app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers/{id}/360"), None).await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert_eq!(view.body["credit_limit"], "1000.00");
    assert_eq!(view.body["credit_available"], "700.00");
    assert_eq!(view.body["overdue_amount"], "250.00");
    assert_eq!(view.body["segment_code"], json!(null));
}

#[tokio::test]
async fn loyalty_answers_tier_multiplier_benefits_and_points_for_an_amount() {
    let app = TestApp::spawn().await;
    let id = app.create_customer(app.org_a, person("Ana", "Oro")).await;
    app.admin()
        .await
        .execute("UPDATE customers SET loyalty_tier = 'gold', tier_updated_at = now() WHERE customer_id = $1", &[&id])
        .await
        .unwrap();
    let card = app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers/{id}/loyalty?amount=99.99"), None).await;
    assert_eq!(card.status, StatusCode::OK, "{}", card.body);
    assert_eq!(card.body["loyalty_tier"], "gold");
    assert_eq!(card.body["points_multiplier"], 1.5);
    assert_eq!(card.body["points"], 149);
    assert_eq!(card.body["amount"], "99.99");
    assert!(card.body["benefits"].as_array().unwrap().iter().any(|b| b["code"] == "free_shipping"));
    let bad = app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers/{id}/loyalty?amount=-1"), None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"][0]["field"], "amount");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    let doc = app.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
        "/api/v1/customers",
        "/api/v1/customers/{id}",
        "/api/v1/customers/{id}/360",
        "/api/v1/customers/{id}/export",
        "/api/v1/customers/{id}/loyalty",
        "/api/v1/customers/{id}/addresses",
        "/api/v1/customers/{id}/addresses/{address_id}",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn concurrent_creates_with_one_email_make_exactly_one_customer() {
    let app = TestApp::spawn().await;
    let attempts = (0..16).map(|i| {
        let body = json!({"first_name": "Ana", "last_name": format!("Carrera{i}"), "email": if i % 2 == 0 { "race@example.com" } else { "RACE@example.com" }});
        app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(body))
    });
    let responses = futures_util::future::join_all(attempts).await;
    let created = responses.iter().filter(|r| r.status == StatusCode::CREATED).count();
    let duplicates = responses.iter().filter(|r| r.code() == "duplicate_email").count();
    assert_eq!((created, duplicates), (1, 15));
    assert_eq!(app.count("customers").await, 1);
}

#[tokio::test]
async fn concurrent_default_addresses_leave_exactly_one_default_per_kind() {
    let app = TestApp::spawn().await;
    let id = app.create_customer(app.org_a, person("Ana", "Muchas")).await;
    let path = format!("/api/v1/customers/{id}/addresses");
    let attempts = (0..12).map(|i| {
        let kind = ["shipping", "billing", "both"][i % 3];
        let body =
            json!({"address_type": kind, "address_line1": format!("Calle {i}"), "city": "Panamá", "is_default": true});
        app.as_org(app.org_a, Method::POST, &path, Some(body))
    });
    let responses = futures_util::future::join_all(attempts).await;
    assert!(responses.iter().all(|r| r.status == StatusCode::CREATED));
    let defaults = app.admin().await.query_one(
        "SELECT count(*) FILTER (WHERE address_type IN ('shipping', 'both')), count(*) FILTER (WHERE address_type IN ('billing', 'both')) \
         FROM addresses WHERE is_default", &[]).await.unwrap();
    assert!(defaults.get::<_, i64>(0) <= 1 && defaults.get::<_, i64>(1) <= 1);
    assert!(defaults.get::<_, i64>(0) + defaults.get::<_, i64>(1) >= 1, "the last default stands");
}

#[tokio::test]
async fn the_list_and_search_filters_keep_only_what_they_name() {
    let app = TestApp::spawn().await;
    let active = app.create_customer(app.org_a, person("Ana", "Activa")).await;
    let blocked = app.create_customer(app.org_a, person("Ana", "Bloqueada")).await;
    let block = json!({"status": "blocked", "status_reason": "fraud review"});
    let patched = app.as_org(app.org_a, Method::PATCH, &format!("/api/v1/customers/{blocked}"), Some(block)).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    app.admin()
        .await
        .execute("UPDATE customers SET loyalty_tier = 'gold' WHERE customer_id = $1", &[&active])
        .await
        .unwrap();

    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["items"].as_array().unwrap().iter().map(|c| c["customer_id"].as_str().unwrap().to_string()).collect()
    };
    let listed = app.as_org(app.org_a, Method::GET, "/api/v1/customers?status=blocked", None).await;
    assert_eq!(ids(&listed.body), [blocked.to_string()]);
    let listed = app.as_org(app.org_a, Method::GET, "/api/v1/customers?loyalty_tier=gold", None).await;
    assert_eq!(ids(&listed.body), [active.to_string()]);
    let found = app.as_org(app.org_a, Method::GET, "/api/v1/customers/search?q=ana&loyalty_tier=gold", None).await;
    assert_eq!(ids(&found.body), [active.to_string()]);
    let found = app.as_org(app.org_a, Method::GET, "/api/v1/customers/search?q=ana&status=blocked", None).await;
    assert_eq!(ids(&found.body), [blocked.to_string()]);
    let found = app.as_org(app.org_a, Method::GET, "/api/v1/customers/search?q=ana&segment=champions", None).await;
    assert_eq!(ids(&found.body), Vec::<String>::new(), "no one has a segment before a run");
}

#[tokio::test]
async fn a_stale_if_match_on_an_address_or_a_credit_account_gets_412_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "100.00", 30).await;
    let base = format!("/api/v1/customers/{customer}");
    let added = app
        .as_org(
            app.org_a,
            Method::POST,
            &format!("{base}/addresses"),
            Some(json!({"address_line1": "Calle 1", "city": "Colón"})),
        )
        .await;
    let address = format!("{base}/addresses/{}", added.body["address_id"].as_str().unwrap());
    let token = app.token(app.org_a, crate::helpers::ALL);
    for (path, body) in
        [(address.as_str(), json!({"city": "David"})), (&format!("{base}/credit"), json!({"payment_term_days": 60}))]
    {
        let request = Request::builder()
            .method(Method::PATCH)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("if-match", "\"99\"")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let stale = app.send(request).await;
        assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{path}");
        assert_eq!(stale.code(), "version_mismatch");
    }
    let read = app.as_org(app.org_a, Method::GET, &format!("{base}/addresses"), None).await;
    assert_eq!(read.body["items"][0]["city"], "Colón");
    let account = app.as_org(app.org_a, Method::GET, &format!("{base}/credit"), None).await;
    assert_eq!(account.body["payment_term_days"], 30);
}
