//! RFM scoring, the rules in one place: the window, the breakpoints, the scores, the rule table
//! and the flags. The nightly SQL only looks up what these definitions computed: the score of
//! each step between breakpoints ([`score_sql`]), and the segment and flags of each of the 125
//! score triples ([`assessment_sql`]). [`score_population`] is the whole computation in plain
//! Rust, which the tests hold the SQL to.
//!
//! - **Window.** A run has an as-of date and a window of `window_days` (default 365): the
//!   completed purchases with `occurred_at >= as_of - window_days` (midnight UTC) count. A
//!   purchase dated after the as-of date still counts (recency 0).
//! - **Measures.** Recency: whole days from the newest purchase's UTC date to the as-of date
//!   (never below 0). Frequency: orders in the window. Monetary: their sum.
//! - **Breakpoints.** Per organization and measure, the 20/40/60/80th percentiles of the
//!   window population (customers with at least one purchase in it), interpolated between
//!   neighbours as PostgreSQL's `percentile_cont` does and rounded to two decimals.
//! - **Scores**, 1 to 5, 5 best: 1 + the breakpoints the value beats (is above; for recency,
//!   below) + half the breakpoints it equals, rounded down. The score is a function of the value
//!   alone, so equal values always score the same. A value equal to k breakpoints could sit in
//!   any of the k + 1 bins they bound: it gets the middle one, rounded down (a value equal to one
//!   breakpoint stays below it). So with no contrast at all (one customer, or everyone spending
//!   the same) every score is 3; with three customers the scores are 1, 3 and 5; with ten
//!   distinct values each score is given to two customers. When most customers bought once, the
//!   once-buyers share frequency 2 and any second order lifts a customer to 4.
//! - **No purchase in the window** (bought only before it, or every order cancelled): no scores
//!   (null), segment `lost`, no flags. A customer without any purchase has no segment at all.

use std::ops::RangeInclusive;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::SegmentCode;

/// The window when a run does not say otherwise.
pub const DEFAULT_WINDOW_DAYS: u32 = 365;
/// The longest window a run accepts.
pub const MAX_WINDOW_DAYS: u32 = 3650;

/// Version of [`RULES`] and of the flags: runs record it, and a run whose previous run used
/// another version recomputes from scratch.
pub const RULES_VERSION: i32 = 1;

/// The percentiles the breakpoints are taken at, in fifths: the 20/40/60/80th.
pub const PERCENTILE_FIFTHS: [i64; 4] = [1, 2, 3, 4];

