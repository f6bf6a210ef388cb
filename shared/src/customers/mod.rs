//! Customers: the operations every transport calls. Each runs in one tenant transaction and
//! writes its event to the outbox in that same transaction.

pub mod addresses;
pub mod fields;
pub mod model;
pub mod routes;
pub mod store;
pub mod views;

use serde_json::json;
use uuid::Uuid;

use crate::auth::Caller;
use crate::db::Db;
use crate::error::ApiError;
use crate::events::{self, types};
use crate::http::{ListResponse, PageRequest};
use crate::money::Money;
use addresses::{Address, AddressFields, PatchAddressRequest};
use model::{Customer, CustomerPatch, NewCustomer};
use store::ListFilter;
use views::{Customer360, CustomerExport, LoyaltyCard};

pub async fn create(db: &Db, caller: &Caller, new: NewCustomer) -> Result<Customer, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let customer = store::insert(&tx, new).await?;
    store::record_status_change(&tx, customer.customer_id, None, customer.status, None, &caller.subject).await?;
    events::record(
        &tx,
        types::CUSTOMER_CREATED,
        customer.customer_id,
        json!({
            "customer_id": customer.customer_id,
            "customer_type": customer.customer_type,
            "status": customer.status,
            "loyalty_tier": customer.loyalty_tier,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(customer)
}

pub async fn get(db: &Db, caller: &Caller, customer_id: Uuid) -> Result<Customer, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let customer = store::find(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(customer)
}

pub async fn list(
    db: &Db,
    caller: &Caller,
    filter: ListFilter,
    page: PageRequest,
) -> Result<ListResponse<Customer>, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let rows = store::list(&tx, &filter, page.after_id()?, page.fetch_limit()).await?;
    tx.commit().await?;
    Ok(page.page(rows, |customer| customer.customer_id))
}

const ERASED: ApiError =
    ApiError::Conflict { code: "customer_erased", detail: "The customer's personal data was erased." };

/// Applies a partial update; `expected_version` (from `If-Match`) must be current.
pub async fn update(
    db: &Db,
    caller: &Caller,
    customer_id: Uuid,
    expected_version: Option<i32>,
    patch: CustomerPatch,
) -> Result<Customer, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let mut customer = store::lock(&tx, customer_id).await?;
    if expected_version.is_some_and(|version| version != customer.version) {
        return Err(ApiError::VersionMismatch);
    }
    if customer.erased_at.is_some() {
        return Err(ERASED);
    }
    let reason = patch.status_reason.clone();
    let changes = customer.apply(patch);
    if changes.fields.is_empty() {
        return Ok(customer);
    }
    let renamed = changes.fields.iter().any(|field| matches!(*field, "first_name" | "last_name"));
    let former_words = if renamed { store::name_words(&tx, customer_id).await? } else { Vec::new() };
    let customer = store::update(&tx, &customer).await?;
    store::forget_unused_name_words(&tx, &former_words).await?;
    events::record(
        &tx,
        types::CUSTOMER_UPDATED,
        customer_id,
        json!({ "customer_id": customer_id, "changed_fields": changes.fields, "version": customer.version }),
    )
    .await?;
    if let Some((from, to)) = changes.status {
        store::record_status_change(&tx, customer_id, Some(from), to, reason.as_deref(), &caller.subject).await?;
        events::record(
            &tx,
            types::CUSTOMER_STATUS_CHANGED,
            customer_id,
            json!({ "customer_id": customer_id, "old_status": from, "new_status": to, "reason": reason }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(customer)
}

/// Erases personal data; erasing an erased customer again changes nothing.
pub async fn erase(db: &Db, caller: &Caller, customer_id: Uuid) -> Result<(), ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let customer = store::lock(&tx, customer_id).await?;
    if customer.erased_at.is_some() {
        return Ok(());
    }
    let former_words = store::name_words(&tx, customer_id).await?;
    let erased = store::erase(&tx, customer_id).await?;
    store::forget_unused_name_words(&tx, &former_words).await?;
    store::record_status_change(
        &tx,
        customer_id,
        Some(customer.status),
        erased.status,
        Some("erased"),
        &caller.subject,
    )
    .await?;
    events::record(&tx, types::CUSTOMER_ERASED, customer_id, json!({ "customer_id": customer_id })).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn customer_360(db: &Db, caller: &Caller, customer_id: Uuid) -> Result<Customer360, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let view = views::customer_360(&tx, customer_id).await?;
    tx.commit().await?;
    Ok(view)
}

pub async fn export(db: &Db, caller: &Caller, customer_id: Uuid) -> Result<CustomerExport, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let customer = store::find(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    let export = views::export(&tx, customer).await?;
    tx.commit().await?;
    Ok(export)
}

pub async fn loyalty(
    db: &Db,
    caller: &Caller,
    customer_id: Uuid,
    amount: Option<Money>,
) -> Result<LoyaltyCard, ApiError> {
    let customer = get(db, caller, customer_id).await?;
    Ok(LoyaltyCard::of(&customer, amount))
}

pub async fn list_addresses(db: &Db, caller: &Caller, customer_id: Uuid) -> Result<Vec<Address>, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    store::find(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    let addresses = addresses::list(&tx, customer_id).await?;
    tx.commit().await?;
    Ok(addresses)
}

pub async fn add_address(
    db: &Db,
    caller: &Caller,
    customer_id: Uuid,
    fields: AddressFields,
) -> Result<Address, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let customer = store::lock(&tx, customer_id).await?;
    if customer.erased_at.is_some() {
        return Err(ERASED);
    }
    let address = addresses::insert(&tx, customer_id, fields).await?;
    tx.commit().await?;
    Ok(address)
}

pub async fn update_address(
    db: &Db,
    caller: &Caller,
    customer_id: Uuid,
    address_id: Uuid,
    expected_version: Option<i32>,
    patch: PatchAddressRequest,
) -> Result<Address, ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    store::lock(&tx, customer_id).await?;
    let address = addresses::lock(&tx, customer_id, address_id).await?;
    if expected_version.is_some_and(|version| version != address.version) {
        return Err(ApiError::VersionMismatch);
    }
    let fields = patch.apply_to(&address)?;
    let address = addresses::update(&tx, &address, fields).await?;
    tx.commit().await?;
    Ok(address)
}

pub async fn delete_address(db: &Db, caller: &Caller, customer_id: Uuid, address_id: Uuid) -> Result<(), ApiError> {
    let mut conn = db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    store::lock(&tx, customer_id).await?;
    addresses::lock(&tx, customer_id, address_id).await?;
    addresses::delete(&tx, address_id).await?;
    tx.commit().await?;
    Ok(())
}
