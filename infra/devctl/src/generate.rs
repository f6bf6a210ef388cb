//! `devctl generate`: a realistic population of organizations, customers and purchases, loaded
//! into the tables the events consumer writes, as that consumer would have left them: customers
//! (with `last_purchase_at`), purchases (completed, and a few completed then cancelled) and,
//! once an organization has a segment window, the per-customer totals it keeps in
//! `customer_segments`. Not written: `inbound_events` (the consumer's ledger of event ids; these
//! purchases came from no event) and anything a segment run writes.
//!
//! The shape, drawn from a seeded random source: order counts per customer are log-normal (most
//! customers buy a few times, a few buy hundreds of times, some never), each customer has a
//! typical basket (log-normal) that its order amounts scatter around, and each customer is
//! active over a random span of the `days` before `until`, which spreads recency.
//!
//! Rows go through binary COPY into temporary tables, then one `INSERT ... SELECT` per table
//! and chunk inside a tenant transaction (two connections load chunks side by side), so row-level security checks every row as for any
//! other writer (the owner is bound by the forced policies; COPY into such a table is refused).

use std::pin::pin;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use indicatif::ProgressBar;
use rust_decimal::Decimal;
use shared::db::ConnectOptions;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;
use uuid::Uuid;

/// Customers per transaction.
const CHUNK: usize = 20_000;
/// Connections loading chunks side by side (the generation itself is light).
const LOADERS: usize = 2;
/// Spread of order counts between customers (log-normal sigma): most customers buy a few
/// times, one in a thousand about fifty times the average.
const ORDERS_SIGMA: f64 = 1.3;
/// Typical basket: median 30.00, spread between customers and between one customer's orders.
const BASKET_MEDIAN: f64 = 30.0;
const BASKET_SIGMA: f64 = 0.8;
const ORDER_SIGMA: f64 = 0.5;

const FIRST_NAMES: [&str; 16] = [
    "María", "José", "Juan", "Luis", "Carlos", "Ana", "Jorge", "Rosa", "Carmen", "Pedro", "Itzel", "Abdiel", "Yariela",
    "Aníbal", "Xiomara", "Ulises",
];
const SURNAMES: [&str; 16] = [
    "González",
    "Rodríguez",
    "Pérez",
    "Sánchez",
    "Castillo",
    "Batista",
    "Quintero",
    "Samaniego",
    "Arosemena",
    "De León",
    "Saldaña",
    "Núñez",
    "Chen",
    "Tuñón",
    "Vallarino",
    "Obaldía",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct Population {
    pub organizations: usize,
    /// Customers over all organizations (spread evenly).
    pub customers: usize,
    /// Orders over all organizations (spread evenly), cancelled ones included.
    pub orders: usize,
    /// Purchases fall in the `days` before `until`.
    pub days: u32,
    pub until: DateTime<Utc>,
    /// Share of orders cancelled after they completed.
    pub cancelled_share: f64,
    /// `Some(w)`: the organizations have a segment window counting from `w` days before
    /// `until` (as a run over that window leaves it), and the consumer kept their totals.
    /// `None`: no run yet, so the consumer kept no totals.
    pub kept_window_days: Option<u32>,
    pub seed: u64,
}

/// What was loaded.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub organizations: Vec<Uuid>,
    pub customers: u64,
    pub purchases: u64,
    pub totals: u64,
}

/// A seeded SplitMix64: the same seed draws the same population.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }
}

