//! RFM benchmark: the nightly segment run over a population `devctl generate` just loaded
//! (the database `RFM_BENCH_DATABASE`, which the benchmark changes), next to the plain
//! aggregation of the window's purchases (`GROUP BY customer_id`) measured in the same run,
//! before and after each run.
//!
//! In order:
//! 1. the first run (the baseline: every purchase aggregated from scratch, every row written);
//! 2. one more day of purchases (`RFM_BENCH_DAY`, default 30,000, and 1% cancellations of
//!    earlier orders) applied through the events consumer (`handle_batch`, batches of 10);
//! 3. the steady night, one day later and after a checkpoint: one day slides out of the window,
//!    the kept totals are scored and only changes are written (the incremental path);
//! 4. the check: a from-scratch run over the same date must write nothing (rows_written 0),
//!    the rows must equal a snapshot taken after the incremental run, and the breakpoints of
//!    the two runs must be equal.
//!
//! Next to each run, the floor of its writes, measured after it: the rows it wrote, written
//! again by plain statements (the first run's inserted in key order into an empty copy of
//! `customer_segments`, by one statement; the steady night's updated in place, with its events
//! inserted again into the outbox, each organization's in a transaction rolled back at the run's
//! concurrency). A run cannot take less than its writes, so a goal below the
//! floor cannot be met by any way of computing the scores. The steady night's other two steps,
//! as #12 prescribes them, are measured alone too: taking out what slid out of the window, and
//! reading the measures of every kept row for the breakpoints.
//!
//! Each run's peak memory is the benchmark process's peak resident size while it ran (the runs
//! are in this process, as in the `rfm` function): a bound to hold against the function's
//! `MemorySize`.
//!
//! Run with `make bench-rfm`.

use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures_util::StreamExt;
use serde_json::json;
use shared::app::App;
use shared::config::InboundConfig;
use shared::db::{Db, TenantTx};
use shared::events::inbound::handle_batch;
use shared::segments::{rfm, run_nightly, store, NightlyReport, RunOptions, Trigger};
use uuid::Uuid;

mod common;
use common::{admin, runtime_config, Xorshift};

/// The comparison columns of a segment row: totals, scores, segment and flags.
const ROW: &str = "organization_id, customer_id, window_orders, window_amount, total_orders, lifetime_value, \
    average_order_value, last_purchase_at, rfm_recency, rfm_frequency, rfm_monetary, segment_code, is_vip, is_at_risk";

#[tokio::main]
async fn main() {
    let database = std::env::var("RFM_BENCH_DATABASE").expect("RFM_BENCH_DATABASE names a generated database");
    print_conditions(&database).await;
    scenario(&database).await;
}

async fn print_conditions(database: &str) {
    common::print_conditions(
        &admin(database).await,
        &[
            ("database", database.to_string()),
            (
                "organizations",
                format!("{} at a time, each on its own connection (RFM_BENCH_AT_ONCE)", organizations_at_once()),
            ),
            ("consumer", "4 batches of 10 at a time".into()),
            ("order", "the plain aggregation runs before and after the first run; their mean is the floor".into()),
        ],
    )
    .await;
}

