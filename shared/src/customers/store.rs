//! Customer SQL. Every function runs inside a tenant transaction; RLS scopes the rows.

use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::model::{Customer, CustomerStatus, CustomerType, NewCustomer};
use crate::db::{unique_violation, TenantTx};
use crate::error::{ApiError, DuplicateField};
use crate::loyalty::LoyaltyTier;

const COLUMNS: &str = "customer_id, organization_id, customer_type, first_name, last_name, email, \
    phone, document_type, document_number, birth_date, gender, status, loyalty_tier, \
    tier_updated_at, preferred_language, marketing_consent, tags, metadata, notes, version, \
    created_at, updated_at, last_purchase_at, erased_at";

/// A customer from a row that has (at least) the customer columns.
pub(crate) fn from_row(row: &Row) -> Customer {
    Customer {
        customer_id: row.get("customer_id"),
        organization_id: row.get("organization_id"),
        customer_type: row.get("customer_type"),
        first_name: row.get("first_name"),
        last_name: row.get("last_name"),
        email: row.get("email"),
        phone: row.get("phone"),
        document_type: row.get("document_type"),
        document_number: row.get("document_number"),
        birth_date: row.get("birth_date"),
        gender: row.get("gender"),
        status: row.get("status"),
        loyalty_tier: row.get("loyalty_tier"),
        tier_updated_at: row.get("tier_updated_at"),
        preferred_language: row.get("preferred_language"),
        marketing_consent: row.get("marketing_consent"),
        tags: row.get("tags"),
        metadata: row.get("metadata"),
        notes: row.get("notes"),
        version: row.get("version"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        last_purchase_at: row.get("last_purchase_at"),
        erased_at: row.get("erased_at"),
    }
}

/// Maps a unique violation to the field it names; anything else is unexpected.
fn duplicate_or(error: tokio_postgres::Error, doing: &'static str) -> ApiError {
    match unique_violation(&error) {
        Some("customers_org_email_key") => ApiError::Duplicate(DuplicateField::Email),
        Some("customers_org_phone_key") => ApiError::Duplicate(DuplicateField::Phone),
        Some("customers_org_document_key") => ApiError::Duplicate(DuplicateField::Document),
        _ => ApiError::from(anyhow::Error::new(error).context(doing)),
    }
}

pub async fn insert(tx: &TenantTx<'_>, new: NewCustomer) -> Result<Customer, ApiError> {
    tx.execute(
        "INSERT INTO organizations (organization_id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&tx.organization_id()],
    )
    .await
    .context("registering the organization")?;
    let sql = format!(
        "INSERT INTO customers (customer_id, organization_id, customer_type, first_name, last_name, \
             email, phone, document_type, document_number, birth_date, gender, status, \
             preferred_language, marketing_consent, tags, metadata, notes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         RETURNING {COLUMNS}"
    );
    let (document_type, document_number) = match new.document {
        Some(document) => (Some(document.document_type), Some(document.number.into_inner())),
        None => (None, None),
    };
    let row = tx
        .query_one(
            &sql,
            &[
                &new.customer_id,
                &tx.organization_id(),
                &new.customer_type,
                &new.first_name.into_inner(),
                &new.last_name.into_inner(),
                &new.email.map(|e| e.into_inner()),
                &new.phone.map(|p| p.into_inner()),
                &document_type,
                &document_number,
                &new.birth_date,
                &new.gender,
                &new.status,
                &new.preferred_language,
                &new.marketing_consent,
                &new.tags,
                &new.metadata,
                &new.notes,
            ],
        )
        .await
        .map_err(|error| duplicate_or(error, "inserting a customer"))?;
    Ok(from_row(&row))
}

pub async fn find(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<Option<Customer>, ApiError> {
    let row = tx.query_opt(find_sql(), &[&customer_id]).await.context("reading a customer")?;
    Ok(row.as_ref().map(from_row))
}

/// The statement of [`find`]; parameter: the customer id. Public so the server benchmark can
/// run the same SQL directly as its floor.
pub fn find_sql() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| format!("SELECT {COLUMNS} FROM customers WHERE customer_id = $1"));
    &SQL
}

