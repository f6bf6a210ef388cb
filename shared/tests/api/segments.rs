//! RFM segments: the nightly run (both paths), single recalculation, events, tenancy and the
//! routes of the `segments` function, against purchases applied by the real consumer.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use http::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use shared::config::InboundConfig;
use shared::events::inbound::{apply, InboundEnvelope};
use shared::paging::{Limit, PageRequest};
use shared::segments::rfm::{self, Purchase};
use shared::segments::{run_nightly, run_organization, store, RunOptions, SegmentCode, Trigger};
use uuid::Uuid;

use crate::helpers::*;

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - Duration::days(days)
}

fn options(as_of: NaiveDate, from_scratch: bool) -> RunOptions {
    RunOptions { as_of, window_days: 365, from_scratch, trigger: Trigger::Nightly }
}

/// An organization's customers and the purchases the consumer applied, mirrored for the model.
struct Shop {
    organization: Uuid,
    customers: Vec<Uuid>,
    purchases: Vec<(Uuid, Purchase)>,
}

impl Shop {
    async fn open(app: &TestApp, organization: Uuid, customers: usize) -> Self {
        let mut ids = Vec::new();
        for i in 0..customers {
            ids.push(app.create_customer(organization, person("Cliente", &format!("Rfm{i}"))).await);
        }
        Self { organization, customers: ids, purchases: Vec::new() }
    }

    async fn event(&self, app: &TestApp, event_type: &str, time: DateTime<Utc>, data: Value) {
        let envelope: InboundEnvelope = serde_json::from_value(json!({
            "id": Uuid::now_v7(), "type": event_type, "source": "order-service", "time": time,
            "organization_id": self.organization, "data": data,
        }))
        .unwrap();
        apply(&app.core, &InboundConfig::default(), &envelope).await.expect("the consumer applies the event");
    }

    /// Customer `index` completes an order of `amount` `days` ago; answers the order id.
    async fn buy(&mut self, app: &TestApp, index: usize, amount: &str, days: i64) -> Uuid {
        let (customer, order, at) = (self.customers[index], Uuid::now_v7(), days_ago(days));
        let data = json!({"order_id": order, "customer_id": customer, "total_amount": amount, "completed_at": at});
        self.event(app, "orders.order.completed", at, data).await;
        let purchase =
            Purchase { customer: index as u32, amount: amount.parse().unwrap(), occurred_at: at, completed: true };
        self.purchases.push((order, purchase));
        order
    }

    async fn cancel(&mut self, app: &TestApp, order: Uuid) {
        let (_, purchase) = self.purchases.iter_mut().find(|(id, _)| *id == order).unwrap();
        purchase.completed = false;
        let customer = self.customers[purchase.customer as usize];
        let data = json!({"order_id": order, "customer_id": customer, "cancelled_at": Utc::now()});
        self.event(app, "orders.order.cancelled", Utc::now(), data).await;
    }

    /// A varied population: customer i buys i % 7 + 1 times, amounts and ages spread out, a
    /// few with the same order count, one only before the window.
    async fn fill(&mut self, app: &TestApp) {
        let last = self.customers.len() - 1;
        for index in 0..last {
            let orders = index % 7 + 1;
            for n in 0..orders {
                let amount = format!("{}.{:02}", 10 + (index * 37 + n * 11) % 190, (index * 13) % 100);
                self.buy(app, index, &amount, ((index * 23 + n * 41) % 330) as i64).await;
            }
        }
        self.buy(app, last, "500.00", 400).await;
    }

    /// What the Rust model says each customer's scores and segment are.
    fn model(&self, as_of: NaiveDate) -> (Option<rfm::RunBreakpoints>, BTreeMap<Uuid, rfm::Assessment>) {
        let purchases: Vec<Purchase> = self.purchases.iter().map(|(_, p)| p.clone()).collect();
        let (breakpoints, assessed) = rfm::score_population(&purchases, as_of, 365);
        (breakpoints, assessed.into_iter().map(|(index, a)| (self.customers[index as usize], a)).collect())
    }
}

