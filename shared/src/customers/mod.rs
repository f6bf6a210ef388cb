//! Customers: the operations every transport calls. Each checks the caller's scope, runs in
//! one tenant transaction and writes its event to the outbox in that same transaction.

pub mod addresses;
pub mod fields;
pub mod model;
pub mod routes;
pub mod store;
pub mod views;

use serde_json::json;
use uuid::Uuid;

use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::cache::View;
use crate::error::ApiError;
use crate::events::{self, types};
use crate::money::Money;
use crate::paging::{ListResponse, PageRequest};
use crate::search;
use addresses::{Address, AddressFields, AddressPatch};
use model::{Customer, CustomerPatch, NewCustomer};
use store::ListFilter;
use views::{Customer360, CustomerExport, LoyaltyCard};

#[tracing::instrument(name = "customers.create", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn create(app: &App, caller: &Caller, new: NewCustomer) -> Result<Customer, ApiError> {
    caller.require(Scope::CustomersWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let customer = store::insert(&tx, new).await?;
    store::record_status_change(&tx, customer.customer_id, None, customer.status, None, &caller.subject).await?;
    events::record_one(
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
    app.commit(tx).await?;
    Ok(customer)
}

#[tracing::instrument(name = "customers.get", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn get(app: &App, caller: &Caller, customer_id: Uuid) -> Result<Customer, ApiError> {
    caller.require(Scope::CustomersRead)?;
    app.cache
        .read(caller.organization_id, View::Customer, customer_id, || async {
            let mut conn = app.db.connection().await?;
            let tx = conn.begin(caller.organization_id).await?;
            let customer = store::find(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
            tx.commit().await?;
            Ok(customer)
        })
        .await
}

/// Most customers one [`get_many`] reads.
pub const MAX_BATCH: usize = 100;

/// The customers among `customer_ids` (at most [`MAX_BATCH`]), in the order asked; ids not in
/// the organization are left out, as they would be 404 one by one.
#[tracing::instrument(name = "customers.get_many", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn get_many(app: &App, caller: &Caller, customer_ids: &[Uuid]) -> Result<Vec<Customer>, ApiError> {
    caller.require(Scope::CustomersRead)?;
    if customer_ids.len() > MAX_BATCH {
        return Err(ApiError::invalid("customer_ids", format!("must hold at most {MAX_BATCH} ids")));
    }
    let id_of = |customer: &Customer| customer.customer_id;
    app.cache
        .read_many(caller.organization_id, View::Customer, customer_ids, id_of, |missing| async move {
            let mut conn = app.db.connection().await?;
            let tx = conn.begin(caller.organization_id).await?;
            let customers = store::find_many(&tx, &missing).await?;
            tx.commit().await?;
            Ok(customers)
        })
        .await
}

#[tracing::instrument(name = "customers.list", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn list(
    app: &App,
    caller: &Caller,
    filter: ListFilter,
    page: PageRequest,
) -> Result<ListResponse<Customer>, ApiError> {
    caller.require(Scope::CustomersRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let rows = store::list(&tx, &filter, page.after_id()?, page.fetch_limit()).await?;
    tx.commit().await?;
    Ok(page.page(rows, |customer| customer.customer_id))
}

/// Applies a partial update; `expected_version` (from `If-Match`) must be current.
#[tracing::instrument(name = "customers.update", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn update(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    expected_version: Option<i32>,
    patch: CustomerPatch,
) -> Result<Customer, ApiError> {
    caller.require(Scope::CustomersWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let mut customer = store::lock_not_erased(&tx, customer_id).await?;
    if expected_version.is_some_and(|version| version != customer.version) {
        return Err(ApiError::VersionMismatch);
    }
    let reason = patch.status_reason.clone();
    let changes = customer.apply(patch);
    if changes.fields.is_empty() {
        return Ok(customer);
    }
    let renamed = changes.fields.iter().any(|field| matches!(*field, "first_name" | "last_name"));
    let former_words = if renamed { store::name_words(&tx, customer_id).await? } else { Vec::new() };
    let customer = store::update(&tx, &customer).await?;
    search::store::forget_unused_name_words(&tx, &former_words).await?;
    events::record_one(
        &tx,
        types::CUSTOMER_UPDATED,
        customer_id,
        json!({ "customer_id": customer_id, "changed_fields": changes.fields, "version": customer.version }),
    )
    .await?;
    if let Some((from, to)) = changes.status {
        store::record_status_change(&tx, customer_id, Some(from), to, reason.as_deref(), &caller.subject).await?;
        events::record_one(
            &tx,
            types::CUSTOMER_STATUS_CHANGED,
            customer_id,
            json!({ "customer_id": customer_id, "old_status": from, "new_status": to, "reason": reason }),
        )
        .await?;
    }
    app.commit(tx).await?;
    Ok(customer)
}

/// Erases personal data; erasing an erased customer again changes nothing.
#[tracing::instrument(name = "customers.erase", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn erase(app: &App, caller: &Caller, customer_id: Uuid) -> Result<(), ApiError> {
    caller.require(Scope::CustomersAdmin)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let customer = store::lock(&tx, customer_id).await?;
    if customer.erased_at.is_some() {
        return Ok(());
    }
    let former_words = store::name_words(&tx, customer_id).await?;
    let erased = store::erase(&tx, customer_id).await?;
    search::store::forget_unused_name_words(&tx, &former_words).await?;
    store::record_status_change(
        &tx,
        customer_id,
        Some(customer.status),
        erased.status,
        Some("erased"),
        &caller.subject,
    )
    .await?;
    events::record_one(&tx, types::CUSTOMER_ERASED, customer_id, json!({ "customer_id": customer_id })).await?;
    app.commit(tx).await?;
    Ok(())
}

