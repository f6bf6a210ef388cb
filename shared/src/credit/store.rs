//! Credit SQL. Lock order is always the account row first, then its usages: `use_credit` takes
//! the lock with its conditional UPDATE, every other writer with `lock_account`.

use std::sync::LazyLock;

use anyhow::Context;
use chrono::NaiveDate;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::model::{
    CreditAccount, CreditPayment, CreditStatus, CreditUsage, Movement, MovementKind, NewPayment, UsageStatus,
};
use crate::db::{unique_violation, TenantTx};
use crate::error::ApiError;
use crate::events::OutboxEvent;
use crate::money::Money;

const ACCOUNT_SELECT: &str = "\
SELECT a.credit_account_id, a.customer_id, a.credit_limit, a.credit_used, a.credit_available,
       a.payment_term_days, a.status, a.approved_at, a.approved_by, a.suspended_at,
       a.suspension_reason, a.version, a.created_at, a.updated_at,
       COALESCE((SELECT sum(u.amount - u.amount_paid) FROM credit_usages u
                 WHERE u.organization_id = a.organization_id
                   AND u.credit_account_id = a.credit_account_id AND u.status = 'overdue'), 0) AS overdue_amount
FROM credit_accounts a";

fn account_from_row(row: &Row) -> CreditAccount {
    CreditAccount {
        credit_account_id: row.get("credit_account_id"),
        customer_id: row.get("customer_id"),
        credit_limit: row.get("credit_limit"),
        credit_used: row.get("credit_used"),
        credit_available: row.get("credit_available"),
        payment_term_days: row.get("payment_term_days"),
        status: row.get("status"),
        overdue_amount: row.get("overdue_amount"),
        approved_at: row.get("approved_at"),
        approved_by: row.get("approved_by"),
        suspended_at: row.get("suspended_at"),
        suspension_reason: row.get("suspension_reason"),
        version: row.get("version"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

const USAGE_COLUMNS: &str = "usage_id, usage_seq, credit_account_id, order_id, amount, amount_paid, status, \
    due_date, paid_at, released_at, created_by, created_at";

fn usage_from_row(row: &Row) -> CreditUsage {
    CreditUsage {
        usage_id: row.get("usage_id"),
        usage_seq: row.get("usage_seq"),
        credit_account_id: row.get("credit_account_id"),
        order_id: row.get("order_id"),
        amount: row.get("amount"),
        amount_paid: row.get("amount_paid"),
        status: row.get("status"),
        due_date: row.get("due_date"),
        paid_at: row.get("paid_at"),
        released_at: row.get("released_at"),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
    }
}

const PAYMENT_COLUMNS: &str = "payment_id, payment_seq, credit_account_id, amount, payment_method, \
    payment_reference, payment_date, idempotency_key, recorded_by, created_at";

fn payment_from_row(row: &Row) -> CreditPayment {
    CreditPayment {
        payment_id: row.get("payment_id"),
        payment_seq: row.get("payment_seq"),
        credit_account_id: row.get("credit_account_id"),
        amount: row.get("amount"),
        payment_method: row.get("payment_method"),
        payment_reference: row.get("payment_reference"),
        payment_date: row.get("payment_date"),
        idempotency_key: row.get("idempotency_key"),
        recorded_by: row.get("recorded_by"),
        created_at: row.get("created_at"),
    }
}

pub async fn find_account(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<Option<CreditAccount>, ApiError> {
    let sql = format!("{ACCOUNT_SELECT} WHERE a.customer_id = $1");
    let row = tx.query_opt(&sql, &[&customer_id]).await.context("reading a credit account")?;
    Ok(row.as_ref().map(account_from_row))
}

/// Reads and locks the customer's account; every writer but `use_credit` starts here.
pub async fn lock_account(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<CreditAccount, ApiError> {
    tx.changes_customer(customer_id);
    let sql = format!("{ACCOUNT_SELECT} WHERE a.customer_id = $1 FOR UPDATE OF a");
    let row = tx.query_opt(&sql, &[&customer_id]).await.context("locking a credit account")?;
    row.as_ref().map(account_from_row).ok_or(ApiError::NotFound)
}

/// Opens a pending account; 409 when the customer already has one.
pub async fn insert_account(
    tx: &TenantTx<'_>,
    customer_id: Uuid,
    credit_limit: Money,
    payment_term_days: i32,
) -> Result<CreditAccount, ApiError> {
    tx.execute(
        "INSERT INTO credit_accounts (credit_account_id, organization_id, customer_id, credit_limit, payment_term_days) \
         VALUES ($1, $2, $3, $4, $5)",
        &[&Uuid::now_v7(), &tx.organization_id(), &customer_id, &credit_limit, &payment_term_days],
    )
    .await
    .map_err(|error| match unique_violation(&error) {
        Some("credit_accounts_customer_key") => ApiError::Conflict {
            code: "credit_account_exists",
            detail: "The customer already has a credit account.",
        },
        _ => ApiError::from(anyhow::Error::new(error).context("opening a credit account")),
    })?;
    lock_account(tx, customer_id).await
}

/// What an account change writes; `None` keeps a column.
#[derive(Debug, Default)]
pub struct AccountUpdate<'a> {
    pub status: Option<CreditStatus>,
    pub credit_limit: Option<Money>,
    pub payment_term_days: Option<i32>,
    pub approved_by: Option<&'a str>,
    /// `Some(Some(reason))` suspends, `Some(None)` clears the suspension.
    pub suspension: Option<Option<&'a str>>,
}

/// Writes a change to a locked account and returns it as it now is.
pub async fn update_account(
    tx: &TenantTx<'_>,
    account: &CreditAccount,
    update: AccountUpdate<'_>,
) -> Result<CreditAccount, ApiError> {
    let (suspending, suspension_reason) = match update.suspension {
        None => (None, None),
        Some(reason) => (Some(reason.is_some()), reason),
    };
    tx.execute(
        "UPDATE credit_accounts SET \
             status = COALESCE($2, status), \
             credit_limit = COALESCE($3, credit_limit), \
             payment_term_days = COALESCE($4, payment_term_days), \
             approved_by = COALESCE($5, approved_by), \
             approved_at = CASE WHEN $5::text IS NULL THEN approved_at ELSE now() END, \
             suspended_at = CASE WHEN $6::bool IS NULL THEN suspended_at WHEN $6 THEN now() END, \
             suspension_reason = CASE WHEN $6::bool IS NULL THEN suspension_reason ELSE $7 END, \
             version = version + 1, updated_at = now() \
         WHERE credit_account_id = $1",
        &[
            &account.credit_account_id,
            &update.status,
            &update.credit_limit,
            &update.payment_term_days,
            &update.approved_by,
            &suspending,
            &suspension_reason,
        ],
    )
    .await
    .context("updating a credit account")?;
    lock_account(tx, account.customer_id).await
}

/// Appends a movement that does not change `credit_used` (status, limit and term changes).
pub async fn record_movement(
    tx: &TenantTx<'_>,
    account: &CreditAccount,
    kind: MovementKind,
    reason: Option<&str>,
    actor: &str,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO credit_movements (movement_id, organization_id, credit_account_id, kind, \
             credit_used_after, credit_limit_after, reason, actor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &Uuid::now_v7(),
            &tx.organization_id(),
            &account.credit_account_id,
            &kind,
            &account.credit_used,
            &account.credit_limit,
            &reason,
            &actor,
        ],
    )
    .await
    .context("recording a credit movement")?;
    Ok(())
}

/// Why `use_credit` wrote nothing.
pub enum UseRefused {
    /// The order already has a usage, committed by another transaction meanwhile.
    OrderTaken,
    /// No approved account with enough available credit (or the order was already used).
    NotCharged,
}

/// The reservation statement of `use_credit`. Parameters: organization, customer, amount,
/// usage id, order, actor, movement id, then the event's (see `OutboxEvent::params`).
/// Public so the benchmark can run the same SQL directly as its floor.
pub fn use_credit_sql() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        const EVENT_DATA: &str = "jsonb_build_object('credit_account_id', a.credit_account_id, 'usage_id', u.usage_id, \
            'due_date', u.due_date, 'credit_used', a.credit_used::text, 'credit_available', (a.credit_limit - a.credit_used)::text)";
        let event = crate::events::insert_one_sql(8, EVENT_DATA, "FROM account a, usage u");
        format!(
        "WITH account AS (
            UPDATE credit_accounts
            SET credit_used = credit_used + $3, version = version + 1, updated_at = now()
            WHERE organization_id = $1 AND customer_id = $2 AND status = 'approved'
              AND credit_used + $3 <= credit_limit
              AND NOT EXISTS (SELECT 1 FROM credit_usages WHERE organization_id = $1 AND order_id = $5)
            RETURNING credit_account_id, credit_used, credit_limit, payment_term_days
         ), usage AS (
            INSERT INTO credit_usages (usage_id, organization_id, credit_account_id, order_id, amount, due_date, created_by)
            SELECT $4, $1, credit_account_id, $5, $3, current_date + payment_term_days, $6 FROM account
            RETURNING {USAGE_COLUMNS}
         ), movement AS (
            INSERT INTO credit_movements (movement_id, organization_id, credit_account_id, kind, amount,
                                          credit_used_after, credit_limit_after, order_id, actor)
            SELECT $7, $1, credit_account_id, 'used', $3, credit_used, credit_limit, $5, $6 FROM account
         ), event AS ({event})
         SELECT {USAGE_COLUMNS} FROM usage"
        )
    });
    &SQL
}

