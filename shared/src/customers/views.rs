//! Read models of a customer: the 360 view, the data-portability export and the loyalty card.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::addresses::{self, Address, AddressType};
use super::model::{Customer, CustomerStatus, CustomerType};
use crate::db::TenantTx;
use crate::error::ApiError;
use crate::loyalty::{Benefit, LoyaltyTier};
use crate::money::{self, Money};

/// `v_customer_360` plus default addresses.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Customer360 {
    pub customer_id: Uuid,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub customer_type: CustomerType,
    pub status: CustomerStatus,
    pub loyalty_tier: LoyaltyTier,
    pub tier_updated_at: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "money::optional_stored")]
    pub credit_limit: Option<Money>,
    #[serde(deserialize_with = "money::optional_stored")]
    pub credit_used: Option<Money>,
    #[serde(deserialize_with = "money::optional_stored")]
    pub credit_available: Option<Money>,
    pub payment_term_days: Option<i32>,
    pub credit_status: Option<String>,
    #[serde(deserialize_with = "money::stored")]
    pub overdue_amount: Money,
    pub segment_code: Option<String>,
    pub rfm_score: Option<i32>,
    #[serde(deserialize_with = "money::optional_stored")]
    pub lifetime_value: Option<Money>,
    pub is_vip: Option<bool>,
    pub is_at_risk: Option<bool>,
    pub last_purchase_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub erased_at: Option<DateTime<Utc>>,
    pub default_shipping_address: Option<Address>,
    pub default_billing_address: Option<Address>,
}

pub async fn customer_360(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<Customer360, ApiError> {
    let row = tx
        .query_opt("SELECT * FROM v_customer_360 WHERE customer_id = $1", &[&customer_id])
        .await
        .context("reading the 360 view")?
        .ok_or(ApiError::NotFound)?;
    let addresses = addresses::list(tx, customer_id).await?;
    let default_for = |kind: AddressType| {
        addresses
            .iter()
            .find(|a| a.is_default && (a.address_type == kind || a.address_type == AddressType::Both))
            .cloned()
    };
    Ok(Customer360 {
        customer_id,
        first_name: row.get("first_name"),
        last_name: row.get("last_name"),
        email: row.get("email"),
        phone: row.get("phone"),
        customer_type: row.get("customer_type"),
        status: row.get("status"),
        loyalty_tier: row.get("loyalty_tier"),
        tier_updated_at: row.get("tier_updated_at"),
        credit_limit: row.get("credit_limit"),
        credit_used: row.get("credit_used"),
        credit_available: row.get("credit_available"),
        payment_term_days: row.get("payment_term_days"),
        credit_status: row.get("credit_status"),
        overdue_amount: row.get("overdue_amount"),
        segment_code: row.get("segment_code"),
        rfm_score: row.get("rfm_score"),
        lifetime_value: row.get("lifetime_value"),
        is_vip: row.get("is_vip"),
        is_at_risk: row.get("is_at_risk"),
        last_purchase_at: row.get("last_purchase_at"),
        created_at: row.get("created_at"),
        erased_at: row.get("erased_at"),
        default_shipping_address: default_for(AddressType::Shipping),
        default_billing_address: default_for(AddressType::Billing),
    })
}

/// Everything held about a customer (data portability). Money is written as strings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerExport {
    pub exported_at: DateTime<Utc>,
    pub customer: Customer,
    pub addresses: Vec<Address>,
    #[schema(value_type = Vec<Object>)]
    pub status_history: Value,
    #[schema(value_type = Option<Object>)]
    pub credit_account: Value,
    #[schema(value_type = Vec<Object>)]
    pub credit_usages: Value,
    #[schema(value_type = Vec<Object>)]
    pub credit_payments: Value,
    #[schema(value_type = Option<Object>)]
    pub segment: Value,
    #[schema(value_type = Vec<Object>)]
    pub purchases: Value,
}

