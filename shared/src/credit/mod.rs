//! Store credit: the rules every transport calls. `credit_used` never leaves
//! `0..=credit_limit`, an order is charged at most once, a release happens at most once, and a
//! payment is recorded at most once per id or Idempotency-Key.

pub mod model;
pub mod routes;
pub mod store;

use chrono::NaiveDate;
use serde_json::json;
use uuid::Uuid;

use crate::app::{for_each_organization, App};
use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::events::{self, types, OutboxEvent};
use crate::money::Money;
use crate::paging::{ListResponse, PageRequest};
use model::{
    AccountChange, CheckResponse, CreditAccount, CreditPayment, CreditStatus, CreditUsage, Movement, MovementKind,
    NewAccount, NewPayment, UsageStatus,
};
use store::{AccountUpdate, UseRefused};

/// Whether a write made something new or found the identical earlier one.
#[derive(Debug)]
pub enum Written<T> {
    Created(T),
    Replayed(T),
}

/// The operations that change an account's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAction {
    Approve,
    Suspend,
    Reactivate,
    Cancel,
}

impl StatusAction {
    /// The status this action leads to from `current`: `Ok(None)` when the account is already
    /// there (a no-op), 409 when the transition is not allowed.
    pub fn target(self, current: CreditStatus) -> Result<Option<CreditStatus>, ApiError> {
        use CreditStatus::*;
        let (allowed_from, target): (&[CreditStatus], CreditStatus) = match self {
            Self::Approve => (&[Pending], Approved),
            Self::Suspend => (&[Approved], Suspended),
            Self::Reactivate => (&[Suspended], Approved),
            Self::Cancel => (&[Pending, Approved, Suspended], Cancelled),
        };
        if current == target && self != Self::Reactivate {
            Ok(None)
        } else if allowed_from.contains(&current) {
            Ok(Some(target))
        } else {
            Err(ApiError::Conflict {
                code: "invalid_status_transition",
                detail: "The account's current status does not allow this change.",
            })
        }
    }

    /// The scope the action needs: suspending is everyday work, the rest are approvals.
    fn scope(self) -> Scope {
        match self {
            Self::Suspend => Scope::CreditWrite,
            Self::Approve | Self::Reactivate | Self::Cancel => Scope::CreditApprove,
        }
    }

    fn movement(self) -> (MovementKind, &'static str) {
        match self {
            Self::Approve => (MovementKind::Approved, types::CREDIT_APPROVED),
            Self::Suspend => (MovementKind::Suspended, types::CREDIT_SUSPENDED),
            Self::Reactivate => (MovementKind::Reactivated, types::CREDIT_REACTIVATED),
            Self::Cancel => (MovementKind::Cancelled, types::CREDIT_CANCELLED),
        }
    }
}

fn account_event(account: &CreditAccount) -> serde_json::Value {
    json!({
        "customer_id": account.customer_id,
        "credit_account_id": account.credit_account_id,
        "status": account.status,
        "credit_limit": account.credit_limit,
        "credit_used": account.credit_used,
        "payment_term_days": account.payment_term_days,
    })
}

#[tracing::instrument(name = "credit.get_account", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn get_account(app: &App, caller: &Caller, customer_id: Uuid) -> Result<CreditAccount, ApiError> {
    caller.require(Scope::CreditRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let account = store::find_account(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(account)
}

/// Opens a pending account for an existing, not erased customer.
#[tracing::instrument(name = "credit.open", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn open(app: &App, caller: &Caller, customer_id: Uuid, new: NewAccount) -> Result<CreditAccount, ApiError> {
    caller.require(Scope::CreditWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    crate::customers::store::lock_not_erased(&tx, customer_id).await?;
    let account = store::insert_account(&tx, customer_id, new.credit_limit, new.payment_term_days).await?;
    store::record_movement(&tx, &account, MovementKind::Opened, None, &caller.subject).await?;
    events::record_one(&tx, types::CREDIT_OPENED, customer_id, account_event(&account)).await?;
    app.commit(tx).await?;
    Ok(account)
}

/// Approves a pending account, recording the caller as `approved_by`. With `stated_limit`, the
/// approval holds only if that is the limit proposed, so an approver never signs a limit unseen.
#[tracing::instrument(name = "credit.approve", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn approve(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    stated_limit: Option<Money>,
) -> Result<CreditAccount, ApiError> {
    change_status_of(app, caller, customer_id, StatusAction::Approve, None, stated_limit).await
}

