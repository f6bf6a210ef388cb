//! Segment SQL: the run's set-based statements, the run records and the reads. Every function
//! runs inside a tenant transaction; row-level security scopes the rows.
//!
//! A run works over a *source* of per-customer totals with the columns `customer_id`,
//! `window_orders`, `window_amount`, `last_purchase_at` (and the lifetime totals): either
//! `customer_segments` itself (the incremental path) or `rfm_totals`, a temporary table
//! aggregated from the purchases (the from-scratch path). Over either, the same pass reads the
//! measures the breakpoints are placed on (by [`super::rfm::Breakpoints`]), and the same SQL
//! scores the rows, looking up what [`super::rfm`] computed.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::model::{CustomerSegmentRow, SegmentMember, SegmentRun, SegmentSummary};
use super::rfm::{self, Breakpoints, RunBreakpoints, Scores};
use super::SegmentCode;
use crate::db::{borrow_params, Params, RowAddress, TenantTx};
use crate::money::Money;

/// Longest statement and lock wait of a run's transactions (the runtime role's defaults are a
/// few seconds).
pub const RUN_STATEMENT_TIMEOUT: Duration = Duration::from_secs(600);
const RUN_LOCK_TIMEOUT: &str = "60s";
/// Memory for the run's sorts (the breakpoints sort a million values in memory, not on disk).
const RUN_WORK_MEM: &str = "256MB";

/// Lets this transaction's statements and lock waits run as long as a whole organization needs,
/// gives its sorts the memory they need, plans each statement for its own parameters (a run's
/// changes number from none to every row), compiles nothing (JIT took longer to compile the
/// run's statements than it saved), and commits without waiting for the disk. A run only
/// derives rows from the purchases, atomically: a crash within the moments after its commit
/// loses the run whole, and the next one recomputes it, while its wait on the disk was a tenth
/// of a 100-organization night (5.6 ms of about 60 ms per organization here). Had the relay
/// published one of its events in those moments, before the relay's own commit (which waits,
/// and so makes the run durable too), the next run announces the same change again under a
/// new event id.
pub async fn allow_long_run(tx: &TenantTx<'_>) -> anyhow::Result<()> {
    tx.execute(
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true), \
             set_config('work_mem', $3, true), set_config('plan_cache_mode', 'force_custom_plan', true), \
             set_config('jit', 'off', true), set_config('synchronous_commit', 'off', true)",
        &[&format!("{}ms", RUN_STATEMENT_TIMEOUT.as_millis()), &RUN_LOCK_TIMEOUT, &RUN_WORK_MEM],
    )
    .await
    .context("setting up the run's transaction")?;
    Ok(())
}

/// The transaction's organization for every row a statement writes, computed once per statement
/// (an init plan) where a bare call is made for each row: 0.26 µs a row, a quarter of a second
/// over a million-row first run.
const ORGANIZATION: &str = "(SELECT current_organization_id())";

/// The lock of the organization's scores and segments (`$1`: its id as text).
const SCORES_LOCK_SQL: &str = "pg_advisory_xact_lock(hashtextextended('segment runs ' || $1::text, 0))";

/// The key of the lock on the organization's kept totals (`$1`: its id as text): a run takes it
/// alone, the consumer shared (`purchases::hold_totals`).
pub(super) const TOTALS_LOCK_KEY_SQL: &str = "hashtextextended('segment totals ' || $1::text, 0)";

/// Serializes the writers of the organization's scores and segments (runs, single
/// recalculations) until the transaction ends.
pub async fn lock_scores(tx: &TenantTx<'_>) -> anyhow::Result<()> {
    tx.execute(&format!("SELECT {SCORES_LOCK_SQL}"), &[&tx.organization_id().to_string()])
        .await
        .context("waiting for the organization's segment writers")?;
    Ok(())
}

/// Takes [`lock_scores`], then keeps the consumer from adding to the organization's totals until
/// the transaction ends (it takes the same lock shared, see `purchases::hold_totals`).
pub async fn lock_scores_and_totals(tx: &TenantTx<'_>) -> anyhow::Result<()> {
    tx.execute(
        &format!("SELECT {SCORES_LOCK_SQL}, pg_advisory_xact_lock({TOTALS_LOCK_KEY_SQL})"),
        &[&tx.organization_id().to_string()],
    )
    .await
    .context("waiting for the organization's segment writers and consumers")?;
    Ok(())
}

/// The start of the window the organization's kept totals count from; `None` before its first
/// run.
pub async fn window(tx: &TenantTx<'_>) -> anyhow::Result<Option<DateTime<Utc>>> {
    let row = tx.query_opt("SELECT counted_from FROM segment_windows", &[]).await.context("reading the window")?;
    Ok(row.map(|row| row.get(0)))
}

/// The completed purchases of `[$1, $2)` summed per customer (`customer_id`, `orders`,
/// `amount`): what slid out of the window between two runs.
pub const SLID_OUT_SQL: &str = "SELECT customer_id, count(*)::int AS orders, sum(total_amount) AS amount \
     FROM purchases WHERE status = 'completed' AND occurred_at >= $1 AND occurred_at < $2 GROUP BY customer_id";

