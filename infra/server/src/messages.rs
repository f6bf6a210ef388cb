//! The operations' answers as protobuf messages: the JSON API's field names and text forms.

use chrono::{DateTime, Utc};
use shared::credit::model::{CheckResponse, CreditAccount, CreditPayment, CreditUsage};
use shared::customers::model::Customer;
use shared::customers::views::LoyaltyCard;

use crate::proto;

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl From<Customer> for proto::Customer {
    fn from(c: Customer) -> Self {
        Self {
            customer_id: c.customer_id.to_string(),
            customer_type: c.customer_type.to_string(),
            first_name: c.first_name,
            last_name: c.last_name,
            email: c.email,
            phone: c.phone,
            document_type: c.document_type.map(|t| t.to_string()),
            document_number: c.document_number,
            birth_date: c.birth_date.map(|d| d.to_string()),
            status: c.status.to_string(),
            loyalty_tier: c.loyalty_tier.to_string(),
            preferred_language: c.preferred_language,
            marketing_consent: c.marketing_consent,
            tags: c.tags,
            version: c.version,
            created_at: time(c.created_at),
            updated_at: time(c.updated_at),
            last_purchase_at: c.last_purchase_at.map(time),
            erased_at: c.erased_at.map(time),
        }
    }
}

impl From<LoyaltyCard> for proto::LoyaltyTier {
    fn from(card: LoyaltyCard) -> Self {
        Self {
            customer_id: card.customer_id.to_string(),
            loyalty_tier: card.loyalty_tier.to_string(),
            tier_updated_at: card.tier_updated_at.map(time),
            points_multiplier: card.points_multiplier.normalize().to_string(),
            benefits: card.benefits.iter().map(|benefit| benefit.code.to_string()).collect(),
            amount: card.amount.map(|amount| amount.to_string()),
            points: card.points,
        }
    }
}

impl From<CreditAccount> for proto::CreditAccount {
    fn from(a: CreditAccount) -> Self {
        Self {
            credit_account_id: a.credit_account_id.to_string(),
            customer_id: a.customer_id.to_string(),
            status: a.status.to_string(),
            credit_limit: a.credit_limit.to_string(),
            credit_used: a.credit_used.to_string(),
            credit_available: a.credit_available.to_string(),
            overdue_amount: a.overdue_amount.to_string(),
            payment_term_days: a.payment_term_days,
            approved_at: a.approved_at.map(time),
            approved_by: a.approved_by,
            version: a.version,
        }
    }
}

impl From<CheckResponse> for proto::CheckCreditAvailabilityResponse {
    fn from(check: CheckResponse) -> Self {
        Self {
            available: check.available,
            credit_available: check.credit_available.to_string(),
            status: check.status.to_string(),
        }
    }
}

impl From<CreditUsage> for proto::CreditUsage {
    fn from(u: CreditUsage) -> Self {
        Self {
            usage_id: u.usage_id.to_string(),
            credit_account_id: u.credit_account_id.to_string(),
            order_id: u.order_id.to_string(),
            amount: u.amount.to_string(),
            amount_paid: u.amount_paid.to_string(),
            status: u.status.to_string(),
            due_date: u.due_date.to_string(),
            created_at: time(u.created_at),
        }
    }
}

impl From<CreditPayment> for proto::CreditPayment {
    fn from(p: CreditPayment) -> Self {
        Self {
            payment_id: p.payment_id.to_string(),
            credit_account_id: p.credit_account_id.to_string(),
            amount: p.amount.to_string(),
            payment_method: p.payment_method.to_string(),
            payment_reference: p.payment_reference,
            payment_date: p.payment_date.to_string(),
            created_at: time(p.created_at),
        }
    }
}
