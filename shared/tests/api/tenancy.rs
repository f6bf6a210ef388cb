use http::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{app_config, person, TestApp};

#[tokio::test]
async fn every_customers_route_answers_404_for_a_customer_of_another_organization() {
    let app = TestApp::spawn().await;
    let theirs = app.create_customer(app.org_b, person("Bea", "Otra")).await;
    let address = app
        .as_org(
            app.org_b,
            Method::POST,
            &format!("/api/v1/customers/{theirs}/addresses"),
            Some(json!({"address_line1": "Calle 50", "city": "Panamá"})),
        )
        .await;
    let address = address.body["address_id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/customers/{theirs}");
    let routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, base.clone(), None),
        (Method::PATCH, base.clone(), Some(json!({"first_name": "Hacked"}))),
        (Method::DELETE, base.clone(), None),
        (Method::GET, format!("{base}/360"), None),
        (Method::GET, format!("{base}/export"), None),
        (Method::GET, format!("{base}/loyalty"), None),
        (Method::GET, format!("{base}/addresses"), None),
        (Method::POST, format!("{base}/addresses"), Some(json!({"address_line1": "X", "city": "Y"}))),
        (Method::PATCH, format!("{base}/addresses/{address}"), Some(json!({"city": "Colón"}))),
        (Method::DELETE, format!("{base}/addresses/{address}"), None),
    ];
    for (method, path, body) in routes {
        let response = app.as_org(app.org_a, method.clone(), &path, body).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{method} {path}: {}", response.body);
        assert_eq!(response.code(), "not_found");
    }
    let still = app.as_org(app.org_b, Method::GET, &base, None).await;
    assert_eq!(still.body["first_name"], "Bea");
    assert_eq!(still.body["version"], 1);
    assert_eq!(app.count("addresses").await, 1);
}