/// Takes the completed purchases of `[from, to)` out of the window totals: what slid out of the
/// window since the last run (by lookups, see [`prefer_lookups`]). Answers the customers touched.
pub async fn slide_window(tx: &TenantTx<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<u64> {
    if to <= from {
        return Ok(0);
    }
    tx.execute(
        &format!(
            "UPDATE customer_segments s SET window_orders = s.window_orders - slid.orders, \
                 window_amount = s.window_amount - slid.amount, updated_at = now() \
             FROM ({SLID_OUT_SQL}) AS slid WHERE s.customer_id = slid.customer_id"
        ),
        &[&from, &to],
    )
    .await
    .context("taking out what slid out of the window")
}

/// Makes the transaction's joins lookups per row instead of a hash of the whole organization,
/// which the planner prefers but which costs more for the tenth of the rows an incremental run
/// changes (1,000,000 rows, one organization: the slid day's 11,000 customers 0.22 s looked up
/// against 0.58-0.85 s hashed; 95,000 scores 0.57 s against 0.80 s, when they were joined by
/// key). Its only joins are those: the slide's, and the changed rows' by address.
pub async fn prefer_lookups(tx: &TenantTx<'_>) -> anyhow::Result<()> {
    tx.execute("SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)", &[])
        .await
        .context("setting up the incremental run's joins")?;
    Ok(())
}

/// Aggregates every purchase of the organization into the temporary table `rfm_totals`: the
/// totals a customer's row would hold if the consumer had kept them since `window_start`.
/// (`CREATE TABLE AS` may aggregate in parallel, where `INSERT … SELECT` may not.)
pub async fn stage_totals_from_purchases(tx: &TenantTx<'_>, window_start: DateTime<Utc>) -> anyhow::Result<u64> {
    let sql = format!(
        "CREATE TEMPORARY TABLE rfm_totals ON COMMIT DROP AS \
         SELECT customer_id, window_orders, window_amount, total_orders, lifetime_value, \
                CASE WHEN total_orders > 0 THEN round(lifetime_value / total_orders, 2) ELSE 0 END \
                    AS average_order_value, last_purchase_at \
         FROM (SELECT customer_id, \
                   (count(*) FILTER (WHERE status = 'completed' AND occurred_at >= {window_start}))::int AS window_orders, \
                   coalesce(sum(total_amount) FILTER (WHERE status = 'completed' AND occurred_at >= {window_start}), 0) \
                       AS window_amount, \
                   (count(*) FILTER (WHERE status = 'completed'))::int AS total_orders, \
                   coalesce(sum(total_amount) FILTER (WHERE status = 'completed'), 0) AS lifetime_value, \
                   max(occurred_at) FILTER (WHERE status = 'completed') AS last_purchase_at \
               FROM purchases GROUP BY customer_id) AS aggregated",
        window_start = "$1::timestamptz"
    );
    tx.execute(&sql, &[&window_start]).await.context("aggregating the purchases")
}

/// The recency in days of a source row as of `$as_of` ([`rfm::recency_days`] in SQL).
fn recency_days_sql(as_of: &str) -> String {
    format!("greatest(0, {as_of}::date - (t.last_purchase_at AT TIME ZONE 'UTC')::date)")
}

/// Customers per segment code (`None`: not scored yet).
pub type SegmentCounts = Vec<(Option<SegmentCode>, i64)>;

/// Where a run's per-customer totals come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Totals {
    /// `customer_segments`, kept by the consumer (the incremental path).
    Kept,
    /// `rfm_totals`, aggregated from the purchases (the from-scratch path).
    Aggregated,
}

impl Totals {
    fn table(self) -> &'static str {
        match self {
            Self::Kept => "customer_segments",
            Self::Aggregated => "rfm_totals",
        }
    }
}

/// What a run scores against, read in one pass over its totals.
#[derive(Debug)]
pub struct Population {
    /// Customers with a purchase in the window.
    pub scored: i64,
    pub breakpoints: Option<RunBreakpoints>,
    /// Over kept totals: every row, with what the last run wrote into it.
    pub rows: Option<KeptRows>,
}

/// The rows of kept totals, by address: valid in the run's transaction, which keeps the consumer
/// and every other segment writer waiting.
#[derive(Debug)]
pub struct KeptRows {
    rows: Vec<KeptRow>,
}

/// A row of kept totals: its window measures in hundredths ([`rfm::Measures::hundredths`];
/// `None`: nothing in the window) and the scores it holds ([`HELD_SQL`]).
#[derive(Debug)]
struct KeptRow {
    address: RowAddress,
    measures: Option<[i64; 3]>,
    held: Option<i32>,
}

/// The scores a row holds, as one number: null for a row no run has scored, 0 for null scores
/// (nothing in the window), else the three digits recency, frequency, monetary (`455`). A row's
/// segment and flags follow from its scores under the rules version of the run that wrote them,
/// and a run under another version starts from scratch, so the scores tell the whole
/// assessment a row holds. [`held`] is the same number in Rust.
const HELD_SQL: &str = "CASE WHEN t.segment_code IS NOT NULL \
     THEN coalesce(t.rfm_recency * 100 + t.rfm_frequency * 10 + t.rfm_monetary, 0) END";

