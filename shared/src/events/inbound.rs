//! Events other services send us, each applied at most once: its id is recorded in the
//! transaction that applies it. A message that cannot be applied fails alone, so the queue
//! retries it and, in the end, moves it to the dead-letter queue.

use anyhow::Context;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::app::App;
use crate::config::InboundConfig;
use crate::customers;
use crate::loyalty::LoyaltyTier;
use crate::money::{self, Money};
use crate::segments::purchases;

/// Inbound event types of the contract.
pub mod types {
    pub const TIER_CHANGED: &str = "pricing.loyalty.tier_changed";
    pub const ORDER_COMPLETED: &str = "orders.order.completed";
    pub const ORDER_CANCELLED: &str = "orders.order.cancelled";
}

/// How far ahead of this service's clock an event's `time` may be. An event further ahead
/// would outrank every real event for good (the newest `time` wins), so it is refused.
pub const MAX_FUTURE_SKEW: TimeDelta = TimeDelta::minutes(5);

/// The contract's envelope, as another service sends it.
#[derive(Debug, Deserialize)]
pub struct InboundEnvelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub time: DateTime<Utc>,
    pub organization_id: Uuid,
    pub data: Value,
}

#[derive(Debug, Deserialize)]
struct TierChanged {
    customer_id: Uuid,
    new_tier: LoyaltyTier,
}

#[derive(Debug, Deserialize)]
struct OrderCompleted {
    order_id: Uuid,
    customer_id: Uuid,
    #[serde(deserialize_with = "money::non_negative")]
    total_amount: Money,
    completed_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct OrderCancelled {
    order_id: Uuid,
    customer_id: Uuid,
    cancelled_at: DateTime<Utc>,
}

/// What applying a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The event id was applied before.
    Duplicate,
    /// Recorded, but a newer fact was already in place (an older tier event).
    Superseded,
}