#[tokio::test]
async fn lists_never_show_another_organizations_customers() {
    let app = TestApp::spawn().await;
    let mine = app.create_customer(app.org_a, person("Ana", "Mía")).await;
    for i in 0..3 {
        app.create_customer(app.org_b, person("Otro", &format!("Cliente{i}"))).await;
    }
    let list = app.as_org(app.org_a, Method::GET, "/api/v1/customers?limit=200", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> =
        list.body["items"].as_array().unwrap().iter().map(|c| c["customer_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![mine.to_string()]);
}

/// Opens a transaction on a raw runtime-role connection with `organization` as its tenant.
async fn begin_as(client: &tokio_postgres::Client, organization: Uuid) {
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute("SELECT set_config('app.current_organization_id', $1, true)", &[&organization.to_string()])
        .await
        .unwrap();
}

async fn raw_app_client(app: &TestApp) -> tokio_postgres::Client {
    let (client, connection) = app_config(&app.database).connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn the_runtime_role_sees_no_rows_without_a_tenant() {
    let app = TestApp::spawn().await;
    app.create_customer(app.org_a, person("Ana", "Uno")).await;
    app.create_customer(app.org_b, person("Bea", "Dos")).await;
    fill_every_tenant_table(&app).await;
    assert_eq!(app.count("customers").await, 3, "the owner sees them all");

    let admin = app.admin().await;
    let client = raw_app_client(&app).await;
    let mut checked = Vec::new();
    for table in tenant_tables(&admin).await.into_iter().chain(["v_customer_360".to_string()]) {
        if rows(&admin, &table).await == 0 {
            continue;
        }
        assert_eq!(rows(&client, &table).await, 0, "{table} is visible without a tenant");
        checked.push(table);
    }
    assert!(checked.len() >= 15, "most tenant tables hold rows to hide: {checked:?}");
}

async fn rows(client: &tokio_postgres::Client, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

/// A row in (nearly) every tenant table of `org_a`: a customer with an address, an approved
/// account used and paid, a purchase through the consumer, and a segment run.
async fn fill_every_tenant_table(app: &TestApp) {
    let customer = app.approved_account(app.org_a, "100.00", 30).await;
    let base = format!("/api/v1/customers/{customer}");
    let address = json!({"address_line1": "Calle 50", "city": "Panamá"});
    assert_eq!(
        app.as_org(app.org_a, Method::POST, &format!("{base}/addresses"), Some(address)).await.status,
        StatusCode::CREATED
    );
    let usage = json!({"order_id": Uuid::new_v4(), "amount": "10.00"});
    assert_eq!(
        app.as_org(app.org_a, Method::POST, &format!("{base}/credit/usages"), Some(usage)).await.status,
        StatusCode::CREATED
    );
    let payment = json!({"amount": "5.00", "payment_method": "cash"});
    assert_eq!(
        app.as_org(app.org_a, Method::POST, &format!("{base}/credit/payments"), Some(payment)).await.status,
        StatusCode::CREATED
    );
    let order = crate::events_inbound::completed(app.org_a, customer, Uuid::new_v4(), "42.00", chrono::Utc::now());
    let failed = crate::events_inbound::handle_batch(&app.core, crate::events_inbound::batch(&[order]), 1).await;
    assert!(failed.batch_item_failures.is_empty());
    let run = app.as_org(app.org_a, Method::POST, "/api/v1/segments/recalculate", Some(json!({}))).await;
    assert!(run.status.is_success(), "{}", run.body);
}

#[tokio::test]
async fn a_reused_pooled_connection_carries_no_tenant_over() {
    let app = TestApp::spawn().await;
    let db = shared::db::Db::from_config(app_config(&app.database), 1).unwrap();
    let mut connection = db.connection().await.unwrap();
    let tx = connection.begin(app.org_a).await.unwrap();
    tx.execute(
        "INSERT INTO customers (customer_id, organization_id, first_name, last_name) VALUES ($1, $2, 'A', 'B')",
        &[&Uuid::now_v7(), &app.org_a],
    )
    .await
    .unwrap();
    let seen: i64 = tx.query_one("SELECT count(*) FROM customers", &[]).await.unwrap().get(0);
    assert_eq!(seen, 1);
    tx.commit().await.unwrap();
    drop(connection);

    let connection = db.connection().await.unwrap();
    assert_eq!(connection.organization_outside_transactions().await.unwrap(), None);
    let mut connection = connection;
    let tx = connection.begin(app.org_b).await.unwrap();
    let seen: i64 = tx.query_one("SELECT count(*) FROM customers", &[]).await.unwrap().get(0);
    assert_eq!(seen, 0, "organization B sees A's row on a reused connection");
}

#[tokio::test]
async fn the_runtime_role_cannot_write_another_tenant_or_bypass_row_security() {
    let app = TestApp::spawn().await;
    let client = raw_app_client(&app).await;

    begin_as(&client, app.org_a).await;
    let foreign = client
        .execute(
            "INSERT INTO customers (customer_id, organization_id, first_name, last_name) VALUES ($1, $2, 'X', 'Y')",
            &[&Uuid::now_v7(), &app.org_b],
        )
        .await;
    let refused = foreign.unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert!(message.contains("row-level security"), "WITH CHECK must refuse: {message}");
    client.batch_execute("ROLLBACK").await.unwrap();

    let bypass = client.batch_execute("SET row_security = off; SELECT * FROM customers").await;
    assert!(bypass.is_err(), "row_security=off must not bypass the policy");
    let disable = client.batch_execute("ALTER TABLE customers DISABLE ROW LEVEL SECURITY").await;
    assert!(disable.is_err(), "the runtime role must not own the table");

    let role = client
        .query_one("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .unwrap();
    assert!(!role.get::<_, bool>(0) && !role.get::<_, bool>(1));
    let owned: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owned, 0, "the runtime role owns nothing");
}

/// Every table with an `organization_id` column, from the catalog (the registry aside).
async fn tenant_tables(admin: &tokio_postgres::Client) -> Vec<String> {
    let rows = admin
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'organization_id' AND NOT a.attisdropped \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'organizations' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::test]
async fn every_tenant_table_has_forced_row_level_security_with_check() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let tables = tenant_tables(&admin).await;
    assert!(tables.len() >= 16, "the catalog lists the tenant tables: {tables:?}");
    // The organization is read once per statement (an init plan), see V11.
    let tenant_only = "(organization_id = ( SELECT current_organization_id() AS current_organization_id))";
    for table in &tables {
        let forced: (bool, bool) = admin
            .query_one("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1", &[table])
            .await
            .map(|row| (row.get(0), row.get(1)))
            .unwrap();
        assert_eq!(forced, (true, true), "{table}: row-level security enabled and forced");
        let policies = admin
            .query(
                "SELECT policyname, cmd, qual, with_check FROM pg_policies \
                 WHERE tablename = $1 AND roles && ARRAY['public', 'customer_app']::name[]",
                &[table],
            )
            .await
            .unwrap();
        assert!(!policies.is_empty(), "{table}: no policy binds the runtime role");
        for policy in policies {
            let (name, cmd): (String, String) = (policy.get(0), policy.get(1));
            let (using, check): (Option<String>, Option<String>) = (policy.get(2), policy.get(3));
            assert_eq!(cmd, "ALL", "{table}.{name}: one policy for every command");
            assert_eq!(using.as_deref(), Some(tenant_only), "{table}.{name}: USING compares the tenant");
            assert_eq!(check.as_deref(), Some(tenant_only), "{table}.{name}: WITH CHECK compares the tenant");
        }
    }

    // The registry of organization ids is the documented exception: forced RLS, a tenant sees
    // only its own row, jobs (no tenant) list them all, and a transaction may register only its
    // own organization.
    let registry = admin
        .query(
            "SELECT p.cmd, p.qual, p.with_check, c.relforcerowsecurity FROM pg_policies p \
             JOIN pg_class c ON c.relname = p.tablename WHERE p.tablename = 'organizations' ORDER BY p.cmd",
            &[],
        )
        .await
        .unwrap();
    let policies: Vec<(String, Option<String>, Option<String>, bool)> =
        registry.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(policies.len(), 2, "{policies:?}");
    assert!(policies.iter().all(|p| p.3), "forced");
    assert_eq!((policies[0].0.as_str(), policies[0].1.as_deref()), ("INSERT", None));
    assert!(policies[0].2.as_deref().unwrap().contains("current_organization_id()"));
    assert_eq!(
        (policies[1].0.as_str(), policies[1].1.as_deref()),
        (
            "SELECT",
            Some(
                "((organization_id = ( SELECT current_organization_id() AS current_organization_id)) \
                 OR (( SELECT current_organization_id() AS current_organization_id) IS NULL))"
            )
        )
    );

    let client = raw_app_client(&app).await;
    begin_as(&client, app.org_a).await;
    let foreign = client.execute("INSERT INTO organizations (organization_id) VALUES ($1)", &[&app.org_b]).await;
    assert!(foreign.is_err(), "registering another organization must fail");
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_registry_row_and_no_pending_list_while_jobs_see_all() {
    let app = TestApp::spawn().await;
    app.create_customer(app.org_a, person("Ana", "Uno")).await;
    app.create_customer(app.org_b, person("Bea", "Dos")).await;
    let client = raw_app_client(&app).await;
    begin_as(&client, app.org_a).await;
    let visible: Vec<Uuid> = client
        .query("SELECT organization_id FROM organizations", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(visible, vec![app.org_a], "a tenant lists its own organization only");
    let pending = client.query("SELECT * FROM organizations_with_pending_events()", &[]).await.unwrap();
    assert!(pending.is_empty(), "a tenant learns nothing of other tenants' outboxes");
    client.batch_execute("COMMIT").await.unwrap();

    let mut all = app.db.organizations().await.unwrap();
    all.sort();
    let mut expected = vec![app.org_a, app.org_b];
    expected.sort();
    assert_eq!(all, expected, "a job without a tenant lists every organization");
    assert_eq!(app.db.organizations_with_pending_events().await.unwrap(), expected, "both have unpublished events");
    let outbox_rows = client.query("SELECT 1 FROM outbox", &[]).await.unwrap();
    assert!(outbox_rows.is_empty(), "the runtime role still reads no outbox row without a tenant");
}

#[tokio::test]
async fn a_pool_that_could_bypass_row_security_refuses_to_start() {
    let app = TestApp::spawn().await;
    let mut owner: tokio_postgres::Config = crate::helpers::admin_url().parse().unwrap();
    owner.dbname(&app.database);
    let as_owner = shared::db::Db::from_config(owner, 1).unwrap();
    let refused = as_owner.ensure_runtime_role().await.unwrap_err();
    assert!(refused.to_string().contains("customer_app"), "{refused}");
    let as_runtime = shared::db::Db::from_config(app_config(&app.database), 1).unwrap();
    as_runtime.ensure_runtime_role().await.unwrap();
}
