use lambda_http::Service;
use serde_json::json;

use crate::helpers::{person, TestApp, ALL};

/// An API Gateway HTTP API (payload v2.0) event as AWS delivers it.
fn http_api_event(method: &str, path: &str, token: &str, body: Option<&str>) -> String {
    json!({
        "version": "2.0",
        "routeKey": format!("{method} /api/v1/customers/{{id}}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {token}"),
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": format!("{method} /api/v1/customers/{{id}}"),
            "stage": "$default",
            "time": "23/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795428000000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

/// Runs one event through `lambda_http`'s adapter, as `lambda_http::run` does in Lambda,
/// and returns the API Gateway response JSON.
async fn invoke(app: &TestApp, event: &str) -> serde_json::Value {
    let payload: lambda_http::request::LambdaRequest =
        serde_json::from_str(event).expect("a valid API Gateway v2 event");
    let mut adapter = lambda_http::Adapter::from(app.router.clone());
    let response = adapter
        .call(lambda_http::LambdaEvent::new(payload, lambda_http::Context::default()))
        .await
        .expect("the router answers");
    serde_json::to_value(&response).unwrap()
}

#[tokio::test]
async fn the_function_answers_a_real_api_gateway_v2_event() {
    let app = TestApp::spawn().await;
    let id = app.create_customer(app.org_a, person("Ana", "Lambda")).await;
    let token = app.token(app.org_a, ALL);

    let response = invoke(&app, &http_api_event("GET", &format!("/api/v1/customers/{id}"), &token, None)).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["headers"]["etag"], "\"1\"");
    let body: serde_json::Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["last_name"], "Lambda");

    let patch = http_api_event("PATCH", &format!("/api/v1/customers/{id}"), &token, Some(r#"{"last_name": "Evento"}"#));
    let response = invoke(&app, &patch).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let customer = app.as_org(app.org_a, http::Method::GET, &format!("/api/v1/customers/{id}"), None).await;
    assert_eq!(customer.body["last_name"], "Evento");

    let unauthenticated = http_api_event("GET", &format!("/api/v1/customers/{id}"), "forged", None);
    let response = invoke(&app, &unauthenticated).await;
    assert_eq!(response["statusCode"], 401);
    assert_eq!(response["headers"]["content-type"], "application/problem+json");
}
