//! What the segments operations answer: a customer's segment and why, runs, summaries.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::rfm::{self, Breakpoints, RunBreakpoints, Scores};
use super::SegmentCode;
use crate::money::Money;

/// A customer's row of `customer_segments`: the totals the consumer keeps and the scores of
/// the last run that changed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerSegmentRow {
    pub customer_id: Uuid,
    pub segment_code: Option<SegmentCode>,
    pub rfm_recency: Option<i32>,
    pub rfm_frequency: Option<i32>,
    pub rfm_monetary: Option<i32>,
    pub rfm_score: Option<i32>,
    pub window_orders: i32,
    pub window_amount: Money,
    pub total_orders: i32,
    pub lifetime_value: Money,
    pub average_order_value: Money,
    pub last_purchase_at: Option<DateTime<Utc>>,
    pub is_vip: bool,
    pub is_at_risk: bool,
    pub calculated_at: Option<DateTime<Utc>>,
    pub run_id: Option<Uuid>,
}

impl CustomerSegmentRow {
    pub fn scores(&self) -> Option<Scores> {
        let score = |value: Option<i32>| value.and_then(|v| u8::try_from(v).ok());
        Some(Scores {
            recency: score(self.rfm_recency)?,
            frequency: score(self.rfm_frequency)?,
            monetary: score(self.rfm_monetary)?,
        })
    }
}

/// The breakpoints a run used, per measure (20/40/60/80th percentiles, two decimals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BreakpointsView {
    /// Days since the last purchase; fewer is better.
    #[schema(value_type = Vec<String>)]
    pub recency: Vec<Decimal>,
    /// Orders in the window.
    #[schema(value_type = Vec<String>)]
    pub frequency: Vec<Decimal>,
    /// Amount spent in the window.
    #[schema(value_type = Vec<String>)]
    pub monetary: Vec<Decimal>,
}

impl From<RunBreakpoints> for BreakpointsView {
    fn from(b: RunBreakpoints) -> Self {
        Self { recency: b.recency.0.to_vec(), frequency: b.frequency.0.to_vec(), monetary: b.monetary.0.to_vec() }
    }
}

impl BreakpointsView {
    pub fn to_run(&self) -> RunBreakpoints {
        let four = |values: &[Decimal]| Breakpoints(<[Decimal; 4]>::try_from(values).expect("four breakpoints"));
        RunBreakpoints {
            recency: four(&self.recency),
            frequency: four(&self.frequency),
            monetary: four(&self.monetary),
        }
    }
}

/// One run over an organization: what it used and what it did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentRun {
    pub run_id: Uuid,
    /// `nightly` or `api`.
    pub trigger: String,
    /// `baseline` (the organization's first run), `from_scratch` or `incremental`.
    pub mode: String,
    pub as_of: NaiveDate,
    pub window_days: i32,
    pub window_start: DateTime<Utc>,
    pub rules_version: i32,
    /// `null` when nobody bought in the window.
    pub breakpoints: Option<BreakpointsView>,
    /// Customers with a purchase in the window (the population of the breakpoints).
    pub customers_scored: i32,
    /// Customers with a segment row after the run.
    pub customers_total: i32,
    /// Customers per segment after the run.
    #[schema(value_type = Object)]
    pub segment_counts: Value,
    pub rows_written: i32,
    /// Customers whose segment changed.
    pub changes: i32,
    /// `customers.customer.segment_changed` events written (none on a baseline run).
    pub events: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i32,
}

/// The rule that decided a segment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MatchedRule {
    pub id: &'static str,
    pub segment: SegmentCode,
    /// The score ranges of the rule, or why there are no scores.
    pub condition: String,
    pub meaning: &'static str,
}

impl MatchedRule {
    pub fn for_scores(scores: Option<Scores>) -> Self {
        match scores {
            Some(scores) => {
                let rule = rfm::rule_for(scores);
                let range = |r: &std::ops::RangeInclusive<u8>| format!("{}-{}", r.start(), r.end());
                Self {
                    id: rule.id,
                    segment: rule.segment,
                    condition: format!(
                        "recency {}, frequency {}, monetary {}",
                        range(&rule.recency),
                        range(&rule.frequency),
                        range(&rule.monetary)
                    ),
                    meaning: rule.meaning,
                }
            }
            None => Self {
                id: rfm::NO_PURCHASE_RULE,
                segment: rfm::NO_PURCHASE_SEGMENT,
                condition: "no completed purchase in the window".into(),
                meaning: "no scores without a purchase to score",
            },
        }
    }
}

