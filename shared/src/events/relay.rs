//! The outbox relay: publishes each organization's pending events to the outbound FIFO queue
//! in the order they were written, with each event's message group (see `message_group`) and
//! the event id as the deduplication id.
//!
//! One relay at a time works an organization (a transaction-scoped advisory lock, taken per
//! round), so two relays never race each other's events of one customer. A send batch holds at
//! most one event per message group, and a group whose event failed keeps the rest of its
//! events for the next pass: a later event never overtakes an earlier one. Each round commits
//! what it sent, so a pass cut short by its deadline loses nothing and repeats nothing.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::Serialize;
use uuid::Uuid;

use crate::app::for_each_organization;
use crate::db::{Db, TenantTx};
use crate::error::loggable;

/// Entries SQS accepts in one `SendMessageBatch`.
const SEND_BATCH: usize = 10;
/// Pending events read, sent and committed per round.
const ROUND: i64 = 500;
/// How long the after-commit publish leaves SQS alone after it failed once.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// The most the publish after a commit adds to a request; what it leaves goes with the relay.
pub const AFTER_COMMIT_BUDGET: Duration = Duration::from_secs(1);
/// Events of the request's message groups the publish after a commit sends at most.
const AFTER_COMMIT_EVENTS: i64 = 20;
/// Time a scheduled pass keeps free before its invocation's deadline: one SQS call at its
/// longest (see `aws`), and the commit.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(7);

/// Publishes outbox rows to `queue_url`.
pub struct Relay {
    db: Db,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    after_commit_paused_until: Mutex<Option<Instant>>,
    /// The organization the last scheduled pass worked last, so the next one starts after it.
    last_organization: Mutex<Option<Uuid>>,
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
    /// Whether the pass stopped at its deadline with events left; the next one goes on.
    pub stopped_at_deadline: bool,
}

struct PendingEvent {
    event_id: Uuid,
    seq: i64,
    message_group: String,
    payload: String,
}

