use axum::body::Body;
use http::{Method, Request, StatusCode};
use serde_json::json;

use crate::helpers::{person, TestApp, ALL};

#[tokio::test]
async fn bad_customer_bodies_get_400_or_422_problem_json_and_write_nothing() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(10 * 1024);
    let cases = [
        (json!({"first_name": 5, "last_name": "A"}), "first_name"),
        (json!({"first_name": "A", "last_name": "B", "status": "deleted"}), "status"),
        (json!({"first_name": "A", "last_name": "B", "customer_type": "vip"}), "customer_type"),
        (json!({"first_name": long, "last_name": "B"}), "first_name"),
        (json!({"first_name": "A", "last_name": "B", "email": "not-an-email"}), "email"),
        (json!({"first_name": "A", "last_name": "B", "phone": "12"}), "phone"),
        (json!({"first_name": "A", "last_name": "B", "document_type": "cedula"}), "document_number"),
        (json!({"first_name": "A", "last_name": "B", "birth_date": "1990-13-45"}), "birth_date"),
        (json!({"first_name": "A", "last_name": "B", "birth_date": "2999-01-01"}), "birth_date"),
        (json!({"first_name": "A", "last_name": "B", "metadata": [1, 2]}), "metadata"),
        (json!({"first_name": "A", "last_name": "B", "metadata": {"k": "a\u{0}b"}}), "metadata"),
        (json!({"first_name": "A", "last_name": "B", "tags": "vip"}), "tags"),
        (json!({"first_name": "A", "last_name": "B", "loyalty_tier": "platinum"}), "loyalty_tier"),
        (json!({"last_name": "B"}), "first_name"),
        (json!({"first_name": "   ", "last_name": "B"}), "first_name"),
        (json!([1, 2, 3]), "body"),
    ];
    for (body, field) in cases {
        let response = app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(body.clone())).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", response.body);
        assert_eq!(response.content_type(), "application/problem+json");
        assert_eq!(response.code(), "validation_failed");
        let fields: Vec<&str> =
            response.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "{body}: expected {field} in {fields:?}");
        assert!(!response.body.to_string().contains(&long), "the value is not echoed");
    }
    assert_eq!(app.count("customers").await, 0);
    assert_eq!(app.count("outbox").await, 0);
}

#[tokio::test]
async fn one_response_names_every_invalid_field() {
    let app = TestApp::spawn().await;
    let body = json!({"first_name": "", "last_name": "", "email": "x", "phone": "1"});
    let response = app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(body)).await;
    let mut fields: Vec<&str> =
        response.body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    fields.sort();
    assert_eq!(fields, ["email", "first_name", "last_name", "phone"]);
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_invalid_ids_get_400() {
    let app = TestApp::spawn().await;
    let token = app.token(app.org_a, ALL);
    let raw = |content_type: &str, body: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/customers")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", content_type)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    for (content_type, body) in [
        ("application/json", "{\"first_name\": "),
        ("application/json", "{} trailing"),
        ("text/plain", "{}"),
        ("application/json", ""),
    ] {
        let response = app.send(raw(content_type, body)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{content_type} {body:?}");
        assert_eq!(response.code(), "malformed_request");
    }
    for path in ["/api/v1/customers/not-a-uuid", "/api/v1/customers/123/360", "/api/v1/customers/%27%20OR%201=1"] {
        let response = app.as_org(app.org_a, Method::GET, path, None).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(response.content_type(), "application/problem+json");
    }
    let wrong_method = app.as_org(app.org_a, Method::PUT, "/api/v1/customers", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.content_type(), "application/problem+json");
    let unknown = app.as_org(app.org_a, Method::GET, "/api/v1/nowhere", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.content_type(), "application/problem+json");
    assert_eq!(app.count("customers").await, 0);
}

#[tokio::test]
async fn bad_list_parameters_get_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("status=deleted", "status"),
        ("limit=0", "limit"),
        ("limit=500", "limit"),
        ("limit=abc", "limit"),
        ("cursor=garbage", "cursor"),
        ("loyalty_tier=diamond", "loyalty_tier"),
        ("colour=red", "colour"),
    ] {
        let response = app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers?{query}"), None).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {}", response.body);
        assert_eq!(response.body["errors"][0]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn bad_patches_and_addresses_change_nothing() {
    let app = TestApp::spawn().await;
    let id = app.create_customer(app.org_a, person("Ana", "Firme")).await;
    let path = format!("/api/v1/customers/{id}");
    for body in [
        json!({"email": "nope"}),
        json!({"status": null}),
        json!({"document_number": "8-1-1"}),
        json!({"unknown": 1}),
        json!({"tags": [""]}),
        json!({"first_name": "x".repeat(101)}),
    ] {
        let response = app.as_org(app.org_a, Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let addresses = format!("{path}/addresses");
    for body in [
        json!({"city": "Panamá"}),
        json!({"address_line1": "A", "city": "B", "country": "XX"}),
        json!({"address_line1": "A", "city": "B", "address_type": "home"}),
    ] {
        let response = app.as_org(app.org_a, Method::POST, &addresses, Some(body.clone())).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let now = app.as_org(app.org_a, Method::GET, &path, None).await;
    assert_eq!(now.body["version"], 1);
    assert_eq!(app.count("addresses").await, 0);
    assert_eq!(app.count("outbox").await, 1);
}