/// Suspends, reactivates or cancels, with the reason recorded in the movement and the event.
#[tracing::instrument(name = "credit.change_status", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn change_status(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    action: StatusAction,
    reason: Option<&str>,
) -> Result<CreditAccount, ApiError> {
    change_status_of(app, caller, customer_id, action, reason, None).await
}

async fn change_status_of(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    action: StatusAction,
    reason: Option<&str>,
    stated_limit: Option<Money>,
) -> Result<CreditAccount, ApiError> {
    caller.require(action.scope())?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let account = store::lock_account(&tx, customer_id).await?;
    if stated_limit.is_some_and(|limit| limit != account.credit_limit) {
        return Err(ApiError::Conflict {
            code: "approval_limit_mismatch",
            detail: "The account's limit is not the one stated for approval; read the account again.",
        });
    }
    let Some(status) = action.target(account.status)? else {
        return Ok(account);
    };
    let update = AccountUpdate {
        status: Some(status),
        approved_by: (action == StatusAction::Approve).then_some(caller.subject.as_str()),
        suspension: match action {
            StatusAction::Suspend => Some(reason),
            StatusAction::Reactivate => Some(None),
            _ => None,
        },
        ..AccountUpdate::default()
    };
    let account = store::update_account(&tx, &account, update).await?;
    let (kind, event_type) = action.movement();
    store::record_movement(&tx, &account, kind, reason, &caller.subject).await?;
    let mut data = account_event(&account);
    data["reason"] = json!(reason);
    events::record_one(&tx, event_type, customer_id, data).await?;
    app.commit(tx).await?;
    Ok(account)
}

/// Changes the limit (never below what is used) and/or the payment term of new usages.
#[tracing::instrument(name = "credit.change_terms", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn change_terms(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    expected_version: Option<i32>,
    change: AccountChange,
) -> Result<CreditAccount, ApiError> {
    caller.require(Scope::CreditWrite)?;
    if change.credit_limit.is_some() {
        caller.require(Scope::CreditApprove)?;
    }
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let account = store::lock_account(&tx, customer_id).await?;
    if expected_version.is_some_and(|version| version != account.version) {
        return Err(ApiError::VersionMismatch);
    }
    if account.status == CreditStatus::Cancelled {
        return Err(ApiError::Conflict { code: "credit_cancelled", detail: "The account is cancelled." });
    }
    if change.credit_limit.is_some_and(|limit| limit < account.credit_used) {
        return Err(ApiError::Rejected {
            code: "limit_below_used",
            detail: format!("The limit cannot be below the credit in use, {}.", account.credit_used),
            extra: json!({ "credit_used": account.credit_used }),
        });
    }
    let limit_changed = change.credit_limit.filter(|limit| *limit != account.credit_limit);
    let terms_changed = change.payment_term_days.filter(|days| *days != account.payment_term_days);
    if limit_changed.is_none() && terms_changed.is_none() {
        return Ok(account);
    }
    let update =
        AccountUpdate { credit_limit: limit_changed, payment_term_days: terms_changed, ..AccountUpdate::default() };
    let account = store::update_account(&tx, &account, update).await?;
    if limit_changed.is_some() {
        store::record_movement(&tx, &account, MovementKind::LimitChanged, None, &caller.subject).await?;
        events::record_one(&tx, types::CREDIT_LIMIT_CHANGED, customer_id, account_event(&account)).await?;
    }
    if terms_changed.is_some() {
        store::record_movement(&tx, &account, MovementKind::TermsChanged, None, &caller.subject).await?;
    }
    app.commit(tx).await?;
    Ok(account)
}

/// Whether `amount` could be used now; answers without reserving anything.
#[tracing::instrument(name = "credit.check", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn check(app: &App, caller: &Caller, customer_id: Uuid, amount: Money) -> Result<CheckResponse, ApiError> {
    caller.require(Scope::CreditRead)?;
    let account = get_account(app, caller, customer_id).await?;
    Ok(CheckResponse {
        available: refusal(&account, amount).is_none(),
        credit_available: account.credit_available,
        status: account.status,
    })
}

/// Why `account` cannot take a use of `amount` now, if it cannot: it must be approved and the
/// amount within its available credit (the rule `store::use_credit_sql` applies in SQL).
fn refusal(account: &CreditAccount, amount: Money) -> Option<ApiError> {
    if account.status != CreditStatus::Approved {
        return Some(ApiError::Rejected {
            code: "credit_not_approved",
            detail: format!("The credit account is {}, not approved.", account.status),
            extra: json!({ "account_status": account.status }),
        });
    }
    (amount > account.credit_available).then(|| ApiError::Rejected {
        code: "insufficient_credit",
        detail: format!("Only {} of credit is available.", account.credit_available),
        extra: json!({ "credit_available": account.credit_available }),
    })
}