/// Why a message was not applied. Messages name fields and ids, never values.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("the body is not an event envelope ({0})")]
    Malformed(String),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("`{event_type}` comes from `{expected}`, not from `{sent_by}`")]
    WrongSource { event_type: &'static str, expected: String, sent_by: String },
    #[error("the event's `time` ({time}) is more than {} minutes ahead of this service's clock", MAX_FUTURE_SKEW.num_minutes())]
    FromTheFuture { time: DateTime<Utc> },
    #[error("invalid `{event_type}` data ({detail})")]
    InvalidData { event_type: &'static str, detail: String },
    #[error("customer {customer_id} does not exist in organization {organization_id}")]
    UnknownCustomer { organization_id: Uuid, customer_id: Uuid },
    /// Its cause chain shows without PostgreSQL's DETAIL, which can carry row values.
    #[error("applying the event failed: {}", crate::error::loggable(.0))]
    Failed(#[from] anyhow::Error),
}

/// Applies a Lambda SQS batch, up to `concurrency` messages at once, and reports the
/// messages that failed so only they return to the queue.
pub async fn handle_batch(app: &App, sources: &InboundConfig, event: SqsEvent, concurrency: usize) -> SqsBatchResponse {
    let outcomes = futures_util::stream::iter(event.records)
        .map(|message| async move {
            let result = apply_message(app, sources, &message).await;
            (message, result)
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut response = SqsBatchResponse::default();
    for (message, result) in outcomes {
        let message_id = message.message_id.unwrap_or_default();
        match result {
            Ok(outcome) => tracing::info!(message_id, ?outcome, "inbound event"),
            Err(rejection) => {
                tracing::warn!(message_id, error = %rejection, "inbound event failed; the queue will retry it");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    response
}

/// Applies one SQS message.
pub async fn apply_message(app: &App, sources: &InboundConfig, message: &SqsMessage) -> Result<Outcome, Rejection> {
    let envelope: InboundEnvelope = parse(message.body.as_deref().unwrap_or_default()).map_err(Rejection::Malformed)?;
    apply(app, sources, &envelope).await
}

/// Applies one event in one transaction of its organization, with its id. An event that is
/// not from its type's producer or whose `time` is ahead of [`MAX_FUTURE_SKEW`] is refused
/// before anything is recorded.
pub async fn apply(app: &App, sources: &InboundConfig, envelope: &InboundEnvelope) -> Result<Outcome, Rejection> {
    let event = InboundEvent::from_envelope(envelope)?;
    event.check_origin(envelope, sources, Utc::now())?;
    let mut connection = app.db.connection().await?;
    let tx = connection.begin(envelope.organization_id).await?;
    let first_time = tx
        .execute(
            "INSERT INTO inbound_events (organization_id, event_id, event_type) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&envelope.organization_id, &envelope.id, &envelope.event_type],
        )
        .await
        .context("recording the event id")?
        == 1;
    if !first_time {
        return Ok(Outcome::Duplicate);
    }
    let customer_id = event.customer_id();
    if event.moves_purchase_totals() {
        // Before the customer's row lock, as a segment run takes them (see segments::run).
        purchases::hold_totals(&tx).await?;
    }
    if !customers::store::hold(&tx, customer_id).await? {
        return Err(Rejection::UnknownCustomer { organization_id: envelope.organization_id, customer_id });
    }
    let applied = match event {
        InboundEvent::TierChanged(tier) => {
            customers::store::set_tier_if_newer(&tx, customer_id, tier.new_tier, envelope.time).await?
        }
        InboundEvent::OrderCompleted(order) => {
            let counted =
                purchases::record_completed(&tx, order.order_id, customer_id, order.total_amount, order.completed_at)
                    .await?;
            if counted {
                purchases::add_to_totals(&tx, customer_id, order.total_amount, order.completed_at).await?;
                customers::store::refresh_last_purchase(&tx, customer_id).await?;
            }
            counted
        }
        InboundEvent::OrderCancelled(order) => {
            match purchases::record_cancelled(&tx, order.order_id, customer_id, order.cancelled_at).await? {
                Some(cancelled) => {
                    purchases::take_out_of_totals(&tx, cancelled).await?;
                    customers::store::refresh_last_purchase(&tx, cancelled.customer_id).await?;
                    true
                }
                None => false,
            }
        }
    };
    let outcome = if applied { Outcome::Applied } else { Outcome::Superseded };
    app.commit(tx).await?;
    Ok(outcome)
}

enum InboundEvent {
    TierChanged(TierChanged),
    OrderCompleted(OrderCompleted),
    OrderCancelled(OrderCancelled),
}

impl InboundEvent {
    fn from_envelope(envelope: &InboundEnvelope) -> Result<Self, Rejection> {
        fn data<T: DeserializeOwned>(event_type: &'static str, data: &Value) -> Result<T, Rejection> {
            parse_value(data).map_err(|detail| Rejection::InvalidData { event_type, detail })
        }
        Ok(match envelope.event_type.as_str() {
            types::TIER_CHANGED => Self::TierChanged(data(types::TIER_CHANGED, &envelope.data)?),
            types::ORDER_COMPLETED => Self::OrderCompleted(data(types::ORDER_COMPLETED, &envelope.data)?),
            types::ORDER_CANCELLED => Self::OrderCancelled(data(types::ORDER_CANCELLED, &envelope.data)?),
            other => return Err(Rejection::UnknownType(other.chars().take(100).collect())),
        })
    }

    /// Refuses an event its type's producer did not send, or one dated too far ahead of `now`.
    fn check_origin(
        &self,
        envelope: &InboundEnvelope,
        sources: &InboundConfig,
        now: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        let (event_type, producer) = match self {
            Self::TierChanged(_) => (types::TIER_CHANGED, &sources.pricing_source),
            Self::OrderCompleted(_) => (types::ORDER_COMPLETED, &sources.orders_source),
            Self::OrderCancelled(_) => (types::ORDER_CANCELLED, &sources.orders_source),
        };
        if envelope.source != *producer {
            return Err(Rejection::WrongSource {
                event_type,
                expected: producer.clone(),
                sent_by: envelope.source.chars().take(100).collect(),
            });
        }
        if envelope.time > now + MAX_FUTURE_SKEW {
            return Err(Rejection::FromTheFuture { time: envelope.time });
        }
        Ok(())
    }

    fn moves_purchase_totals(&self) -> bool {
        matches!(self, Self::OrderCompleted(_) | Self::OrderCancelled(_))
    }

    fn customer_id(&self) -> Uuid {
        match self {
            Self::TierChanged(event) => event.customer_id,
            Self::OrderCompleted(event) => event.customer_id,
            Self::OrderCancelled(event) => event.customer_id,
        }
    }
}

/// The tier of the newest event wins: an event older than the tier in place (by the event's
/// `time`) is recorded and changes nothing.
fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| describe(error.path(), error.inner().classify()))
}

fn parse_value<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| describe(error.path(), error.inner().classify()))
}

fn describe(path: &serde_path_to_error::Path, category: serde_json::error::Category) -> String {
    use serde_json::error::Category;
    let what = match category {
        Category::Syntax | Category::Eof | Category::Io => "not valid JSON",
        Category::Data => "a missing or invalid field",
    };
    match path.to_string().as_str() {
        "." | "?" | "" => what.to_string(),
        path => format!("{what} at `{path}`"),
    }
}
