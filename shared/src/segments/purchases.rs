//! Purchases: the completed orders RFM scores, as the orders service reports them. An order
//! counts once; a cancellation removes it for good, even when it arrives first.
//!
//! The consumer keeps each customer's totals in `customer_segments` up to date in the same
//! transaction (orders and amount since the window start of `segment_windows`, lifetime orders
//! and value, the newest purchase), so the nightly run never aggregates the purchases again.

use anyhow::Context;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::db::TenantTx;
use crate::money::Money;

/// A purchase a cancellation took out (or a tombstone it left).
#[derive(Debug, Clone, Copy)]
pub struct Cancelled {
    pub customer_id: Uuid,
    pub total_amount: Decimal,
    pub occurred_at: DateTime<Utc>,
    /// Whether the purchase counted before (a completed one), rather than a new tombstone.
    pub counted: bool,
}

/// Waits until no run is moving the organization's window, and keeps runs from moving it until
/// this transaction ends (shared with other consumers). Taken before any customer row lock.
pub async fn hold_totals(tx: &TenantTx<'_>) -> anyhow::Result<()> {
    let sql = format!("SELECT pg_advisory_xact_lock_shared({})", super::store::TOTALS_LOCK_KEY_SQL);
    tx.execute(&sql, &[&tx.organization_id().to_string()]).await.context("waiting for the segment run's window")?;
    Ok(())
}

/// Records a completed order once; false when the order is already known (a duplicate, or
/// cancelled before its completion arrived).
pub async fn record_completed(
    tx: &TenantTx<'_>,
    order_id: Uuid,
    customer_id: Uuid,
    total_amount: Money,
    completed_at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let inserted = tx
        .execute(
            "INSERT INTO purchases (organization_id, order_id, customer_id, total_amount, occurred_at) \
             VALUES (current_organization_id(), $1, $2, $3, $4) ON CONFLICT (organization_id, order_id) DO NOTHING",
            &[&order_id, &customer_id, &total_amount, &completed_at],
        )
        .await
        .context("recording the purchase")?;
    Ok(inserted == 1)
}

/// Cancels an order: a completed purchase stops counting, and an unknown one is kept as a
/// tombstone so its late completion is ignored. `None` when the order was cancelled before.
pub async fn record_cancelled(
    tx: &TenantTx<'_>,
    order_id: Uuid,
    customer_id: Uuid,
    cancelled_at: DateTime<Utc>,
) -> anyhow::Result<Option<Cancelled>> {
    let cancelled = tx
        .query_opt(
            "INSERT INTO purchases (organization_id, order_id, customer_id, total_amount, occurred_at, status, cancelled_at) \
             VALUES (current_organization_id(), $1, $2, 0, $3, 'cancelled', $3) \
             ON CONFLICT (organization_id, order_id) DO UPDATE \
                 SET status = 'cancelled', cancelled_at = EXCLUDED.cancelled_at, updated_at = now() \
                 WHERE purchases.status = 'completed' \
             RETURNING customer_id, total_amount, occurred_at, NOT (xmax = 0) AS counted",
            &[&order_id, &customer_id, &cancelled_at],
        )
        .await
        .context("cancelling the purchase")?;
    Ok(cancelled.map(|row| Cancelled {
        customer_id: row.get(0),
        total_amount: row.get(1),
        occurred_at: row.get(2),
        counted: row.get(3),
    }))
}

/// Whether the purchase at `ts` (an SQL parameter) is inside the window the totals count from.
/// Before an organization's first run there is no window and no totals are kept: that run
/// computes them from the purchases.
fn in_window(ts: &str) -> String {
    format!("{ts}::timestamptz >= (SELECT counted_from FROM segment_windows)")
}

const KEPT: &str = "EXISTS (SELECT 1 FROM segment_windows)";

/// Adds a newly recorded completed purchase to its customer's totals (creating them).
pub async fn add_to_totals(
    tx: &TenantTx<'_>,
    customer_id: Uuid,
    total_amount: Money,
    occurred_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO customer_segments AS s (organization_id, customer_id, window_orders, window_amount, \
             total_orders, lifetime_value, average_order_value, last_purchase_at) \
         SELECT current_organization_id(), $1, w::int, CASE WHEN w THEN $2::numeric ELSE 0 END, 1, $2, $2, $3 \
         FROM (SELECT {} AS w) AS counted WHERE {KEPT} \
         ON CONFLICT (organization_id, customer_id) DO UPDATE SET \
             window_orders = s.window_orders + EXCLUDED.window_orders, \
             window_amount = s.window_amount + EXCLUDED.window_amount, \
             total_orders = s.total_orders + 1, \
             lifetime_value = s.lifetime_value + EXCLUDED.lifetime_value, \
             average_order_value = round((s.lifetime_value + EXCLUDED.lifetime_value) / (s.total_orders + 1), 2), \
             last_purchase_at = greatest(s.last_purchase_at, EXCLUDED.last_purchase_at), updated_at = now()",
        in_window("$3")
    );
    tx.execute(&sql, &[&customer_id, &total_amount, &occurred_at]).await.context("adding to the purchase totals")?;
    Ok(())
}

/// Takes a cancelled purchase out of its customer's totals; a tombstone only makes sure the
/// customer has a totals row, as a recomputation from the purchases would.
pub async fn take_out_of_totals(tx: &TenantTx<'_>, cancelled: Cancelled) -> anyhow::Result<()> {
    if !cancelled.counted {
        tx.execute(
            "INSERT INTO customer_segments (organization_id, customer_id) \
             SELECT current_organization_id(), $1 WHERE EXISTS (SELECT 1 FROM segment_windows) \
             ON CONFLICT (organization_id, customer_id) DO NOTHING",
            &[&cancelled.customer_id],
        )
        .await
        .context("noting the customer's purchase totals")?;
        return Ok(());
    }
    let sql = format!(
        "UPDATE customer_segments s SET \
             window_orders = s.window_orders - w::int, \
             window_amount = s.window_amount - CASE WHEN w THEN $2::numeric ELSE 0 END, \
             total_orders = s.total_orders - 1, \
             lifetime_value = s.lifetime_value - $2, \
             average_order_value = CASE WHEN s.total_orders > 1 \
                 THEN round((s.lifetime_value - $2) / (s.total_orders - 1), 2) ELSE 0 END, \
             last_purchase_at = (SELECT max(p.occurred_at) FROM purchases p \
                                 WHERE p.customer_id = $1 AND p.status = 'completed'), \
             updated_at = now() \
         FROM (SELECT {} AS w) AS counted \
         WHERE s.customer_id = $1 AND {KEPT}",
        in_window("$3")
    );
    tx.execute(&sql, &[&cancelled.customer_id, &cancelled.total_amount, &cancelled.occurred_at])
        .await
        .context("taking a cancelled purchase out of the totals")?;
    Ok(())
}
