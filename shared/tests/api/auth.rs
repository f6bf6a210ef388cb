use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::get;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use shared::auth::TokenVerifier;
use shared::config::{AuthConfig, TokenKeys};
use uuid::Uuid;

use crate::helpers::{person, TestApp, SECRET};

pub(crate) fn sign_hs256(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

pub(crate) fn claims(org: Uuid, scope: &str, expires_in: i64) -> serde_json::Value {
    json!({"sub": "tester", "org_id": org, "scope": scope, "exp": chrono::Utc::now().timestamp() + expires_in})
}

#[tokio::test]
async fn missing_expired_forged_and_malformed_tokens_get_401() {
    let app = TestApp::spawn().await;
    let path = "/api/v1/customers";
    let cases = [
        ("missing", None),
        ("expired", Some(sign_hs256(SECRET, claims(app.org_a, "customers:read", -3600)))),
        ("forged", Some(sign_hs256("not-the-secret", claims(app.org_a, "customers:read", 600)))),
        ("garbage", Some("not.a.jwt".to_string())),
        (
            "no organization",
            Some(sign_hs256(
                SECRET,
                json!({"sub": "t", "scope": "customers:read", "exp": chrono::Utc::now().timestamp() + 600}),
            )),
        ),
        (
            "organization not a uuid",
            Some(sign_hs256(
                SECRET,
                json!({"sub": "t", "org_id": "acme", "scope": "customers:read", "exp": chrono::Utc::now().timestamp() + 600}),
            )),
        ),
        ("no expiry", Some(sign_hs256(SECRET, json!({"sub": "t", "org_id": app.org_a, "scope": "customers:read"})))),
    ];
    for (case, token) in cases {
        let response = app.call(Method::GET, path, token.as_deref(), None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(response.code(), "unauthorized", "{case}");
        assert_eq!(response.content_type(), "application/problem+json");
        assert_eq!(response.headers.get("www-authenticate").unwrap(), "Bearer");
    }
}

#[tokio::test]
async fn a_token_not_valid_yet_gets_401_beyond_the_leeway() {
    let app = TestApp::spawn().await;
    let not_before = |seconds: i64| {
        let mut claims = claims(app.org_a, "customers:read", 3600);
        claims["nbf"] = json!(chrono::Utc::now().timestamp() + seconds);
        sign_hs256(SECRET, claims)
    };

    let early = app.call(Method::GET, "/api/v1/customers", Some(&not_before(600)), None).await;
    assert_eq!(early.status, StatusCode::UNAUTHORIZED, "{}", early.body);
    assert_eq!(early.code(), "unauthorized");
    let within_leeway = app.call(Method::GET, "/api/v1/customers", Some(&not_before(10)), None).await;
    assert_eq!(within_leeway.status, StatusCode::OK, "a clock a few seconds ahead is tolerated");
}

#[tokio::test]
async fn a_token_without_the_write_scope_cannot_create_and_gets_403() {
    let app = TestApp::spawn().await;
    let reader = app.token(app.org_a, &["customers:read"]);
    let response = app.call(Method::POST, "/api/v1/customers", Some(&reader), Some(person("Ana", "Sin"))).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.code(), "forbidden");
    assert_eq!(app.count("customers").await, 0);
    let listed = app.call(Method::GET, "/api/v1/customers", Some(&reader), None).await;
    assert_eq!(listed.status, StatusCode::OK);
}

#[tokio::test]
async fn the_organization_comes_from_the_token_not_the_body() {
    let app = TestApp::spawn().await;
    let mut body = person("Ana", "Cuerpo");
    body["organization_id"] = json!(app.org_b);
    let response = app.as_org(app.org_a, Method::POST, "/api/v1/customers", Some(body)).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");
    let id = app.create_customer(app.org_a, person("Ana", "Token")).await;
    let created = app.as_org(app.org_a, Method::GET, &format!("/api/v1/customers/{id}"), None).await;
    assert_eq!(created.body["organization_id"], json!(app.org_a));
}

/// Serves a JWKS document on a random local port.
async fn serve_jwks(document: serde_json::Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/jwks.json", get(move || async move { axum::Json(document) }));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/jwks.json")
}