/// The organization's rows as the owner sees them, without the bookkeeping columns.
async fn snapshot(app: &TestApp, organization: Uuid) -> Value {
    app.admin()
        .await
        .query_one(
            "SELECT coalesce(jsonb_agg(to_jsonb(s) - 'run_id' - 'calculated_at' - 'updated_at' \
                 ORDER BY customer_id), '[]') FROM customer_segments s WHERE organization_id = $1",
            &[&organization],
        )
        .await
        .unwrap()
        .get(0)
}

/// Each customer's (scores, segment, flags) as stored.
async fn stored(app: &TestApp, organization: Uuid) -> BTreeMap<Uuid, rfm::Assessment> {
    let rows = app
        .admin()
        .await
        .query(
            "SELECT customer_id, rfm_recency, rfm_frequency, rfm_monetary, segment_code, is_vip, is_at_risk \
             FROM customer_segments WHERE organization_id = $1",
            &[&organization],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let score = |i: usize| row.get::<_, Option<i32>>(i).map(|v| v as u8);
            let scores = score(1).map(|recency| rfm::Scores {
                recency,
                frequency: score(2).unwrap(),
                monetary: score(3).unwrap(),
            });
            let segment: String = row.get(4);
            let assessment = rfm::Assessment {
                scores,
                segment: segment.parse().unwrap(),
                is_vip: row.get(5),
                is_at_risk: row.get(6),
            };
            (row.get(0), assessment)
        })
        .collect()
}

async fn segment_events(app: &TestApp, organization: Uuid) -> Vec<Value> {
    let rows = app
        .admin()
        .await
        .query(
            "SELECT payload, message_group FROM outbox WHERE organization_id = $1 \
             AND event_type = 'customers.customer.segment_changed' ORDER BY seq",
            &[&organization],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let mut payload: Value = row.get(0);
            payload["message_group"] = json!(row.get::<_, String>(1));
            payload
        })
        .collect()
}

#[tokio::test]
async fn the_nightly_sql_scores_every_customer_as_the_documented_rules_do() {
    let app = TestApp::spawn().await;
    let mut shop = Shop::open(&app, app.org_a, 16).await;
    let first = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    assert_eq!((first.mode.as_str(), first.customers_total), ("baseline", 0));
    shop.fill(&app).await;
    let run = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    let (breakpoints, expected) = shop.model(today());
    assert_eq!(run.breakpoints.unwrap().to_run(), breakpoints.unwrap());
    assert_eq!(stored(&app, app.org_a).await, expected);
    assert_eq!(run.customers_total, 16);
    assert_eq!(run.customers_scored, 15, "the customer who bought only before the window is not scored");
    assert_eq!(expected[&shop.customers[15]].scores, None);
}

#[tokio::test]
async fn breakpoints_are_the_percentiles_postgresql_interpolates() {
    let app = TestApp::spawn().await;
    let client = app.admin().await;
    // The same populations every run: PostgreSQL's generator, seeded.
    client.execute("SELECT setseed(0.25)", &[]).await.unwrap();
    for size in (1..=40).chain([97, 1_000, 12_345]) {
        // Every other population has few distinct values, so ties sit on the breakpoints.
        let spread: i64 = if size % 2 == 0 { 7 } else { 10_000_000 };
        let mut hundredths: Vec<i64> = client
            .query_one(
                "SELECT array_agg(floor(random() * $2::bigint)::bigint) FROM generate_series(1, $1::int)",
                &[&size, &spread],
            )
            .await
            .unwrap()
            .get(0);
        let postgresql: Vec<Decimal> = client
            .query_one(
                "SELECT ARRAY(SELECT round(v::numeric, 2) FROM unnest(p) WITH ORDINALITY AS u(v, i) ORDER BY i) \
                 FROM (SELECT percentile_cont('{0.2,0.4,0.6,0.8}'::float8[]) WITHIN GROUP (ORDER BY h / 100.0) AS p \
                       FROM unnest($1::bigint[]) AS h) AS s",
                &[&hundredths],
            )
            .await
            .unwrap()
            .get(0);
        let ours = rfm::Breakpoints::of_hundredths(&mut hundredths).unwrap();
        assert_eq!(ours.0.to_vec(), postgresql, "{size} values");
    }
}