/// [`HELD_SQL`] of a row written with `scores`.
fn held(scores: Option<Scores>) -> i32 {
    scores.map_or(0, |s| i32::from(s.recency) * 100 + i32::from(s.frequency) * 10 + i32::from(s.monetary))
}

/// The segment of a row that holds `held` ([`HELD_SQL`]); `None` for a row no run has scored.
fn held_segment(held: Option<i32>) -> Option<SegmentCode> {
    let digit = |n: i32| u8::try_from(n % 10).unwrap_or_default();
    held.map(|held| {
        let scores = (held > 0).then(|| Scores {
            recency: digit(held / 100),
            frequency: digit(held / 10),
            monetary: digit(held),
        });
        rfm::assessment(scores).segment
    })
}

/// The rows an incremental run rewrites, as the columns [`write_score_changes`] sends.
#[derive(Debug, Default)]
pub struct ScoreChanges {
    addresses: Vec<RowAddress>,
    scores: [Vec<Option<i32>>; 3],
    segments: Vec<SegmentCode>,
    vip: Vec<bool>,
    at_risk: Vec<bool>,
    old_segments: Vec<Option<SegmentCode>>,
}

impl ScoreChanges {
    fn push(&mut self, address: RowAddress, assessment: &rfm::Assessment, old_segment: Option<SegmentCode>) {
        let scores = assessment.scores.map(|s| [s.recency, s.frequency, s.monetary]);
        self.addresses.push(address);
        for (i, column) in self.scores.iter_mut().enumerate() {
            column.push(scores.map(|scores| i32::from(scores[i])));
        }
        self.segments.push(assessment.segment);
        self.vip.push(assessment.is_vip);
        self.at_risk.push(assessment.is_at_risk);
        self.old_segments.push(old_segment);
    }
}

impl KeptRows {
    /// Assesses every row under `breakpoints`, looking its scores up as the scoring SQL does
    /// ([`rfm::Lookups`]): the rows whose scores differ from those they hold, and the customers
    /// per segment code once those are written.
    pub fn changes(&self, breakpoints: Option<&RunBreakpoints>) -> (ScoreChanges, SegmentCounts) {
        let lookups = breakpoints.map(RunBreakpoints::lookups);
        let mut changes = ScoreChanges::default();
        let mut counts: SegmentCounts = Vec::new();
        for row in &self.rows {
            let scores = lookups.as_ref().zip(row.measures).map(|(lookups, measures)| lookups.scores(measures));
            let assessment = rfm::assessment(scores);
            if row.held != Some(held(scores)) {
                changes.push(row.address, &assessment, held_segment(row.held));
            }
            match counts.iter_mut().find(|(code, _)| *code == Some(assessment.segment)) {
                Some((_, n)) => *n += 1,
                None => counts.push((Some(assessment.segment), 1)),
            }
        }
        (changes, counts)
    }
}

/// The breakpoints of the window population of `totals` and its size; over kept totals also
/// the [`KeptRows`], so a run can assess every row itself and write only those that change.
/// One pass reads the measures of every row, and [`Breakpoints::of_hundredths`] places the
/// breakpoints over those with a purchase in the window, so they have one definition, in exact
/// arithmetic. The recency is computed here from the newest purchase's time
/// ([`rfm::recency_days`]): 10,000 rows read in 9.6 ms so, in 11.4 ms with the date difference
/// computed by the database.
pub async fn population(tx: &TenantTx<'_>, totals: Totals, as_of: NaiveDate) -> anyhow::Result<Population> {
    let kept = match totals {
        Totals::Kept => format!(", array_agg(t.ctid), array_agg({HELD_SQL})"),
        Totals::Aggregated => String::new(),
    };
    let sql = format!(
        "SELECT array_agg(t.last_purchase_at), array_agg(t.window_orders), \
             array_agg((t.window_amount * 100)::bigint) {kept} \
         FROM {} t",
        totals.table(),
    );
    let row = tx.query_one(&sql, &[]).await.context("reading the window population")?;
    let last: Vec<Option<DateTime<Utc>>> = array_column(&row, 0);
    let orders: Vec<i32> = array_column(&row, 1);
    let cents: Vec<i64> = array_column(&row, 2);
    let measures = last.into_iter().zip(orders).zip(cents).map(|((last, orders), cents)| {
        (orders > 0)
            .then(|| [last.map_or(0, |last| rfm::recency_days(as_of, last)) * 100, i64::from(orders) * 100, cents])
    });
    let (scored, breakpoints, rows) = match totals {
        Totals::Kept => {
            let addresses: Vec<RowAddress> = array_column(&row, 3);
            let held: Vec<Option<i32>> = array_column(&row, 4);
            drop(row);
            let rows: Vec<KeptRow> = addresses
                .into_iter()
                .zip(measures)
                .zip(held)
                .map(|((address, measures), held)| KeptRow { address, measures, held })
                .collect();
            let (scored, breakpoints) = window_population(rows.iter().filter_map(|row| row.measures));
            (scored, breakpoints, Some(KeptRows { rows }))
        }
        Totals::Aggregated => {
            drop(row);
            let window: Vec<[i64; 3]> = measures.flatten().collect();
            let (scored, breakpoints) = window_population(window.iter().copied());
            (scored, breakpoints, None)
        }
    };
    Ok(Population { scored, breakpoints, rows })
}