/// The first instant of the window of a run as of `as_of`.
pub fn window_start(as_of: NaiveDate, window_days: u32) -> DateTime<Utc> {
    (as_of - TimeDelta::days(i64::from(window_days))).and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// `value` in hundredths (whole for two decimals), if it fits an `i64`.
fn hundredths(value: Decimal) -> Option<i64> {
    (value * Decimal::ONE_HUNDRED).to_i64()
}

/// Which way a measure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// The four breakpoints (20/40/60/80th percentiles) of one measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(value_type = Vec<String>)]
pub struct Breakpoints(pub [Decimal; 4]);

impl Breakpoints {
    /// The breakpoints of a population's values (two decimals at most); `None` for an empty
    /// population.
    pub fn of(values: &[Decimal]) -> Option<Self> {
        let mut hundredths: Vec<i64> = values.iter().map(|v| hundredths(*v).expect("hundredths within i64")).collect();
        Self::of_hundredths(&mut hundredths)
    }

    /// The breakpoints of values in hundredths (left sorted): the value at position `p x (n - 1)`
    /// of the sorted values, interpolated linearly between the two neighbours of a fractional
    /// position, as PostgreSQL's `percentile_cont` does but in exact arithmetic, rounded to two
    /// decimals. `None` for an empty population.
    pub fn of_hundredths(values: &mut [i64]) -> Option<Self> {
        let last = i128::try_from(values.len()).ok()? - 1;
        if last < 0 {
            return None;
        }
        values.sort_unstable();
        Some(Self(PERCENTILE_FIFTHS.map(|fifths| {
            let position = i128::from(fifths) * last;
            let below = usize::try_from(position / 5).expect("an index");
            let (low, part) = (i128::from(values[below]), position % 5);
            let high = if part == 0 { low } else { i128::from(values[below + 1]) };
            // low + part/5 (high - low), in hundredths.
            let value = Decimal::from_i128_with_scale(5 * low + part * (high - low), 0) / Decimal::from(500);
            value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        })))
    }

    /// The score of `value`: 1 + breakpoints beaten + half the breakpoints equalled (down).
    pub fn score(&self, value: Decimal, better: Better) -> u8 {
        let beaten = self.0.iter().filter(|b| if better == Better::Higher { value > **b } else { value < **b }).count();
        let tied = self.0.iter().filter(|b| value == **b).count();
        u8::try_from(1 + beaten + tied / 2).expect("at most 5")
    }

    /// The score of every value, in nine steps: below the first breakpoint, on it, between it
    /// and the next, on that one, …, above the last (a step between two equal breakpoints is
    /// empty). Each is [`Breakpoints::score`] of a value inside the step.
    pub fn steps(&self, better: Better) -> [u8; 9] {
        let nudge = Decimal::new(1, 3);
        let [b1, b2, b3, b4] = self.0;
        [b1 - nudge, b1, b1 + nudge, b2, b2 + nudge, b3, b3 + nudge, b4, b4 + nudge]
            .map(|value| self.score(value, better))
    }

    /// What [`score_sql`] looks a value up in: the four breakpoints in hundredths (exact: they
    /// have two decimals), then the nine [`Breakpoints::steps`].
    pub fn lookup(&self, better: Better) -> Vec<i64> {
        let points = self.0.map(|b| hundredths(b).unwrap_or(i64::MAX));
        points.into_iter().chain(self.steps(better).map(i64::from)).collect()
    }
}

/// The score SQL of [`Breakpoints::score`]: which of the nine steps the value in hundredths
/// `value` (an SQL expression) falls in, and that step's score, both from `lookup`, a
/// `bigint[]` expression of [`Breakpoints::lookup`]. The score itself is computed only in Rust.
pub fn score_sql(value: &str, lookup: &str) -> String {
    let mut sql = "CASE".to_string();
    for i in 1..=4 {
        let (below, on) = (3 + 2 * i, 4 + 2 * i);
        sql += &format!(
            " WHEN {value} < {lookup}[{i}] THEN {lookup}[{below}] WHEN {value} = {lookup}[{i}] THEN {lookup}[{on}]"
        );
    }
    sql + &format!(" ELSE {lookup}[13] END::int")
}

/// Recency, frequency and monetary scores, 1 to 5 each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Scores {
    pub recency: u8,
    pub frequency: u8,
    pub monetary: u8,
}

/// One line of the rule table: the segment of the score triples within all three ranges.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rule {
    pub id: &'static str,
    pub segment: SegmentCode,
    #[schema(value_type = String)]
    #[serde(serialize_with = "range_text")]
    pub recency: RangeInclusive<u8>,
    #[schema(value_type = String)]
    #[serde(serialize_with = "range_text")]
    pub frequency: RangeInclusive<u8>,
    #[schema(value_type = String)]
    #[serde(serialize_with = "range_text")]
    pub monetary: RangeInclusive<u8>,
    pub meaning: &'static str,
}

fn range_text<S: serde::Serializer>(range: &RangeInclusive<u8>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{}-{}", range.start(), range.end()))
}

impl Rule {
    pub fn matches(&self, scores: Scores) -> bool {
        self.recency.contains(&scores.recency)
            && self.frequency.contains(&scores.frequency)
            && self.monetary.contains(&scores.monetary)
    }
}

