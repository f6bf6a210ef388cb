//! The transactional outbox: an event row written by the transaction that makes the change.

use std::cell::RefCell;
use std::future::Future;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::db::TenantTx;

tokio::task_local! {
    /// The message groups the current request wrote events to, when it is recording them.
    static WRITTEN_GROUPS: RefCell<Vec<String>>;
}

/// Runs `work` and answers, beside its output, the message groups of the events it wrote, so
/// the publish after its commit sends those and no others.
pub async fn recording_groups<T>(work: impl Future<Output = T>) -> (T, Vec<String>) {
    WRITTEN_GROUPS
        .scope(RefCell::new(Vec::new()), async {
            let output = work.await;
            (output, WRITTEN_GROUPS.with(|groups| groups.take()))
        })
        .await
}

/// The message group of an event about `customer_id`: the kind of change and the customer
/// (`customer:<id>`, `credit:<id>`). Each kind's writes on a customer are serialized by one
/// row lock (the customer's, the credit account's), so within a group the outbox order is the
/// commit order, and FIFO delivers them in that order. Across the two groups of a customer no
/// order is promised. Noted for the publish after commit when a request is recording.
pub fn message_group(event_type: &str, customer_id: Uuid) -> String {
    let kind = event_type.split('.').nth(1).unwrap_or("customer");
    let group = format!("{kind}:{customer_id}");
    let _outside_a_request = WRITTEN_GROUPS.try_with(|groups| groups.borrow_mut().push(group.clone()));
    group
}

/// The contract's event envelope.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: &'static str,
    pub time: DateTime<Utc>,
    pub organization_id: Uuid,
    pub data: Value,
}

impl Envelope {
    /// A new event of `organization_id`. Event data carries ids, codes and amounts, never
    /// personal data, so erasure leaves none behind.
    pub fn new(organization_id: Uuid, event_type: &str, data: Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.to_string(),
            source: super::SOURCE,
            time: Utc::now(),
            organization_id,
            data,
        }
    }
}

/// Writes an event about the customer `subject_id` (see [`message_group`]).
pub async fn record(tx: &TenantTx<'_>, event_type: &str, subject_id: Uuid, data: Value) -> anyhow::Result<Uuid> {
    let envelope = Envelope::new(tx.organization_id(), event_type, data);
    let payload = serde_json::to_value(&envelope).context("serializing an event")?;
    tx.execute(
        "INSERT INTO outbox (event_id, organization_id, event_type, message_group, payload, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &envelope.id,
            &envelope.organization_id,
            &envelope.event_type,
            &message_group(event_type, subject_id),
            &payload,
            &envelope.time,
        ],
    )
    .await
    .context("writing an event to the outbox")?;
    Ok(envelope.id)
}

/// Writes several events in one statement; each pairs a customer (see [`message_group`]) and
/// an envelope.
pub async fn record_many(tx: &TenantTx<'_>, events: &[(Uuid, Envelope)]) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|(_, e)| e.id).collect();
    let types: Vec<&str> = events.iter().map(|(_, e)| e.event_type.as_str()).collect();
    let groups: Vec<String> = events.iter().map(|(subject, e)| message_group(&e.event_type, *subject)).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|(_, e)| e.time).collect();
    let payloads = events
        .iter()
        .map(|(_, e)| serde_json::to_value(e))
        .collect::<Result<Vec<Value>, _>>()
        .context("serializing events")?;
    tx.execute(
        "INSERT INTO outbox (event_id, organization_id, event_type, message_group, payload, occurred_at) \
         SELECT id, $1, type, grp, payload, time \
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[]) \
              AS e(id, type, grp, payload, time)",
        &[&tx.organization_id(), &ids, &types, &groups, &payloads, &times],
    )
    .await
    .context("writing events to the outbox")?;
    Ok(())
}