/// Why a customer has its segment: the run whose breakpoints apply, the measures, the rule.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    pub run_id: Uuid,
    pub as_of: NaiveDate,
    pub window_days: i32,
    pub window_start: DateTime<Utc>,
    pub rules_version: i32,
    pub breakpoints: Option<BreakpointsView>,
    /// Days from the last purchase to `as_of` (null without a purchase in the window).
    pub recency_days: Option<i64>,
    pub orders_in_window: i32,
    pub amount_in_window: Money,
    /// `null` until a run has scored the customer.
    pub rule: Option<MatchedRule>,
}

/// `GET /customers/{id}/segment`: scores, segment, metrics and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerSegment {
    pub customer_id: Uuid,
    /// `null` for a customer without purchases, or bought since the last run and not scored yet.
    pub segment_code: Option<SegmentCode>,
    pub rfm_recency: Option<i32>,
    pub rfm_frequency: Option<i32>,
    pub rfm_monetary: Option<i32>,
    pub rfm_score: Option<i32>,
    /// Completed purchases ever (live, kept as orders arrive).
    pub lifetime_value: Money,
    pub average_order_value: Money,
    pub total_orders: i32,
    pub last_purchase_at: Option<DateTime<Utc>>,
    /// Days from the last purchase to today (UTC).
    pub days_since_last_purchase: Option<i64>,
    pub is_vip: bool,
    pub is_at_risk: bool,
    /// When a run last changed the scores or segment.
    pub calculated_at: Option<DateTime<Utc>>,
    /// `null` before the organization's first run.
    pub explanation: Option<Explanation>,
}

impl CustomerSegment {
    /// The view of `row` (`None`: no purchase fact), explained by `run`, read on `today`.
    pub fn new(customer_id: Uuid, row: Option<CustomerSegmentRow>, run: Option<&SegmentRun>, today: NaiveDate) -> Self {
        let row = row.unwrap_or(CustomerSegmentRow {
            customer_id,
            segment_code: None,
            rfm_recency: None,
            rfm_frequency: None,
            rfm_monetary: None,
            rfm_score: None,
            window_orders: 0,
            window_amount: Money::ZERO,
            total_orders: 0,
            lifetime_value: Money::ZERO,
            average_order_value: Money::ZERO,
            last_purchase_at: None,
            is_vip: false,
            is_at_risk: false,
            calculated_at: None,
            run_id: None,
        });
        let explanation = run.map(|run| Explanation {
            run_id: run.run_id,
            as_of: run.as_of,
            window_days: run.window_days,
            window_start: run.window_start,
            rules_version: run.rules_version,
            breakpoints: run.breakpoints.clone(),
            recency_days: row
                .last_purchase_at
                .filter(|_| row.window_orders > 0)
                .map(|last| rfm::recency_days(run.as_of, last)),
            orders_in_window: row.window_orders,
            amount_in_window: row.window_amount,
            rule: row.segment_code.map(|_| MatchedRule::for_scores(row.scores())),
        });
        Self {
            customer_id,
            segment_code: row.segment_code,
            rfm_recency: row.rfm_recency,
            rfm_frequency: row.rfm_frequency,
            rfm_monetary: row.rfm_monetary,
            rfm_score: row.rfm_score,
            lifetime_value: row.lifetime_value,
            average_order_value: row.average_order_value,
            total_orders: row.total_orders,
            last_purchase_at: row.last_purchase_at,
            days_since_last_purchase: row.last_purchase_at.map(|last| rfm::recency_days(today, last)),
            is_vip: row.is_vip,
            is_at_risk: row.is_at_risk,
            calculated_at: row.calculated_at,
            explanation,
        }
    }
}

/// One segment of `GET /segments`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentSummary {
    /// `null`: customers who bought since the last run and are not scored yet.
    pub segment_code: Option<SegmentCode>,
    pub customers: i64,
    /// Fraction of the organization's segmented customers (0 to 1, four decimals).
    pub share: f64,
    pub average_lifetime_value: Money,
}

/// `GET /segments`: every segment (zero when empty) and the last run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentsOverview {
    /// Customers with a segment row (every customer with a purchase fact).
    pub customers_total: i64,
    pub segments: Vec<SegmentSummary>,
    pub last_run: Option<SegmentRun>,
}

/// One customer of `GET /segments/{segment_code}/customers`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentMember {
    pub customer_id: Uuid,
    pub rfm_recency: Option<i32>,
    pub rfm_frequency: Option<i32>,
    pub rfm_monetary: Option<i32>,
    pub lifetime_value: Money,
}

/// `POST /segments/recalculate`: all optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecalculateRequest {
    /// Days of purchases that count, 1 to 3650 (default 365).
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::input::optional_whole")]
    pub window_days: Option<u32>,
    /// The day the run is as of (default today, UTC).
    pub as_of: Option<NaiveDate>,
    /// Recompute every total from the purchases (repair) instead of the kept totals.
    #[serde(default)]
    pub from_scratch: bool,
}