/// `total` split into `parts` near-equal shares.
fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// Order counts of `customers` customers summing to exactly `orders`, log-normally skewed.
fn order_counts(random: &mut Random, customers: usize, orders: usize) -> Vec<u32> {
    let weights: Vec<f64> = (0..customers).map(|_| (ORDERS_SIGMA * random.normal()).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut counts = Vec::with_capacity(customers);
    let (mut cumulative, mut given) = (0.0, 0usize);
    for weight in weights {
        cumulative += weight;
        let due = ((cumulative / total * orders as f64).round() as usize).min(orders);
        counts.push(u32::try_from(due - given).expect("a count fits"));
        given = due;
    }
    if let Some(last) = counts.last_mut() {
        *last += u32::try_from(orders - given).expect("a count fits");
    }
    counts
}

/// Cents as a decimal amount.
fn amount(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

struct CustomerRow {
    customer_id: Uuid,
    first_name: &'static str,
    last_name: String,
    email: String,
    phone: String,
    document_number: String,
    created_at: DateTime<Utc>,
    last_purchase_at: Option<DateTime<Utc>>,
}

struct PurchaseRow {
    order_id: Uuid,
    customer_id: Uuid,
    total_amount: Decimal,
    occurred_at: DateTime<Utc>,
    cancelled_at: Option<DateTime<Utc>>,
}

/// The totals `purchases::add_to_totals` and `take_out_of_totals` leave for one customer.
struct TotalsRow {
    customer_id: Uuid,
    window_orders: i32,
    window_amount: Decimal,
    total_orders: i32,
    lifetime_value: Decimal,
    average_order_value: Decimal,
    last_purchase_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Chunk {
    customers: Vec<CustomerRow>,
    purchases: Vec<PurchaseRow>,
    totals: Vec<TotalsRow>,
}

/// One customer and its orders; `sequence` numbers the customer within its organization and
/// makes its email, phone and document unique there.
fn draw_customer(
    random: &mut Random,
    population: &Population,
    counted_from: Option<DateTime<Utc>>,
    sequence: usize,
    orders: u32,
    chunk: &mut Chunk,
) {
    let customer_id = Uuid::now_v7();
    let span_seconds = i64::from(population.days) * 86_400;
    let (a, b) = ((random.unit() * span_seconds as f64) as i64, (random.unit() * span_seconds as f64) as i64);
    let first_day = population.until - TimeDelta::seconds(a.max(b) + 1);
    let active_seconds = (a - b).abs() + 1;
    let basket = BASKET_MEDIAN.ln() + BASKET_SIGMA * random.normal();
    let mut totals = TotalsRow {
        customer_id,
        window_orders: 0,
        window_amount: Decimal::ZERO,
        total_orders: 0,
        lifetime_value: Decimal::ZERO,
        average_order_value: Decimal::ZERO,
        last_purchase_at: None,
    };
    for _ in 0..orders {
        let occurred_at = first_day + TimeDelta::seconds((random.unit() * active_seconds as f64) as i64);
        let cents = ((basket + ORDER_SIGMA * random.normal()).exp() * 100.0).round().clamp(100.0, 9_999_999.0) as i64;
        let total_amount = amount(cents);
        let cancelled_at = (random.unit() < population.cancelled_share)
            .then(|| (occurred_at + TimeDelta::seconds((random.unit() * 3.0 * 86_400.0) as i64)).min(population.until));
        if cancelled_at.is_none() {
            totals.total_orders += 1;
            totals.lifetime_value += total_amount;
            totals.last_purchase_at = totals.last_purchase_at.max(Some(occurred_at));
            if counted_from.is_some_and(|from| occurred_at >= from) {
                totals.window_orders += 1;
                totals.window_amount += total_amount;
            }
        }
        chunk.purchases.push(PurchaseRow {
            order_id: Uuid::now_v7(),
            customer_id,
            total_amount,
            occurred_at,
            cancelled_at,
        });
    }
    let first_name = FIRST_NAMES[random.below(FIRST_NAMES.len())];
    let last_name = SURNAMES[random.below(SURNAMES.len())];
    let last_name = if random.unit() < 0.4 {
        format!("{last_name} {}", SURNAMES[random.below(SURNAMES.len())])
    } else {
        last_name.to_string()
    };
    chunk.customers.push(CustomerRow {
        customer_id,
        first_name,
        email: format!("cliente{sequence}@example.com"),
        phone: format!("+5076{sequence:07}"),
        document_number: format!("{}-{}-{}", 1 + sequence % 9, sequence / 1000 % 1000, sequence),
        last_name,
        created_at: first_day - TimeDelta::days(random.below(30) as i64),
        last_purchase_at: totals.last_purchase_at,
    });
    if counted_from.is_some() && orders > 0 {
        if totals.total_orders > 0 {
            totals.average_order_value = (totals.lifetime_value / Decimal::from(totals.total_orders))
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        }
        chunk.totals.push(totals);
    }
}

/// Loads `population` as the owner `admin` into its migrated database, advancing `progress`
/// by orders loaded.
pub async fn generate(
    admin: &ConnectOptions,
    population: &Population,
    progress: &ProgressBar,
) -> anyhow::Result<Generated> {
    anyhow::ensure!(population.organizations > 0, "at least one organization");
    anyhow::ensure!(population.days > 0, "at least one day");
    anyhow::ensure!((0.0..1.0).contains(&population.cancelled_share), "the cancelled share is below 1");
    let per_organization = population.customers.div_ceil(population.organizations);
    anyhow::ensure!(per_organization < 10_000_000, "at most 9,999,999 customers per organization (phone numbers)");
    let mut client = admin.connect().await.context("connecting as the owner")?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<(Uuid, Chunk)>(LOADERS);
    let receiver = std::sync::Arc::new(tokio::sync::Mutex::new(receiver));
    let mut loaders = Vec::new();
    for _ in 0..LOADERS {
        let mut loader = admin.connect().await.context("connecting as the owner")?;
        create_staging(&loader).await?;
        let (receiver, progress) = (receiver.clone(), progress.clone());
        loaders.push(tokio::spawn(async move {
            let mut generated = Generated::default();
            loop {
                let next = receiver.lock().await.recv().await;
                let Some((organization_id, chunk)) = next else { break };
                let loaded = load(&mut loader, organization_id, &chunk).await?;
                generated.customers += chunk.customers.len() as u64;
                generated.purchases += loaded;
                generated.totals += chunk.totals.len() as u64;
                progress.inc(loaded);
            }
            anyhow::Ok(generated)
        }));
    }
    let counted_from = population
        .kept_window_days
        .map(|days| shared::segments::rfm::window_start(population.until.date_naive(), days));
    let mut random = Random(population.seed);
    let mut organizations = Vec::new();
    for index in 0..population.organizations {
        let organization_id = Uuid::now_v7();
        let customers = share(population.customers, population.organizations, index);
        let orders = share(population.orders, population.organizations, index);
        progress.set_message(format!("organization {} of {}", index + 1, population.organizations));
        register(&mut client, organization_id, counted_from).await?;
        let counts = order_counts(&mut random, customers, orders);
        for (start, counts) in (0..).step_by(CHUNK).zip(counts.chunks(CHUNK)) {
            let mut chunk = Chunk::default();
            for (offset, count) in counts.iter().enumerate() {
                draw_customer(&mut random, population, counted_from, start + offset, *count, &mut chunk);
            }
            if sender.send((organization_id, chunk)).await.is_err() {
                break; // a loader failed: its error is reported below
            }
        }
        organizations.push(organization_id);
    }
    drop(sender);
    let mut generated = Generated { organizations, ..Default::default() };
    for loader in loaders {
        let loaded = loader.await.context("a loader panicked")??;
        generated.customers += loaded.customers;
        generated.purchases += loaded.purchases;
        generated.totals += loaded.totals;
    }
    progress.set_message("VACUUM ANALYZE");
    // As autovacuum would after a load: statistics, hint bits and the visibility map, also of
    // the search tables the customers' triggers filled.
    client
        .batch_execute(
            "VACUUM (ANALYZE) customers, purchases, customer_segments, email_suffixes, name_word_postings, name_words",
        )
        .await
        .context("vacuuming the loaded tables")?;
    Ok(generated)
}

async fn create_staging(client: &Client) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE TEMPORARY TABLE generated_customers (customer_id uuid, first_name text, \
                 last_name text, email text, phone text, document_number text, created_at timestamptz, \
                 last_purchase_at timestamptz) ON COMMIT DELETE ROWS;
             CREATE TEMPORARY TABLE generated_purchases (order_id uuid, customer_id uuid, \
                 total_amount numeric, occurred_at timestamptz, cancelled_at timestamptz) ON COMMIT DELETE ROWS;
             CREATE TEMPORARY TABLE generated_totals (customer_id uuid, window_orders integer, \
                 window_amount numeric, total_orders integer, lifetime_value numeric, average_order_value numeric, \
                 last_purchase_at timestamptz) ON COMMIT DELETE ROWS;",
        )
        .await
        .context("creating the staging tables")?;
    Ok(())
}

/// Registers the organization and, with a kept window, its segment window.
async fn register(
    client: &mut Client,
    organization_id: Uuid,
    counted_from: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT set_config('app.current_organization_id', $1, true)", &[&organization_id.to_string()])
        .await
        .context("setting the tenant")?;
    tx.execute("INSERT INTO organizations (organization_id) VALUES (current_organization_id())", &[])
        .await
        .context("registering the organization")?;
    if let Some(counted_from) = counted_from {
        tx.execute(
            "INSERT INTO segment_windows (organization_id, counted_from) VALUES (current_organization_id(), $1)",
            &[&counted_from],
        )
        .await
        .context("writing the segment window")?;
    }
    tx.commit().await.context("committing the organization")?;
    Ok(())
}

/// Copies rows into a staging table in PostgreSQL's binary format.
async fn copy_rows<R>(
    tx: &tokio_postgres::Transaction<'_>,
    statement: &str,
    types: &[Type],
    rows: &[R],
    values: impl Fn(&R) -> Vec<&(dyn ToSql + Sync)>,
) -> anyhow::Result<()> {
    let sink = tx.copy_in(statement).await.with_context(|| format!("starting {statement}"))?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        writer.as_mut().write(&values(row)).await.context("copying a row")?;
    }
    writer.finish().await.with_context(|| format!("finishing {statement}"))?;
    Ok(())
}

