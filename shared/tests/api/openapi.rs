//! The OpenAPI documents tell the truth: every reference resolves, and every enum value the
//! documents list is accepted where they say it is.

use http::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// The documents of the customers, credit, search and segments functions.
async fn documents(app: &TestApp) -> Vec<(&'static str, Value)> {
    let mut documents = Vec::new();
    for (function, router) in
        [("customers", &app.router), ("credit", &app.credit), ("search", &app.search), ("segments", &app.segments)]
    {
        let response = TestApp::get_from(router, "/api/v1/openapi.json").await;
        assert_eq!(response.status, StatusCode::OK, "{function}");
        documents.push((function, response.body));
    }
    documents
}

fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => references(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

/// The values of the document's schema `name`.
fn enum_values(document: &Value, name: &str) -> Vec<String> {
    let values = document["components"]["schemas"][name]["enum"].as_array();
    let values = values.unwrap_or_else(|| panic!("{name} is not an enum of the document"));
    values.iter().map(|value| value.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn every_reference_of_every_document_resolves() {
    let app = TestApp::spawn().await;
    for (function, document) in documents(&app).await {
        let mut found = Vec::new();
        references(&document, &mut found);
        for target in found {
            let name = target.trim_start_matches("#/components/schemas/");
            assert!(!document["components"]["schemas"][name].is_null(), "{function}: {target} is not defined");
        }
    }
}

#[tokio::test]
async fn the_documented_enum_values_are_the_ones_the_api_accepts() {
    let app = TestApp::spawn().await;
    let documents = documents(&app).await;
    let customers = &documents[0].1;

    for customer_type in enum_values(customers, "CustomerType") {
        let mut body = person("Enum", &customer_type);
        body["customer_type"] = json!(customer_type);
        let created = app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "customer_type {customer_type}: {}", created.body);
    }
    for (schema, parameter) in [("CustomerStatus", "status"), ("LoyaltyTier", "loyalty_tier")] {
        for value in enum_values(customers, schema) {
            let listed =
                app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers?{parameter}={value}"), None).await;
            assert_eq!(listed.status, StatusCode::OK, "{parameter}={value}: {}", listed.body);
        }
    }
    let customer = app.create_customer(app.org_a, person("Ana", "Enumerada")).await;
    for address_type in enum_values(customers, "AddressType") {
        let body = json!({"address_type": address_type, "address_line1": "Calle 50", "city": "Panamá"});
        let added =
            app.as_org(app.org_a, Method::POST, &format!("/api/v1/customers/{customer}/addresses"), Some(body)).await;
        assert_eq!(added.status, StatusCode::CREATED, "address_type {address_type}: {}", added.body);
    }
    for document_type in enum_values(customers, "DocumentType") {
        let mut body = person("Doc", &document_type);
        body["document_type"] = json!(document_type);
        body["document_number"] = json!(format!("{}", Uuid::new_v4().simple()).chars().take(12).collect::<String>());
        let created = app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "document_type {document_type}: {}", created.body);
    }

    let credit = &documents[1].1;
    let account = app.approved_account(app.org_a, "900.00", 30).await;
    for method in enum_values(credit, "PaymentMethod") {
        let order = json!({"order_id": Uuid::new_v4(), "amount": "10.00"});
        app.as_org(app.org_a, Method::POST, &format!("/api/v1/customers/{account}/credit/usages"), Some(order)).await;
        let body = json!({"amount": "10.00", "payment_method": method});
        let paid = app
            .as_org(app.org_a, Method::POST, &format!("/api/v1/customers/{account}/credit/payments"), Some(body))
            .await;
        assert_eq!(paid.status, StatusCode::CREATED, "payment_method {method}: {}", paid.body);
    }
    for status in enum_values(credit, "UsageStatus") {
        let path = format!("/api/v1/customers/{account}/credit/usages?status={status}");
        assert_eq!(
            app.as_org(app.org_a, Method::GET, &path, None).await.status,
            StatusCode::OK,
            "usage status {status}"
        );
    }

    let search = &documents[2].1;
    for segment in enum_values(search, "SegmentCode") {
        let path = format!("/api/v1/customers/search?q=ana&segment={segment}");
        assert_eq!(app.as_org(app.org_a, Method::GET, &path, None).await.status, StatusCode::OK, "segment {segment}");
    }
}

#[tokio::test]
async fn a_credit_change_must_name_a_field_and_the_documents_say_so() {
    let app = TestApp::spawn().await;
    let documents = documents(&app).await;
    let credit = &documents[1].1;
    assert_eq!(credit["components"]["schemas"]["ChangeAccountRequest"]["minProperties"], 1);
    let account = app.approved_account(app.org_a, "900.00", 30).await;
    let path = format!("/api/v1/customers/{account}/credit");
    let empty = app.as_org(app.org_a, Method::PATCH, &path, Some(json!({}))).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", empty.body);
}

#[tokio::test]
async fn every_documented_country_is_accepted_for_an_address() {
    let app = TestApp::spawn().await;
    let documents = documents(&app).await;
    let country = &documents[0].1["components"]["schemas"]["CreateAddressRequest"]["properties"]["country"];
    let codes: Vec<&str> = country["enum"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(codes.contains(&"PA"), "{country}");
    let customer = app.create_customer(app.org_a, person("Ana", "Viajera")).await;
    for code in codes {
        let body = json!({"address_line1": "Calle 1", "city": "Ciudad", "country": code, "is_default": false});
        let added =
            app.as_org(app.org_a, Method::POST, &format!("/api/v1/customers/{customer}/addresses"), Some(body)).await;
        assert_eq!(added.status, StatusCode::CREATED, "country {code}: {}", added.body);
    }
}