/// The size and the breakpoints of a window population, in hundredths.
fn window_population(window: impl Iterator<Item = [i64; 3]> + Clone) -> (i64, Option<RunBreakpoints>) {
    (window.clone().count() as i64, RunBreakpoints::of(window))
}

/// The elements of the array in column `i` of `row` (none for a null array: no rows aggregated).
fn array_column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Vec<T> {
    row.get::<_, Option<Vec<T>>>(i).unwrap_or_default()
}

/// The rows of `source` (aliased `t`) that pass `filter`, with their new scores `r`, `f`, `m`,
/// `new_segment`, `new_vip` and `new_risk`, against the breakpoints `$1` to `$3` (see
/// [`scoring_params`]) as of `$4`. Each row's measures are computed once, in hundredths, so that
/// they are compared as whole numbers: scoring a million rows took 1.8 s comparing `numeric`
/// values and recomputing the recency at each use, 1.0-1.3 s so. Each score is then looked up
/// among the steps between breakpoints, and the segment and flags among the score triples
/// ([`rfm::score_sql`], [`rfm::assessment_sql`]). (`OFFSET 0` keeps each level computed once
/// per row: the scores read the measures, the rules the scores.)
fn scored_sql(source: &str, filter: &str) -> String {
    let days = recency_days_sql("$4");
    let r = rfm::score_sql("t.r_hundredths", "($1::bigint[])");
    let f = rfm::score_sql("t.f_hundredths", "($2::bigint[])");
    let m = rfm::score_sql("t.m_hundredths", "($3::bigint[])");
    let (segment, vip, risk) = rfm::assessment_sql("sc.r", "sc.f", "sc.m");
    format!(
        "SELECT sc.*, {segment} AS new_segment, {vip} AS new_vip, {risk} AS new_risk \
         FROM (SELECT t.*, CASE WHEN t.window_orders > 0 THEN {r} END AS r, \
                      CASE WHEN t.window_orders > 0 THEN {f} END AS f, \
                      CASE WHEN t.window_orders > 0 THEN {m} END AS m \
               FROM (SELECT t.*, {days}::bigint * 100 AS r_hundredths, \
                         t.window_orders::bigint * 100 AS f_hundredths, \
                         (t.window_amount * 100)::bigint AS m_hundredths \
                     FROM {source} t WHERE {filter} OFFSET 0) t \
               OFFSET 0) sc"
    )
}

/// What [`scored_sql`] scores against: the lookups of recency, frequency and monetary.
fn scoring_params(breakpoints: Option<&RunBreakpoints>) -> [Option<Vec<i64>>; 3] {
    breakpoints.map_or([None, None, None], |b| b.lookups().0.map(Some))
}

/// The breakpoints as a run records them.
fn breakpoint_params(breakpoints: Option<&RunBreakpoints>) -> [Option<Vec<Decimal>>; 3] {
    breakpoints.map_or([None, None, None], |b| [&b.recency, &b.frequency, &b.monetary].map(|m| Some(m.0.to_vec())))
}

/// What a run wrote.
#[derive(Debug)]
pub struct Written {
    pub rows: u64,
    pub events: u64,
    /// The segment changes among the rows written.
    pub moves: Vec<SegmentMove>,
}

/// Customers moving from one segment code to another (`None`: not scored).
#[derive(Debug, Clone, Copy)]
pub struct SegmentMove {
    pub from: Option<SegmentCode>,
    pub to: Option<SegmentCode>,
    pub customers: i64,
}

/// Writes the incremental path's [`ScoreChanges`] into the rows of `customer_segments` at their
/// addresses, with their events. The old segments come from Rust (`held_segment`), so each
/// row is found once, by the update.
pub async fn write_score_changes(tx: &TenantTx<'_>, changes: ScoreChanges, run_id: Uuid) -> anyhow::Result<Written> {
    let written = "written AS ( \
         UPDATE customer_segments s SET rfm_recency = c.r, rfm_frequency = c.f, rfm_monetary = c.m, \
             segment_code = c.segment_code, is_vip = c.is_vip, is_at_risk = c.is_at_risk, run_id = $9, \
             calculated_at = now(), updated_at = now() \
         FROM unnest($1::tid[], $2::int[], $3::int[], $4::int[], $5::text[], $6::boolean[], $7::boolean[], $8::text[]) \
             AS c(row_address, r, f, m, segment_code, is_vip, is_at_risk, old_segment) \
         WHERE s.ctid = c.row_address \
         RETURNING s.customer_id, c.old_segment, c.segment_code)";
    let ScoreChanges { addresses, scores: [r, f, m], segments, vip, at_risk, old_segments } = changes;
    let params: Params = vec![
        Box::new(addresses),
        Box::new(r),
        Box::new(f),
        Box::new(m),
        Box::new(segments),
        Box::new(vip),
        Box::new(at_risk),
        Box::new(old_segments),
        Box::new(run_id),
    ];
    write_changes(tx, written, params, run_id, true).await.context("writing the changed scores")
}