impl Relay {
    pub fn new(db: Db, sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            db,
            sqs,
            queue_url: queue_url.into(),
            after_commit_paused_until: Mutex::new(None),
            last_organization: Mutex::new(None),
        }
    }

    /// Publishes the pending events of every organization that has any, starting no SQS call
    /// after `until` (an invocation's deadline less [`DEADLINE_MARGIN`]). Starts after the
    /// organization the previous pass worked last, so a backlog in one tenant does not starve
    /// the others. An organization whose pass fails is logged and counted; the others go on.
    pub async fn publish_all(&self, until: Instant) -> anyhow::Result<RelayReport> {
        let pending = self.db.organizations_with_pending_events().await?;
        let last = *self.last_organization.lock().expect("relay cursor lock");
        let start = last.map_or(0, |last| pending.partition_point(|id| *id <= last));
        let in_turn = pending[start..].iter().chain(&pending[..start]).copied();
        let tally = for_each_organization(
            "outbox relay",
            in_turn,
            1,
            || Instant::now() < until,
            |organization_id| {
                *self.last_organization.lock().expect("relay cursor lock") = Some(organization_id);
                self.publish_organization(organization_id, until)
            },
        )
        .await;
        let mut total =
            RelayReport { errors: tally.failed as u64, stopped_at_deadline: tally.stopped, ..Default::default() };
        tally.done.into_iter().for_each(|report| total.add(report));
        Ok(total)
    }

    /// Publishes `organization_id`'s pending events round by round, each round committed, until
    /// none is left or `until` has passed. Does nothing (`busy` 1) while another relay holds the
    /// organization. An error from SQS ends the pass; what was sent before it stays published.
    pub async fn publish_organization(&self, organization_id: Uuid, until: Instant) -> anyhow::Result<RelayReport> {
        let mut report = RelayReport::default();
        let mut blocked_groups = HashSet::new();
        let mut after_seq = 0_i64;
        loop {
            if Instant::now() >= until {
                report.stopped_at_deadline = true;
                return Ok(report);
            }
            let mut connection = self.db.connection().await?;
            let tx = connection.begin(organization_id).await?;
            if !lock_organization(&tx).await? {
                report.busy = 1;
                return Ok(report);
            }
            let pending = read_pending(&tx, after_seq, None, ROUND).await?;
            let Some(last) = pending.last() else { return Ok(report) };
            after_seq = last.seq;
            let full_round = pending.len() as i64 == ROUND;
            let outcome = self.send_round(&tx, pending, &mut blocked_groups, &mut report, until).await;
            tx.commit().await?;
            outcome?;
            if !full_round {
                return Ok(report);
            }
        }
    }

    /// The publish right after a commit: the pending events of the request's message
    /// `groups` (its own, and any earlier ones of those groups, which must go first), within
    /// [`AFTER_COMMIT_BUDGET`]. Best effort: errors are logged, never returned, and after one
    /// the relay leaves SQS alone for a while so a queue outage does not slow every request;
    /// the scheduled relay delivers the rest.
    pub async fn publish_after_commit(&self, organization_id: Uuid, groups: &[String]) {
        let paused_until = *self.after_commit_paused_until.lock().expect("relay pause lock");
        if groups.is_empty() || paused_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        let outcome = tokio::time::timeout(AFTER_COMMIT_BUDGET, self.publish_groups(organization_id, groups)).await;
        let error = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(error)) => loggable(&error),
            Err(_) => format!("no answer within {AFTER_COMMIT_BUDGET:?}"),
        };
        tracing::warn!(%organization_id, error, "publishing after commit failed; the scheduled relay will retry");
        *self.after_commit_paused_until.lock().expect("relay pause lock") = Some(Instant::now() + PAUSE_AFTER_FAILURE);
    }

    async fn publish_groups(&self, organization_id: Uuid, groups: &[String]) -> anyhow::Result<()> {
        let mut connection = self.db.connection().await?;
        let tx = connection.begin(organization_id).await?;
        if !lock_organization(&tx).await? {
            return Ok(());
        }
        let pending = read_pending(&tx, 0, Some(groups), AFTER_COMMIT_EVENTS).await?;
        let outcome = self
            .send_round(
                &tx,
                pending,
                &mut HashSet::new(),
                &mut RelayReport::default(),
                Instant::now() + AFTER_COMMIT_BUDGET,
            )
            .await;
        tx.commit().await?;
        outcome
    }

    async fn send_round(
        &self,
        tx: &TenantTx<'_>,
        mut pending: Vec<PendingEvent>,
        blocked_groups: &mut HashSet<String>,
        report: &mut RelayReport,
        until: Instant,
    ) -> anyhow::Result<()> {
        loop {
            let (batch, later) = next_batch(pending, blocked_groups);
            if batch.is_empty() {
                return Ok(());
            }
            if Instant::now() >= until {
                report.stopped_at_deadline = true;
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
        self.stopped_at_deadline |= other.stopped_at_deadline;
    }
}

/// How long a pass may run when its invocation names no real deadline.
pub const PASS_WITHOUT_DEADLINE: Duration = Duration::from_secs(10);

/// When a scheduled pass must stop starting SQS calls, for an invocation that ends at
/// `deadline`: [`DEADLINE_MARGIN`] before it. A deadline already past when the invocation
/// starts is no deadline (`cargo lambda watch` sends the epoch plus ten minutes): the pass then
/// gets `PASS_WITHOUT_DEADLINE`.
pub fn stop_before(deadline: std::time::SystemTime) -> Instant {
    match deadline.duration_since(std::time::SystemTime::now()) {
        Ok(left) => Instant::now() + left.saturating_sub(DEADLINE_MARGIN),
        Err(_) => Instant::now() + PASS_WITHOUT_DEADLINE,
    }
}

/// Takes the organization's relay lock for this transaction; false when another relay has it.
async fn lock_organization(tx: &TenantTx<'_>) -> anyhow::Result<bool> {
    let row = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('outbox relay ' || $1::text, 0))",
            &[&tx.organization_id().to_string()],
        )
        .await
        .context("taking the organization's relay lock")?;
    Ok(row.get(0))
}

/// Up to `limit` pending events after `after_seq`, in write order; only those of `groups`
/// when given.
async fn read_pending(
    tx: &TenantTx<'_>,
    after_seq: i64,
    groups: Option<&[String]>,
    limit: i64,
) -> anyhow::Result<Vec<PendingEvent>> {
    let rows = tx
        .query(
            "SELECT event_id, seq, message_group, payload::text FROM outbox \
             WHERE published_at IS NULL AND seq > $1 AND ($3::text[] IS NULL OR message_group = ANY($3)) \
             ORDER BY seq LIMIT $2",
            &[&after_seq, &limit, &groups],
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

    #[test]
    fn a_pass_stops_a_margin_before_its_deadline_and_a_past_deadline_means_none() {
        let now = std::time::SystemTime::now();
        let in_a_minute = stop_before(now + Duration::from_secs(60)).duration_since(Instant::now());
        assert!(in_a_minute <= Duration::from_secs(60) - DEADLINE_MARGIN, "{in_a_minute:?}");
        assert!(in_a_minute > Duration::from_secs(50), "{in_a_minute:?}");
        let emulator = std::time::UNIX_EPOCH + Duration::from_millis(600_000);
        let without = stop_before(emulator).duration_since(Instant::now());
        assert!(without > PASS_WITHOUT_DEADLINE - Duration::from_secs(1) && without <= PASS_WITHOUT_DEADLINE);
    }

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
