//! RFM segments: the codes customers are grouped under, the purchases they are scored on, the
//! runs that score them (nightly and on demand) and the reads that explain them. The scoring
//! rules are in [`rfm`].
//!
//! A run over one organization:
//! - **incremental** (every night once a first run exists): one transaction, while the
//!   organization's consumers wait, moves the window start (taking out what slid out of it
//!   since the last run), then reads the kept totals and the scores of every row in one pass.
//!   Rust places the breakpoints and assesses every row (`store::KeptRows`); one statement
//!   writes, by address, only the rows whose scores, segment or flags change, and one
//!   `segment_changed` event per changed segment; then the run record.
//! - **from scratch** (the first run, `baseline`; a rules version change; a window reaching
//!   further back than the kept totals; or asked for, as a repair): one transaction aggregates
//!   every purchase again and writes whatever differs, totals included. Consumers of the
//!   organization wait for it. A baseline writes no events: it is where segments begin; over
//!   an organization with no window yet (the consumer keeps no totals before the first run, so
//!   there are no rows) it simply inserts them.
//!
//! Segment events need no customer lock: their message group is their own (`segment:<id>`,
//! see `events::message_group`), and the organization's segment writers are serialized.
//!
//! The from-scratch path scores in SQL and the incremental one in Rust, both looking up what
//! [`rfm`] computed for the breakpoints and the rules; over the same purchases they write the same
//! rows (the integration tests and the benchmark hold them to it).

pub mod model;
pub mod purchases;
pub mod rfm;
pub mod routes;
pub mod store;

use std::time::Instant;

use chrono::{NaiveDate, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::app::{for_each_organization, App};
use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::events::{self, types};
use crate::paging::{ListResponse, PageRequest};
use model::{CustomerSegment, SegmentMember, SegmentRun, SegmentSummary, SegmentsOverview};
use store::Totals;

crate::text_enum! {
    /// The RFM segment of a customer (seed 002's `segment_code`).
    SegmentCode {
        Champions => "champions",
        Loyal => "loyal",
        PotentialLoyalist => "potential_loyalist",
        New => "new",
        AtRisk => "at_risk",
        Lost => "lost",
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Nightly,
    Api,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Nightly => "nightly",
            Self::Api => "api",
        }
    }
}

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub as_of: NaiveDate,
    pub window_days: u32,
    /// Recompute the totals from the purchases even when the kept ones could serve.
    pub from_scratch: bool,
    pub trigger: Trigger,
}

impl RunOptions {
    /// A nightly run as of `as_of` over the default window.
    pub fn nightly(as_of: NaiveDate) -> Self {
        Self { as_of, window_days: rfm::DEFAULT_WINDOW_DAYS, from_scratch: false, trigger: Trigger::Nightly }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Baseline,
    FromScratch,
    Incremental,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::FromScratch => "from_scratch",
            Self::Incremental => "incremental",
        }
    }
}

