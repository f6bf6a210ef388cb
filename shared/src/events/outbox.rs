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

/// Writes an event for `subject_id` (the message group that keeps its events in order).
/// Event data carries ids and codes, never personal data, so erasure leaves none behind.
pub async fn record(
    tx: &TenantTx<'_>,
    event_type: &str,
    subject_id: Uuid,
    data: Value,
) -> anyhow::Result<Uuid> {
    let envelope = Envelope {
        id: Uuid::now_v7(),
        event_type: event_type.to_string(),
        source: super::SOURCE,
        time: Utc::now(),
        organization_id: tx.organization_id(),
        data,
    };
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
