//! Credit accounts, usages, payments and movements as the API shows them, and the requests
//! that change them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::customers::fields;
use crate::error::{ApiError, Validator};
use crate::money::Money;

crate::text_enum! {
    CreditStatus { Pending => "pending", Approved => "approved", Suspended => "suspended", Cancelled => "cancelled" }
}

crate::text_enum! {
    /// `cancelled` is a released usage.
    UsageStatus { Pending => "pending", Paid => "paid", Overdue => "overdue", Cancelled => "cancelled" }
}

crate::text_enum! {
    PaymentMethod { Cash => "cash", Card => "card", Transfer => "transfer", Check => "check" }
}

crate::text_enum! {
    MovementKind {
        Opened => "opened",
        Approved => "approved",
        LimitChanged => "limit_changed",
        TermsChanged => "terms_changed",
        Suspended => "suspended",
        Reactivated => "reactivated",
        Cancelled => "cancelled",
        Used => "used",
        Released => "released",
        Payment => "payment",
        Overdue => "overdue",
    }
}

/// A customer's store-credit account.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreditAccount {
    pub credit_account_id: Uuid,
    pub customer_id: Uuid,
    pub credit_limit: Money,
    pub credit_used: Money,
    pub credit_available: Money,
    pub payment_term_days: i32,
    pub status: CreditStatus,
    /// What is owed on usages past their due date.
    pub overdue_amount: Money,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub suspension_reason: Option<String>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Credit used by one order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreditUsage {
    pub usage_id: Uuid,
    pub credit_account_id: Uuid,
    pub order_id: Uuid,
    pub amount: Money,
    /// How much of `amount` payments have settled.
    pub amount_paid: Money,
    pub status: UsageStatus,
    pub due_date: NaiveDate,
    pub paid_at: Option<DateTime<Utc>>,
    pub released_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub usage_seq: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreditPayment {
    pub payment_id: Uuid,
    pub credit_account_id: Uuid,
    pub amount: Money,
    pub payment_method: PaymentMethod,
    pub payment_reference: Option<String>,
    pub payment_date: NaiveDate,
    pub idempotency_key: Option<String>,
    pub recorded_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub payment_seq: i64,
}

/// One line of the statement.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Movement {
    pub movement_id: Uuid,
    pub kind: MovementKind,
    /// Effect on `credit_used`: positive for a use, negative for a release or payment.
    #[schema(value_type = String, example = "-50.00")]
    pub amount: String,
    /// `credit_used` replayed from the movements up to this one.
    pub running_credit_used: Money,
    /// `credit_used` as the account recorded it when the movement happened.
    pub credit_used_after: Money,
    pub credit_limit_after: Money,
    pub order_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub reason: Option<String>,
    pub actor: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(skip)]
    pub movement_seq: i64,
}

fn term_days(days: i64) -> Result<i32, String> {
    i32::try_from(days).ok().filter(|d| (0..=365).contains(d)).ok_or_else(|| "must be between 0 and 365 days".into())
}

/// Body of `POST /customers/{id}/credit`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountRequest {
    #[serde(deserialize_with = "crate::money::non_negative")]
    #[schema(schema_with = crate::money::non_negative_schema)]
    pub credit_limit: Money,
    /// Days from a use to its due date (default 30).
    #[schema(minimum = 0, maximum = 365)]
    #[serde(default, deserialize_with = "crate::input::optional_whole")]
    pub payment_term_days: Option<i64>,
}

pub struct NewAccount {
    pub credit_limit: Money,
    pub payment_term_days: i32,
}

impl OpenAccountRequest {
    pub fn validate(self) -> Result<NewAccount, ApiError> {
        let payment_term_days = term_days(self.payment_term_days.unwrap_or(30))
            .map_err(|message| ApiError::invalid("payment_term_days", message))?;
        Ok(NewAccount { credit_limit: self.credit_limit, payment_term_days })
    }
}

/// Body of `PATCH /customers/{id}/credit`: at least one of the two (`minProperties: 1`, which
/// `http::openapi::complete` states).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeAccountRequest {
    #[serde(default, deserialize_with = "crate::money::optional_non_negative")]
    #[schema(schema_with = crate::money::non_negative_schema)]
    pub credit_limit: Option<Money>,
    #[schema(minimum = 0, maximum = 365, nullable = false)]
    #[serde(default, deserialize_with = "crate::input::optional_whole")]
    pub payment_term_days: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AccountChange {
    pub credit_limit: Option<Money>,
    pub payment_term_days: Option<i32>,
}