fn to_i32(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// Scores one organization (see the module's notes) and records the run.
pub async fn run_organization(app: &App, organization_id: Uuid, options: RunOptions) -> anyhow::Result<SegmentRun> {
    anyhow::ensure!(
        (1..=rfm::MAX_WINDOW_DAYS).contains(&options.window_days),
        "the window must be 1 to {} days",
        rfm::MAX_WINDOW_DAYS
    );
    let started_at = Utc::now();
    let clock = Instant::now();
    let run_id = Uuid::now_v7();
    let window_start = rfm::window_start(options.as_of, options.window_days);
    let mut conn = app.db.connection().await?;

    let tx = conn.begin(organization_id).await?;
    store::allow_long_run(&tx).await?;
    store::lock_scores_and_totals(&tx).await?;
    tx.changes_organization();
    let (previous, counted_from) = tokio::try_join!(store::last_run(&tx), store::window(&tx))?;
    let mode = match (&previous, counted_from) {
        (None, _) | (_, None) => Mode::Baseline,
        (Some(previous), Some(counted_from)) => {
            if options.from_scratch || previous.rules_version != rfm::RULES_VERSION || window_start < counted_from {
                Mode::FromScratch
            } else {
                Mode::Incremental
            }
        }
    };

    let (population, breakpoints, written, counts) = match (mode, counted_from) {
        (Mode::Incremental, Some(counted_from)) => {
            store::prefer_lookups(&tx).await?;
            store::slide_window(&tx, counted_from, window_start).await?;
            let store::Population { scored, breakpoints, rows } =
                store::population(&tx, Totals::Kept, options.as_of).await?;
            let (changes, counts) = rows.expect("kept totals are read with their rows").changes(breakpoints.as_ref());
            let written = store::write_score_changes(&tx, changes, run_id).await?;
            (scored, breakpoints, written, counts)
        }
        _ => {
            store::stage_totals_from_purchases(&tx, window_start).await?;
            let store::Population { scored, breakpoints, .. } =
                store::population(&tx, Totals::Aggregated, options.as_of).await?;
            // No window yet: the consumer keeps no totals before the first run, so the
            // organization has no rows to compare with (an insert over one would fail, not merge).
            if counted_from.is_none() {
                let counts = store::insert_baseline(&tx, breakpoints.as_ref(), options.as_of, run_id).await?;
                let rows = counts.iter().map(|(_, n)| n.unsigned_abs()).sum();
                let moves = counts.iter().map(|&(to, customers)| store::SegmentMove { from: None, to, customers });
                (scored, breakpoints, store::Written { rows, events: 0, moves: moves.collect() }, counts)
            } else {
                // A baseline writes no events: it is where segments begin.
                let announce = mode != Mode::Baseline;
                let written =
                    store::write_all_changes(&tx, breakpoints.as_ref(), options.as_of, run_id, announce).await?;
                (scored, breakpoints, written, store::segment_counts(&tx).await?)
            }
        }
    };
    let customers_total: i64 = counts.iter().map(|(_, n)| n).sum();
    let segment_counts: serde_json::Map<String, serde_json::Value> = SegmentCode::ALL
        .iter()
        .map(|code| {
            let n = counts.iter().find(|(c, _)| *c == Some(*code)).map_or(0, |(_, n)| *n);
            (code.as_str().to_string(), json!(n))
        })
        .collect();
    let run = SegmentRun {
        run_id,
        trigger: options.trigger.as_str().into(),
        mode: mode.as_str().into(),
        as_of: options.as_of,
        window_days: to_i32(options.window_days),
        window_start,
        rules_version: rfm::RULES_VERSION,
        breakpoints: breakpoints.map(Into::into),
        customers_scored: to_i32(population),
        customers_total: to_i32(customers_total),
        segment_counts: segment_counts.into(),
        rows_written: to_i32(written.rows),
        changes: to_i32(written.moves.iter().map(|moved| moved.customers).sum::<i64>()),
        events: to_i32(written.events),
        started_at,
        finished_at: Utc::now(),
        duration_ms: to_i32(clock.elapsed().as_millis()),
    };
    store::record_run(&tx, &run).await?;
    app.commit(tx).await?;
    tracing::info!(
        %organization_id,
        run_id = %run.run_id,
        mode = run.mode,
        customers = run.customers_total,
        rows_written = run.rows_written,
        changes = run.changes,
        duration_ms = run.duration_ms,
        "segment run"
    );
    Ok(run)
}

/// What the nightly job did.
#[derive(Debug, serde::Serialize)]
pub struct NightlyReport {
    pub as_of: NaiveDate,
    pub organizations: usize,
    pub failed: usize,
    /// Organizations left for the next invocation because the deadline came.
    pub stopped: bool,
    /// How many organizations ran each way (`baseline`, `incremental`, `from_scratch`).
    pub modes: std::collections::BTreeMap<String, usize>,
    pub changes: i64,
    pub rows_written: i64,
    pub events: i64,
}

/// The nightly job: every organization, `at_once` at a time, each in its own transactions, so
/// one failing tenant does not stop the others; starts no further organization once
/// `keep_going` says so. A run is mostly the database's work, one statement at a time: two at
/// once keep two of its cores busy.
pub async fn run_nightly(
    app: &App,
    options: RunOptions,
    at_once: usize,
    keep_going: impl FnMut() -> bool,
) -> anyhow::Result<NightlyReport> {
    let organizations = app.db.organizations().await?;
    let tally = for_each_organization("segments", organizations, at_once, keep_going, |organization| {
        run_organization(app, organization, options)
    })
    .await;
    let mut modes = std::collections::BTreeMap::new();
    for run in &tally.done {
        *modes.entry(run.mode.clone()).or_default() += 1;
    }
    let total = |of: fn(&SegmentRun) -> i32| tally.done.iter().map(|run| i64::from(of(run))).sum();
    Ok(NightlyReport {
        as_of: options.as_of,
        organizations: tally.done.len(),
        failed: tally.failed,
        stopped: tally.stopped,
        modes,
        changes: total(|run| run.changes),
        rows_written: total(|run| run.rows_written),
        events: total(|run| run.events),
    })
}

/// `POST /segments/recalculate`: the caller's organization now.
#[tracing::instrument(name = "segments.recalculate_organization", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn recalculate_organization(
    app: &App,
    caller: &Caller,
    request: model::RecalculateRequest,
) -> Result<SegmentRun, ApiError> {
    caller.require(Scope::SegmentsWrite)?;
    let window_days = request.window_days.unwrap_or(rfm::DEFAULT_WINDOW_DAYS);
    if !(1..=rfm::MAX_WINDOW_DAYS).contains(&window_days) {
        return Err(ApiError::invalid("window_days", format!("must be between 1 and {}", rfm::MAX_WINDOW_DAYS)));
    }
    let options = RunOptions {
        as_of: request.as_of.unwrap_or_else(|| Utc::now().date_naive()),
        window_days,
        from_scratch: request.from_scratch,
        trigger: Trigger::Api,
    };
    Ok(run_organization(app, caller.organization_id, options).await?)
}

