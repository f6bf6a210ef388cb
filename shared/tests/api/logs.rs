//! Logs carry codes and ids, never personal data: a database error whose DETAIL quotes a row's
//! values (here a customer's email, in a unique violation) is logged by its code and constraint
//! only, on every path that logs errors.

use http::{Method, StatusCode};
use local_aws::RetryPolicy;
use serde_json::json;
use shared::events::Relay;
use uuid::Uuid;

use crate::events_inbound::{batch, completed, handle_batch};
use crate::helpers::*;

/// A customer of `organization` and its email.
async fn customer_with_email(app: &TestApp, organization: Uuid) -> (Uuid, String) {
    let body = person("Eva", "Privada");
    let email = body["email"].as_str().unwrap().to_string();
    (app.create_customer(organization, body).await, email)
}

/// Makes every write to `table` fail with a unique violation whose DETAIL quotes `owner`'s
/// email: the statement's trigger copies the email into a table that already holds it. (Under
/// row-level security PostgreSQL leaves key values out of such a DETAIL, so the copy goes to a
/// table without it, as a helper table or a PL/pgSQL `RAISE ... DETAIL` could.)
async fn fail_writes_quoting_the_email(app: &TestApp, table: &str, owner: Uuid) {
    app.admin()
        .await
        .batch_execute(&format!(
            "CREATE TABLE test_seen_emails (email text UNIQUE); \
             INSERT INTO test_seen_emails SELECT email FROM customers WHERE customer_id = '{owner}'; \
             GRANT SELECT, INSERT ON test_seen_emails TO customer_app; \
             CREATE FUNCTION test_copy_email() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 INSERT INTO test_seen_emails SELECT email FROM customers WHERE customer_id = '{owner}'; \
                 RETURN NULL; \
             END $$; \
             CREATE TRIGGER test_copy_email AFTER INSERT OR UPDATE ON {table} \
                 FOR EACH STATEMENT EXECUTE FUNCTION test_copy_email();"
        ))
        .await
        .unwrap();
}

/// The log has `line` once, naming the violation by code and constraint, and no `email`.
fn assert_logged_without(logs: &CapturedLogs, line: &str, email: &str) {
    let text = logs.text();
    let lines = logs.lines_with(line);
    assert_eq!(lines.len(), 1, "expected one `{line}` line in:\n{text}");
    assert!(!text.contains(email), "the email reached the log:\n{text}");
    assert!(lines[0].contains("23505") && lines[0].contains("test_seen_emails_email_key"), "{}", lines[0]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_database_error_applying_an_inbound_event_is_logged_without_the_values_in_its_detail() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let buyer = app.create_customer(org, person("Ana", "Compra")).await;
    let (owner, email) = customer_with_email(&app, org).await;
    fail_writes_quoting_the_email(&app, "purchases", owner).await;
    let event = completed(org, buyer, Uuid::new_v4(), "10.00", chrono::Utc::now());

    let logs = CapturedLogs::start();
    let response = handle_batch(&app.core, batch(&[event]), 1).await;

    assert_eq!(response.batch_item_failures.len(), 1);
    assert_logged_without(&logs, "inbound event failed", &email);
}

#[tokio::test(flavor = "current_thread")]
async fn a_database_error_in_the_outbox_relay_is_logged_without_the_values_in_its_detail() {
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy::default()).await;
    let app = TestApp::spawn().await;
    let org = app.org_a;
    app.create_customer(org, person("Ana", "Relevo")).await;
    let (owner, email) = customer_with_email(&app, org).await;
    fail_writes_quoting_the_email(&app, "outbox", owner).await;
    let relay = Relay::new(app.db.clone(), sqs, queues.outbound);

    let logs = CapturedLogs::start();
    let report = relay.publish_all(a_minute_from_now()).await.unwrap();
    assert_eq!(report.errors, 1, "{report:?}");
    assert_logged_without(&logs, "outbox relay pass failed", &email);
    let groups: Vec<String> = app
        .admin()
        .await
        .query("SELECT DISTINCT message_group FROM outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    relay.publish_after_commit(org, &groups).await;
    assert_logged_without(&logs, "publishing after commit failed", &email);
}

#[tokio::test(flavor = "current_thread")]
async fn a_database_error_answering_a_request_is_logged_without_the_values_in_its_detail() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let customer = app.create_customer(org, person("Ana", "Domicilio")).await;
    let (owner, email) = customer_with_email(&app, org).await;
    fail_writes_quoting_the_email(&app, "addresses", owner).await;

    let logs = CapturedLogs::start();
    let response = app
        .as_org(
            org,
            Method::POST,
            &format!("/api/v1/customers/{customer}/addresses"),
            Some(json!({"address_type": "both", "address_line1": "Calle 50", "city": "Panamá"})),
        )
        .await;

    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", response.body);
    assert!(!response.body.to_string().contains(&email));
    assert_logged_without(&logs, "request failed", &email);
}

#[tokio::test(flavor = "current_thread")]
async fn creating_a_customer_with_a_taken_email_logs_the_code_not_the_email() {
    let app = TestApp::spawn().await;
    let org = app.org_a;
    let (_, email) = customer_with_email(&app, org).await;
    let mut again = person("Otra", "Persona");
    again["email"] = json!(email.to_uppercase());

    let logs = CapturedLogs::start();
    let response = app.as_org(org, Method::POST, "/api/v1/customers", Some(again)).await;

    assert_eq!(response.status, StatusCode::CONFLICT, "{}", response.body);
    let text = logs.text().to_lowercase();
    assert_eq!(logs.lines_with("duplicate_email").len(), 1, "{text}");
    assert!(!text.contains(&email), "the email reached the log:\n{text}");
}