/// The customers among `customer_ids`, in the order asked; ids not in this tenant are left out.
pub async fn find_many(tx: &TenantTx<'_>, customer_ids: &[Uuid]) -> Result<Vec<Customer>, ApiError> {
    let rows = tx.query(find_many_sql(), &[&customer_ids]).await.context("reading customers")?;
    Ok(rows.iter().map(from_row).collect())
}

/// The statement of [`find_many`]; parameter: the ids as a `uuid[]`. Public for the same floor.
pub fn find_many_sql() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let columns = COLUMNS.split(", ").map(|column| format!("c.{}", column.trim())).collect::<Vec<_>>().join(", ");
        format!(
            "SELECT {columns} FROM unnest($1::uuid[]) WITH ORDINALITY AS asked(customer_id, n) \
             JOIN customers c ON c.customer_id = asked.customer_id ORDER BY asked.n"
        )
    });
    &SQL
}

/// Reads and locks a customer for the rest of the transaction; 404 when not in this tenant.
pub async fn lock(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<Customer, ApiError> {
    tx.changes_customer(customer_id);
    let sql = format!("SELECT {COLUMNS} FROM customers WHERE customer_id = $1 FOR UPDATE");
    let row = tx.query_opt(&sql, &[&customer_id]).await.context("locking a customer")?;
    row.as_ref().map(from_row).ok_or(ApiError::NotFound)
}

/// Locks a customer whose personal data is still held: 404 when absent, 409 `customer_erased`
/// once erased. What every write that adds to a customer starts with.
pub async fn lock_not_erased(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<Customer, ApiError> {
    let customer = lock(tx, customer_id).await?;
    if customer.erased_at.is_some() {
        return Err(ApiError::Conflict { code: "customer_erased", detail: "The customer's personal data was erased." });
    }
    Ok(customer)
}

/// Holds a customer's row against concurrent writers of its facts (tier, purchases) until the
/// transaction ends, without blocking readers or foreign keys; false when there is no such
/// customer in the organization.
pub async fn hold(tx: &TenantTx<'_>, customer_id: Uuid) -> anyhow::Result<bool> {
    tx.changes_customer(customer_id);
    let row = tx
        .query_opt("SELECT 1 FROM customers WHERE customer_id = $1 FOR NO KEY UPDATE", &[&customer_id])
        .await
        .context("locking the customer")?;
    Ok(row.is_some())
}

/// Whether the customer exists in this organization (erased ones too).
pub async fn exists(tx: &TenantTx<'_>, customer_id: Uuid) -> anyhow::Result<bool> {
    let row = tx
        .query_opt("SELECT 1 FROM customers WHERE customer_id = $1", &[&customer_id])
        .await
        .context("looking a customer up")?;
    Ok(row.is_some())
}

/// Sets the loyalty tier the pricing service decided at `decided_at`, unless a decision as new
/// or newer is already applied (events may arrive out of order). Answers whether it changed.
pub async fn set_tier_if_newer(
    tx: &TenantTx<'_>,
    customer_id: Uuid,
    tier: LoyaltyTier,
    decided_at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let changed = tx
        .execute(
            "UPDATE customers SET loyalty_tier = $2, tier_updated_at = $3, version = version + 1, updated_at = now() \
             WHERE customer_id = $1 AND (tier_updated_at IS NULL OR tier_updated_at < $3)",
            &[&customer_id, &tier, &decided_at],
        )
        .await
        .context("updating the loyalty tier")?;
    Ok(changed == 1)
}

/// Recomputes `last_purchase_at` from the customer's completed purchases.
pub async fn refresh_last_purchase(tx: &TenantTx<'_>, customer_id: Uuid) -> anyhow::Result<()> {
    tx.execute(
        "UPDATE customers SET last_purchase_at = \
             (SELECT max(occurred_at) FROM purchases p WHERE p.customer_id = $1 AND p.status = 'completed') \
         WHERE customer_id = $1",
        &[&customer_id],
    )
    .await
    .context("updating last_purchase_at")?;
    Ok(())
}

/// Filters of the customer list.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub status: Option<CustomerStatus>,
    pub customer_type: Option<CustomerType>,
    pub loyalty_tier: Option<LoyaltyTier>,
}

/// Customers after `after` in id (creation) order.
pub async fn list(
    tx: &TenantTx<'_>,
    filter: &ListFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Customer>, ApiError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM customers \
         WHERE organization_id = $1 \
           AND ($2::uuid IS NULL OR customer_id > $2) \
           AND ($3::text IS NULL OR status = $3) \
           AND ($4::text IS NULL OR customer_type = $4) \
           AND ($5::text IS NULL OR loyalty_tier = $5) \
         ORDER BY customer_id \
         LIMIT $6"
    );
    let rows = tx
        .query(
            &sql,
            &[&tx.organization_id(), &after, &filter.status, &filter.customer_type, &filter.loyalty_tier, &limit],
        )
        .await
        .context("listing customers")?;
    Ok(rows.iter().map(from_row).collect())
}