fn sign_rs256(pem: &[u8], kid: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

#[tokio::test]
async fn deployed_mode_verifies_rs256_against_the_jwks_and_refuses_other_keys() {
    let jwks: serde_json::Value = serde_json::from_str(include_str!("../fixtures/jwks.json")).unwrap();
    let url = serve_jwks(jwks).await;
    let config = AuthConfig {
        keys: TokenKeys::JwksUrl(url),
        organization_claim: "tenant".into(),
        audience: Some("customer-service".into()),
        issuer: None,
    };
    let verifier = TokenVerifier::new(&config).await.unwrap();
    let org = Uuid::new_v4();
    let good = json!({"sub": "svc-orders", "tenant": org, "scope": "credit:write", "aud": "customer-service",
                      "exp": chrono::Utc::now().timestamp() + 600});
    let signing_key = include_bytes!("../fixtures/jwks_test_private.pem");
    let caller = verifier.verify(&sign_rs256(signing_key, "test-key-1", &good)).await.unwrap();
    assert_eq!(caller.organization_id, org);
    assert!(caller.require(shared::auth::Scope::CreditWrite).is_ok());
    assert!(caller.require(shared::auth::Scope::CreditApprove).is_err());

    let other_key = include_bytes!("../fixtures/other_private.pem");
    assert!(verifier.verify(&sign_rs256(other_key, "test-key-1", &good)).await.is_err(), "wrong key");
    assert!(verifier.verify(&sign_rs256(other_key, "unknown-kid", &good)).await.is_err(), "unknown kid");
    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = json!("someone-else");
    assert!(verifier.verify(&sign_rs256(signing_key, "test-key-1", &wrong_audience)).await.is_err());
    let hs = sign_hs256("anything", good.clone());
    assert!(verifier.verify(&hs).await.is_err(), "an HS256 token must not pass an RS256 verifier");
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// A JWKS endpoint on a random local port that counts its requests and answers `document`, or
/// 503 when there is none (the provider is down).
async fn counting_jwks(document: Option<serde_json::Value>) -> (String, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let document = document.clone();
            async move {
                match document {
                    Some(document) => axum::Json(document).into_response(),
                    None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{address}/jwks.json"), requests)
}

fn jwks_config(url: String) -> AuthConfig {
    AuthConfig { keys: TokenKeys::JwksUrl(url), organization_claim: "org_id".into(), audience: None, issuer: None }
}

fn rs256_token(kid: &str) -> String {
    let claims = claims(Uuid::new_v4(), "customers:read", 600);
    sign_rs256(include_bytes!("../fixtures/jwks_test_private.pem"), kid, &claims)
}

/// Verifies a token for each of `kids`, half of them at once, and answers how many passed.
async fn verify_all(verifier: &TokenVerifier, kids: &[String]) -> usize {
    let (together, one_by_one) = kids.split_at(kids.len() / 2);
    let tokens: Vec<String> = together.iter().map(|kid| rs256_token(kid)).collect();
    let mut passed = futures_util::future::join_all(tokens.iter().map(|token| verifier.verify(token)))
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count();
    for kid in one_by_one {
        passed += usize::from(verifier.verify(&rs256_token(kid)).await.is_ok());
    }
    passed
}

#[tokio::test]
async fn the_verifier_starts_while_the_identity_provider_is_unreachable() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let verifier = TokenVerifier::new(&jwks_config(format!("http://127.0.0.1:{closed_port}/jwks.json")))
        .await
        .expect("a cold start does not need the identity provider");
    assert!(verifier.verify(&rs256_token("test-key-1")).await.is_err());

    let jwks: serde_json::Value = serde_json::from_str(include_str!("../fixtures/jwks.json")).unwrap();
    let (url, requests) = counting_jwks(Some(jwks)).await;
    let verifier = TokenVerifier::new(&jwks_config(url)).await.unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 0, "nothing is fetched before the first token");
    assert!(verifier.verify(&rs256_token("test-key-1")).await.is_ok(), "the keys come with the first token");
    assert!(verifier.verify(&rs256_token("test-key-1")).await.is_ok());
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unknown_key_ids_fetch_the_jwks_at_most_once_a_minute_even_when_the_fetch_fails() {
    let unknown_kids: Vec<String> = (0..10).map(|_| Uuid::new_v4().to_string()).collect();

    let (url, requests) = counting_jwks(None).await;
    let verifier = TokenVerifier::new(&jwks_config(url)).await.unwrap();
    assert_eq!(verify_all(&verifier, &unknown_kids).await, 0);
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one failed fetch, then none within the interval");

    let jwks: serde_json::Value = serde_json::from_str(include_str!("../fixtures/jwks.json")).unwrap();
    let (url, requests) = counting_jwks(Some(jwks)).await;
    let verifier = TokenVerifier::new(&jwks_config(url)).await.unwrap();
    assert_eq!(verify_all(&verifier, &unknown_kids).await, 0);
    assert!(verifier.verify(&rs256_token("test-key-1")).await.is_ok());
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one fetch serves every kid within the interval");
}

/// Every route with the scope it needs and a well-formed body: one list for the 401 and 403
/// checks, so a route added without its scope check fails here.
fn routes_and_scopes(customer: Uuid, address: Uuid) -> Vec<(Method, String, Option<serde_json::Value>, &'static str)> {
    let c = format!("/api/v1/customers/{customer}");
    let order = Uuid::new_v4();
    vec![
        (Method::GET, "/api/v1/customers".into(), None, "customers:read"),
        (Method::POST, "/api/v1/customers".into(), Some(person("Sin", "Permiso")), "customers:write"),
        (Method::GET, c.clone(), None, "customers:read"),
        (Method::PATCH, c.clone(), Some(json!({"notes": "x"})), "customers:write"),
        (Method::DELETE, c.clone(), None, "customers:admin"),
        (Method::GET, format!("{c}/360"), None, "customers:read"),
        (Method::GET, format!("{c}/export"), None, "customers:read"),
        (Method::GET, format!("{c}/loyalty"), None, "customers:read"),
        (Method::GET, format!("{c}/addresses"), None, "customers:read"),
        (
            Method::POST,
            format!("{c}/addresses"),
            Some(json!({"address_line1": "Calle 1", "city": "Colón"})),
            "customers:write",
        ),
        (Method::PATCH, format!("{c}/addresses/{address}"), Some(json!({"city": "David"})), "customers:write"),
        (Method::DELETE, format!("{c}/addresses/{address}"), None, "customers:write"),
        (Method::GET, "/api/v1/customers/search?q=ana".into(), None, "customers:read"),
        (Method::GET, format!("{c}/credit"), None, "credit:read"),
        (Method::POST, format!("{c}/credit"), Some(json!({"credit_limit": "10.00"})), "credit:write"),
        (Method::PATCH, format!("{c}/credit"), Some(json!({"payment_term_days": 15})), "credit:write"),
        (Method::PATCH, format!("{c}/credit"), Some(json!({"credit_limit": "20.00"})), "credit:approve"),
        (Method::POST, format!("{c}/credit/approve"), None, "credit:approve"),
        (Method::POST, format!("{c}/credit/suspend"), Some(json!({"reason": "r"})), "credit:write"),
        (Method::POST, format!("{c}/credit/reactivate"), Some(json!({"reason": "r"})), "credit:approve"),
        (Method::POST, format!("{c}/credit/cancel"), Some(json!({"reason": "r"})), "credit:approve"),
        (Method::POST, format!("{c}/credit/check"), Some(json!({"amount": "1.00"})), "credit:read"),
        (Method::GET, format!("{c}/credit/usages"), None, "credit:read"),
        (
            Method::POST,
            format!("{c}/credit/usages"),
            Some(json!({"order_id": order, "amount": "1.00"})),
            "credit:write",
        ),
        (Method::POST, format!("{c}/credit/usages/{order}/release"), None, "credit:write"),
        (Method::GET, format!("{c}/credit/payments"), None, "credit:read"),
        (
            Method::POST,
            format!("{c}/credit/payments"),
            Some(json!({"amount": "1.00", "payment_method": "cash"})),
            "credit:write",
        ),
        (Method::GET, format!("{c}/credit/statement"), None, "credit:read"),
        (Method::GET, format!("{c}/segment"), None, "segments:read"),
        (Method::POST, format!("{c}/segment/recalculate"), None, "segments:write"),
        (Method::GET, "/api/v1/segments".into(), None, "segments:read"),
        (Method::GET, "/api/v1/segments/champions/customers".into(), None, "segments:read"),
        (Method::POST, "/api/v1/segments/recalculate".into(), Some(json!({})), "segments:write"),
    ]
}

#[tokio::test]
async fn every_route_answers_401_without_a_token_and_403_without_its_scope_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let customer = app.approved_account(app.org_a, "100.00", 30).await;
    let address = app
        .as_org(
            app.org_a,
            Method::POST,
            &format!("/api/v1/customers/{customer}/addresses"),
            Some(json!({"address_line1": "Calle 50", "city": "Panamá"})),
        )
        .await
        .body["address_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let before = (app.count("outbox").await, app.count("customers").await, app.count("addresses").await);
    for (method, path, body, scope) in routes_and_scopes(customer, address) {
        let anonymous = app.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{method} {path} without a token");
        assert_eq!(anonymous.code(), "unauthorized");
        let others: Vec<&str> = crate::helpers::ALL.iter().copied().filter(|granted| *granted != scope).collect();
        let token = app.token(app.org_a, &others);
        let refused = app.call(method.clone(), &path, Some(&token), body).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {path} without {scope}: {}", refused.body);
        assert_eq!(refused.body["detail"], format!("The token lacks the scope `{scope}`."));
        assert_eq!(
            (refused.body["type"].as_str(), refused.body["title"].as_str()),
            (Some("urn:customer-service:problem:forbidden"), Some("Forbidden"))
        );
    }
    let after = (app.count("outbox").await, app.count("customers").await, app.count("addresses").await);
    assert_eq!(before, after, "a refused call writes nothing");
}