/// Reserves credit for an order in one statement: the conditional UPDATE locks the account
/// and re-checks status and limit on its latest version; the usage, movement and event rows
/// follow from its RETURNING. The unique (organization, order) index settles duplicate orders.
pub async fn use_credit(
    tx: &TenantTx<'_>,
    customer_id: Uuid,
    order_id: Uuid,
    amount: Money,
    actor: &str,
    event: &OutboxEvent,
) -> Result<Result<CreditUsage, UseRefused>, ApiError> {
    let (organization_id, usage_id, movement_id) = (tx.organization_id(), Uuid::now_v7(), Uuid::now_v7());
    let params: [&(dyn ToSql + Sync); 7] =
        [&organization_id, &customer_id, &amount, &usage_id, &order_id, &actor, &movement_id];
    let result = tx.query_opt(use_credit_sql(), &[&params[..], &event.params_in(tx)].concat()).await;
    match result {
        Ok(Some(row)) => {
            tx.changes_customer(customer_id);
            Ok(Ok(usage_from_row(&row)))
        }
        Ok(None) => Ok(Err(UseRefused::NotCharged)),
        Err(error) if unique_violation(&error) == Some("credit_usages_order_key") => Ok(Err(UseRefused::OrderTaken)),
        Err(error) => Err(ApiError::from(anyhow::Error::new(error).context("using credit"))),
    }
}