/// One chunk in one tenant transaction; answers the purchases loaded.
async fn load(client: &mut Client, organization_id: Uuid, chunk: &Chunk) -> anyhow::Result<u64> {
    let tx = client.transaction().await?;
    tx.execute("SELECT set_config('app.current_organization_id', $1, true)", &[&organization_id.to_string()])
        .await
        .context("setting the tenant")?;
    copy_rows(
        &tx,
        "COPY generated_customers (customer_id, first_name, last_name, email, phone, document_number, created_at, \
             last_purchase_at) FROM STDIN (FORMAT binary)",
        &[Type::UUID, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ],
        &chunk.customers,
        |c| {
            vec![
                &c.customer_id,
                &c.first_name,
                &c.last_name,
                &c.email,
                &c.phone,
                &c.document_number,
                &c.created_at,
                &c.last_purchase_at,
            ]
        },
    )
    .await?;
    copy_rows(
        &tx,
        "COPY generated_purchases (order_id, customer_id, total_amount, occurred_at, cancelled_at) \
         FROM STDIN (FORMAT binary)",
        &[Type::UUID, Type::UUID, Type::NUMERIC, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ],
        &chunk.purchases,
        |p| vec![&p.order_id, &p.customer_id, &p.total_amount, &p.occurred_at, &p.cancelled_at],
    )
    .await?;
    tx.execute(
        "INSERT INTO customers (customer_id, organization_id, first_name, last_name, email, phone, document_type, \
             document_number, created_at, updated_at, last_purchase_at) \
         SELECT customer_id, current_organization_id(), first_name, last_name, email, phone, 'cedula', \
             document_number, created_at, created_at, last_purchase_at FROM generated_customers",
        &[],
    )
    .await
    .context("inserting the customers")?;
    let loaded = tx
        .execute(
            "INSERT INTO purchases (organization_id, order_id, customer_id, total_amount, occurred_at, status, \
                 cancelled_at, created_at, updated_at) \
             SELECT current_organization_id(), order_id, customer_id, total_amount, occurred_at, \
                 CASE WHEN cancelled_at IS NULL THEN 'completed' ELSE 'cancelled' END, cancelled_at, occurred_at, \
                 coalesce(cancelled_at, occurred_at) \
             FROM generated_purchases ORDER BY customer_id, occurred_at",
            &[],
        )
        .await
        .context("inserting the purchases")?;
    if !chunk.totals.is_empty() {
        copy_rows(
            &tx,
            "COPY generated_totals (customer_id, window_orders, window_amount, total_orders, lifetime_value, \
                 average_order_value, last_purchase_at) FROM STDIN (FORMAT binary)",
            &[Type::UUID, Type::INT4, Type::NUMERIC, Type::INT4, Type::NUMERIC, Type::NUMERIC, Type::TIMESTAMPTZ],
            &chunk.totals,
            |t| {
                vec![
                    &t.customer_id,
                    &t.window_orders,
                    &t.window_amount,
                    &t.total_orders,
                    &t.lifetime_value,
                    &t.average_order_value,
                    &t.last_purchase_at,
                ]
            },
        )
        .await?;
        tx.execute(
            "INSERT INTO customer_segments (organization_id, customer_id, window_orders, window_amount, \
                 total_orders, lifetime_value, average_order_value, last_purchase_at) \
             SELECT current_organization_id(), customer_id, window_orders, window_amount, total_orders, \
                 lifetime_value, average_order_value, last_purchase_at FROM generated_totals",
            &[],
        )
        .await
        .context("inserting the purchase totals")?;
    }
    tx.commit().await.context("committing a chunk")?;
    Ok(loaded)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn order_counts_add_up_to_the_orders_asked_for_and_are_skewed() {
        let counts = order_counts(&mut Random(7), 10_000, 100_000);
        assert_eq!(counts.iter().map(|c| u64::from(*c)).sum::<u64>(), 100_000);
        let mut sorted = counts.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        let top = sorted[sorted.len() - 10];
        assert!((3..=7).contains(&median), "median {median}");
        assert!(top > 20 * median, "top {top}, median {median}");
        assert!(sorted[0] == 0, "some customers never bought");
    }

    #[test]
    fn organizations_share_customers_and_orders_evenly_and_completely() {
        assert_eq!((0..3).map(|i| share(10, 3, i)).collect::<Vec<_>>(), [4, 3, 3]);
        assert_eq!((0..100).map(|i| share(1_000_000, 100, i)).sum::<usize>(), 1_000_000);
    }
}