/// The rule table, version [`RULES_VERSION`]: the first rule that matches decides, and the last
/// matches everything, so every triple has exactly one segment.
pub const RULES: &[Rule] = &[
    Rule {
        id: "champions",
        segment: SegmentCode::Champions,
        recency: 4..=5,
        frequency: 4..=5,
        monetary: 4..=5,
        meaning: "bought recently, often, and spend the most",
    },
    Rule {
        id: "loyal",
        segment: SegmentCode::Loyal,
        recency: 3..=5,
        frequency: 3..=5,
        monetary: 1..=5,
        meaning: "buy often and not long ago",
    },
    Rule {
        id: "new",
        segment: SegmentCode::New,
        recency: 4..=5,
        frequency: 1..=1,
        monetary: 1..=5,
        meaning: "one of the fewest orders, very recently",
    },
    Rule {
        id: "potential_loyalist",
        segment: SegmentCode::PotentialLoyalist,
        recency: 3..=5,
        frequency: 1..=2,
        monetary: 1..=5,
        meaning: "recent, with few orders yet",
    },
    Rule {
        id: "at_risk_frequent",
        segment: SegmentCode::AtRisk,
        recency: 1..=2,
        frequency: 3..=5,
        monetary: 1..=5,
        meaning: "bought often, but not for a while",
    },
    Rule {
        id: "at_risk_valuable",
        segment: SegmentCode::AtRisk,
        recency: 1..=2,
        frequency: 1..=2,
        monetary: 3..=5,
        meaning: "spent well, but not for a while",
    },
    Rule {
        id: "lost",
        segment: SegmentCode::Lost,
        recency: 1..=5,
        frequency: 1..=5,
        monetary: 1..=5,
        meaning: "little, long ago",
    },
];

/// The segment of customers with no purchase in the window (and null scores).
pub const NO_PURCHASE_SEGMENT: SegmentCode = SegmentCode::Lost;
/// What the explanation names instead of a rule for them.
pub const NO_PURCHASE_RULE: &str = "no_purchase_in_window";

/// The rule that decides `scores`.
pub fn rule_for(scores: Scores) -> &'static Rule {
    RULES.iter().find(|rule| rule.matches(scores)).expect("the last rule matches everything")
}

/// Where a score triple sits in [`assessment_sql`]'s arrays (1-based, as SQL arrays are).
fn triple_index(r: &str, f: &str, m: &str) -> String {
    format!("(({r} - 1) * 25 + ({f} - 1) * 5 + {m})")
}

/// The segment, VIP and at-risk SQL of the integer score expressions `r`, `f` and `m`, looked
/// up in arrays of all 125 triples that [`rule_for`], [`is_vip`] and [`is_at_risk`] filled:
/// the rules are applied only in Rust. Null scores give [`NO_PURCHASE_SEGMENT`] and no flags.
pub fn assessment_sql(r: &str, f: &str, m: &str) -> (String, String, String) {
    let triples: Vec<Scores> = (1..=5)
        .flat_map(|recency| {
            (1..=5).flat_map(move |frequency| (1..=5).map(move |monetary| (recency, frequency, monetary)))
        })
        .map(|(recency, frequency, monetary)| Scores { recency, frequency, monetary })
        .collect();
    let array = |element: &dyn Fn(Scores) -> String, kind: &str| {
        format!("(ARRAY[{}]::{kind}[])", triples.iter().map(|t| element(*t)).collect::<Vec<_>>().join(","))
    };
    let index = triple_index(r, f, m);
    (
        format!(
            "coalesce({}[{index}], '{}')",
            array(&|t| format!("'{}'", rule_for(t).segment.as_str()), "text"),
            NO_PURCHASE_SEGMENT.as_str()
        ),
        format!("coalesce({}[{index}], false)", array(&|t| is_vip(t).to_string(), "boolean")),
        format!("coalesce({}[{index}], false)", array(&|t| is_at_risk(t).to_string(), "boolean")),
    )
}

/// A big spender who buys often, whatever the recency: frequency 4+ and monetary 5.
pub fn is_vip(scores: Scores) -> bool {
    scores.frequency >= 4 && scores.monetary == 5
}

/// A valuable customer slipping away: recency 1-2 with frequency or monetary 4+.
pub fn is_at_risk(scores: Scores) -> bool {
    scores.recency <= 2 && (scores.frequency >= 4 || scores.monetary >= 4)
}

/// A completed or cancelled purchase, for [`score_population`].
#[derive(Debug, Clone)]
pub struct Purchase {
    pub customer: u32,
    pub amount: Decimal,
    pub occurred_at: DateTime<Utc>,
    pub completed: bool,
}

/// What a run decides for one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub scores: Option<Scores>,
    pub segment: SegmentCode,
    pub is_vip: bool,
    pub is_at_risk: bool,
}