#[tracing::instrument(name = "customers.customer_360", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn customer_360(app: &App, caller: &Caller, customer_id: Uuid) -> Result<Customer360, ApiError> {
    caller.require(Scope::CustomersRead)?;
    app.cache
        .read(caller.organization_id, View::Customer360, customer_id, || async {
            let mut conn = app.db.connection().await?;
            let tx = conn.begin(caller.organization_id).await?;
            let view = views::customer_360(&tx, customer_id).await?;
            tx.commit().await?;
            Ok(view)
        })
        .await
}

#[tracing::instrument(name = "customers.export", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn export(app: &App, caller: &Caller, customer_id: Uuid) -> Result<CustomerExport, ApiError> {
    caller.require(Scope::CustomersRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let customer = store::find(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    let export = views::export(&tx, customer).await?;
    tx.commit().await?;
    Ok(export)
}

#[tracing::instrument(name = "customers.loyalty", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn loyalty(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    amount: Option<Money>,
) -> Result<LoyaltyCard, ApiError> {
    let customer = get(app, caller, customer_id).await?;
    Ok(LoyaltyCard::of(&customer, amount))
}

#[tracing::instrument(name = "customers.list_addresses", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn list_addresses(app: &App, caller: &Caller, customer_id: Uuid) -> Result<Vec<Address>, ApiError> {
    caller.require(Scope::CustomersRead)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    store::find(&tx, customer_id).await?.ok_or(ApiError::NotFound)?;
    let addresses = addresses::list(&tx, customer_id).await?;
    tx.commit().await?;
    Ok(addresses)
}

#[tracing::instrument(name = "customers.add_address", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn add_address(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    fields: AddressFields,
) -> Result<Address, ApiError> {
    caller.require(Scope::CustomersWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    store::lock_not_erased(&tx, customer_id).await?;
    let address = addresses::insert(&tx, customer_id, fields).await?;
    app.commit(tx).await?;
    Ok(address)
}

#[tracing::instrument(name = "customers.update_address", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn update_address(
    app: &App,
    caller: &Caller,
    customer_id: Uuid,
    address_id: Uuid,
    expected_version: Option<i32>,
    patch: AddressPatch,
) -> Result<Address, ApiError> {
    caller.require(Scope::CustomersWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    store::lock(&tx, customer_id).await?;
    let address = addresses::lock(&tx, customer_id, address_id).await?;
    if expected_version.is_some_and(|version| version != address.version) {
        return Err(ApiError::VersionMismatch);
    }
    let fields = patch.apply_to(&address);
    let address = addresses::update(&tx, &address, fields).await?;
    app.commit(tx).await?;
    Ok(address)
}

#[tracing::instrument(name = "customers.delete_address", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn delete_address(app: &App, caller: &Caller, customer_id: Uuid, address_id: Uuid) -> Result<(), ApiError> {
    caller.require(Scope::CustomersWrite)?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    store::lock(&tx, customer_id).await?;
    addresses::lock(&tx, customer_id, address_id).await?;
    addresses::delete(&tx, address_id).await?;
    app.commit(tx).await?;
    Ok(())
}