/// The plain aggregation of the window, per organization in its tenant transaction as the
/// runtime role with the run's settings (memory, no JIT), every aggregate used so none is
/// planned away, [`organizations_at_once`] at a time like the runs; seconds over all
/// organizations.
async fn plain_aggregation(app: &App, organizations: &[Uuid], as_of: NaiveDate) -> f64 {
    let window_start = rfm::window_start(as_of, rfm::DEFAULT_WINDOW_DAYS);
    let started = Instant::now();
    futures_util::stream::iter(organizations)
        .map(|organization| async move {
            let mut conn = app.db.connection().await.unwrap();
            let tx = conn.begin(*organization).await.unwrap();
            store::allow_long_run(&tx).await.unwrap();
            tx.query_one(
                "SELECT count(*), sum(orders), sum(amount), max(last) FROM ( \
                     SELECT customer_id, count(*) AS orders, sum(total_amount) AS amount, max(occurred_at) AS last \
                     FROM purchases WHERE status = 'completed' AND occurred_at >= $1 GROUP BY customer_id) AS a",
                &[&window_start],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        })
        .buffer_unordered(organizations_at_once())
        .collect::<()>()
        .await;
    started.elapsed().as_secs_f64()
}

/// The non-generated columns of `customer_segments`, in order.
async fn written_columns(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'customer_segments'::regclass AND attnum > 0 AND NOT attisdropped \
               AND attgenerated = ''",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The floor of a first run's writes: its rows inserted in key order, by one statement, into an
/// empty copy of `customer_segments` (its columns, indexes, constraints and storage options),
/// after a checkpoint. Seconds.
async fn insert_floor(client: &tokio_postgres::Client) -> f64 {
    let columns = written_columns(client).await;
    let options: String = client
        .query_one(
            "SELECT coalesce('WITH (' || array_to_string(reloptions, ', ') || ')', '') FROM pg_class \
             WHERE oid = 'customer_segments'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!(
            "CREATE TEMPORARY TABLE floor_rows AS SELECT {columns} FROM customer_segments \
                 ORDER BY organization_id, customer_id; \
             CREATE TABLE bench_floor (LIKE customer_segments INCLUDING ALL) {options}; \
             CHECKPOINT"
        ))
        .await
        .unwrap();
    let started = Instant::now();
    client.execute(&format!("INSERT INTO bench_floor ({columns}) SELECT * FROM floor_rows"), &[]).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    client.batch_execute("DROP TABLE bench_floor; DROP TABLE floor_rows").await.unwrap();
    seconds
}

/// The floor of a steady night's writes: the rows it wrote updated in place again (found by
/// address as the run finds them, the same kind of update), and its events inserted again into
/// the outbox, by two statements, after a checkpoint as the run; each organization's at the
/// run's concurrency ([`at_the_runs_concurrency`]). Seconds.
async fn update_floor(app: &App, client: &tokio_postgres::Client, organizations: &[Uuid]) -> f64 {
    client.batch_execute("CHECKPOINT").await.unwrap();
    let [seconds] = at_the_runs_concurrency(app, organizations, async |tx: &TenantTx<'_>| {
        tx.execute(
            "CREATE TEMPORARY TABLE floor_rows ON COMMIT DROP AS \
                     SELECT ctid AS row_address FROM customer_segments \
                     WHERE run_id IN (SELECT run_id FROM segment_runs WHERE mode = 'incremental')",
            &[],
        )
        .await
        .unwrap();
        tx.execute(
            "CREATE TEMPORARY TABLE floor_events ON COMMIT DROP AS \
                     SELECT organization_id, event_type, message_group, payload, occurred_at FROM outbox \
                     WHERE event_type = $1",
            &[&shared::events::types::CUSTOMER_SEGMENT_CHANGED],
        )
        .await
        .unwrap();
        tx.execute("ANALYZE floor_rows", &[]).await.unwrap();
        let started = Instant::now();
        tx.execute(
            "UPDATE customer_segments s SET rfm_recency = s.rfm_recency, calculated_at = now(), \
                     updated_at = now() \
                 FROM floor_rows f WHERE s.ctid = f.row_address",
            &[],
        )
        .await
        .unwrap();
        tx.execute(
            "INSERT INTO outbox (event_id, organization_id, event_type, message_group, payload, occurred_at) \
                 SELECT time_ordered_uuid(), organization_id, event_type, message_group, payload, occurred_at \
                 FROM floor_events",
            &[],
        )
        .await
        .unwrap();
        [started.elapsed().as_secs_f64()]
    })
    .await;
    seconds
}

/// The floor of a steady night's steps before its writes, as #12 prescribes them: (a) taking out
/// what slid out of the window, `[from, to)` (the run's own statement, after putting the same
/// purchases back in, untimed), and (b) reading the measures of every kept row, which any
/// breakpoints placed over the pre-aggregated rows need (the run's read without the row
/// addresses and held scores). After the run, so over pruned and cached pages: a lower bound.
/// Each organization's in a transaction rolled back, at the run's concurrency
/// ([`at_the_runs_concurrency`]). Seconds of each step.
async fn steps_floor(app: &App, organizations: &[Uuid], from: DateTime<Utc>, to: DateTime<Utc>) -> [f64; 2] {
    at_the_runs_concurrency(app, organizations, async |tx: &TenantTx<'_>| {
        tx.execute(
            &format!(
                "UPDATE customer_segments s SET window_orders = s.window_orders + slid.orders, \
                         window_amount = s.window_amount + slid.amount \
                     FROM ({}) AS slid WHERE s.customer_id = slid.customer_id",
                store::SLID_OUT_SQL
            ),
            &[&from, &to],
        )
        .await
        .unwrap();
        let started = Instant::now();
        store::slide_window(tx, from, to).await.unwrap();
        let slide = started.elapsed().as_secs_f64();
        let started = Instant::now();
        tx.query_one(
            "SELECT array_agg(last_purchase_at), array_agg(window_orders), \
                     array_agg((window_amount * 100)::bigint) FROM customer_segments",
            &[],
        )
        .await
        .unwrap();
        [slide, started.elapsed().as_secs_f64()]
    })
    .await
}