/// The breakpoints a run used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunBreakpoints {
    pub recency: Breakpoints,
    pub frequency: Breakpoints,
    pub monetary: Breakpoints,
}

/// Window measures of one customer: recency days, orders, amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measures {
    pub recency_days: i64,
    pub orders: i64,
    pub amount: Decimal,
}

impl Measures {
    /// Recency, frequency and monetary in hundredths, whole numbers to place breakpoints among
    /// and look scores up with.
    pub fn hundredths(&self) -> [i64; 3] {
        [self.recency_days * 100, self.orders * 100, hundredths(self.amount).expect("hundredths within i64")]
    }
}

impl RunBreakpoints {
    /// Recency, frequency and monetary, each with the way it improves.
    fn measures(&self) -> [(&Breakpoints, Better); 3] {
        [(&self.recency, Better::Lower), (&self.frequency, Better::Higher), (&self.monetary, Better::Higher)]
    }

    pub fn scores(&self, measures: Measures) -> Scores {
        let [(r, r_better), (f, f_better), (m, m_better)] = self.measures();
        Scores {
            recency: r.score(Decimal::from(measures.recency_days), r_better),
            frequency: f.score(Decimal::from(measures.orders), f_better),
            monetary: m.score(measures.amount, m_better),
        }
    }

    /// The breakpoints of a window population, each customer's measures in hundredths
    /// ([`Measures::hundredths`]); `None` for an empty one.
    pub fn of(population: impl Iterator<Item = [i64; 3]> + Clone) -> Option<Self> {
        let of = |i: usize| Breakpoints::of_hundredths(&mut population.clone().map(|m| m[i]).collect::<Vec<_>>());
        Some(Self { recency: of(0)?, frequency: of(1)?, monetary: of(2)? })
    }

    /// [`Breakpoints::lookup`] of recency, frequency and monetary.
    pub fn lookups(&self) -> Lookups {
        Lookups(self.measures().map(|(breakpoints, better)| breakpoints.lookup(better)))
    }
}

/// A run's [`Breakpoints::lookup`]s of recency, frequency and monetary: what the scoring SQL
/// looks each customer up in ([`score_sql`]), and Rust too when it scores many.
#[derive(Debug, Clone)]
pub struct Lookups(pub [Vec<i64>; 3]);

impl Lookups {
    /// The scores of measures in hundredths ([`Measures::hundredths`]), as [`score_sql`] finds them.
    pub fn scores(&self, hundredths: [i64; 3]) -> Scores {
        let [recency, frequency, monetary] = [0, 1, 2].map(|i| looked_up(&self.0[i], hundredths[i]));
        Scores { recency, frequency, monetary }
    }
}

/// [`score_sql`] in Rust: the score of the step `value` falls in.
fn looked_up(lookup: &[i64], value: i64) -> u8 {
    let step = (0..4)
        .find_map(|i| match value.cmp(&lookup[i]) {
            std::cmp::Ordering::Less => Some(2 * i),
            std::cmp::Ordering::Equal => Some(2 * i + 1),
            std::cmp::Ordering::Greater => None,
        })
        .unwrap_or(8);
    u8::try_from(lookup[4 + step]).expect("a score")
}

/// The assessment of a customer with these measures (`None`: nothing in the window).
pub fn assess(breakpoints: Option<&RunBreakpoints>, measures: Option<Measures>) -> Assessment {
    assessment(breakpoints.zip(measures).map(|(breakpoints, measures)| breakpoints.scores(measures)))
}

/// The segment and flags of these scores (`None`: nothing in the window).
pub fn assessment(scores: Option<Scores>) -> Assessment {
    match scores {
        Some(scores) => Assessment {
            scores: Some(scores),
            segment: rule_for(scores).segment,
            is_vip: is_vip(scores),
            is_at_risk: is_at_risk(scores),
        },
        None => Assessment { scores: None, segment: NO_PURCHASE_SEGMENT, is_vip: false, is_at_risk: false },
    }
}

/// Days from the UTC date of `last` to `as_of`, never below 0.
pub fn recency_days(as_of: NaiveDate, last: DateTime<Utc>) -> i64 {
    (as_of - last.date_naive()).num_days().max(0)
}