impl ChangeAccountRequest {
    pub fn validate(self) -> Result<AccountChange, ApiError> {
        let credit_limit = self.credit_limit;
        let payment_term_days = self
            .payment_term_days
            .map(term_days)
            .transpose()
            .map_err(|message| ApiError::invalid("payment_term_days", message))?;
        if credit_limit.is_none() && payment_term_days.is_none() {
            return Err(ApiError::invalid("body", "give credit_limit, payment_term_days or both"));
        }
        Ok(AccountChange { credit_limit, payment_term_days })
    }
}

/// Optional body of `POST /customers/{id}/credit/approve`: the limit the approver approves.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Must equal the account's proposed `credit_limit`, or nothing is approved (409).
    #[serde(deserialize_with = "crate::money::non_negative")]
    #[schema(schema_with = crate::money::non_negative_schema)]
    pub credit_limit: Money,
}

/// Body of suspend, reactivate and cancel.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChangeRequest {
    #[schema(schema_with = fields::text::<{ fields::REASON_CHARS }>)]
    pub reason: String,
}

impl StatusChangeRequest {
    pub fn validate(self) -> Result<String, ApiError> {
        fields::bounded_text(&self.reason, fields::REASON_CHARS).map_err(|message| ApiError::invalid("reason", message))
    }
}

/// Body of `POST /customers/{id}/credit/check`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[schema(schema_with = crate::money::positive_schema)]
    pub amount: Money,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckResponse {
    /// Whether a use of `amount` would succeed now.
    pub available: bool,
    pub credit_available: Money,
    pub status: CreditStatus,
}

/// Body of `POST /customers/{id}/credit/usages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UseCreditRequest {
    pub order_id: Uuid,
    #[schema(schema_with = crate::money::positive_schema)]
    pub amount: Money,
}

/// Body of `POST /customers/{id}/credit/payments`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// Makes the request idempotent: the same id and body again answer the first payment.
    pub payment_id: Option<Uuid>,
    #[schema(schema_with = crate::money::positive_schema)]
    pub amount: Money,
    pub payment_method: PaymentMethod,
    #[schema(schema_with = fields::optional_text::<{ fields::REFERENCE_CHARS }>)]
    pub payment_reference: Option<String>,
    /// Defaults to today.
    pub payment_date: Option<NaiveDate>,
}

/// A validated payment; `payment_id` and `idempotency_key` make it idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub payment_id: Option<Uuid>,
    pub idempotency_key: Option<String>,
    pub amount: Money,
    pub payment_method: PaymentMethod,
    pub payment_reference: Option<String>,
    pub payment_date: Option<NaiveDate>,
}

impl PaymentRequest {
    pub fn validate(self, idempotency_key: Option<String>) -> Result<NewPayment, ApiError> {
        let mut v = Validator::default();
        let reference = v.check_opt("payment_reference", self.payment_reference, |r| {
            fields::bounded_text(&r, fields::REFERENCE_CHARS)
        });
        let key =
            v.check_opt("Idempotency-Key", idempotency_key, |k| fields::bounded_text(&k, fields::REFERENCE_CHARS));
        let payment_date = v.check_opt("payment_date", self.payment_date, |date| {
            let earliest = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a valid date");
            let latest = chrono::Utc::now().date_naive() + chrono::Days::new(1);
            (earliest..=latest)
                .contains(&date)
                .then_some(date)
                .ok_or_else(|| "must be between 2000-01-01 and today".into())
        });
        let (Some(payment_reference), Some(idempotency_key), Some(payment_date)) = (reference, key, payment_date)
        else {
            return Err(v.into_error());
        };
        Ok(NewPayment {
            payment_id: self.payment_id,
            idempotency_key,
            amount: self.amount,
            payment_method: self.payment_method,
            payment_reference,
            payment_date,
        })
    }
}

impl CreditPayment {
    /// Whether a repeated request describes this same payment.
    pub fn matches(&self, request: &NewPayment) -> bool {
        request.payment_id.is_none_or(|id| id == self.payment_id)
            && request.idempotency_key.as_ref().is_none_or(|key| Some(key) == self.idempotency_key.as_ref())
            && self.amount == request.amount
            && self.payment_method == request.payment_method
            && self.payment_reference == request.payment_reference
            && request.payment_date.is_none_or(|date| date == self.payment_date)
    }
}