/// Times `steps` over each organization, [`organizations_at_once`] at a time, in its own
/// transaction with the incremental run's settings, rolled back: each step's seconds summed over
/// the organizations and divided by the organizations that ran at once.
async fn at_the_runs_concurrency<const STEPS: usize>(
    app: &App,
    organizations: &[Uuid],
    steps: impl AsyncFn(&TenantTx<'_>) -> [f64; STEPS],
) -> [f64; STEPS] {
    let steps = &steps;
    let timed = futures_util::stream::iter(organizations)
        .map(|organization| async move {
            let mut conn = app.db.connection().await.unwrap();
            let tx = conn.begin(*organization).await.unwrap();
            store::allow_long_run(&tx).await.unwrap();
            store::prefer_lookups(&tx).await.unwrap();
            steps(&tx).await
        })
        .buffer_unordered(organizations_at_once())
        .collect::<Vec<_>>()
        .await;
    let at_once = organizations_at_once().min(organizations.len()).max(1) as f64;
    std::array::from_fn(|step| timed.iter().map(|t| t[step]).sum::<f64>() / at_once)
}

struct Nightly {
    seconds: f64,
    /// The cluster's WAL during the runs (the benchmark is its only writer): megabytes, and
    /// how many of its records were full-page images (a page's first change after a checkpoint).
    wal: Wal,
    /// The process's peak resident size during the runs: an upper bound of theirs, as it counts
    /// the benchmark's own memory and what the allocator kept from before.
    peak_mb: f64,
    report: NightlyReport,
}

/// WAL written since the server started (`pg_stat_wal`).
#[derive(Debug, Clone, Copy)]
struct Wal {
    megabytes: f64,
    full_pages: i64,
}

impl Wal {
    async fn so_far(client: &tokio_postgres::Client) -> Self {
        let row = client.query_one("SELECT wal_bytes::float8 / 1e6, wal_fpi FROM pg_stat_wal", &[]).await.unwrap();
        Self { megabytes: row.get(0), full_pages: row.get(1) }
    }

    fn since(self, before: Self) -> Self {
        Self { megabytes: self.megabytes - before.megabytes, full_pages: self.full_pages - before.full_pages }
    }
}

/// The nightly job over every organization, [`organizations_at_once`] at a time.
async fn run_all(app: &App, client: &tokio_postgres::Client, as_of: NaiveDate, from_scratch: bool) -> Nightly {
    let options = RunOptions { as_of, window_days: rfm::DEFAULT_WINDOW_DAYS, from_scratch, trigger: Trigger::Nightly };
    // Linux: writing 5 resets the peak (VmHWM) to the current resident size.
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak resident size");
    let wal = Wal::so_far(client).await;
    let started = Instant::now();
    let report = run_nightly(app, options, organizations_at_once(), || true).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(report.failed, 0, "a segment run failed");
    let wal = Wal::so_far(client).await.since(wal);
    Nightly { seconds, wal, peak_mb: peak_resident_kb() as f64 / 1024.0, report }
}

/// `RFM_BENCH_AT_ONCE`, else the `rfm` function's default.
fn organizations_at_once() -> usize {
    let default = shared::config::NightlyConfig::DEFAULT_ORGANIZATIONS_AT_ONCE;
    std::env::var("RFM_BENCH_AT_ONCE").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// The process's peak resident size since the last reset, in kB (`VmHWM`).
fn peak_resident_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse().ok()).expect("VmHWM in kB")
}

fn sqs_event(bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut message = SqsMessage::default();
            message.message_id = Some(i.to_string());
            message.body = Some(body.clone());
            message
        })
        .collect();
    event
}

