//! The outbox relayed to SQS: nothing lost while the queue is down, each event once, in order
//! per customer.

use std::collections::{HashMap, HashSet};

use http::{Method, StatusCode};
use local_aws::RetryPolicy;
use serde_json::{json, Value};
use shared::events::Relay;
use uuid::Uuid;

use crate::helpers::*;

/// Writes that produce several events per customer: creations, two updates of one customer,
/// and a credit account opened, approved and used.
async fn write_some_events(app: &TestApp) {
    let org = app.org_a;
    let first = app.create_customer(org, person("Lucía", "Batista")).await;
    app.create_customer(org, person("Omar", "Mendoza")).await;
    for n in 0..2 {
        let patched = app
            .as_org(
                org,
                Method::PATCH,
                &format!("/api/v1/customers/{first}"),
                Some(json!({"notes": format!("note {n}")})),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    }
    let account = app.approved_account(org, "500.00", 30).await;
    let used = app
        .as_org(
            org,
            Method::POST,
            &format!("/api/v1/customers/{account}/credit/usages"),
            Some(json!({"order_id": Uuid::new_v4(), "amount": "120.00"})),
        )
        .await;
    assert_eq!(used.status, StatusCode::CREATED, "{}", used.body);
}

/// Outbox rows as (event id, message group) in write order, and how many are pending.
async fn outbox(app: &TestApp) -> (Vec<(Uuid, String)>, i64) {
    let admin = app.admin().await;
    let rows = admin.query("SELECT event_id, message_group FROM outbox ORDER BY seq", &[]).await.unwrap();
    let pending: i64 =
        admin.query_one("SELECT count(*) FROM outbox WHERE published_at IS NULL", &[]).await.unwrap().get(0);
    (rows.iter().map(|row| (row.get(0), row.get(1))).collect(), pending)
}

fn envelope(message: &aws_sdk_sqs::types::Message) -> Value {
    serde_json::from_str(message.body().unwrap()).unwrap()
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_sqs_is_down_and_each_arrives_once_after() {
    let mut emulator = PrivateEmulator::down();
    let sqs = aws_sdk_sqs::Client::new(&shared::aws::for_emulator(&emulator.endpoint()).await);
    let queue_url = format!("{}/123456789012/customers-events.fifo", emulator.endpoint());
    let app = TestApp::spawn_publishing_to(Some((sqs.clone(), queue_url.clone()))).await;

    write_some_events(&app).await;
    let (written, pending) = outbox(&app).await;
    assert!(written.len() >= 8, "expected several events, got {}", written.len());
    assert_eq!(pending, written.len() as i64, "with SQS down every event waits in the outbox");

    emulator.start().await;
    let queues = local_aws::create_queues(&sqs, "", RetryPolicy::default()).await.unwrap();
    assert_eq!(queues.outbound, queue_url);
    let relay = Relay::new(app.db.clone(), sqs.clone(), &queue_url);
    let report = relay.publish_all(crate::helpers::a_minute_from_now()).await.unwrap();
    assert_eq!(report.published, written.len() as u64, "{report:?}");
    assert_eq!(
        relay.publish_all(crate::helpers::a_minute_from_now()).await.unwrap().published,
        0,
        "a second pass has nothing left to send"
    );
    assert_eq!(outbox(&app).await.1, 0);

    let received = drain(&sqs, &queue_url).await;
    let received_ids: Vec<Uuid> =
        received.iter().map(|m| envelope(m)["id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(received_ids.iter().collect::<HashSet<_>>().len(), received_ids.len(), "an event arrived twice");
    assert_eq!(
        received_ids.iter().collect::<HashSet<_>>(),
        written.iter().map(|(id, _)| id).collect::<HashSet<_>>(),
        "every event arrives"
    );
    for message in &received {
        let body = envelope(message);
        assert_eq!(body["source"], "customer-service");
        assert_eq!(body["organization_id"], app.org_a.to_string());
    }

    let order_by_group = |events: Vec<(Uuid, String)>| {
        let mut groups: HashMap<String, Vec<Uuid>> = HashMap::new();
        for (id, group) in events {
            groups.entry(group).or_default().push(id);
        }
        groups
    };
    let received_groups = received
        .iter()
        .map(|m| {
            let group =
                m.attributes().unwrap()[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId].clone();
            (envelope(m)["id"].as_str().unwrap().parse().unwrap(), group)
        })
        .collect();
    assert_eq!(
        order_by_group(received_groups),
        order_by_group(written),
        "each customer's events arrive in write order"
    );
}

#[tokio::test]
async fn a_write_publishes_its_events_before_it_answers() {
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy::default()).await;
    let app = TestApp::spawn_publishing_to(Some((sqs.clone(), queues.outbound.clone()))).await;

    let customer = app.create_customer(app.org_a, person("Ana", "Muñoz")).await;

    assert_eq!(outbox(&app).await.1, 0, "published right after the commit");
    let received = drain(&sqs, &queues.outbound).await;
    assert_eq!(received.len(), 1);
    let body = envelope(&received[0]);
    assert_eq!(body["type"], "customers.customer.created");
    assert_eq!(body["data"]["customer_id"], customer.to_string());
    let text = received[0].body().unwrap();
    assert!(!text.contains("Muñoz") && !text.contains("@example.com"), "events carry no personal data: {text}");
}

#[tokio::test]
async fn relays_started_while_another_is_mid_pass_leave_its_organization_to_it_and_each_event_goes_once() {
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy::default()).await;
    let app = TestApp::spawn().await;
    for _ in 0..12 {
        write_some_events(&app).await;
    }
    let (written, _) = outbox(&app).await;
    // The held relay waits on a row lock for as long as the test holds it: lift the runtime
    // role's lock and statement limits for this database, for the relay's own connections.
    let admin = app.admin().await;
    admin
        .batch_execute(&format!(
            "ALTER ROLE customer_app IN DATABASE {0} SET lock_timeout = 0; \
             ALTER ROLE customer_app IN DATABASE {0} SET statement_timeout = 0",
            app.database
        ))
        .await
        .unwrap();
    let relay_db = shared::db::Db::from_config(app_config(&app.database), 8).unwrap();
    let relay = Relay::new(relay_db, sqs.clone(), &queues.outbound);

    // The first relay sends its first batch, then waits to mark it published: every outbox row
    // is locked by this transaction.
    let holder = app.admin().await;
    holder.batch_execute("BEGIN; SELECT 1 FROM outbox FOR UPDATE").await.unwrap();
    let first = relay.publish_all(crate::helpers::a_minute_from_now());
    let others_while_first_is_held = async {
        let waiting = "SELECT count(*) FROM pg_stat_activity \
                       WHERE datname = current_database() AND usename = 'customer_app' AND wait_event_type = 'Lock'";
        for attempt in 0.. {
            let blocked: i64 = admin.query_one(waiting, &[]).await.unwrap().get(0);
            if blocked == 1 {
                break;
            }
            assert!(attempt < 600, "the first relay never reached its first batch's update");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // While it is mid-pass, three more relays run at once. Each must find the organization
        // taken and leave; one that worked it would send the held batch again and wait behind
        // the same lock, and never finish (the guard turns that into a failure).
        let others =
            futures_util::future::join_all((0..3).map(|_| relay.publish_all(crate::helpers::a_minute_from_now())));
        let others = tokio::time::timeout(std::time::Duration::from_secs(30), others)
            .await
            .expect("a relay started mid-pass waited for the first instead of leaving its organization to it");
        holder.batch_execute("COMMIT").await.unwrap();
        others
    };
    let (first, others) = tokio::join!(first, others_while_first_is_held);
    for report in others {
        let report = report.unwrap();
        assert_eq!((report.published, report.busy), (0, 1), "{report:?}");
    }
    let first = first.unwrap();

    assert_eq!((first.published, first.busy), (written.len() as u64, 0), "{first:?}");
    let attempts: i32 = admin.query_one("SELECT max(attempts) FROM outbox", &[]).await.unwrap().get(0);
    assert_eq!(attempts, 1, "no event was sent twice");
    assert_eq!(outbox(&app).await.1, 0);
    assert_eq!(drain(&sqs, &queues.outbound).await.len(), written.len());
}

#[tokio::test]
async fn the_deduplication_id_of_every_published_message_is_its_event_id() {
    let sqs = shared_sqs().await;
    let queues = own_queues(&sqs, RetryPolicy::default()).await;
    let app = TestApp::spawn_publishing_to(Some((sqs.clone(), queues.outbound.clone()))).await;
    write_some_events(&app).await;
    let relay = Relay::new(app.db.clone(), sqs.clone(), &queues.outbound);
    relay.publish_all(crate::helpers::a_minute_from_now()).await.unwrap();
    let (written, pending) = outbox(&app).await;
    assert_eq!(pending, 0);

    let received = drain(&sqs, &queues.outbound).await;

    assert_eq!(received.len(), written.len());
    for message in &received {
        let attributes = message.attributes().expect("system attributes were asked for");
        let deduplication_id = &attributes[&aws_sdk_sqs::types::MessageSystemAttributeName::MessageDeduplicationId];
        assert_eq!(Some(deduplication_id.as_str()), envelope(message)["id"].as_str());
    }
}