#[tokio::test]
async fn the_sql_looks_up_every_score_and_triple_as_the_rules_compute_them() {
    let app = TestApp::spawn().await;
    let client = app.admin().await;
    let (segment, vip, risk) = rfm::assessment_sql("r", "f", "m");
    let rows = client
        .query(
            &format!(
                "SELECT r, f, m, {segment}, {vip}, {risk} \
                 FROM generate_series(1, 5) r, generate_series(1, 5) f, generate_series(1, 5) m \
                 UNION ALL SELECT NULL, NULL, NULL, {segment}, {vip}, {risk} FROM (SELECT NULL::int r, NULL::int f, NULL::int m) n"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 126);
    for row in rows {
        let scores = row.get::<_, Option<i32>>(0).map(|r| rfm::Scores {
            recency: r as u8,
            frequency: row.get::<_, i32>(1) as u8,
            monetary: row.get::<_, i32>(2) as u8,
        });
        let expected = match scores {
            Some(scores) => (rfm::rule_for(scores).segment, rfm::is_vip(scores), rfm::is_at_risk(scores)),
            None => (rfm::NO_PURCHASE_SEGMENT, false, false),
        };
        let segment: String = row.get(3);
        assert_eq!((segment.parse().unwrap(), row.get(4), row.get(5)), expected, "{scores:?}");
    }
    let breakpoints =
        rfm::Breakpoints([Decimal::new(150, 2), Decimal::new(150, 2), Decimal::new(151, 2), Decimal::new(4000, 2)]);
    for better in [rfm::Better::Higher, rfm::Better::Lower] {
        let values: Vec<i64> = (100..=4100).collect();
        let scores: Vec<i32> = client
            .query(
                &format!(
                    "SELECT {} FROM unnest($2::bigint[]) WITH ORDINALITY AS u(v, i) ORDER BY i",
                    rfm::score_sql("v", "($1::bigint[])")
                ),
                &[&breakpoints.lookup(better), &values],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let expected: Vec<i32> =
            values.iter().map(|v| i32::from(breakpoints.score(Decimal::new(*v, 2), better))).collect();
        assert_eq!(scores, expected, "{better:?}");
    }
}

#[tokio::test]
async fn the_nightly_run_and_recalculating_one_customer_agree() {
    let app = TestApp::spawn().await;
    let mut shop = Shop::open(&app, app.org_a, 12).await;
    let not_yet = app
        .as_org(app.org_a, Method::POST, &format!("/api/v1/customers/{}/segment/recalculate", shop.customers[0]), None)
        .await;
    assert_eq!((not_yet.status, not_yet.code()), (StatusCode::CONFLICT, "segments_not_calculated"));
    run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    shop.fill(&app).await;
    let run = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    let before = snapshot(&app, app.org_a).await;
    let events_before = segment_events(&app, app.org_a).await.len();
    for customer in &shop.customers {
        let path = format!("/api/v1/customers/{customer}/segment");
        let nightly = app.as_org(app.org_a, Method::GET, &path, None).await;
        let recalculated = app.as_org(app.org_a, Method::POST, &format!("{path}/recalculate"), None).await;
        assert_eq!(recalculated.status, StatusCode::OK, "{}", recalculated.body);
        for field in
            ["segment_code", "rfm_recency", "rfm_frequency", "rfm_monetary", "is_vip", "is_at_risk", "calculated_at"]
        {
            assert_eq!(nightly.body[field], recalculated.body[field], "{field} of {customer}");
        }
        assert_eq!(recalculated.body["explanation"]["run_id"], json!(run.run_id));
    }
    assert_eq!(snapshot(&app, app.org_a).await, before, "recalculating changes nothing the run decided");
    assert_eq!(segment_events(&app, app.org_a).await.len(), events_before);

    // A new purchase: the recalculation scores it against the last run's breakpoints.
    shop.buy(&app, 0, "9000.00", 0).await;
    let path = format!("/api/v1/customers/{}/segment/recalculate", shop.customers[0]);
    let recalculated = app.as_org(app.org_a, Method::POST, &path, None).await;
    let breakpoints = run.breakpoints.as_ref().unwrap().to_run();
    let purchases: Vec<_> = shop.purchases.iter().filter(|(_, p)| p.customer == 0).map(|(_, p)| p.clone()).collect();
    let orders = purchases.len() as i64;
    let amount: Decimal = purchases.iter().map(|p| p.amount).sum();
    let measures = rfm::Measures { recency_days: 0, orders, amount };
    let expected = rfm::assess(Some(&breakpoints), Some(measures));
    assert_eq!(recalculated.body["segment_code"], json!(expected.segment));
    assert_eq!(recalculated.body["rfm_monetary"], json!(expected.scores.unwrap().monetary));
    assert_eq!(recalculated.body["rfm_recency"], json!(5));
    let rule = &recalculated.body["explanation"]["rule"];
    assert_eq!(rule["id"], json!(rfm::rule_for(expected.scores.unwrap()).id), "{rule}");
    assert_eq!(recalculated.body["explanation"]["breakpoints"]["monetary"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn the_incremental_path_equals_the_from_scratch_path() {
    let app = TestApp::spawn().await;
    let mut shop = Shop::open(&app, app.org_a, 14).await;
    let day0 = today();
    run_organization(&app.core, app.org_a, options(day0, false)).await.unwrap();
    shop.fill(&app).await;
    // Purchases that slide out of the window over the next days.
    for index in 0..5 {
        shop.buy(&app, index, "75.50", 363 + index as i64).await;
    }
    let first = run_organization(&app.core, app.org_a, options(day0, false)).await.unwrap();
    assert_eq!(first.mode, "incremental");

    // New purchases, cancellations (one that already slid out), a purchase before the window.
    let late = shop.buy(&app, 6, "33.00", 1).await;
    shop.buy(&app, 7, "1200.00", 0).await;
    shop.buy(&app, 8, "12.00", 364).await;
    shop.buy(&app, 9, "40.00", 500).await;
    let first_order = shop.purchases.iter().find(|(_, p)| p.customer == 2).unwrap().0;
    shop.cancel(&app, late).await;
    shop.cancel(&app, first_order).await;
    let slid = shop.purchases.iter().find(|(_, p)| p.customer == 4 && p.amount == Decimal::new(7550, 2)).unwrap().0;
    shop.cancel(&app, slid).await;

    for (days_later, runs) in [(3, 1), (5, 2)] {
        let as_of = day0 + Duration::days(days_later);
        let mut last = None;
        for _ in 0..runs {
            let incremental = run_organization(&app.core, app.org_a, options(as_of, false)).await.unwrap();
            assert_eq!(incremental.mode, "incremental");
            last = Some(incremental);
        }
        let incremental = last.unwrap();
        let kept = snapshot(&app, app.org_a).await;
        let (_, expected) = shop.model(as_of);
        assert_eq!(stored(&app, app.org_a).await, expected, "as of {as_of}");
        let repaired = run_organization(&app.core, app.org_a, options(as_of, true)).await.unwrap();
        assert_eq!(repaired.mode, "from_scratch");
        assert_eq!((repaired.rows_written, repaired.changes), (0, 0), "{repaired:?}");
        // The incremental run counts its segments from its own moves; this one counts the rows.
        assert_eq!(
            (incremental.segment_counts, incremental.customers_total),
            (repaired.segment_counts, repaired.customers_total),
            "as of {as_of}"
        );
        assert_eq!(snapshot(&app, app.org_a).await, kept, "as of {as_of}");
    }
    // A longer window reaches behind the kept totals: from scratch by itself.
    let longer = RunOptions { window_days: 600, ..options(day0 + Duration::days(5), false) };
    assert_eq!(run_organization(&app.core, app.org_a, longer).await.unwrap().mode, "from_scratch");
}

/// Two customers trade totals (a late order dated months back, a cancellation of an old one):
/// the population, so every breakpoint, stays the same, and only their changed totals tell the
/// incremental run to score them again.
#[tokio::test]
async fn a_customer_whose_totals_changed_is_rescored_even_where_no_breakpoint_moved() {
    let app = TestApp::spawn().await;
    let mut shop = Shop::open(&app, app.org_a, 10).await;
    run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    for (index, orders) in [1, 2, 2, 3, 5, 5, 6, 1].into_iter().enumerate() {
        for n in 0..orders {
            shop.buy(&app, index, &format!("{}.00", 20 + 30 * index + n), (5 + 17 * index + 3 * n) as i64).await;
        }
    }
    let (x, y) = (8, 9);
    for index in [x, y] {
        for days in [10, 50, 90] {
            shop.buy(&app, index, "100.00", days).await;
        }
    }
    let traded = shop.buy(&app, y, "150.00", 120).await;
    let first = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    let (_, before) = shop.model(today());

    shop.buy(&app, x, "150.00", 130).await;
    shop.cancel(&app, traded).await;
    let run = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    assert_eq!(run.mode, "incremental");
    assert_eq!(run.breakpoints, first.breakpoints);
    let (_, after) = shop.model(today());
    for index in [x, y] {
        let customer = shop.customers[index];
        assert_ne!(before[&customer].scores, after[&customer].scores, "customer {index}");
    }
    assert_eq!(stored(&app, app.org_a).await, after);
}

/// Totals kept with no run recorded (a population loaded with its totals, as `devctl generate`
/// can): the first run compares with those rows instead of inserting, and writes no events.
#[tokio::test]
async fn a_first_run_over_kept_totals_merges_with_them_and_writes_no_events() {
    let app = TestApp::spawn().await;
    let mut shop = Shop::open(&app, app.org_a, 8).await;
    run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    shop.fill(&app).await;
    app.admin().await.execute("DELETE FROM segment_runs WHERE organization_id = $1", &[&app.org_a]).await.unwrap();
    let events = segment_events(&app, app.org_a).await.len();

    let run = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    assert_eq!((run.mode.as_str(), run.events), ("baseline", 0));
    assert_eq!(run.rows_written as usize, shop.customers.len());
    assert_eq!(segment_events(&app, app.org_a).await.len(), events);
    assert_eq!(stored(&app, app.org_a).await, shop.model(today()).1);
}

#[tokio::test]
async fn purchases_of_one_organization_never_move_the_breakpoints_of_another() {
    let app = TestApp::spawn().await;
    let mut a = Shop::open(&app, app.org_a, 6).await;
    let mut b = Shop::open(&app, app.org_b, 6).await;
    for shop in [&mut a, &mut b] {
        run_organization(&app.core, shop.organization, options(today(), false)).await.unwrap();
        shop.fill(&app).await;
    }
    let b_first = run_organization(&app.core, app.org_b, options(today(), false)).await.unwrap();
    for index in 0..6 {
        for _ in 0..5 {
            a.buy(&app, index, "9999.00", 0).await;
        }
    }
    let a_run = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    let b_again = run_organization(&app.core, app.org_b, options(today(), false)).await.unwrap();
    assert_ne!(a_run.breakpoints, b_first.breakpoints);
    assert_eq!(b_again.breakpoints, b_first.breakpoints);
    assert_eq!((b_again.changes, b_again.rows_written), (0, 0));
    assert_eq!(b.model(today()).0.unwrap(), b_again.breakpoints.unwrap().to_run());
}

#[tokio::test]
async fn a_segment_change_emits_one_event_and_an_unchanged_run_none() {
    let app = TestApp::spawn().await;
    let mut shop = Shop::open(&app, app.org_a, 10).await;
    run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    shop.fill(&app).await;
    let scored = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    assert_eq!(scored.events as usize, segment_events(&app, app.org_a).await.len());
    assert_eq!(scored.changes, scored.events);
    let before = segment_events(&app, app.org_a).await.len();

    let unchanged = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    assert_eq!((unchanged.changes, unchanged.events, unchanged.rows_written), (0, 0, 0));
    assert_eq!(segment_events(&app, app.org_a).await.len(), before);

    // Customer 0 (one order) becomes the best customer.
    let old = stored(&app, app.org_a).await;
    for _ in 0..8 {
        shop.buy(&app, 0, "5000.00", 0).await;
    }
    let run = run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    let now = stored(&app, app.org_a).await;
    let moved: Vec<Uuid> = now.iter().filter(|(id, a)| old[*id].segment != a.segment).map(|(id, _)| *id).collect();
    assert!(moved.contains(&shop.customers[0]), "{:?} -> {:?}", old[&shop.customers[0]], now[&shop.customers[0]]);
    let events = segment_events(&app, app.org_a).await;
    let new_events = &events[before..];
    assert_eq!(new_events.len(), moved.len());
    assert_eq!(run.events as usize, moved.len());
    for event in new_events {
        let customer: Uuid = serde_json::from_value(event["data"]["customer_id"].clone()).unwrap();
        let (old, new) = (json!(old[&customer].segment), json!(now[&customer].segment));
        assert_eq!((&event["data"]["old_segment"], &event["data"]["new_segment"]), (&old, &new), "{customer}");
    }
    let event = new_events.iter().find(|e| e["data"]["customer_id"] == json!(shop.customers[0])).unwrap();
    assert_eq!(event["type"], "customers.customer.segment_changed");
    assert_eq!(event["source"], "customer-service");
    assert_eq!(event["organization_id"], json!(app.org_a));
    assert_eq!(event["message_group"], json!(format!("segment:{}", shop.customers[0])));
    assert_eq!(event["data"]["old_segment"], json!(old[&shop.customers[0]].segment));
    assert_eq!(event["data"]["new_segment"], json!(SegmentCode::Champions));
    assert_eq!(event["data"]["run_id"], json!(run.run_id));
    assert!(event["time"].as_str().unwrap().ends_with('Z'));
    // Time-ordered ids, made while the run ran, as those of events made in Rust.
    let started = run.started_at.duration_trunc(Duration::milliseconds(1)).unwrap();
    for event in new_events {
        let id: Uuid = serde_json::from_value(event["id"].clone()).unwrap();
        assert_eq!(id.get_version_num(), 7, "{id}");
        let (seconds, nanos) = id.get_timestamp().unwrap().to_unix();
        let made = DateTime::from_timestamp(seconds as i64, nanos).unwrap();
        assert!((started..=run.finished_at).contains(&made), "{made} outside {}..{}", run.started_at, run.finished_at);
    }
}

#[tokio::test]
async fn the_nightly_job_scores_every_organization_two_at_a_time_and_stops_when_told() {
    let app = TestApp::spawn().await;
    for organization in [app.org_a, app.org_b] {
        let mut shop = Shop::open(&app, organization, 6).await;
        shop.fill(&app).await;
    }
    let nightly = RunOptions::nightly(today());
    let told_to_stop = run_nightly(&app.core, nightly, 2, || false).await.unwrap();
    assert_eq!((told_to_stop.organizations, told_to_stop.stopped), (0, true));

    let mut started = 0;
    let one = run_nightly(&app.core, nightly, 2, || {
        started += 1;
        started == 1
    })
    .await
    .unwrap();
    assert_eq!((one.organizations, one.failed, one.stopped), (1, 0, true));

    let both = run_nightly(&app.core, nightly, 2, || true).await.unwrap();
    assert_eq!((both.organizations, both.failed, both.stopped), (2, 0, false));
    assert_eq!(both.modes, BTreeMap::from([("baseline".to_string(), 1), ("incremental".to_string(), 1)]));
    let again = run_nightly(&app.core, nightly, 2, || true).await.unwrap();
    assert_eq!(again.modes, BTreeMap::from([("incremental".to_string(), 2)]));
    assert_eq!((again.changes, again.rows_written, again.events), (0, 0, 0));
    for organization in [app.org_a, app.org_b] {
        let scored = stored(&app, organization).await;
        assert_eq!(scored.len(), 6, "every customer of {organization} scored");
    }
}

#[tokio::test]
async fn segment_routes_answer_404_or_empty_across_tenants_and_need_their_scopes() {
    let app = TestApp::spawn().await;
    let mut shop = Shop::open(&app, app.org_a, 8).await;
    let stranger = app.create_customer(app.org_a, person("Sin", "Compras")).await;
    run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    shop.fill(&app).await;
    let token_a = app.token(app.org_a, &["segments:read", "segments:write"]);
    let run = app.call(Method::POST, "/api/v1/segments/recalculate", Some(&token_a), None).await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.body);
    assert_eq!(run.body["mode"], "incremental");
    assert_eq!(run.body["trigger"], "api");

    let customer = shop.customers[3];
    let own = app.call(Method::GET, &format!("/api/v1/customers/{customer}/segment"), Some(&token_a), None).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.body["segment_code"].is_string());
    assert_eq!(own.body["explanation"]["window_days"], 365);
    assert!(own.body["explanation"]["rule"]["condition"].as_str().unwrap().starts_with("recency "));
    let none = app.call(Method::GET, &format!("/api/v1/customers/{stranger}/segment"), Some(&token_a), None).await;
    assert_eq!((none.status, none.body["segment_code"].clone()), (StatusCode::OK, Value::Null));

    // Organization B sees nothing of A.
    let token_b = app.token(app.org_b, &["segments:read", "segments:write"]);
    for (method, path) in [
        (Method::GET, format!("/api/v1/customers/{customer}/segment")),
        (Method::POST, format!("/api/v1/customers/{customer}/segment/recalculate")),
    ] {
        let answer = app.call(method, &path, Some(&token_b), None).await;
        assert!(matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::CONFLICT), "{path}: {}", answer.status);
    }
    run_organization(&app.core, app.org_b, options(today(), false)).await.unwrap();
    let recalc_b = app
        .call(Method::POST, &format!("/api/v1/customers/{customer}/segment/recalculate"), Some(&token_b), None)
        .await;
    assert_eq!((recalc_b.status, recalc_b.code()), (StatusCode::NOT_FOUND, "not_found"));
    let overview_b = app.call(Method::GET, "/api/v1/segments", Some(&token_b), None).await;
    assert_eq!(overview_b.body["customers_total"], 0);
    let members_b = app.call(Method::GET, "/api/v1/segments/loyal/customers", Some(&token_b), None).await;
    assert_eq!(members_b.body["items"], json!([]));

    // The overview and the members of A.
    let overview = app.call(Method::GET, "/api/v1/segments", Some(&token_a), None).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert_eq!(overview.body["customers_total"], 8);
    let segments = overview.body["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 6);
    let share: f64 = segments.iter().map(|s| s["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 0.001, "{share}");
    assert_eq!(overview.body["last_run"]["run_id"], run.body["run_id"]);
    let code = own.body["segment_code"].as_str().unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/segments/{code}/customers?limit=1");
        if let Some(cursor) = &cursor {
            path += &format!("&cursor={cursor}");
        }
        let page = app.call(Method::GET, &path, Some(&token_a), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(page.body["items"].as_array().unwrap().iter().map(|i| i["customer_id"].clone()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let count = segments.iter().find(|s| s["segment_code"] == code).unwrap()["customers"].as_u64().unwrap();
    assert_eq!(seen.len() as u64, count);
    assert!(seen.contains(&json!(customer)));

    // The search filter still finds the customer by segment.
    let search = app
        .as_org(app.org_a, Method::GET, &format!("/api/v1/customers/search?q=cliente&segment={code}&limit=200"), None)
        .await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.body);
    let found: Vec<&Value> = search.body["items"].as_array().unwrap().iter().map(|i| &i["customer_id"]).collect();
    assert!(found.contains(&&json!(customer)), "{}", search.body);

    // Scopes.
    let reader = app.token(app.org_a, &["segments:read"]);
    let customers_only = app.token(app.org_a, &["customers:read"]);
    let forbidden = app.call(Method::POST, "/api/v1/segments/recalculate", Some(&reader), None).await;
    assert_eq!((forbidden.status, forbidden.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let forbidden = app.call(Method::GET, "/api/v1/segments", Some(&customers_only), None).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let anonymous = app.call(Method::GET, "/api/v1/segments", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let unknown = app.call(Method::GET, "/api/v1/segments/whales/customers", Some(&reader), None).await;
    assert!(unknown.status.is_client_error());
}

#[tokio::test]
async fn pages_that_read_a_few_rows_each_list_every_segment_whole() {
    let app = TestApp::spawn().await;
    let mut shop = Shop::open(&app, app.org_a, 12).await;
    shop.fill(&app).await;
    run_organization(&app.core, app.org_a, options(today(), false)).await.unwrap();
    let stored = stored(&app, app.org_a).await;
    let mut connection = app.core.db.connection().await.unwrap();
    let mut short_pages_with_a_cursor = 0;
    for code in SegmentCode::ALL {
        let expected: Vec<Uuid> = stored.iter().filter(|(_, a)| a.segment == *code).map(|(id, _)| *id).collect();
        let mut listed = Vec::new();
        let mut cursor: Option<String> = None;
        for pages in 1.. {
            assert!(pages <= stored.len(), "{code:?}: the cursor stopped moving");
            let page = PageRequest::parse(Some(Limit(2)), cursor.as_deref()).unwrap();
            let tx = connection.begin(app.org_a).await.unwrap();
            let read = store::members(&tx, *code, page.after_id().unwrap(), page.fetch_limit(), 3).await.unwrap();
            tx.commit().await.unwrap();
            let page = page.page_read_through(read.members, |member| member.customer_id, read.read_through);
            listed.extend(page.items.iter().map(|member| member.customer_id));
            match page.next_cursor {
                Some(next) => {
                    short_pages_with_a_cursor += usize::from(page.items.len() < 2);
                    cursor = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(listed, expected, "{code:?}");
    }
    assert!(short_pages_with_a_cursor > 0, "some pages stop at the rows they may read");
    // A walk that reads up to the organization's last row ends there: no cursor to an empty page.
    let ids: Vec<Uuid> = stored.keys().copied().collect();
    for (read_at_most, read_through) in [(ids.len(), None), (ids.len() - 1, Some(ids[ids.len() - 2]))] {
        let tx = connection.begin(app.org_a).await.unwrap();
        let read = store::members(&tx, SegmentCode::Lost, None, 100, read_at_most as i64).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(read.read_through, read_through, "reading {read_at_most} of {} rows", ids.len());
    }
}

#[tokio::test]
async fn a_page_of_a_segment_walks_the_primary_key_under_statistics_from_before_its_rows() {
    let app = TestApp::spawn().await;
    // Statistics taken while the table was empty, as before a first run is analyzed, then
    // 20,000 rows in no particular id order: the planner expects a few rows and would rather
    // read all of them and sort.
    let admin = app.admin().await;
    admin.execute("ANALYZE customer_segments", &[]).await.unwrap();
    admin
        .execute(
            "INSERT INTO customer_segments (organization_id, customer_id, segment_code) \
             SELECT $1, gen_random_uuid(), 'lost' FROM generate_series(1, 20000)",
            &[&app.org_a],
        )
        .await
        .unwrap();
    let mut connection = app.core.db.connection().await.unwrap();
    let tx = connection.begin(app.org_a).await.unwrap();
    store::walk_by_key(&tx).await.unwrap();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&app.org_a, &SegmentCode::Champions, &Uuid::nil(), &store::MEMBERS_READ_PER_PAGE, &51_i64];
    let plan: Vec<String> = tx
        .query(&format!("EXPLAIN {}", store::MEMBERS_SQL), &params)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("customer_segments_pkey"), "{plan}");
    assert!(!plan.contains("Seq Scan") && !plan.contains("Bitmap"), "{plan}");
}
