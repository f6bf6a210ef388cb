//! The outbox relay: publishes each organization's pending events to the outbound FIFO queue
//! in the order they were written, with the customer as the message group and the event id
//! as the deduplication id.
//!
//! One relay at a time works an organization (a transaction-scoped advisory lock), so two
//! relays never race each other's events of one customer. A send batch holds at most one
//! event per customer, and a customer whose event failed keeps the rest of its events for the
//! next pass: a later event never overtakes an earlier one.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;
use uuid::Uuid;

use crate::db::{Db, TenantTx};

/// Entries SQS accepts in one `SendMessageBatch`.
const SEND_BATCH: usize = 10;
/// Pending events read per round.
const ROUND: i64 = 500;
/// How long the after-commit publish leaves SQS alone after it failed once.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Publishes outbox rows to `queue_url`.
pub struct Relay {
    db: Db,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    after_commit_paused_until: Mutex<Option<Instant>>,
}

/// What a pass published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RelayReport {
    pub published: u64,
    /// Events SQS refused; they stay pending for the next pass.
    pub failed: u64,
    /// Organizations skipped because another relay was publishing them.
    pub busy: u64,
    /// Organizations whose pass stopped on an error.
    pub errors: u64,
}

struct PendingEvent {
    event_id: Uuid,
    seq: i64,
    message_group: String,
    payload: String,
}

impl Relay {
    pub fn new(db: Db, sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { db, sqs, queue_url: queue_url.into(), after_commit_paused_until: Mutex::new(None) }
    }

    /// Publishes the pending events of every organization. An organization whose pass fails is
    /// logged and counted; the others go on.
    pub async fn publish_all(&self) -> anyhow::Result<RelayReport> {
        let mut total = RelayReport::default();
        for organization_id in self.db.organizations().await? {
            match self.publish_organization(organization_id, u32::MAX).await {
                Ok(report) => total.add(report),
                Err(error) => {
                    tracing::warn!(%organization_id, error = %crate::error::loggable(&error), "outbox relay pass failed");
                    total.errors += 1;
                }
            }
        }
        Ok(total)
    }

    /// Publishes up to `rounds` rounds of `organization_id`'s pending events, unless another
    /// relay holds the organization (then `busy` is 1 and nothing is sent). An error from SQS
    /// itself ends the pass; what was sent before it stays marked as published.
    pub async fn publish_organization(&self, organization_id: Uuid, rounds: u32) -> anyhow::Result<RelayReport> {
        let mut connection = self.db.connection().await?;
        let tx = connection.begin(organization_id).await?;
        let mut report = RelayReport::default();
        let locked: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtextextended('outbox relay ' || $1::text, 0))",
                &[&organization_id.to_string()],
            )
            .await
            .context("taking the organization's relay lock")?
            .get(0);
        if !locked {
            report.busy = 1;
            return Ok(report);
        }
        let mut blocked_groups = HashSet::new();
        let mut after_seq = 0_i64;
        let mut outcome = Ok(());
        for _ in 0..rounds {
            let pending = read_pending(&tx, after_seq).await?;
            let Some(last) = pending.last() else { break };
            after_seq = last.seq;
            let full_round = pending.len() as i64 == ROUND;
            outcome = self.send_round(&tx, pending, &mut blocked_groups, &mut report).await;
            if outcome.is_err() || !full_round {
                break;
            }
        }
        tx.commit().await?;
        outcome.map(|()| report)
    }

    /// The publish right after a commit: one round for the organization, best effort. Errors
    /// are logged, never returned, and after one the relay leaves SQS alone for a while so a
    /// queue outage does not slow every request; the scheduled relay delivers the rest.
    pub async fn publish_after_commit(&self, organization_id: Uuid) {
        let paused_until = *self.after_commit_paused_until.lock().expect("relay pause lock");
        if paused_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        if let Err(error) = self.publish_organization(organization_id, 1).await {
            tracing::warn!(%organization_id, error = %crate::error::loggable(&error), "publishing after commit failed; the scheduled relay will retry");
            *self.after_commit_paused_until.lock().expect("relay pause lock") =
                Some(Instant::now() + PAUSE_AFTER_FAILURE);
        }
    }

    async fn send_round(
        &self,
        tx: &TenantTx<'_>,
        mut pending: Vec<PendingEvent>,
        blocked_groups: &mut HashSet<String>,
        report: &mut RelayReport,
    ) -> anyhow::Result<()> {
        loop {
            let (batch, later) = next_batch(pending, blocked_groups);
            if batch.is_empty() {
                return Ok(());
            }
            let (sent, refused) = self.send_batch(&batch).await?;
            tx.execute(
                "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE event_id = ANY($1)",
                &[&sent],
            )
            .await
            .context("marking events as published")?;
            if !refused.is_empty() {
                tx.execute("UPDATE outbox SET attempts = attempts + 1 WHERE event_id = ANY($1)", &[&refused])
                    .await
                    .context("counting refused events")?;
                for event in batch.iter().filter(|event| refused.contains(&event.event_id)) {
                    blocked_groups.insert(event.message_group.clone());
                }
            }
            report.published += sent.len() as u64;
            report.failed += refused.len() as u64;
            pending = later;
        }
    }

    /// Sends one batch; answers the ids SQS accepted and those it refused.
    async fn send_batch(&self, batch: &[PendingEvent]) -> anyhow::Result<(Vec<Uuid>, Vec<Uuid>)> {
        let entries = batch
            .iter()
            .enumerate()
            .map(|(index, event)| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(&event.payload)
                    .message_group_id(&event.message_group)
                    .message_deduplication_id(event.event_id.to_string())
                    .build()
                    .context("building an SQS batch entry")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let output = self
            .sqs
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(aws_sdk_sqs::Error::from)
            .context("sending events to SQS")?;
        let event_of = |entry_id: &str| entry_id.parse::<usize>().ok().and_then(|index| batch.get(index));
        let sent = output.successful().iter().filter_map(|entry| event_of(entry.id())).map(|e| e.event_id).collect();
        let refused = output
            .failed()
            .iter()
            .filter_map(|entry| {
                tracing::warn!(code = entry.code(), sender_fault = entry.sender_fault(), "SQS refused an event");
                event_of(entry.id())
            })
            .map(|e| e.event_id)
            .collect();
        Ok((sent, refused))
    }
}