/// Against the development server (`ADMIN_DATABASE_URL`), each database of its own.
#[cfg(test)]
mod database_tests {
    use aws_lambda_events::event::sqs::SqsMessage;
    use serde_json::json;
    use shared::app::App;
    use shared::config::InboundConfig;
    use shared::db::Db;

    use super::*;

    async fn fresh_database() -> (ConnectOptions, String) {
        let url = std::env::var("ADMIN_DATABASE_URL").expect("ADMIN_DATABASE_URL (make test sets it)");
        let mut admin: ConnectOptions = url.parse().unwrap();
        let name = format!("devctl_generate_{}", Uuid::new_v4().simple());
        admin.connect().await.unwrap().batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        admin.config.dbname(&name);
        shared::migrations::run(&admin).await.unwrap();
        (admin, name)
    }

    async fn drop_database(admin: &ConnectOptions, name: &str) {
        let mut server = admin.clone();
        server.config.dbname("postgres");
        server.connect().await.unwrap().batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await.unwrap();
    }

    /// The rows of `sql` as text, for comparing two databases.
    async fn rows(client: &Client, sql: &str) -> Vec<String> {
        let sql = format!("SELECT row_to_json(r)::text FROM ({sql}) r ORDER BY 1");
        client.query(&sql, &[]).await.unwrap().iter().map(|row| row.get(0)).collect()
    }