/// Charges an order to the customer's credit, at most once per order id.
#[tracing::instrument(name = "credit.use_credit", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn use_credit(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    order_id: Uuid,
    amount: Money,
) -> Result<Written<CreditUsage>, ApiError> {
    caller.require(Scope::CreditWrite)?;
    let mut conn = app.db.connection().await?;
    let data = json!({ "customer_id": customer_id, "order_id": order_id, "amount": amount });
    let event = OutboxEvent::new(caller.organization_id, types::CREDIT_USED, customer_id, data)?;
    // A refused attempt wrote nothing (a unique violation aborted its transaction). The next
    // one first explains the refusal from the account as it is now, locked; when the account
    // now takes the use (it was reactivated or paid meanwhile), the use is made under that lock
    // rather than refused for a reason that no longer holds.
    let mut refused = None;
    for _ in 0..4 {
        let tx = conn.begin(caller.organization_id).await?;
        if let Some(refused) = refused {
            if let Some((charged_customer, usage)) = store::find_usage_by_order(&tx, order_id).await? {
                return replayed_use(customer_id, amount, charged_customer, usage);
            }
            if matches!(refused, UseRefused::OrderTaken) {
                return Err(ApiError::Unexpected(anyhow::anyhow!(
                    "an order's usage vanished after a unique violation"
                )));
            }
            let account = store::lock_account(&tx, customer_id).await?;
            if let Some(refused) = refusal(&account, amount) {
                return Err(refused);
            }
        }
        match store::use_credit(&tx, customer_id, order_id, amount, &caller.subject, &event).await? {
            Ok(usage) => {
                app.commit(tx).await?;
                return Ok(Written::Created(usage));
            }
            Err(again) => refused = Some(again),
        }
    }
    Err(ApiError::Unexpected(anyhow::anyhow!("a use was refused three times by an account that takes it")))
}

/// The answer to a use of an order that already has a usage: its replay when it is the same
/// use, else a conflict.
fn replayed_use(
    customer_id: Uuid,
    amount: Money,
    charged_customer: Uuid,
    usage: CreditUsage,
) -> Result<Written<CreditUsage>, ApiError> {
    if charged_customer != customer_id || usage.amount != amount {
        return Err(ApiError::Conflict {
            code: "order_amount_mismatch",
            detail: "This order was already charged with another amount or to another customer.",
        });
    }
    match usage.status {
        UsageStatus::Cancelled => Err(ApiError::Conflict {
            code: "order_released",
            detail: "This order's credit was released; charge it under a new order id.",
        }),
        _ => Ok(Written::Replayed(usage)),
    }
}

/// Releases an order's usage; releasing it again is a no-op that answers the released usage.
#[tracing::instrument(name = "credit.release", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn release(app: &App, caller: &Caller, customer_id: Uuid, order_id: Uuid) -> Result<CreditUsage, ApiError> {
    caller.require(Scope::CreditWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let account = store::lock_account(&tx, customer_id).await?;
    let data =
        json!({ "customer_id": customer_id, "credit_account_id": account.credit_account_id, "order_id": order_id });
    let event = OutboxEvent::new(caller.organization_id, types::CREDIT_RELEASED, customer_id, data)?;
    if let Some(usage) = store::release(&tx, &account, order_id, &caller.subject, &event).await? {
        app.commit(tx).await?;
        return Ok(usage);
    }
    match store::find_usage_by_order(&tx, order_id).await? {
        Some((owner, usage)) if owner == customer_id => match usage.status {
            UsageStatus::Cancelled => Ok(usage),
            _ => Err(ApiError::Conflict { code: "usage_already_paid", detail: "The order's credit is already paid." }),
        },
        _ => Err(ApiError::NotFound),
    }
}

