use http::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{assert_unchanged, TestApp};

#[tokio::test]
async fn erasure_removes_personal_data_and_keeps_ids_history_and_financial_rows() {
    let app = TestApp::spawn().await;
    let id = app
        .create_customer(
            app.org_a,
            json!({
                "first_name": "Zacarías", "last_name": "Quintero", "email": "zq.private@example.com",
                "phone": "6987-6543", "document_type": "cedula", "document_number": "4-777-999",
                "birth_date": "1985-07-19", "gender": "male", "metadata": {"mascota": "Firulais"},
                "notes": "prefiere llamadas", "tags": ["frecuente"]
            }),
        )
        .await;
    let path = format!("/api/v1/customers/{id}");
    app.as_org(app.org_a, Method::POST, &format!("{path}/addresses"),
        Some(json!({"address_line1": "Calle Secreta 123", "city": "Boquete", "recipient_name": "Zacarías Q.", "phone": "6987-6543"}))).await;
    let admin = app.admin().await;
    let account = Uuid::now_v7();
    admin.execute("INSERT INTO credit_accounts (credit_account_id, organization_id, customer_id, credit_limit, credit_used, status) \
                   VALUES ($1, $2, $3, 500, 120, 'approved')", &[&account, &app.org_a, &id]).await.unwrap();
    admin.execute("INSERT INTO credit_usages (usage_id, organization_id, credit_account_id, order_id, amount, due_date, created_by) \
                   VALUES ($1, $2, $3, $4, 120, current_date + 30, 't')", &[&Uuid::now_v7(), &app.org_a, &account, &Uuid::new_v4()]).await.unwrap();
    admin.execute("INSERT INTO purchases (organization_id, order_id, customer_id, total_amount, occurred_at) VALUES ($1, $2, $3, 80, now())",
                  &[&app.org_a, &Uuid::new_v4(), &id]).await.unwrap();

    let erased = app.as_org(app.org_a, Method::DELETE, &path, None).await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT, "{}", erased.body);
    let again = app.as_org(app.org_a, Method::DELETE, &path, None).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "erasing twice is a no-op");

    let export = app.as_org(app.org_a, Method::GET, &format!("{path}/export"), None).await;
    assert_eq!(export.status, StatusCode::OK);
    let text = export.body.to_string();
    for personal in [
        "Zacarías",
        "Quintero",
        "zq.private",
        "69876543",
        "4-777-999",
        "1985-07-19",
        "male",
        "Firulais",
        "prefiere",
        "frecuente",
        "Calle Secreta",
        "Boquete",
    ] {
        assert!(!text.contains(personal), "export still holds {personal}");
    }
    let customer = &export.body["customer"];
    assert_eq!(customer["customer_id"], json!(id));
    assert!(customer["erased_at"].is_string());
    assert_eq!(export.body["addresses"], json!([]));
    assert_eq!(export.body["status_history"].as_array().unwrap().len(), 2);
    assert_eq!(export.body["credit_account"]["credit_used"], "120.00");
    assert_eq!(export.body["credit_usages"].as_array().unwrap().len(), 1);
    assert_eq!(export.body["purchases"].as_array().unwrap().len(), 1);

    let stored =
        admin.query_one("SELECT row_to_json(c)::text FROM customers c WHERE customer_id = $1", &[&id]).await.unwrap();
    let stored: String = stored.get(0);
    assert!(!stored.contains("Quintero") && !stored.contains("zq.private"), "the row itself is scrubbed");
    let remembered: i64 = admin
        .query_one("SELECT count(*) FROM name_words WHERE word IN ('zacarias', 'quintero')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(remembered, 0, "the search vocabulary forgets the erased name");
    let suffixes: i64 =
        admin.query_one("SELECT count(*) FROM email_suffixes WHERE customer_id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(suffixes, 0, "the email fragment index forgets the erased email");
    let events: i64 = admin
        .query_one("SELECT count(*) FROM outbox WHERE event_type = 'customers.customer.erased'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);

    let patch = app.as_org(app.org_a, Method::PATCH, &path, Some(json!({"first_name": "Vuelve"}))).await;
    assert_eq!(patch.status, StatusCode::CONFLICT);
    assert_eq!(patch.code(), "customer_erased");
}

#[tokio::test]
async fn erasing_without_the_admin_scope_is_403_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app
        .create_customer(
            app.org_a,
            json!({"first_name": "Zacarías", "last_name": "Quintero", "email": "zq.keep@example.com",
                   "phone": "6987-6543", "document_type": "cedula", "document_number": "4-777-999"}),
        )
        .await;
    let path = format!("/api/v1/customers/{id}");
    let address = json!({"address_line1": "Calle Secreta 123", "city": "Boquete", "recipient_name": "Zacarías Q."});
    let added = app.as_org(app.org_a, Method::POST, &format!("{path}/addresses"), Some(address)).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    let before = app.snapshot(app.org_a).await;
    let writer = app.token(app.org_a, &["customers:read", "customers:write"]);

    let refused = app.call(Method::DELETE, &path, Some(&writer), None).await;

    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(refused.code(), "forbidden");
    assert_unchanged(&before, &app.snapshot(app.org_a).await, "an erase without customers:admin");
    let stored = app.as_org(app.org_a, Method::GET, &path, None).await;
    assert_eq!((stored.body["last_name"].as_str(), stored.body["erased_at"].as_str()), (Some("Quintero"), None));
}