    const CONSUMER_ROWS: [&str; 3] = [
        "SELECT organization_id, customer_id, last_purchase_at FROM customers",
        "SELECT organization_id, order_id, customer_id, total_amount, occurred_at, status, cancelled_at FROM purchases",
        "SELECT organization_id, customer_id, window_orders, window_amount, total_orders, lifetime_value, \
             average_order_value, last_purchase_at FROM customer_segments",
    ];

    #[tokio::test]
    async fn a_generated_population_holds_what_the_consumer_writes_for_the_same_purchases() {
        let (generated_db, generated_name) = fresh_database().await;
        let population = Population {
            organizations: 2,
            customers: 60,
            orders: 700,
            days: 500,
            until: Utc::now() - TimeDelta::hours(1),
            cancelled_share: 0.1,
            kept_window_days: Some(365),
            seed: 42,
        };
        let generated = generate(&generated_db, &population, &ProgressBar::hidden()).await.unwrap();
        assert_eq!((generated.customers, generated.purchases), (60, 700));
        let source = generated_db.connect().await.unwrap();
        let windows_from =
            source.query("SELECT organization_id, counted_from FROM segment_windows", &[]).await.unwrap();
        assert_eq!(windows_from.len(), 2);

        // The same customers and windows in a second database, and the same purchases through
        // the events consumer, in the order they happened, then their cancellations.
        let (replayed_db, replayed_name) = fresh_database().await;
        let mut target = replayed_db.connect().await.unwrap();
        for window in &windows_from {
            let organization_id: Uuid = window.get(0);
            let counted_from: DateTime<Utc> = window.get(1);
            let tx = target.transaction().await.unwrap();
            tx.execute("SELECT set_config('app.current_organization_id', $1, true)", &[&organization_id.to_string()])
                .await
                .unwrap();
            tx.execute("INSERT INTO organizations (organization_id) VALUES ($1)", &[&organization_id]).await.unwrap();
            tx.execute(
                "INSERT INTO segment_windows (organization_id, counted_from) VALUES ($1, $2)",
                &[&organization_id, &counted_from],
            )
            .await
            .unwrap();
            for customer in source
                .query(
                    "SELECT customer_id, first_name, last_name, email FROM customers WHERE organization_id = $1",
                    &[&organization_id],
                )
                .await
                .unwrap()
            {
                tx.execute(
                    "INSERT INTO customers (customer_id, organization_id, first_name, last_name, email) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &customer.get::<_, Uuid>(0),
                        &organization_id,
                        &customer.get::<_, String>(1),
                        &customer.get::<_, String>(2),
                        &customer.get::<_, String>(3),
                    ],
                )
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
        let mut runtime = replayed_db.clone();
        runtime.config.user("customer_app");
        let app = App::new(Db::from_config(runtime, 2).unwrap());
        let purchases = source
            .query(
                "SELECT organization_id, order_id, customer_id, total_amount, occurred_at, cancelled_at FROM purchases \
                 ORDER BY occurred_at, order_id",
                &[],
            )
            .await
            .unwrap();
        let mut events = Vec::new();
        for row in &purchases {
            let (organization_id, order_id, customer_id): (Uuid, Uuid, Uuid) = (row.get(0), row.get(1), row.get(2));
            let (amount, completed_at): (Decimal, DateTime<Utc>) = (row.get(3), row.get(4));
            let data = json!({"order_id": order_id, "customer_id": customer_id,
                              "total_amount": amount.to_string(), "completed_at": completed_at});
            events.push((organization_id, "orders.order.completed", data));
        }
        for row in &purchases {
            if let Some(cancelled_at) = row.get::<_, Option<DateTime<Utc>>>(5) {
                let data = json!({"order_id": row.get::<_, Uuid>(1), "customer_id": row.get::<_, Uuid>(2),
                                  "cancelled_at": cancelled_at});
                events.push((row.get(0), "orders.order.cancelled", data));
            }
        }
        assert!(events.len() > 700, "some orders were cancelled");
        for (organization_id, event_type, data) in events {
            let body = json!({"id": Uuid::now_v7(), "type": event_type, "source": "order-service",
                              "time": Utc::now(), "organization_id": organization_id, "data": data});
            let mut message = SqsMessage::default();
            message.body = Some(body.to_string());
            if let Err(rejection) =
                shared::events::inbound::apply_message(&app, &InboundConfig::default(), &message).await
            {
                panic!("the consumer refused {event_type}: {rejection}");
            }
        }

        for sql in CONSUMER_ROWS {
            let (expected, loaded) = (rows(&target, sql).await, rows(&source, sql).await);
            assert!(!loaded.is_empty(), "{sql}");
            assert_eq!(loaded, expected, "{sql}");
        }
        drop(app);
        drop_database(&generated_db, &generated_name).await;
        drop_database(&replayed_db, &replayed_name).await;
    }
}