/// One more day of purchases (dated within `day`) and 1% cancellations of earlier orders,
/// through the events consumer. Answers the events applied and the seconds taken.
async fn one_more_day(app: &App, database: &str, day: NaiveDate, purchases: usize) -> (usize, f64) {
    let client = admin(database).await;
    let mut random = Xorshift(0x2545_F491_4F6C_DD1D);
    let customers: Vec<(Uuid, Uuid)> = client
        .query("SELECT organization_id, customer_id FROM customers ORDER BY random() LIMIT $1", &[&(purchases as i64)])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let cancelled: Vec<(Uuid, Uuid, Uuid)> = client
        .query(
            "SELECT organization_id, customer_id, order_id FROM purchases TABLESAMPLE SYSTEM (0.1) \
             WHERE status = 'completed' LIMIT $1",
            &[&(purchases as i64 / 100)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let now = Utc::now();
    let envelope = |organization: Uuid, event_type: &str, data: serde_json::Value, at: chrono::DateTime<Utc>| {
        json!({"id": Uuid::now_v7(), "type": event_type, "source": "order-service", "time": at.min(now),
               "organization_id": organization, "data": data})
        .to_string()
    };
    let mut bodies: Vec<String> = (0..purchases)
        .map(|i| {
            // Some customers buy twice that day.
            let (organization, customer) = customers[if i % 10 == 9 { random.below(i) } else { i % customers.len() }];
            let at = midnight + TimeDelta::seconds(random.below(86_400) as i64);
            let amount = rust_decimal::Decimal::new(500 + random.below(20_000) as i64, 2);
            let data = json!({"order_id": Uuid::now_v7(), "customer_id": customer,
                              "total_amount": amount.to_string(), "completed_at": at});
            envelope(organization, "orders.order.completed", data, at)
        })
        .collect();
    for (organization, customer, order) in cancelled {
        let at = midnight + TimeDelta::seconds(random.below(86_400) as i64);
        let data = json!({"order_id": order, "customer_id": customer, "cancelled_at": at});
        bodies.push(envelope(organization, "orders.order.cancelled", data, at));
    }
    let started = Instant::now();
    let sources = InboundConfig::default();
    let failures: usize = futures_util::stream::iter(bodies.chunks(10))
        .map(|batch| handle_batch(app, &sources, sqs_event(batch), 10))
        .buffer_unordered(4)
        .map(|response| response.batch_item_failures.len())
        .fold(0, |sum, n| async move { sum + n })
        .await;
    assert_eq!(failures, 0, "the consumer refused events");
    (bodies.len(), started.elapsed().as_secs_f64())
}

async fn scenario(work: &str) {
    let client = admin(work).await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM organizations), (SELECT count(*) FROM customers), \
                 (SELECT count(*) FROM purchases), (SELECT count(*) FROM customer_segments), \
                 (SELECT count(*) FROM segment_runs), ((max(occurred_at) AT TIME ZONE 'UTC')::date + 1) \
             FROM purchases",
            &[],
        )
        .await
        .unwrap();
    let (organizations, customers, purchases, rows, runs): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let first_day: NaiveDate = row.get(5);
    assert_eq!((rows, runs), (0, 0), "{work} must be freshly generated (no totals kept, no run)");
    println!();
    println!(
        "== {organizations} organization(s), {customers} customers, {purchases} purchases \
         ({work}); first run as of {first_day}"
    );
    let app = App::new(Db::from_config(runtime_config(work), 8).unwrap());
    let ids = app.db.organizations().await.unwrap();

    let warm = plain_aggregation(&app, &ids, first_day).await;
    let plain_before = plain_aggregation(&app, &ids, first_day).await;
    let first = run_all(&app, &client, first_day, false).await;
    let plain_after = plain_aggregation(&app, &ids, first_day).await;
    assert_eq!(first.report.modes.keys().collect::<Vec<_>>(), ["baseline"]);
    let plain_first = (plain_before + plain_after) / 2.0;
    let first_floor = insert_floor(&client).await;

    let day = std::env::var("RFM_BENCH_DAY").ok().and_then(|v| v.parse().ok()).unwrap_or(30_000);
    let (events, consumed) = one_more_day(&app, work, first_day, day).await;

    let next_day = first_day + TimeDelta::days(1);
    let plain_before = plain_aggregation(&app, &ids, next_day).await;
    // A night's run comes long after the last checkpoint, so every page it changes goes whole
    // into the WAL first; without this, how many did depended on when the server last checkpointed.
    client.batch_execute("CHECKPOINT").await.unwrap();
    let steady = run_all(&app, &client, next_day, false).await;
    let plain_after = plain_aggregation(&app, &ids, next_day).await;
    assert_eq!(steady.report.modes.keys().collect::<Vec<_>>(), ["incremental"]);
    let plain_steady = (plain_before + plain_after) / 2.0;
    let steady_floor = update_floor(&app, &client, &ids).await;
    let [slide_floor, read_floor] = steps_floor(
        &app,
        &ids,
        rfm::window_start(first_day, rfm::DEFAULT_WINDOW_DAYS),
        rfm::window_start(next_day, rfm::DEFAULT_WINDOW_DAYS),
    )
    .await;

    client
        .batch_execute(&format!("CREATE TABLE bench_incremental AS SELECT {ROW} FROM customer_segments"))
        .await
        .unwrap();
    let repair = run_all(&app, &client, next_day, true).await;
    let differing: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM ((SELECT {ROW} FROM customer_segments EXCEPT SELECT * FROM bench_incremental) \
                 UNION ALL (SELECT * FROM bench_incremental EXCEPT SELECT {ROW} FROM customer_segments)) d"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let breakpoints_differ: i64 = client
        .query_one(
            "SELECT count(*) FROM segment_runs i JOIN segment_runs s USING (organization_id, as_of) \
             WHERE i.mode = 'incremental' AND s.mode = 'from_scratch' \
               AND (i.recency_breakpoints, i.frequency_breakpoints, i.monetary_breakpoints, i.customers_scored) \
                   IS DISTINCT FROM \
                   (s.recency_breakpoints, s.frequency_breakpoints, s.monetary_breakpoints, s.customers_scored)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let identical = repair.report.rows_written == 0 && differing == 0 && breakpoints_differ == 0;

    println!("warm-up aggregation {warm:.2} s; plain aggregation = GROUP BY customer_id over the 365-day window");
    println!();
    println!(
        "| customers | organizations | purchases | run | seconds | plain aggregation s | x plain | rows written | WAL MB | full-page images | peak memory MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let line = |name: &str, nightly: &Nightly, plain: f64| {
        println!(
            "| {customers} | {organizations} | {purchases} | {name} | {:.2} | {plain:.2} | {:.2} | {} | {:.0} | {} | {:.0} |",
            nightly.seconds,
            nightly.seconds / plain,
            nightly.report.rows_written,
            nightly.wal.megabytes,
            nightly.wal.full_pages,
            nightly.peak_mb
        );
    };
    line("first run", &first, plain_first);
    line("steady night", &steady, plain_steady);
    line("from scratch again (the check)", &repair, plain_steady);
    println!();
    println!("| run | its writes by plain statements s | x plain | the writes after the plain aggregation, x plain |");
    println!("|---|---|---|---|");
    println!(
        "| first run: {} rows inserted | {first_floor:.2} | {:.2} | {:.2} |",
        first.report.rows_written,
        first_floor / plain_first,
        (plain_first + first_floor) / plain_first
    );
    println!(
        "| steady night: {} rows updated, {} events | {steady_floor:.2} | {:.2} | |",
        steady.report.rows_written,
        steady.report.events,
        steady_floor / plain_steady
    );
    println!();
    println!(
        "| the steady night's steps alone (#12: slide, breakpoints over the kept rows, changed rows) | s | x plain |"
    );
    println!("|---|---|---|");
    let steps = [
        ("(a) what slid out of the window taken out", slide_floor),
        ("(b) the measures of every kept row read", read_floor),
        ("(c) the changed rows and their events written", steady_floor),
        ("all three", slide_floor + read_floor + steady_floor),
    ];
    for (step, seconds) in steps {
        println!("| {step} | {seconds:.2} | {:.2} |", seconds / plain_steady);
    }
    println!();
    println!(
        "the day: {events} events through the consumer in {consumed:.1} s ({:.0}/s); steady night: {} segment changes, {} events",
        events as f64 / consumed,
        steady.report.changes,
        steady.report.events
    );
    println!(
        "identical: {} (from-scratch rows written {}, rows differing from the incremental snapshot {differing}, \
         organizations whose breakpoints differ {breakpoints_differ})",
        if identical { "yes" } else { "NO" },
        repair.report.rows_written
    );
    assert!(identical, "the incremental and from-scratch paths disagree");
}