impl RelayReport {
    fn add(&mut self, other: RelayReport) {
        self.published += other.published;
        self.failed += other.failed;
        self.busy += other.busy;
        self.errors += other.errors;
    }
}

async fn read_pending(tx: &TenantTx<'_>, after_seq: i64) -> anyhow::Result<Vec<PendingEvent>> {
    let rows = tx
        .query(
            "SELECT event_id, seq, message_group, payload::text FROM outbox \
             WHERE published_at IS NULL AND seq > $1 ORDER BY seq LIMIT $2",
            &[&after_seq, &ROUND],
        )
        .await
        .context("reading pending events")?;
    Ok(rows
        .iter()
        .map(|row| PendingEvent {
            event_id: row.get(0),
            seq: row.get(1),
            message_group: row.get(2),
            payload: row.get(3),
        })
        .collect())
}

/// Splits `pending` (in write order) into the next send batch and what waits for a later one:
/// at most one event per message group in a batch, none of a blocked group, and once an
/// event of a group waits, every later event of that group waits too.
fn next_batch(pending: Vec<PendingEvent>, blocked_groups: &HashSet<String>) -> (Vec<PendingEvent>, Vec<PendingEvent>) {
    let mut batch = Vec::new();
    let mut later = Vec::new();
    let mut seen_groups = HashSet::new();
    for event in pending {
        if blocked_groups.contains(&event.message_group) {
            continue;
        }
        let first_of_group = seen_groups.insert(event.message_group.clone());
        if first_of_group && batch.len() < SEND_BATCH {
            batch.push(event);
        } else {
            later.push(event);
        }
    }
    (batch, later)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, group: &str) -> PendingEvent {
        PendingEvent { event_id: Uuid::new_v4(), seq, message_group: group.into(), payload: String::new() }
    }

    fn seqs(events: &[PendingEvent]) -> Vec<i64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_batch_holds_one_event_per_group_in_write_order() {
        let pending = vec![event(1, "a"), event(2, "a"), event(3, "b"), event(4, "a"), event(5, "c")];
        let (batch, later) = next_batch(pending, &HashSet::new());
        assert_eq!(seqs(&batch), [1, 3, 5]);
        let (batch, later) = next_batch(later, &HashSet::new());
        assert_eq!(seqs(&batch), [2]);
        let (batch, later) = next_batch(later, &HashSet::new());
        assert_eq!(seqs(&batch), [4]);
        assert!(later.is_empty());
    }

    #[test]
    fn a_full_batch_defers_every_later_event_of_a_deferred_group() {
        let mut pending: Vec<_> = (0..10).map(|n| event(n, &format!("g{n}"))).collect();
        pending.push(event(10, "late"));
        pending.push(event(11, "g0"));
        pending.push(event(12, "late"));
        let (batch, later) = next_batch(pending, &HashSet::new());
        assert_eq!(batch.len(), SEND_BATCH);
        assert_eq!(seqs(&later), [10, 11, 12]);
        let (batch, later) = next_batch(later, &HashSet::new());
        assert_eq!(seqs(&batch), [10, 11]);
        assert_eq!(seqs(&later), [12]);
    }

    #[test]
    fn a_blocked_group_sends_nothing_more_this_pass() {
        let blocked = HashSet::from(["a".to_string()]);
        let (batch, later) = next_batch(vec![event(1, "a"), event(2, "b"), event(3, "a")], &blocked);
        assert_eq!(seqs(&batch), [2]);
        assert!(later.is_empty());
    }
}