/// Records a payment at most once per `payment_id` / Idempotency-Key.
#[tracing::instrument(name = "credit.record_payment", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn record_payment(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    payment: NewPayment,
) -> Result<Written<CreditPayment>, ApiError> {
    caller.require(Scope::CreditWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let account = store::lock_account(&tx, customer_id).await?;
    if let Some(earlier) = store::find_payment(&tx, payment.payment_id, payment.idempotency_key.as_deref()).await? {
        return if earlier.credit_account_id == account.credit_account_id && earlier.matches(&payment) {
            Ok(Written::Replayed(earlier))
        } else {
            Err(ApiError::Conflict {
                code: "idempotency_conflict",
                detail: "This payment_id or Idempotency-Key was used for a different payment.",
            })
        };
    }
    if payment.amount > account.credit_used {
        return Err(ApiError::Rejected {
            code: "payment_exceeds_balance",
            detail: format!("The payment is more than the {} owed.", account.credit_used),
            extra: json!({ "credit_used": account.credit_used }),
        });
    }
    let payment_id = payment.payment_id.unwrap_or_else(Uuid::now_v7);
    let data = json!({
        "customer_id": customer_id,
        "credit_account_id": account.credit_account_id,
        "payment_id": payment_id,
        "amount": payment.amount,
        "payment_method": payment.payment_method,
    });
    let event = OutboxEvent::new(caller.organization_id, types::CREDIT_PAYMENT_RECORDED, customer_id, data)?;
    let recorded = store::record_payment(&tx, &account, &payment, payment_id, &caller.subject, &event).await?;
    app.commit(tx).await?;
    Ok(Written::Created(recorded))
}

#[tracing::instrument(name = "credit.list_usages", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn list_usages(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    status: Option<UsageStatus>,
    page: PageRequest,
) -> Result<ListResponse<CreditUsage>, ApiError> {
    caller.require(Scope::CreditRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let account = store::find_account(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    let rows = store::list_usages(&tx, &account, status, page.after_seq()?, page.fetch_limit()).await?;
    tx.commit().await?;
    Ok(page.page_by_seq(rows, |usage| usage.usage_seq))
}

#[tracing::instrument(name = "credit.list_payments", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn list_payments(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    page: PageRequest,
) -> Result<ListResponse<CreditPayment>, ApiError> {
    caller.require(Scope::CreditRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let account = store::find_account(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    let rows = store::list_payments(&tx, &account, page.after_seq()?, page.fetch_limit()).await?;
    tx.commit().await?;
    Ok(page.page_by_seq(rows, |payment| payment.payment_seq))
}

/// The account's movements, replayed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Statement {
    pub credit_account_id: Uuid,
    pub credit_limit: Money,
    pub credit_used: Money,
    pub items: Vec<Movement>,
    pub next_cursor: Option<String>,
}

#[tracing::instrument(name = "credit.statement", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn statement(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    page: PageRequest,
) -> Result<Statement, ApiError> {
    caller.require(Scope::CreditRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let account = store::find_account(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    let rows = store::statement(&tx, &account, page.after_seq()?, page.fetch_limit()).await?;
    tx.commit().await?;
    let ListResponse { items, next_cursor } = page.page_by_seq(rows, |movement| movement.movement_seq);
    Ok(Statement {
        credit_account_id: account.credit_account_id,
        credit_limit: account.credit_limit,
        credit_used: account.credit_used,
        items,
        next_cursor,
    })
}

/// The nightly job: in every organization, pending usages due before `today` become overdue,
/// each with a movement and a `customers.credit.overdue` event. Returns how many changed.
#[tracing::instrument(skip_all, fields(%today))]
pub async fn mark_overdue(app: &App, today: NaiveDate) -> anyhow::Result<usize> {
    let organizations = app.db.organizations().await?;
    let tally = for_each_organization(
        "overdue",
        organizations,
        1,
        || true,
        |organization| mark_overdue_in(app, organization, today),
    )
    .await;
    let marked: usize = tally.done.iter().sum();
    anyhow::ensure!(
        tally.failed == 0,
        "the overdue run failed in {} organizations ({marked} usages marked elsewhere)",
        tally.failed
    );
    Ok(marked)
}

/// Longest statement of one organization's overdue run (marking every due usage at once).
const OVERDUE_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// One organization's overdue run, in one transaction.
async fn mark_overdue_in(app: &App, organization_id: Uuid, today: NaiveDate) -> anyhow::Result<usize> {
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(organization_id).await?;
    tx.allow_statements_for(OVERDUE_STATEMENT_TIMEOUT).await?;
    let overdue = store::mark_overdue(&tx, today, "overdue-job").await.map_err(anyhow::Error::from)?;
    let events = overdue
        .iter()
        .map(|row| {
            let data = json!({
                "customer_id": row.customer_id,
                "credit_account_id": row.usage.credit_account_id,
                "usage_id": row.usage.usage_id,
                "order_id": row.usage.order_id,
                "amount_owed": Money::from_decimal(row.usage.amount.amount() - row.usage.amount_paid.amount()),
                "due_date": row.usage.due_date,
            });
            OutboxEvent::new(organization_id, types::CREDIT_OVERDUE, row.customer_id, data)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    events::record(&tx, &events).await?;
    app.commit(tx).await?;
    Ok(overdue.len())
}