/// Writes every mutable field of `customer` and bumps its version.
pub async fn update(tx: &TenantTx<'_>, customer: &Customer) -> Result<Customer, ApiError> {
    let sql = format!(
        "UPDATE customers SET customer_type = $2, first_name = $3, last_name = $4, email = $5, \
             phone = $6, document_type = $7, document_number = $8, birth_date = $9, gender = $10, \
             status = $11, preferred_language = $12, marketing_consent = $13, tags = $14, \
             metadata = $15, notes = $16, version = version + 1, updated_at = now() \
         WHERE customer_id = $1 \
         RETURNING {COLUMNS}"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &customer.customer_id,
                &customer.customer_type,
                &customer.first_name,
                &customer.last_name,
                &customer.email,
                &customer.phone,
                &customer.document_type,
                &customer.document_number,
                &customer.birth_date,
                &customer.gender,
                &customer.status,
                &customer.preferred_language,
                &customer.marketing_consent,
                &customer.tags,
                &customer.metadata,
                &customer.notes,
            ],
        )
        .await
        .map_err(|error| duplicate_or(error, "updating a customer"))?;
    Ok(from_row(&row))
}

/// Appends to the status history, which outlives erasure.
pub async fn record_status_change(
    tx: &TenantTx<'_>,
    customer_id: Uuid,
    from: Option<CustomerStatus>,
    to: CustomerStatus,
    reason: Option<&str>,
    changed_by: &str,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO customer_status_history \
             (status_change_id, organization_id, customer_id, from_status, to_status, reason, changed_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&Uuid::now_v7(), &tx.organization_id(), &customer_id, &from, &to, &reason, &changed_by],
    )
    .await
    .context("recording a status change")?;
    Ok(())
}

/// The words of a customer's name as the search vocabulary holds them.
pub async fn name_words(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<Vec<String>, ApiError> {
    let row = tx
        .query_one("SELECT tsvector_to_array(search_words) FROM customers WHERE customer_id = $1", &[&customer_id])
        .await
        .context("reading name words")?;
    Ok(row.get(0))
}

/// Removes every personal field and address; ids, status history and financial rows stay.
pub async fn erase(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<Customer, ApiError> {
    tx.execute("DELETE FROM addresses WHERE customer_id = $1", &[&customer_id]).await.context("erasing addresses")?;
    let sql = format!(
        "UPDATE customers SET first_name = NULL, last_name = NULL, email = NULL, phone = NULL, \
             document_type = NULL, document_number = NULL, birth_date = NULL, gender = NULL, \
             tags = '{{}}', metadata = NULL, notes = NULL, marketing_consent = false, \
             status = 'inactive', erased_at = now(), version = version + 1, updated_at = now() \
         WHERE customer_id = $1 \
         RETURNING {COLUMNS}"
    );
    let row = tx.query_one(&sql, &[&customer_id]).await.context("erasing a customer")?;
    Ok(from_row(&row))
}