/// Scores every row of `rfm_totals` (the from-scratch path) and writes those whose totals,
/// scores, segment or flags differ from `customer_segments`, creating missing rows, with their
/// events when `announce`. The totals are analyzed first, for the join's plan; a baseline that
/// only inserts them needs no statistics (the analysis cost 13 ms of each 130 ms first run over
/// 10,000 customers).
pub async fn write_all_changes(
    tx: &TenantTx<'_>,
    breakpoints: Option<&RunBreakpoints>,
    as_of: NaiveDate,
    run_id: Uuid,
    announce: bool,
) -> anyhow::Result<Written> {
    tx.execute("ANALYZE rfm_totals", &[]).await.context("analyzing the totals")?;
    let changed = format!(
        "SELECT n.customer_id, n.window_orders, n.window_amount, n.total_orders, n.lifetime_value, \
             n.average_order_value, n.last_purchase_at, n.r, n.f, n.m, n.new_segment AS segment_code, \
             n.new_vip AS is_vip, n.new_risk AS is_at_risk, s.segment_code AS old_segment \
         FROM ({}) n LEFT JOIN customer_segments s ON s.customer_id = n.customer_id \
         WHERE s.customer_id IS NULL \
            OR (n.window_orders, n.window_amount, n.total_orders, n.lifetime_value, n.average_order_value, \
                n.last_purchase_at, n.r, n.f, n.m, n.new_segment, n.new_vip, n.new_risk) IS DISTINCT FROM \
               (s.window_orders, s.window_amount, s.total_orders, s.lifetime_value, s.average_order_value, \
                s.last_purchase_at, s.rfm_recency, s.rfm_frequency, s.rfm_monetary, s.segment_code, s.is_vip, \
                s.is_at_risk)",
        scored_sql("rfm_totals", "true")
    );
    // Every changed row is inserted or updated: the rows written are the changed ones.
    let written = format!(
        "changed AS MATERIALIZED ({changed}), \
         upserted AS (INSERT INTO customer_segments AS s ({WRITTEN_COLUMNS}) \
         SELECT {ORGANIZATION}, customer_id, window_orders, window_amount, total_orders, lifetime_value, \
             average_order_value, last_purchase_at, r, f, m, segment_code, is_vip, is_at_risk, $5, now() \
         FROM changed ORDER BY customer_id \
         ON CONFLICT (organization_id, customer_id) DO UPDATE SET \
             window_orders = EXCLUDED.window_orders, window_amount = EXCLUDED.window_amount, \
             total_orders = EXCLUDED.total_orders, lifetime_value = EXCLUDED.lifetime_value, \
             average_order_value = EXCLUDED.average_order_value, last_purchase_at = EXCLUDED.last_purchase_at, \
             rfm_recency = EXCLUDED.rfm_recency, rfm_frequency = EXCLUDED.rfm_frequency, \
             rfm_monetary = EXCLUDED.rfm_monetary, segment_code = EXCLUDED.segment_code, \
             is_vip = EXCLUDED.is_vip, is_at_risk = EXCLUDED.is_at_risk, run_id = EXCLUDED.run_id, \
             calculated_at = EXCLUDED.calculated_at, updated_at = now()), \
         written AS (SELECT customer_id, old_segment, segment_code FROM changed)"
    );
    let [r, f, m] = scoring_params(breakpoints);
    let params: Params = vec![Box::new(r), Box::new(f), Box::new(m), Box::new(as_of), Box::new(run_id)];
    write_changes(tx, &written, params, run_id, announce).await.context("writing the totals and scores")
}