/// Personal values of the full run: what is sent, and the forms the service stores or derives
/// (lower case, unaccented, E.164, digits only, normalized document).
const SEEDED: &[&str] = &[
    "Zacarías",
    "Zacarias",
    "Quintero",
    "Arosemena",
    "Zq.Privado@Correo.pa",
    "zq.privado",
    "6987-6543",
    "69876543",
    "4-777-999",
    "4777999",
    "Zoraida",
    "zoraida.nueva@correo.pa",
    "6876-5432",
    "68765432",
    "PE-12-3456",
    "Calle Secreta",
    "Boquete",
    "1985-07-19",
];

#[tokio::test(flavor = "current_thread")]
async fn no_log_line_of_a_full_run_carries_a_seeded_name_email_phone_or_document() {
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy::default()).await;
    let app = TestApp::spawn_publishing_to(Some((sqs.clone(), queues.outbound.clone()))).await;
    let org = app.org_a;
    let logs = CapturedLogs::start();
    let mut calls = 0;
    let mut call = |method: Method, path: String, body: Option<serde_json::Value>, expected: StatusCode| {
        calls += 1;
        let app = &app;
        async move {
            let response = app.as_org(org, method.clone(), &path, body).await;
            assert_eq!(response.status, expected, "{method} {path}: {}", response.body);
            response.body
        }
    };

    let person = json!({
        "first_name": "Zacarías", "last_name": "Quintero Arosemena", "email": "Zq.Privado@Correo.pa",
        "phone": "6987-6543", "document_type": "cedula", "document_number": "4-777-999", "birth_date": "1985-07-19",
    });
    let created = call(Method::POST, "/api/v1/customers".into(), Some(person.clone()), StatusCode::CREATED).await;
    let customer = created["customer_id"].as_str().unwrap().to_string();
    let c = format!("/api/v1/customers/{customer}");
    for (field, value) in
        [("email", "zq.privado@correo.pa"), ("phone", "+507 6987 6543"), ("document_number", " 4-777-999 ")]
    {
        let mut twin = json!({"first_name": "Zacarías", "last_name": "Quintero"});
        twin[field] = json!(value);
        if field == "document_number" {
            twin["document_type"] = json!("cedula");
        }
        call(Method::POST, "/api/v1/customers".into(), Some(twin), StatusCode::CONFLICT).await;
    }
    let invalid =
        json!({"first_name": "Zacarías", "email": "Zq.Privado@", "phone": "6987-6543x", "gender": "Quintero"});
    call(Method::POST, "/api/v1/customers".into(), Some(invalid), StatusCode::UNPROCESSABLE_ENTITY).await;
    let address = json!({"address_line1": "Calle Secreta 123", "city": "Boquete", "recipient_name": "Zacarías Q.",
                         "phone": "6987-6543"});
    call(Method::POST, format!("{c}/addresses"), Some(address), StatusCode::CREATED).await;
    let update = json!({"first_name": "Zoraida", "email": "zoraida.nueva@correo.pa", "phone": "6876-5432",
                        "document_type": "passport", "document_number": "pe-12-3456"});
    call(Method::PATCH, c.clone(), Some(update), StatusCode::OK).await;
    for read in ["", "/360", "/export", "/addresses", "/loyalty"] {
        call(Method::GET, format!("{c}{read}"), None, StatusCode::OK).await;
    }
    for query in ["Zoraida Quintero", "zoraida quintro", "Arosemena", "zoraida.nueva", "6876-5432", "PE-12-3456"] {
        let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        call(Method::GET, format!("/api/v1/customers/search?q={encoded}"), None, StatusCode::OK).await;
    }
    call(Method::GET, "/api/v1/customers?limit=5".into(), None, StatusCode::OK).await;
    let credit = format!("{c}/credit");
    call(Method::POST, credit.clone(), Some(json!({"credit_limit": "300.00"})), StatusCode::CREATED).await;
    call(Method::POST, format!("{credit}/approve"), None, StatusCode::OK).await;
    let usage = json!({"order_id": Uuid::new_v4(), "amount": "120.00"});
    call(Method::POST, format!("{credit}/usages"), Some(usage), StatusCode::CREATED).await;
    let too_much = json!({"order_id": Uuid::new_v4(), "amount": "999.00"});
    call(Method::POST, format!("{credit}/usages"), Some(too_much), StatusCode::UNPROCESSABLE_ENTITY).await;
    let payment = json!({"amount": "20.00", "payment_method": "transfer", "payment_reference": "Quintero"});
    call(Method::POST, format!("{credit}/payments"), Some(payment), StatusCode::CREATED).await;
    call(Method::GET, format!("{credit}/statement"), None, StatusCode::OK).await;
    call(Method::DELETE, c.clone(), None, StatusCode::NO_CONTENT).await;
    call(Method::PATCH, c.clone(), Some(json!({"first_name": "Zoraida"})), StatusCode::CONFLICT).await;
    Relay::new(app.db.clone(), sqs.clone(), &queues.outbound).publish_all(a_minute_from_now()).await.unwrap();

    assert_eq!(logs.lines_with("answered").len(), calls, "every request was logged:\n{}", logs.text());
    let text = logs.text().to_lowercase();
    for value in SEEDED {
        let leaks: Vec<&str> = text.lines().filter(|line| line.contains(&value.to_lowercase())).collect();
        assert!(leaks.is_empty(), "{value} reached the log:\n{}", leaks.join("\n"));
    }
}
