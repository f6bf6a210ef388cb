//! The credit workload the credit and server benchmarks share: a seeded database of approved
//! accounts, and the reservation (and any tenant read) run directly on tokio-postgres as the
//! service runs it, the floor the service is compared with.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde_json::json;
use shared::db::ConnectOptions;
use shared::events::{types, OutboxEvent};
use shared::money::Money;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{admin, admin_config, runtime_config};

/// A fresh database with one organization and `1 + accounts` customers (names, email, phone,
/// document), each with an approved credit account whose limit no benchmark reaches. Returns
/// the customers in id order; the first is the hot one.
pub async fn seed_accounts(database: &str, organization: Uuid, accounts: usize) -> Vec<Uuid> {
    admin("postgres").await.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
    shared::migrations::run(&admin_config(database).into()).await.unwrap();
    let client = admin(database).await;
    client.execute("INSERT INTO organizations (organization_id) VALUES ($1)", &[&organization]).await.unwrap();
    client
        .execute(
            "INSERT INTO customers (customer_id, organization_id, first_name, last_name, email, phone,
                                    document_type, document_number, tags)
             SELECT gen_random_uuid(), $1, 'Bench', 'Customer ' || g, 'bench.' || g || '@example.com',
                    '+5076' || lpad(g::text, 7, '0'), 'cedula', '8-' || g, ARRAY['bench']
             FROM generate_series(0, $2) g",
            &[&organization, &(accounts as i32)],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO credit_accounts (credit_account_id, organization_id, customer_id, credit_limit, status,
                                          approved_at, approved_by)
             SELECT gen_random_uuid(), organization_id, customer_id, 9999999999.99, 'approved', now(), 'bench'
             FROM customers;
             ANALYZE",
        )
        .await
        .unwrap();
    client
        .query("SELECT customer_id FROM customers ORDER BY customer_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A plain pool of `size` connections as the runtime role, with the service's TLS.
pub fn direct_pool(database: &str, size: usize) -> Pool {
    let config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let tls = ConnectOptions::from(runtime_config(database)).tls.connector().unwrap();
    Pool::builder(Manager::from_config(runtime_config(database), tls, config)).max_size(size).build().unwrap()
}

/// The same reservation as the service makes it, straight on a pooled connection:
/// BEGIN, set the tenant, the reservation statement (`use_credit_sql()`), COMMIT.
pub async fn direct_reservation(pool: Pool, sql: Arc<str>, organization: Uuid, customer: Uuid) -> bool {
    let run = async {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        set_tenant(&tx, organization).await?;
        let (order, amount) = (Uuid::new_v4(), Money::parse_positive("1.00").unwrap());
        let data = json!({"customer_id": customer, "order_id": order, "amount": amount});
        let event = OutboxEvent::new(organization, types::CREDIT_USED, customer, data)?;
        let statement = tx.prepare_cached(&sql).await?;
        let (usage_id, movement_id) = (Uuid::now_v7(), Uuid::now_v7());
        let params: [&(dyn ToSql + Sync); 7] =
            [&organization, &customer, &amount, &usage_id, &order, &"bench", &movement_id];
        let row = tx.query_opt(&statement, &[&params[..], &event.params()].concat()).await?;
        tx.commit().await?;
        anyhow::Ok(row.is_some())
    };
    run.await.unwrap_or(false)
}

/// A read as the service makes it: BEGIN, set the tenant, `sql` with `param`, COMMIT. True when
/// it found a row.
pub async fn direct_read(pool: Pool, sql: &str, organization: Uuid, param: &(dyn ToSql + Sync)) -> bool {
    let run = async {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        set_tenant(&tx, organization).await?;
        let statement = tx.prepare_cached(sql).await?;
        let rows = tx.query(&statement, &[param]).await?;
        tx.commit().await?;
        anyhow::Ok(!rows.is_empty())
    };
    run.await.unwrap_or(false)
}

/// The service's first statement in every tenant transaction.
async fn set_tenant(tx: &deadpool_postgres::Transaction<'_>, organization: Uuid) -> Result<(), tokio_postgres::Error> {
    let statement = tx.prepare_cached(shared::db::SET_TENANT_SQL).await?;
    tx.execute(&statement, &[&organization.to_string()]).await.map(drop)
}