/// Writes a run's changes in one statement: `written` (common table expressions, over the
/// parameters `params`, that write the rows and end with `written`: `customer_id`,
/// `old_segment` and `segment_code` of each row written), and, when `announce`, one
/// `customers.customer.segment_changed` event per changed segment goes to the outbox: the run's
/// [`Envelope`](crate::events::Envelope), given each event's id (time-ordered, as the ids of
/// events made in Rust: `time_ordered_uuid()`, migration V15) and customer. Answers the rows,
/// events and segment moves.
async fn write_changes(
    tx: &TenantTx<'_>,
    written: &str,
    mut params: Params,
    run_id: Uuid,
    announce: bool,
) -> anyhow::Result<Written> {
    let event_type = crate::events::types::CUSTOMER_SEGMENT_CHANGED;
    let nil = Uuid::nil();
    let group_prefix = crate::events::message_group(event_type, nil).trim_end_matches(&nil.to_string()).to_string();
    let envelope = crate::events::Envelope::new(tx.organization_id(), event_type, json!({ "run_id": run_id }));
    let time = envelope.time;
    let envelope = serde_json::to_value(envelope).context("serializing the event envelope")?;
    let next = params.len() + 1;
    let [announce_p, kind, group, envelope_p, occurred] =
        std::array::from_fn::<String, 5, _>(|i| format!("${}", next + i));
    params.extend::<Params>(vec![
        Box::new(announce),
        Box::new(event_type),
        Box::new(group_prefix),
        Box::new(envelope),
        Box::new(time),
    ]);
    let sql = format!(
        "WITH {written}, \
         announced AS ( \
             INSERT INTO outbox (event_id, organization_id, event_type, message_group, payload, occurred_at) \
             SELECT e.id, {ORGANIZATION}, {kind}::text, {group}::text || c.customer_id::text, \
                 {envelope_p}::jsonb || jsonb_build_object('id', e.id, 'data', ({envelope_p}::jsonb -> 'data') \
                     || jsonb_build_object('customer_id', c.customer_id, 'old_segment', c.old_segment, \
                         'new_segment', c.segment_code)), \
                 {occurred} \
             FROM written c CROSS JOIN LATERAL (SELECT time_ordered_uuid() AS id, c.customer_id AS k) e \
             WHERE {announce_p}::boolean AND c.segment_code IS DISTINCT FROM c.old_segment \
             ORDER BY c.customer_id \
             RETURNING 1) \
         SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM announced), \
             array_agg(moves.old_segment), array_agg(moves.segment_code), array_agg(moves.customers) \
         FROM (SELECT old_segment, segment_code, count(*) AS customers FROM written \
               WHERE segment_code IS DISTINCT FROM old_segment GROUP BY 1, 2) AS moves",
    );
    let row = tx.query_one(&sql, &borrow_params(&params)).await?;
    let (rows, events): (i64, i64) = (row.get(0), row.get(1));
    let from: Option<Vec<Option<SegmentCode>>> = row.get(2);
    let to: Option<Vec<Option<SegmentCode>>> = row.get(3);
    let customers: Option<Vec<i64>> = row.get(4);
    let moves = from
        .unwrap_or_default()
        .into_iter()
        .zip(to.unwrap_or_default())
        .zip(customers.unwrap_or_default())
        .map(|((from, to), customers)| SegmentMove { from, to, customers })
        .collect();
    Ok(Written { rows: rows.unsigned_abs(), events: events.unsigned_abs(), moves })
}

/// The columns a from-scratch run writes: the totals, the scores and the run.
const WRITTEN_COLUMNS: &str = "organization_id, customer_id, window_orders, window_amount, total_orders, \
    lifetime_value, average_order_value, last_purchase_at, rfm_recency, rfm_frequency, rfm_monetary, segment_code, \
    is_vip, is_at_risk, run_id, calculated_at";

