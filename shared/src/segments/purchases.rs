//! Purchases: the completed orders RFM scores, as the orders service reports them. An order
//! counts once; a cancellation removes it for good, even when it arrives first.

use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::TenantTx;
use crate::money::Money;

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
/// tombstone so its late completion is ignored. Answers the customer whose completed purchase
/// was cancelled, `None` when nothing counted changed.
pub async fn record_cancelled(
    tx: &TenantTx<'_>,
    order_id: Uuid,
    customer_id: Uuid,
    cancelled_at: DateTime<Utc>,
) -> anyhow::Result<Option<Uuid>> {
    let cancelled = tx
        .query_opt(
            "INSERT INTO purchases (organization_id, order_id, customer_id, total_amount, occurred_at, status, cancelled_at) \
             VALUES (current_organization_id(), $1, $2, 0, $3, 'cancelled', $3) \
             ON CONFLICT (organization_id, order_id) DO UPDATE \
                 SET status = 'cancelled', cancelled_at = EXCLUDED.cancelled_at, updated_at = now() \
                 WHERE purchases.status = 'completed' \
             RETURNING customer_id",
            &[&order_id, &customer_id, &cancelled_at],
        )
        .await
        .context("cancelling the purchase")?;
    Ok(cancelled.map(|row| row.get(0)))
}