/// The usage of an order, with the customer whose account it was charged to.
pub async fn find_usage_by_order(tx: &TenantTx<'_>, order_id: Uuid) -> Result<Option<(Uuid, CreditUsage)>, ApiError> {
    let sql = "SELECT a.customer_id, u.* FROM credit_usages u JOIN credit_accounts a USING (credit_account_id) \
               WHERE u.organization_id = $1 AND u.order_id = $2";
    let row = tx.query_opt(sql, &[&tx.organization_id(), &order_id]).await.context("reading a usage")?;
    Ok(row.map(|row| (row.get("customer_id"), usage_from_row(&row))))
}

/// Releases what is still owed on an open usage of a locked account; `None` when the order has
/// no open usage there.
pub async fn release(
    tx: &TenantTx<'_>,
    account: &CreditAccount,
    order_id: Uuid,
    actor: &str,
    event: &OutboxEvent,
) -> Result<Option<CreditUsage>, ApiError> {
    let event_data = "jsonb_build_object('usage_id', u.usage_id, 'released_amount', a.owed::text, \
        'credit_used', a.credit_used::text, 'credit_available', (a.credit_limit - a.credit_used)::text)";
    let event_sql = crate::events::insert_one_sql(6, event_data, "FROM account a, usage u");
    let sql = format!(
        "WITH usage AS (
            UPDATE credit_usages SET status = 'cancelled', released_at = now()
            WHERE organization_id = $1 AND credit_account_id = $2 AND order_id = $3 AND status IN ('pending', 'overdue')
            RETURNING {USAGE_COLUMNS}, amount - amount_paid AS owed
         ), account AS (
            UPDATE credit_accounts a SET credit_used = a.credit_used - u.owed, version = a.version + 1, updated_at = now()
            FROM usage u WHERE a.credit_account_id = u.credit_account_id
            RETURNING a.credit_account_id, a.credit_used, a.credit_limit, u.owed
         ), movement AS (
            INSERT INTO credit_movements (movement_id, organization_id, credit_account_id, kind, amount,
                                          credit_used_after, credit_limit_after, order_id, actor)
            SELECT $4, $1, credit_account_id, 'released', -owed, credit_used, credit_limit, $3, $5 FROM account
         ), event AS ({event_sql})
         SELECT {USAGE_COLUMNS} FROM usage"
    );
    let (organization_id, movement_id) = (tx.organization_id(), Uuid::now_v7());
    let params: [&(dyn ToSql + Sync); 5] =
        [&organization_id, &account.credit_account_id, &order_id, &movement_id, &actor];
    let row = tx.query_opt(&sql, &[&params[..], &event.params_in(tx)].concat()).await.context("releasing credit")?;
    Ok(row.as_ref().map(usage_from_row))
}