/// A baseline over an organization with no segment rows (no window yet): inserts every row of
/// `rfm_totals`, scored, in customer order (no comparison, no conflicts to look for). Answers the
/// rows written per segment code.
pub async fn insert_baseline(
    tx: &TenantTx<'_>,
    breakpoints: Option<&RunBreakpoints>,
    as_of: NaiveDate,
    run_id: Uuid,
) -> anyhow::Result<SegmentCounts> {
    let sql = format!(
        "WITH written AS ( \
             INSERT INTO customer_segments ({WRITTEN_COLUMNS}) \
             SELECT {ORGANIZATION}, customer_id, window_orders, window_amount, total_orders, \
                 lifetime_value, average_order_value, last_purchase_at, r, f, m, new_segment, new_vip, new_risk, \
                 $5, now() \
             FROM ({}) n ORDER BY customer_id \
             RETURNING segment_code) \
         SELECT segment_code, count(*) FROM written GROUP BY segment_code ORDER BY 1",
        scored_sql("rfm_totals", "true")
    );
    let [r, f, m] = scoring_params(breakpoints);
    let rows = tx.query(&sql, &[&r, &f, &m, &as_of, &run_id]).await.context("writing the first scores")?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Customers per segment code, counted over the rows.
pub async fn segment_counts(tx: &TenantTx<'_>) -> anyhow::Result<SegmentCounts> {
    let rows = tx
        .query("SELECT segment_code, count(*) FROM customer_segments GROUP BY segment_code ORDER BY 1", &[])
        .await
        .context("counting segments")?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Records `run`, and that the kept totals now count from its window start: called once a run has
/// written its rows.
pub async fn record_run(tx: &TenantTx<'_>, run: &SegmentRun) -> anyhow::Result<()> {
    let [r, f, m] = breakpoint_params(run.breakpoints.as_ref().map(|b| b.to_run()).as_ref());
    tx.execute(
        "WITH moved AS ( \
             INSERT INTO segment_windows (organization_id, counted_from) VALUES (current_organization_id(), $6) \
             ON CONFLICT (organization_id) DO UPDATE SET counted_from = EXCLUDED.counted_from, updated_at = now()) \
         INSERT INTO segment_runs (run_id, organization_id, trigger, mode, as_of, window_days, window_start, \
             rules_version, recency_breakpoints, frequency_breakpoints, monetary_breakpoints, customers_scored, \
             customers_total, segment_counts, rows_written, changes, events, started_at, finished_at, duration_ms) \
         VALUES ($1, current_organization_id(), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19)",
        &[
            &run.run_id,
            &run.trigger,
            &run.mode,
            &run.as_of,
            &run.window_days,
            &run.window_start,
            &run.rules_version,
            &r,
            &f,
            &m,
            &run.customers_scored,
            &run.customers_total,
            &run.segment_counts,
            &run.rows_written,
            &run.changes,
            &run.events,
            &run.started_at,
            &run.finished_at,
            &run.duration_ms,
        ],
    )
    .await
    .context("recording the run")?;
    Ok(())
}

fn run_from_row(row: &Row) -> SegmentRun {
    let breakpoints = |column: &str| -> Option<Breakpoints> {
        let values: Option<Vec<Decimal>> = row.get(column);
        values.and_then(|values| <[Decimal; 4]>::try_from(values).ok()).map(Breakpoints)
    };
    let breakpoints = match (
        breakpoints("recency_breakpoints"),
        breakpoints("frequency_breakpoints"),
        breakpoints("monetary_breakpoints"),
    ) {
        (Some(recency), Some(frequency), Some(monetary)) => {
            Some(super::model::BreakpointsView::from(RunBreakpoints { recency, frequency, monetary }))
        }
        _ => None,
    };
    SegmentRun {
        run_id: row.get("run_id"),
        trigger: row.get("trigger"),
        mode: row.get("mode"),
        as_of: row.get("as_of"),
        window_days: row.get("window_days"),
        window_start: row.get("window_start"),
        rules_version: row.get("rules_version"),
        breakpoints,
        customers_scored: row.get("customers_scored"),
        customers_total: row.get("customers_total"),
        segment_counts: row.get::<_, Value>("segment_counts"),
        rows_written: row.get("rows_written"),
        changes: row.get("changes"),
        events: row.get("events"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        duration_ms: row.get("duration_ms"),
    }
}

/// The organization's latest run.
pub async fn last_run(tx: &TenantTx<'_>) -> anyhow::Result<Option<SegmentRun>> {
    let row = tx
        .query_opt("SELECT * FROM segment_runs ORDER BY finished_at DESC, run_id DESC LIMIT 1", &[])
        .await
        .context("reading the last run")?;
    Ok(row.as_ref().map(run_from_row))
}

const ROW_COLUMNS: &str = "customer_id, segment_code, rfm_recency, rfm_frequency, rfm_monetary, rfm_score, \
    window_orders, window_amount, total_orders, lifetime_value, average_order_value, last_purchase_at, is_vip, \
    is_at_risk, calculated_at, run_id";

fn segment_row(row: &Row) -> CustomerSegmentRow {
    CustomerSegmentRow {
        customer_id: row.get("customer_id"),
        segment_code: row.get("segment_code"),
        rfm_recency: row.get("rfm_recency"),
        rfm_frequency: row.get("rfm_frequency"),
        rfm_monetary: row.get("rfm_monetary"),
        rfm_score: row.get("rfm_score"),
        window_orders: row.get("window_orders"),
        window_amount: Money::from_decimal(row.get("window_amount")),
        total_orders: row.get("total_orders"),
        lifetime_value: Money::from_decimal(row.get("lifetime_value")),
        average_order_value: Money::from_decimal(row.get("average_order_value")),
        last_purchase_at: row.get("last_purchase_at"),
        is_vip: row.get("is_vip"),
        is_at_risk: row.get("is_at_risk"),
        calculated_at: row.get("calculated_at"),
        run_id: row.get("run_id"),
    }
}

/// A customer's segment row, `None` when the customer has no purchase fact.
pub async fn find(tx: &TenantTx<'_>, customer_id: Uuid) -> anyhow::Result<Option<CustomerSegmentRow>> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM customer_segments WHERE customer_id = $1");
    let row = tx.query_opt(&sql, &[&customer_id]).await.context("reading a segment")?;
    Ok(row.as_ref().map(segment_row))
}

/// Rescores one customer against a run's breakpoints and as-of date, the nightly SQL filtered
/// to that row; answers the row before and after (`None`: no purchase fact).
pub async fn rescore_one(
    tx: &TenantTx<'_>,
    customer_id: Uuid,
    run: &SegmentRun,
) -> anyhow::Result<Option<(CustomerSegmentRow, CustomerSegmentRow)>> {
    let Some(before) = find(tx, customer_id).await? else {
        return Ok(None);
    };
    let [r, f, m] = scoring_params(run.breakpoints.as_ref().map(|b| b.to_run()).as_ref());
    let sql = format!(
        "UPDATE customer_segments s SET rfm_recency = n.r, rfm_frequency = n.f, rfm_monetary = n.m, \
             segment_code = n.new_segment, is_vip = n.new_vip, is_at_risk = n.new_risk, run_id = $6, \
             calculated_at = now(), updated_at = now() \
         FROM ({}) n \
         WHERE s.customer_id = $5 AND n.customer_id = $5 \
           AND (n.r, n.f, n.m, n.new_segment, n.new_vip, n.new_risk) IS DISTINCT FROM \
               (s.rfm_recency, s.rfm_frequency, s.rfm_monetary, s.segment_code, s.is_vip, s.is_at_risk)",
        scored_sql("customer_segments", "t.customer_id = $5")
    );
    tx.execute(&sql, &[&r, &f, &m, &run.as_of, &customer_id, &run.run_id]).await.context("rescoring a customer")?;
    let after = find(tx, customer_id).await?.context("the segment row vanished")?;
    Ok(Some((before, after)))
}

/// Per segment code: customers and their average lifetime value.
pub async fn summary(tx: &TenantTx<'_>) -> anyhow::Result<Vec<SegmentSummary>> {
    let rows = tx
        .query(
            "SELECT segment_code, count(*), round(avg(lifetime_value), 2) FROM customer_segments \
             GROUP BY segment_code",
            &[],
        )
        .await
        .context("summarizing segments")?;
    Ok(rows
        .iter()
        .map(|row| SegmentSummary {
            segment_code: row.get(0),
            customers: row.get(1),
            share: 0.0,
            average_lifetime_value: Money::from_decimal(row.get::<_, Option<Decimal>>(2).unwrap_or_default()),
        })
        .collect())
}

/// Rows one page of a segment's customers reads at most. No index leads by segment code: it
/// would make every segment change a non-HOT update and cost a first run a third of its insert.
/// A page walks the organization's rows in id order instead, so a rare segment answers a short,
/// even empty, page whose cursor continues after the last row read.
pub const MEMBERS_READ_PER_PAGE: i64 = 20_000;

/// A page of a segment's customers (see [`members`]).
#[derive(Debug)]
pub struct Members {
    pub members: Vec<SegmentMember>,
    /// The last id read, when the page found fewer members than asked for in exactly
    /// `read_at_most` rows and rows remain after it: the walk goes on after it.
    pub read_through: Option<Uuid>,
}

/// A page of segment `$2`'s customers: the members among the first `$4` rows of the
/// organization `$1` after the id `$3`, in id order, at most `$5` of them (the limit stops the
/// walk once they are found); then, when fewer are found and the walk read all `$4` rows but
/// not the organization's last, the last id it read, flagged. One statement, so both parts
/// read the same snapshot.
pub const MEMBERS_SQL: &str = "WITH members AS MATERIALIZED ( \
        SELECT customer_id, rfm_recency, rfm_frequency, rfm_monetary, lifetime_value \
        FROM (SELECT customer_id, segment_code, rfm_recency, rfm_frequency, rfm_monetary, lifetime_value \
              FROM customer_segments WHERE organization_id = $1 AND customer_id > $3 \
              ORDER BY customer_id LIMIT $4) AS walked \
        WHERE segment_code = $2 ORDER BY customer_id LIMIT $5) \
    SELECT customer_id, rfm_recency, rfm_frequency, rfm_monetary, lifetime_value, false AS last_read FROM members \
    UNION ALL \
    SELECT customer_id, NULL, NULL, NULL, NULL, true \
    FROM (SELECT customer_id FROM customer_segments WHERE organization_id = $1 AND customer_id > $3 \
          ORDER BY customer_id OFFSET $4 - 1 LIMIT 1) AS stop \
    WHERE (SELECT count(*) FROM members) < $5 \
      AND EXISTS (SELECT 1 FROM customer_segments more \
                  WHERE more.organization_id = $1 AND more.customer_id > stop.customer_id) \
    ORDER BY 6, 1";

/// Makes the transaction's reads of `customer_segments` walk its primary key. With statistics
/// from before a first run, the planner chose to read and sort a whole organization (1,000,000
/// rows: 0.64 s, 50 MB on disk) rather than walk 20,000 rows of the key (15 ms).
pub async fn walk_by_key(tx: &TenantTx<'_>) -> anyhow::Result<()> {
    tx.execute("SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)", &[])
        .await
        .context("setting up the walk of a segment's customers")?;
    Ok(())
}

/// Up to `limit` customers of a segment after `after`, in id order, from at most `read_at_most`
/// of the organization's rows.
pub async fn members(
    tx: &TenantTx<'_>,
    segment: SegmentCode,
    after: Option<Uuid>,
    limit: i64,
    read_at_most: i64,
) -> anyhow::Result<Members> {
    walk_by_key(tx).await?;
    let rows = tx
        .query(MEMBERS_SQL, &[&tx.organization_id(), &segment, &after.unwrap_or(Uuid::nil()), &read_at_most, &limit])
        .await
        .context("listing a segment's customers")?;
    let (last_read, members): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|row| row.get::<_, bool>(5));
    Ok(Members {
        members: members
            .into_iter()
            .map(|row| SegmentMember {
                customer_id: row.get(0),
                rfm_recency: row.get(1),
                rfm_frequency: row.get(2),
                rfm_monetary: row.get(3),
                lifetime_value: Money::from_decimal(row.get(4)),
            })
            .collect(),
        read_through: last_read.first().map(|row| row.get(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_a_row_holds_follows_from_the_scores_it_holds() {
        assert_eq!(held_segment(None), None, "a row no run has scored");
        assert_eq!(held_segment(Some(held(None))), Some(rfm::NO_PURCHASE_SEGMENT));
        for recency in 1..=5 {
            for frequency in 1..=5 {
                for monetary in 1..=5 {
                    let scores = Scores { recency, frequency, monetary };
                    assert_eq!(held_segment(Some(held(Some(scores)))), Some(rfm::assessment(Some(scores)).segment));
                }
            }
        }
    }
}
