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