/// A payment already recorded under this payment id or idempotency key.
pub async fn find_payment(
    tx: &TenantTx<'_>,
    payment_id: Option<Uuid>,
    idempotency_key: Option<&str>,
) -> Result<Option<CreditPayment>, ApiError> {
    if payment_id.is_none() && idempotency_key.is_none() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM credit_payments \
         WHERE organization_id = $1 AND (payment_id = $2 OR idempotency_key = $3) LIMIT 1"
    );
    let row = tx
        .query_opt(&sql, &[&tx.organization_id(), &payment_id, &idempotency_key])
        .await
        .context("reading a payment")?;
    Ok(row.as_ref().map(payment_from_row))
}

/// Records a payment on a locked account: settles open usages oldest first (the last one
/// possibly in part) and lowers `credit_used`. The caller has checked the amount is owed.
pub async fn record_payment(
    tx: &TenantTx<'_>,
    account: &CreditAccount,
    payment: &NewPayment,
    payment_id: Uuid,
    actor: &str,
    event: &OutboxEvent,
) -> Result<CreditPayment, ApiError> {
    let event_data = "jsonb_build_object('settled_usages', (SELECT count(*) FROM settled), \
        'credit_used', a.credit_used::text, 'credit_available', (a.credit_limit - a.credit_used)::text)";
    let event_sql = crate::events::insert_one_sql(11, event_data, "FROM account a");
    let sql = format!(
        "WITH open AS (
            SELECT usage_id, amount - amount_paid AS owed,
                   sum(amount - amount_paid) OVER (ORDER BY usage_seq) - (amount - amount_paid) AS owed_before
            FROM credit_usages
            WHERE organization_id = $1 AND credit_account_id = $2 AND status IN ('pending', 'overdue')
         ), settled AS (
            UPDATE credit_usages u
            SET amount_paid = u.amount_paid + LEAST(o.owed, $3 - o.owed_before),
                status = CASE WHEN LEAST(o.owed, $3 - o.owed_before) = o.owed THEN 'paid' ELSE u.status END,
                paid_at = CASE WHEN LEAST(o.owed, $3 - o.owed_before) = o.owed THEN now() ELSE u.paid_at END
            FROM open o
            WHERE u.usage_id = o.usage_id AND o.owed_before < $3
            RETURNING u.usage_id
         ), account AS (
            UPDATE credit_accounts SET credit_used = credit_used - $3, version = version + 1, updated_at = now()
            WHERE credit_account_id = $2
            RETURNING credit_account_id, credit_used, credit_limit
         ), payment AS (
            INSERT INTO credit_payments (organization_id, payment_id, credit_account_id, amount, payment_method,
                                         payment_reference, payment_date, idempotency_key, recorded_by)
            VALUES ($1, $4, $2, $3, $5, $6, COALESCE($7, current_date), $8, $9)
            RETURNING {PAYMENT_COLUMNS}
         ), movement AS (
            INSERT INTO credit_movements (movement_id, organization_id, credit_account_id, kind, amount,
                                          credit_used_after, credit_limit_after, payment_id, actor)
            SELECT $10, $1, credit_account_id, 'payment', -$3, credit_used, credit_limit, $4, $9 FROM account
         ), event AS ({event_sql})
         SELECT {PAYMENT_COLUMNS} FROM payment"
    );
    let (organization_id, movement_id) = (tx.organization_id(), Uuid::now_v7());
    let params: [&(dyn ToSql + Sync); 10] = [
        &organization_id,
        &account.credit_account_id,
        &payment.amount,
        &payment_id,
        &payment.payment_method,
        &payment.payment_reference,
        &payment.payment_date,
        &payment.idempotency_key,
        &actor,
        &movement_id,
    ];
    let row =
        tx.query_one(&sql, &[&params[..], &event.params_in(tx)].concat()).await.map_err(
            |error| match unique_violation(&error) {
                // A concurrent payment with this id or key committed before our lock was granted
                // to it; the caller retries and finds it.
                Some("credit_payments_pkey" | "credit_payments_idempotency_key") => ApiError::Conflict {
                    code: "payment_in_progress",
                    detail: "A payment with this id or Idempotency-Key was recorded meanwhile; retry to read it.",
                },
                _ => ApiError::from(anyhow::Error::new(error).context("recording a payment")),
            },
        )?;
    Ok(payment_from_row(&row))
}

