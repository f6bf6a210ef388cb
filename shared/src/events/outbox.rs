//! The transactional outbox: an event row written by the transaction that makes the change.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::db::TenantTx;

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

/// Writes an event about `subject_id` (the message group that keeps its events in order).
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
            &subject_id.to_string(),
            &payload,
            &envelope.time,
        ],
    )
    .await
    .context("writing an event to the outbox")?;
    Ok(envelope.id)
}

/// Writes several events in one statement; each pairs a subject (message group) and envelope.
pub async fn record_many(tx: &TenantTx<'_>, events: &[(Uuid, Envelope)]) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|(_, e)| e.id).collect();
    let types: Vec<&str> = events.iter().map(|(_, e)| e.event_type.as_str()).collect();
    let groups: Vec<String> = events.iter().map(|(subject, _)| subject.to_string()).collect();
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
