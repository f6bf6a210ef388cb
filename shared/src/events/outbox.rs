//! The transactional outbox: an event row written by the transaction that makes the change.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::db::TenantTx;

/// The message group of an event about `customer_id`: the kind of change and the customer
/// (`customer:<id>`, `credit:<id>`, `segment:<id>`). Each kind's writes on a customer are
/// serialized by one lock (the customer's row, the credit account's row, the organization's
/// segment writers' lock), so within a group the outbox order is the commit order, and FIFO
/// delivers them in that order. Across the groups of a customer no order is promised.
pub fn message_group(event_type: &str, customer_id: Uuid) -> String {
    let kind = if event_type == super::types::CUSTOMER_SEGMENT_CHANGED {
        "segment"
    } else {
        event_type.split('.').nth(1).unwrap_or("customer")
    };
    format!("{kind}:{customer_id}")
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

/// An event ready for the outbox: its envelope, message group and serialized form.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub envelope: Envelope,
    pub message_group: String,
    payload: Value,
}

impl OutboxEvent {
    /// A new event of `organization_id` about the customer `subject_id` (see [`message_group`]).
    pub fn new(organization_id: Uuid, event_type: &str, subject_id: Uuid, data: Value) -> anyhow::Result<Self> {
        let envelope = Envelope::new(organization_id, event_type, data);
        let payload = serde_json::to_value(&envelope).context("serializing an event")?;
        Ok(Self { message_group: message_group(event_type, subject_id), envelope, payload })
    }

    /// The parameters [`insert_one_sql`] numbers from its first: event id, type, message
    /// group, envelope, time.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.envelope.id, &self.envelope.event_type, &self.message_group, &self.payload, &self.envelope.time]
    }

    /// [`Self::params`] for a statement of `tx`, which will publish the event's group after it
    /// commits.
    pub fn params_in(&self, tx: &TenantTx<'_>) -> [&(dyn ToSql + Sync); 5] {
        tx.note_message_group(&self.message_group);
        self.params()
    }
}

const INSERT: &str = "INSERT INTO outbox (event_id, organization_id, event_type, message_group, payload, occurred_at)";

/// The outbox insert of one event inside a larger statement whose `$1` is the organization:
/// the event's [`OutboxEvent::params`] are `$first` to `$first + 4`, `added_data` is a jsonb
/// expression merged into the envelope's `data`, and `from` the clause it reads from.
pub fn insert_one_sql(first: usize, added_data: &str, from: &str) -> String {
    let [id, event_type, group, envelope, time] = std::array::from_fn(|i| format!("${}", first + i));
    format!(
        "{INSERT} SELECT {id}, $1, {event_type}, {group}::text, \
             jsonb_set({envelope}::jsonb, '{{data}}', ({envelope}::jsonb -> 'data') || {added_data}), {time} {from}"
    )
}

/// Writes events of the transaction's organization in one statement.
pub async fn record(tx: &TenantTx<'_>, events: &[OutboxEvent]) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.envelope.id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.envelope.event_type.as_str()).collect();
    let groups: Vec<&str> = events.iter().map(|e| e.message_group.as_str()).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.envelope.time).collect();
    let sql = format!(
        "{INSERT} SELECT id, $1, type, grp, payload, time \
         FROM unnest($2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[]) AS e(id, type, grp, payload, time)"
    );
    tx.execute(&sql, &[&tx.organization_id(), &ids, &types, &groups, &payloads, &times])
        .await
        .context("writing events to the outbox")?;
    for group in groups {
        tx.note_message_group(group);
    }
    Ok(())
}

/// Writes one event of the transaction's organization about the customer `subject_id`.
pub async fn record_one(tx: &TenantTx<'_>, event_type: &str, subject_id: Uuid, data: Value) -> anyhow::Result<()> {
    record(tx, &[OutboxEvent::new(tx.organization_id(), event_type, subject_id, data)?]).await
}