/// `GET /customers/{id}/segment`.
#[tracing::instrument(name = "segments.get_customer_segment", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn get_customer_segment(app: &App, caller: &Caller, customer_id: Uuid) -> Result<CustomerSegment, ApiError> {
    caller.require(Scope::SegmentsRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    if !crate::customers::store::exists(&tx, customer_id).await? {
        return Err(ApiError::NotFound);
    }
    let row = store::find(&tx, customer_id).await?;
    let run = store::last_run(&tx).await?;
    tx.commit().await?;
    Ok(CustomerSegment::new(customer_id, row, run.as_ref(), Utc::now().date_naive()))
}

/// `POST /customers/{id}/segment/recalculate`: one customer now, against the last run's
/// breakpoints, as-of date and window, with the nightly SQL; a changed segment writes its event.
/// 409 `segments_not_calculated` before the organization's first run.
#[tracing::instrument(name = "segments.recalculate_customer", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn recalculate_customer(app: &App, caller: &Caller, customer_id: Uuid) -> Result<CustomerSegment, ApiError> {
    caller.require(Scope::SegmentsWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    store::lock_scores(&tx).await?;
    if !crate::customers::store::hold(&tx, customer_id).await? {
        return Err(ApiError::NotFound);
    }
    let run = store::last_run(&tx).await?.ok_or(ApiError::Conflict {
        code: "segments_not_calculated",
        detail: "The organization has no segment run yet: POST /segments/recalculate first.",
    })?;
    let after = match store::rescore_one(&tx, customer_id, &run).await? {
        Some((before, after)) => {
            if before.segment_code != after.segment_code {
                let data = json!({
                    "customer_id": customer_id,
                    "old_segment": before.segment_code,
                    "new_segment": after.segment_code,
                    "run_id": run.run_id,
                });
                events::record_one(&tx, types::CUSTOMER_SEGMENT_CHANGED, customer_id, data).await?;
            }
            Some(after)
        }
        None => None,
    };
    app.commit(tx).await?;
    Ok(CustomerSegment::new(customer_id, after, Some(&run), Utc::now().date_naive()))
}

/// `GET /segments`: count, share and average lifetime value of every segment, and the last run.
#[tracing::instrument(name = "segments.overview", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn overview(app: &App, caller: &Caller) -> Result<SegmentsOverview, ApiError> {
    caller.require(Scope::SegmentsRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let found = store::summary(&tx).await?;
    let last_run = store::last_run(&tx).await?;
    tx.commit().await?;
    let customers_total: i64 = found.iter().map(|s| s.customers).sum();
    let codes = SegmentCode::ALL.iter().map(|code| Some(*code)).chain(std::iter::once(None));
    let segments = codes
        .filter_map(|code| {
            let summary = found.iter().find(|s| s.segment_code == code).cloned();
            match (code, summary) {
                (_, Some(summary)) => Some(summary),
                (Some(code), None) => Some(SegmentSummary {
                    segment_code: Some(code),
                    customers: 0,
                    share: 0.0,
                    average_lifetime_value: crate::money::Money::ZERO,
                }),
                (None, None) => None,
            }
        })
        .map(|mut summary| {
            if customers_total > 0 {
                summary.share = (summary.customers as f64 / customers_total as f64 * 10_000.0).round() / 10_000.0;
            }
            summary
        })
        .collect();
    Ok(SegmentsOverview { customers_total, segments, last_run })
}

/// `GET /segments/{segment_code}/customers`: ids (and scores) in id order, keyset pages; a page
/// reads a bounded number of rows, so it may be short (see [`store::MEMBERS_READ_PER_PAGE`]).
#[tracing::instrument(name = "segments.members", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn members(
    app: &App,
    caller: &Caller,
    segment: SegmentCode,
    page: PageRequest,
) -> Result<ListResponse<SegmentMember>, ApiError> {
    caller.require(Scope::SegmentsRead)?;
    let after = page.after_id()?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let read = store::members(&tx, segment, after, page.fetch_limit(), store::MEMBERS_READ_PER_PAGE).await?;
    tx.commit().await?;
    Ok(page.page_read_through(read.members, |member| member.customer_id, read.read_through))
}