pub async fn list_usages(
    tx: &TenantTx<'_>,
    account: &CreditAccount,
    status: Option<UsageStatus>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<CreditUsage>, ApiError> {
    let sql = format!(
        "SELECT {USAGE_COLUMNS} FROM credit_usages \
         WHERE organization_id = $1 AND credit_account_id = $2 AND ($3::text IS NULL OR status = $3) \
           AND ($4::bigint IS NULL OR usage_seq > $4) \
         ORDER BY usage_seq LIMIT $5"
    );
    let rows = tx
        .query(&sql, &[&tx.organization_id(), &account.credit_account_id, &status, &after, &limit])
        .await
        .context("listing usages")?;
    Ok(rows.iter().map(usage_from_row).collect())
}

pub async fn list_payments(
    tx: &TenantTx<'_>,
    account: &CreditAccount,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<CreditPayment>, ApiError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM credit_payments \
         WHERE organization_id = $1 AND credit_account_id = $2 AND ($3::bigint IS NULL OR payment_seq > $3) \
         ORDER BY payment_seq LIMIT $4"
    );
    let rows = tx
        .query(&sql, &[&tx.organization_id(), &account.credit_account_id, &after, &limit])
        .await
        .context("listing payments")?;
    Ok(rows.iter().map(payment_from_row).collect())
}