/// The related rows of a customer as JSON, in one statement.
const EXPORT_SQL: &str = "\
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
       'from_status', h.from_status, 'to_status', h.to_status, 'reason', h.reason,
       'changed_by', h.changed_by, 'changed_at', h.changed_at) ORDER BY h.changed_at, h.status_change_id), '[]')
     FROM customer_status_history h WHERE h.customer_id = $1) AS status_history,
  (SELECT jsonb_build_object(
       'credit_account_id', a.credit_account_id, 'credit_limit', a.credit_limit::text,
       'credit_used', a.credit_used::text, 'credit_available', a.credit_available::text,
       'payment_term_days', a.payment_term_days, 'status', a.status, 'approved_at', a.approved_at,
       'approved_by', a.approved_by, 'suspended_at', a.suspended_at, 'created_at', a.created_at)
     FROM credit_accounts a WHERE a.customer_id = $1) AS credit_account,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
       'usage_id', u.usage_id, 'order_id', u.order_id, 'amount', u.amount::text,
       'amount_paid', u.amount_paid::text, 'status', u.status, 'due_date', u.due_date,
       'paid_at', u.paid_at, 'released_at', u.released_at, 'created_at', u.created_at)
       ORDER BY u.created_at, u.usage_id), '[]')
     FROM credit_usages u JOIN credit_accounts a USING (credit_account_id)
     WHERE a.customer_id = $1) AS credit_usages,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
       'payment_id', p.payment_id, 'amount', p.amount::text, 'payment_method', p.payment_method,
       'payment_reference', p.payment_reference, 'payment_date', p.payment_date,
       'created_at', p.created_at) ORDER BY p.created_at, p.payment_id), '[]')
     FROM credit_payments p JOIN credit_accounts a USING (credit_account_id)
     WHERE a.customer_id = $1) AS credit_payments,
  (SELECT jsonb_build_object(
       'segment_code', s.segment_code, 'rfm_recency', s.rfm_recency, 'rfm_frequency', s.rfm_frequency,
       'rfm_monetary', s.rfm_monetary, 'rfm_score', s.rfm_score,
       'lifetime_value', s.lifetime_value::text, 'average_order_value', s.average_order_value::text,
       'total_orders', s.total_orders, 'calculated_at', s.calculated_at)
     FROM customer_segments s WHERE s.customer_id = $1) AS segment,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
       'order_id', o.order_id, 'total_amount', o.total_amount::text, 'status', o.status,
       'occurred_at', o.occurred_at, 'cancelled_at', o.cancelled_at) ORDER BY o.occurred_at, o.order_id), '[]')
     FROM purchases o WHERE o.customer_id = $1) AS purchases";

pub async fn export(tx: &TenantTx<'_>, customer: Customer) -> Result<CustomerExport, ApiError> {
    let addresses = addresses::list(tx, customer.customer_id).await?;
    let row =
        tx.query_one(EXPORT_SQL, &[&customer.customer_id]).await.context("reading the customer's related rows")?;
    let json = |column: &str| row.get::<_, Option<Value>>(column).unwrap_or(Value::Null);
    Ok(CustomerExport {
        exported_at: Utc::now(),
        addresses,
        status_history: json("status_history"),
        credit_account: json("credit_account"),
        credit_usages: json("credit_usages"),
        credit_payments: json("credit_payments"),
        segment: json("segment"),
        purchases: json("purchases"),
        customer,
    })
}

/// The loyalty card of `GET /customers/{id}/loyalty`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoyaltyCard {
    pub customer_id: Uuid,
    pub loyalty_tier: LoyaltyTier,
    pub tier_updated_at: Option<DateTime<Utc>>,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64, example = 1.5)]
    pub points_multiplier: rust_decimal::Decimal,
    pub benefits: &'static [Benefit],
    /// The purchase amount asked about, when `amount` was given.
    pub amount: Option<Money>,
    /// Points that purchase would earn under the tier: `floor(amount x multiplier)`.
    pub points: Option<i64>,
}

impl LoyaltyCard {
    pub fn of(customer: &Customer, amount: Option<Money>) -> Self {
        let tier = customer.loyalty_tier;
        Self {
            customer_id: customer.customer_id,
            loyalty_tier: tier,
            tier_updated_at: customer.tier_updated_at,
            points_multiplier: tier.points_multiplier(),
            benefits: tier.benefits(),
            amount,
            points: amount.map(|amount| tier.points_for(amount)),
        }
    }
}
