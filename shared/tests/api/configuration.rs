//! Database credentials from Secrets Manager (the local emulator), as deployed functions get them.

use aws_sdk_secretsmanager::Client;
use serde_json::json;
use shared::config::connection_from_secret;
use shared::db::Db;

use crate::helpers::*;

async fn secrets() -> Client {
    Client::new(&shared::aws::for_emulator(&emulator_endpoint()).await)
}

async fn put_secret(client: &Client, text: &str) -> String {
    let name = format!("customer-service/test/{}", uuid::Uuid::new_v4().simple());
    let created = client.create_secret().name(name).secret_string(text).send().await.unwrap_or_else(|e| {
        panic!("the Secrets Manager emulator at {} does not answer ({e}); run `make test`", emulator_endpoint())
    });
    created.arn().unwrap().to_string()
}

#[tokio::test]
async fn the_runtime_role_connects_with_credentials_from_the_secret() {
    let app = TestApp::spawn().await;
    let client = secrets().await;
    let target = app_config(&app.database);
    let port = target.get_ports().first().copied().unwrap_or(5432);
    let host = match target.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".into(),
    };
    let password = std::env::var("APP_DATABASE_PASSWORD").unwrap_or_else(|_| "unused-with-trust-auth".into());
    let arn = put_secret(
        &client,
        &json!({"engine": "postgres", "username": "customer_app", "password": password,
                "host": host, "port": port, "dbname": app.database})
        .to_string(),
    )
    .await;

    let connection = connection_from_secret(&client, &arn, tokio_postgres::Config::new()).await.unwrap();
    let db = Db::from_config(connection, 1).unwrap();
    db.ensure_runtime_role().await.unwrap();
    assert_eq!(db.organizations().await.unwrap(), Vec::<uuid::Uuid>::new());
}

#[tokio::test]
async fn a_bad_secret_is_named_without_its_content() {
    let client = secrets().await;
    let arn = put_secret(&client, "password=hunter2-not-json").await;
    let error = connection_from_secret(&client, &arn, tokio_postgres::Config::new()).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&arn) && message.contains("username"), "{message}");
    assert!(!message.contains("hunter2"), "the secret leaked into the error: {message}");

    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf";
    let error = connection_from_secret(&client, missing, tokio_postgres::Config::new()).await.unwrap_err();
    assert!(format!("{error:#}").contains(missing), "{error:#}");
}