/// The account's movements in order, each with `credit_used` replayed from the start.
pub async fn statement(
    tx: &TenantTx<'_>,
    account: &CreditAccount,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Movement>, ApiError> {
    let rows = tx
        .query(
            "SELECT * FROM (
                SELECT movement_id, movement_seq, kind, amount, credit_used_after, credit_limit_after, order_id,
                       payment_id, reason, actor, occurred_at,
                       sum(amount) OVER (ORDER BY movement_seq) AS running_credit_used
                FROM credit_movements WHERE organization_id = $1 AND credit_account_id = $2
             ) replay
             WHERE $3::bigint IS NULL OR movement_seq > $3
             ORDER BY movement_seq LIMIT $4",
            &[&tx.organization_id(), &account.credit_account_id, &after, &limit],
        )
        .await
        .context("reading the statement")?;
    Ok(rows
        .iter()
        .map(|row| Movement {
            movement_id: row.get("movement_id"),
            movement_seq: row.get("movement_seq"),
            kind: row.get("kind"),
            amount: format!("{:.2}", row.get::<_, rust_decimal::Decimal>("amount")),
            running_credit_used: row.get("running_credit_used"),
            credit_used_after: row.get("credit_used_after"),
            credit_limit_after: row.get("credit_limit_after"),
            order_id: row.get("order_id"),
            payment_id: row.get("payment_id"),
            reason: row.get("reason"),
            actor: row.get("actor"),
            occurred_at: row.get("occurred_at"),
        })
        .collect())
}

/// A usage turned overdue by the nightly job.
pub struct OverdueUsage {
    pub customer_id: Uuid,
    pub usage: CreditUsage,
}

/// Marks this organization's pending usages due before `today` as overdue, with a movement
/// each. Locks the affected accounts first, in id order, to keep the one lock order, then marks
/// the usages of those accounts only: a usage committed between the two statements belongs to
/// an account not locked here, whose movements are another writer's to order.
pub async fn mark_overdue(tx: &TenantTx<'_>, today: NaiveDate, actor: &str) -> Result<Vec<OverdueUsage>, ApiError> {
    let locked: Vec<Uuid> = tx
        .query(
            "SELECT a.credit_account_id FROM credit_accounts a
             WHERE a.organization_id = $1 AND EXISTS (
                 SELECT 1 FROM credit_usages u
                 WHERE u.organization_id = $1 AND u.credit_account_id = a.credit_account_id
                   AND u.status = 'pending' AND u.due_date < $2)
             ORDER BY a.credit_account_id
             FOR UPDATE",
            &[&tx.organization_id(), &today],
        )
        .await
        .context("locking accounts with due usages")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let sql = "WITH due AS (
            UPDATE credit_usages SET status = 'overdue'
            WHERE organization_id = $1 AND status = 'pending' AND due_date < $2 AND credit_account_id = ANY($4)
            RETURNING *
         ), movement AS (
            INSERT INTO credit_movements (movement_id, organization_id, credit_account_id, kind, amount,
                                          credit_used_after, credit_limit_after, order_id, actor)
            SELECT gen_random_uuid(), $1, d.credit_account_id, 'overdue', 0, a.credit_used, a.credit_limit, d.order_id, $3
            FROM due d JOIN credit_accounts a USING (credit_account_id)
            ORDER BY d.credit_account_id, d.usage_seq
         )
         SELECT a.customer_id, d.* FROM due d JOIN credit_accounts a USING (credit_account_id)
         ORDER BY d.credit_account_id, d.usage_seq";
    let rows =
        tx.query(sql, &[&tx.organization_id(), &today, &actor, &locked]).await.context("marking usages overdue")?;
    let overdue: Vec<OverdueUsage> = rows
        .iter()
        .map(|row| OverdueUsage { customer_id: row.get("customer_id"), usage: usage_from_row(row) })
        .collect();
    tx.changes_customers(&overdue.iter().map(|row| row.customer_id).collect::<Vec<_>>());
    Ok(overdue)
}