/// The whole computation for one organization in plain Rust: every customer with a purchase,
/// with its assessment, and the breakpoints. The reference the SQL is tested against.
pub fn score_population(
    purchases: &[Purchase],
    as_of: NaiveDate,
    window_days: u32,
) -> (Option<RunBreakpoints>, std::collections::BTreeMap<u32, Assessment>) {
    let start = window_start(as_of, window_days);
    let mut measures: std::collections::BTreeMap<u32, Option<Measures>> = Default::default();
    let mut last: std::collections::BTreeMap<u32, DateTime<Utc>> = Default::default();
    for purchase in purchases {
        let entry = measures.entry(purchase.customer).or_insert(None);
        if purchase.completed {
            let newest = last.entry(purchase.customer).or_insert(purchase.occurred_at);
            *newest = (*newest).max(purchase.occurred_at);
            if purchase.occurred_at >= start {
                let m = entry.get_or_insert(Measures { recency_days: 0, orders: 0, amount: Decimal::ZERO });
                m.orders += 1;
                m.amount += purchase.amount;
            }
        }
    }
    for (customer, m) in measures.iter_mut() {
        if let Some(m) = m {
            m.recency_days = recency_days(as_of, last[customer]);
        }
    }
    let breakpoints = RunBreakpoints::of(measures.values().flatten().map(Measures::hundredths));
    let assessments = measures.into_iter().map(|(customer, m)| (customer, assess(breakpoints.as_ref(), m))).collect();
    (breakpoints, assessments)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A decimal from its literal text.
    macro_rules! dec {
        ($value:literal) => {
            <Decimal as std::str::FromStr>::from_str(stringify!($value)).unwrap()
        };
    }

    fn as_of() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()
    }

    fn days_ago(days: i64) -> DateTime<Utc> {
        (as_of() - TimeDelta::days(days)).and_hms_opt(15, 0, 0).unwrap().and_utc()
    }

    fn bought(customer: u32, days: i64, amount: Decimal) -> Purchase {
        Purchase { customer, amount, occurred_at: days_ago(days), completed: true }
    }

    fn scores(r: u8, f: u8, m: u8) -> Option<Scores> {
        Some(Scores { recency: r, frequency: f, monetary: m })
    }

    fn decimals(values: &[i64]) -> Vec<Decimal> {
        values.iter().map(|v| Decimal::from(*v)).collect()
    }

    #[test]
    fn breakpoints_interpolate_between_neighbours_as_percentile_cont_does() {
        let ten = Breakpoints::of(&decimals(&[10, 9, 8, 7, 6, 5, 4, 3, 2, 1])).unwrap();
        assert_eq!(ten.0, [dec!(2.80), dec!(4.60), dec!(6.40), dec!(8.20)]);
        let three = Breakpoints::of(&decimals(&[1, 2, 5])).unwrap();
        assert_eq!(three.0, [dec!(1.40), dec!(1.80), dec!(2.60), dec!(3.80)]);
        assert_eq!(Breakpoints::of(&[]), None);
    }

    #[test]
    fn ten_distinct_values_give_each_score_to_two_customers() {
        let breakpoints = Breakpoints::of(&decimals(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).unwrap();
        let higher: Vec<u8> = (1..=10).map(|v| breakpoints.score(Decimal::from(v), Better::Higher)).collect();
        assert_eq!(higher, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        let lower: Vec<u8> = (1..=10).map(|v| breakpoints.score(Decimal::from(v), Better::Lower)).collect();
        assert_eq!(lower, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
    }

    #[test]
    fn five_customers_with_the_same_order_count_get_the_same_frequency() {
        let orders = [1, 1, 2, 3, 3, 3, 3, 3, 4, 9];
        let breakpoints = Breakpoints::of(&decimals(&orders)).unwrap();
        let threes: Vec<u8> =
            orders.iter().filter(|o| **o == 3).map(|o| breakpoints.score(Decimal::from(*o), Better::Higher)).collect();
        assert_eq!(threes.len(), 5);
        assert!(threes.iter().all(|s| *s == threes[0]), "{threes:?}");
        // Breakpoints 1.80, 3, 3, 3.20: a 3 equals two of them and takes the middle of bins 2-4.
        assert_eq!(breakpoints.0, [dec!(1.80), dec!(3.00), dec!(3.00), dec!(3.20)]);
        assert_eq!(threes[0], 3);
        assert_eq!(breakpoints.score(dec!(4), Better::Higher), 5);
        assert_eq!(breakpoints.score(dec!(1), Better::Higher), 1);
    }

    #[test]
    fn a_value_on_a_single_breakpoint_stays_below_it() {
        let breakpoints = Breakpoints([dec!(1), dec!(2), dec!(3), dec!(4)]);
        assert_eq!(breakpoints.score(dec!(2), Better::Higher), 2);
        assert_eq!(breakpoints.score(dec!(2), Better::Lower), 3);
    }

    #[test]
    fn a_one_customer_organization_scores_three_three_three() {
        let (breakpoints, assessed) = score_population(&[bought(7, 3, dec!(50.00))], as_of(), 365);
        assert_eq!(breakpoints.unwrap().monetary.0, [dec!(50.00); 4]);
        let only = &assessed[&7];
        assert_eq!(only.scores, scores(3, 3, 3));
        assert_eq!(only.segment, SegmentCode::Loyal);
    }

    #[test]
    fn a_three_customer_organization_spreads_one_three_five() {
        let purchases = [
            bought(1, 200, dec!(10.00)),
            bought(2, 100, dec!(20.00)),
            bought(2, 90, dec!(20.00)),
            bought(3, 5, dec!(100.00)),
            bought(3, 6, dec!(100.00)),
            bought(3, 7, dec!(100.00)),
        ];
        let (_, assessed) = score_population(&purchases, as_of(), 365);
        assert_eq!(assessed[&1].scores, scores(1, 1, 1));
        assert_eq!(assessed[&2].scores, scores(3, 3, 3));
        assert_eq!(assessed[&3].scores, scores(5, 5, 5));
        assert_eq!(assessed[&1].segment, SegmentCode::Lost);
        assert_eq!(assessed[&3].segment, SegmentCode::Champions);
        assert!(assessed[&3].is_vip);
    }

    #[test]
    fn a_ten_customer_organization_gives_two_customers_each_score() {
        // Customer c bought c times, for c x 10.00 each time, most recently 10 x c days ago.
        let purchases: Vec<Purchase> = (1..=10u32)
            .flat_map(|c| (0..c).map(move |i| bought(c, 10 * i64::from(c) + i64::from(i), Decimal::from(c * 10))))
            .collect();
        let (_, assessed) = score_population(&purchases, as_of(), 365);
        let f: Vec<u8> = (1..=10).map(|c| assessed[&c].scores.unwrap().frequency).collect();
        let m: Vec<u8> = (1..=10).map(|c| assessed[&c].scores.unwrap().monetary).collect();
        let r: Vec<u8> = (1..=10).map(|c| assessed[&c].scores.unwrap().recency).collect();
        assert_eq!(f, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(m, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(r, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
        assert_eq!(assessed[&1].segment, SegmentCode::New);
        assert_eq!(assessed[&10].segment, SegmentCode::AtRisk);
        assert!(assessed[&10].is_at_risk);
    }

    #[test]
    fn all_equal_monetary_values_score_three_for_everyone() {
        let purchases: Vec<Purchase> = (1..=6u32).map(|c| bought(c, i64::from(c) * 20, dec!(25.00))).collect();
        let (breakpoints, assessed) = score_population(&purchases, as_of(), 365);
        assert_eq!(breakpoints.unwrap().monetary.0, [dec!(25.00); 4]);
        assert!(assessed.values().all(|a| a.scores.unwrap().monetary == 3));
    }

    #[test]
    fn purchases_only_outside_the_window_leave_null_scores_and_the_no_purchase_segment() {
        let purchases = [
            bought(1, 400, dec!(900.00)),
            Purchase { customer: 2, amount: dec!(50.00), occurred_at: days_ago(2), completed: false },
            bought(3, 10, dec!(20.00)),
        ];
        let (breakpoints, assessed) = score_population(&purchases, as_of(), 365);
        let none = Assessment { scores: None, segment: SegmentCode::Lost, is_vip: false, is_at_risk: false };
        assert_eq!(assessed[&1], none);
        assert_eq!(assessed[&2], none);
        // The population is customer 3 alone: the old 900.00 moves no breakpoint.
        assert_eq!(breakpoints.unwrap().monetary.0, [dec!(20.00); 4]);
        assert_eq!(assessed[&3].scores, scores(3, 3, 3));
        // A 5-day window leaves customer 3 out too.
        let (breakpoints, assessed) = score_population(&purchases, as_of(), 5);
        assert_eq!(breakpoints, None);
        assert_eq!(assessed[&3].segment, NO_PURCHASE_SEGMENT);
    }

    #[test]
    fn the_window_starts_at_midnight_utc_window_days_before_the_as_of_date() {
        assert_eq!(window_start(as_of(), 365).to_rfc3339(), "2025-06-30T00:00:00+00:00");
        assert_eq!(recency_days(as_of(), days_ago(-1)), 0);
        assert_eq!(recency_days(as_of(), days_ago(3)), 3);
    }

    #[test]
    fn every_one_of_the_125_score_triples_maps_to_exactly_one_segment() {
        let mut per_segment: HashMap<SegmentCode, usize> = HashMap::new();
        let mut per_rule: HashMap<&str, usize> = HashMap::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    let triple = Scores { recency: r, frequency: f, monetary: m };
                    let matching: Vec<&Rule> = RULES.iter().filter(|rule| rule.matches(triple)).collect();
                    assert!(!matching.is_empty(), "{triple:?} matches no rule");
                    let rule = rule_for(triple);
                    assert_eq!(rule.id, matching[0].id, "first match wins");
                    *per_segment.entry(rule.segment).or_default() += 1;
                    *per_rule.entry(rule.id).or_default() += 1;
                    // Spot checks of what each segment means.
                    match rule.segment {
                        SegmentCode::Champions => assert!(r >= 4 && f >= 4 && m >= 4),
                        SegmentCode::New => assert!(r >= 4 && f == 1),
                        SegmentCode::AtRisk | SegmentCode::Lost => assert!(r <= 2),
                        SegmentCode::Loyal | SegmentCode::PotentialLoyalist => assert!(r >= 3),
                    }
                }
            }
        }
        assert_eq!(per_segment.values().sum::<usize>(), 125);
        assert_eq!(
            [
                SegmentCode::Champions,
                SegmentCode::Loyal,
                SegmentCode::PotentialLoyalist,
                SegmentCode::New,
                SegmentCode::AtRisk,
                SegmentCode::Lost
            ]
            .map(|s| per_segment.get(&s).copied().unwrap_or(0)),
            [8, 37, 20, 10, 42, 8]
        );
        // Every rule decides at least one triple: none is shadowed by those above it.
        assert!(RULES.iter().all(|rule| per_rule.contains_key(rule.id)), "{per_rule:?}");
    }

    #[test]
    fn each_step_holds_the_score_of_every_value_in_it() {
        // Ties, and neighbours one hundredth apart (the step between them is empty).
        for points in [[1, 2, 3, 4], [300, 300, 300, 300], [100, 101, 101, 500], [0, 0, 7, 7]] {
            let breakpoints = Breakpoints(points.map(|h| Decimal::new(h, 2)));
            for better in [Better::Higher, Better::Lower] {
                let lookup = breakpoints.lookup(better);
                assert_eq!(lookup[..4], points);
                for value in -5..=510 {
                    let score = breakpoints.score(Decimal::new(value, 2), better);
                    assert_eq!(looked_up(&lookup, value), score, "{value} {points:?} {better:?}");
                }
            }
        }
        assert_eq!(
            score_sql("v", "l"),
            "CASE WHEN v < l[1] THEN l[5] WHEN v = l[1] THEN l[6] WHEN v < l[2] THEN l[7] WHEN v = l[2] THEN l[8] \
             WHEN v < l[3] THEN l[9] WHEN v = l[3] THEN l[10] WHEN v < l[4] THEN l[11] WHEN v = l[4] THEN l[12] \
             ELSE l[13] END::int"
        );
    }
}
